"""The load of copy-database: one consistent dump, rewritten once, run over N target connections.

The rewrite writes the dump into :class:`FanOutLoader`, which cuts it into statements and runs them over N
PyMySQL connections to the target:

- ``INSERT`` statements go to whichever loader queue is shortest; rows carry their primary keys, so their
  order within a table does not matter.
- Session statements (``SET ...`` and ``/*!40101 SET ... */``) are queued to every loader, in order, so each
  connection has the dump's session (names, time zone, SQL mode, checks off) before its next insert.
- Any other statement (``DROP/CREATE TABLE``, ``ALTER TABLE ... KEYS``) is a barrier: every queue is drained,
  then it runs once. So a table is created before any insert into it, and its inserts finish before the
  next table's DDL.

mariadb-dump never writes a raw newline inside a string literal (it escapes it as ``\\n``), so a line ending
in ``;`` ends a statement. Dumps with views, triggers or routines need the ``mariadb`` client's DELIMITER
handling and are refused here (the caller loads those with the ``mariadb`` client).

Memory stays bounded: each queue holds at most QUEUE_DEPTH statements (about ``--net-buffer-length`` each).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any

import pymysql

from wpclone.db import DbEndpoint
from wpclone.errors import LoadError

log = logging.getLogger(__name__)

QUEUE_DEPTH = 4
SESSION_PREFIXES = (b"SET ", b"/*!40101 SET ", b"/*!40103 SET ", b"/*!40014 SET ", b"/*!40111 SET ")
_STOP = object()
_BARRIER = object()


class _Loader(threading.Thread):
    def __init__(self, conn: Any, index: int, failed: threading.Event) -> None:
        super().__init__(name=f"load-{index}", daemon=True)
        self.conn = conn
        self.jobs: queue.Queue[object] = queue.Queue(QUEUE_DEPTH)
        self.idle = threading.Event()
        self.failed = failed
        self.error: str | None = None

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is _STOP:
                return
            if job is _BARRIER:
                self.idle.set()
                continue
            if self.error is not None:
                continue  # keep draining so the producer never blocks on a dead loader
            try:
                assert isinstance(job, bytes)
                self.conn.query(job)
            except Exception as exc:
                self.error = _server_message(exc)
                self.failed.set()


def _server_message(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"ERROR {args[0]}: {args[1]}"
    return f"{type(exc).__name__}: {exc}"


class FanOutLoader:
    """A binary sink (``write``/``close``) that executes a mariadb-dump stream over N connections."""

    def __init__(self, target: DbEndpoint, streams: int) -> None:

        self.failed = threading.Event()
        self.loaders: list[_Loader] = []
        try:
            for i in range(streams):
                conn = target.connect(
                    connect_timeout=10, read_timeout=3600, write_timeout=3600, max_allowed_packet=1 << 30
                )
                with conn.cursor() as cur:
                    cur.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")
                self.loaders.append(_Loader(conn, i, self.failed))
        except pymysql.MySQLError as exc:
            self._close_connections()
            raise LoadError(_server_message(exc)) from exc
        for loader in self.loaders:
            loader.start()
        self.pieces: list[bytes] = []
        self.tail_semicolon = False
        self.statements = 0

    # The sink protocol the rewrite uses.
    def write(self, data: bytes) -> int:
        """Cut at ``;\n`` (only statement ends have it: string literals hold no raw newline)."""
        self._check()
        pos = 0
        if self.tail_semicolon and data.startswith(b"\n"):
            self._statement(b"")
            pos = 1
        while (end := data.find(b";\n", pos)) >= 0:
            self._statement(data[pos : end + 1])
            pos = end + 2
        rest = data[pos:]
        if rest:
            self.pieces.append(rest)
        self.tail_semicolon = rest.endswith(b";")
        return len(data)

    def close(self) -> None:
        """Run what is left, wait for every loader, and raise LoadError if any statement failed."""
        if self.pieces:
            self._statement(b"")
        self._barrier()
        self._stop()
        self._check()

    def abort(self) -> None:
        self.failed.set()
        self._stop()

    # Internals.
    def _statement(self, last: bytes) -> None:
        stmt = b"".join([*self.pieces, last]) if self.pieces else last
        self.pieces = []
        self.tail_semicolon = False
        # Skip the comment lines and blank lines mariadb-dump puts between statements.
        start = 0
        while start < len(stmt):
            if stmt.startswith((b"\n", b" "), start):
                start += 1
            elif stmt.startswith((b"--", b"/*M!999999"), start):
                nl = stmt.find(b"\n", start)
                start = len(stmt) if nl < 0 else nl + 1
            else:
                break
        if start:
            stmt = stmt[start:]
        if not stmt.strip():
            return
        if stmt.startswith(b"DELIMITER"):
            raise LoadError("the dump uses DELIMITER (triggers or routines); the parallel load cannot run it")
        self._dispatch(stmt)

    def _dispatch(self, stmt: bytes) -> None:
        self.statements += 1
        if stmt.startswith(b"INSERT INTO "):
            loader = min(self.loaders, key=lambda ld: ld.jobs.qsize())
            self._put(loader, stmt)
        elif stmt.startswith(SESSION_PREFIXES):
            for loader in self.loaders:
                self._put(loader, stmt)
        else:
            self._barrier()
            self._put(self.loaders[0], stmt)
            self._barrier()

    def _put(self, loader: _Loader, job: object) -> None:
        while True:
            self._check()
            with contextlib.suppress(queue.Full):
                loader.jobs.put(job, timeout=1)
                return

    def _barrier(self) -> None:
        for loader in self.loaders:
            loader.idle.clear()
            self._put(loader, _BARRIER)
        for loader in self.loaders:
            while not loader.idle.wait(1):
                self._check()
        self._check()

    def _check(self) -> None:
        if self.failed.is_set():
            errors = [ld.error for ld in self.loaders if ld.error]
            raise LoadError(errors[0] if errors else "the parallel load was stopped")

    def _stop(self) -> None:
        for loader in self.loaders:
            with contextlib.suppress(queue.Full):
                loader.jobs.put(_STOP, timeout=5)  # a failed loader drains its queue, so this gets in
        for loader in self.loaders:
            loader.join(timeout=5)
        self._close_connections()

    def _close_connections(self) -> None:
        for loader in self.loaders:
            with contextlib.suppress(Exception):
                loader.conn.close()


def has_delimiter_objects(conn: Any, database: str) -> Sequence[str]:
    """Views, triggers and routines in ``database``: what makes the parallel load fall back."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 'view' FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"
            " UNION ALL SELECT 'trigger' FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
            (database, database),
        )
        return sorted({str(row[0]) for row in cur.fetchall()})
