"""copy-database's same-server path: the server copies the tables, the engine rewrites only the rows it must.

When the source and the target are databases of one server (``copy_database`` decides: same host and port,
or ``--copy-path same-server``), the copy never leaves the server:

1. **Structure.** Each source table's ``SHOW CREATE TABLE`` is run in the target (the dump's DDL: indexes,
   foreign keys, table options, ``AUTO_INCREMENT``), foreign key checks off.
2. **Rows, one snapshot.** In one session and one transaction, ``INSERT … SELECT`` of every table (every
   stored column, generated ones left to the server). ``INSERT … SELECT`` at REPEATABLE READ is a *locking*
   read of the source (InnoDB reads the newest rows and share-locks them until commit, not the
   transaction's snapshot: measured), so the session turns on ``innodb_snapshot_isolation`` (MariaDB 10.6.18,
   10.11.8, 11.4+): a row changed after the snapshot was opened makes the statement fail (error 1020)
   instead of being read. The copy is therefore exactly the snapshot or nothing; it is tried
   ``SNAPSHOT_TRIES`` times, then the step copies by the dump path. The transaction commits right after the
   last table: the live site's writes to a table already copied wait for that commit (the copy phase,
   seconds), its reads never wait. A server without ``innodb_snapshot_isolation`` gets the dump path.
3. **Rewrite in place.** Per table, the rows whose string columns (text and binary types: the dump quotes
   both, and the stream rewrites every quoted field) hold any anchor of the rewrite (``Rewriter`` anchors:
   every key holds one, so no other row can change) are streamed over a second connection, each field put
   through ``Rewriter.rewrite_field`` (serialized values rebuilt as in the stream), the changed rows
   written to a temporary table and applied with one ``UPDATE … JOIN`` on the primary key. A table without a
   primary key gets its matching rows copied to a temporary table (with a row number), rewritten there,
   then deleted and inserted again: same rows, same snapshot.

Who may do this: one session must read the source and write the target. The step uses the target's login
(the clone's: ``ALL`` on the clone's database only), which the control plane grants ``SELECT`` on exactly the
source tables the copy reads, for the copy only (``wpclone.services.clone``): the clone's login reads
nothing it does not receive a copy of anyway, and the source's login gains nothing. Without that grant
``check_same_server`` says why and the dump path runs.

Both paths give the same clone (tests/steps/test_copy_database_same_server.py compares every table's
``CHECKSUM TABLE`` and row count); the verification afterwards is the step's own (``copy_database.verify``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pymysql
import pymysql.cursors

from wpclone.db import quote_identifier as q
from wpclone.rewrite import Rewriter

log = logging.getLogger(__name__)

STEP = "copy-database"
ER_CHECKREAD = 1020  # "Record has changed since last read": innodb_snapshot_isolation saw a newer row
DENIED = (1044, 1142, 1143)  # database, table, column access denied
SNAPSHOT_TRIES = 3
BATCH_ROWS = 500  # rewritten rows per multi-row INSERT into the temporary table
STRING_TYPES = (
    "char",
    "varchar",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
)
BINARY_TYPES = ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")
CHANGED = "_wpclone_rewritten"  # the temporary tables' names (per session: no clash with the clone's)
MATCHED = "_wpclone_matched"


class Unavailable(Exception):
    """The same-server path cannot copy this source; the message (a sentence) says why. The dump path does."""


@dataclass(frozen=True)
class Columns:
    stored: tuple[str, ...]  # every column INSERT … SELECT copies (not generated), in table order
    strings: tuple[str, ...]  # the stored columns of string types, rewritten
    binary: frozenset[str]  # those of them that are binary (bytes in, bytes out)
    key: tuple[str, ...]  # the primary key's columns, () without one


def table_columns(conn: Any, database: str, tables: Sequence[str]) -> dict[str, Columns]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, EXTRA FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
        )
        found: dict[str, list[tuple[str, str, str]]] = {}
        for table, column, kind, extra in cur.fetchall():
            found.setdefault(str(table), []).append((str(column), str(kind).lower(), str(extra).upper()))
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s"
            " AND INDEX_NAME = 'PRIMARY' ORDER BY TABLE_NAME, SEQ_IN_INDEX",
            (database,),
        )
        keys: dict[str, list[str]] = {}
        for table, column in cur.fetchall():
            keys.setdefault(str(table), []).append(str(column))
    result = {}
    for table in tables:
        stored = [(c, k) for c, k, extra in found.get(table, []) if "GENERATED" not in extra]
        result[table] = Columns(
            stored=tuple(c for c, _ in stored),
            strings=tuple(c for c, k in stored if k in STRING_TYPES),
            binary=frozenset(c for c, k in stored if k in BINARY_TYPES),
            key=tuple(keys.get(table, ())),
        )
    return result


def _code(exc: BaseException) -> int:
    return int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else 0


def check_same_server(conn: Any, source_db: str, tables: Sequence[tuple[str, str]]) -> None:
    """Raise Unavailable unless this session can copy ``tables`` ((name, kind)) of ``source_db`` here."""
    others = [name for name, kind in tables if kind != "BASE TABLE"]
    if others:
        raise Unavailable(f"the source has views, sequences or versioned tables ({', '.join(others[:3])}).")
    with conn.cursor() as cur:
        try:
            cur.execute("SELECT @@innodb_snapshot_isolation")
        except pymysql.MySQLError as exc:
            raise Unavailable(
                "the server has no innodb_snapshot_isolation (MariaDB 10.6.18 or later)."
            ) from exc
        for name, _ in tables:
            try:
                cur.execute(f"SELECT 1 FROM {q(source_db)}.{q(name)} LIMIT 0")
            except pymysql.MySQLError as exc:
                if _code(exc) in DENIED:
                    raise Unavailable(f"the target's login cannot read {source_db}.{name}.") from exc
                raise
        cur.execute(
            "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
            " AND TABLE_TYPE = 'BASE TABLE' AND ENGINE <> 'InnoDB'",
            (source_db,),
        )
        if other := cur.fetchall():
            raise Unavailable(f"{source_db}.{other[0][0]} is not InnoDB (it is {other[0][1]}): no snapshot.")


def create_tables(conn: Any, source_db: str, tables: Sequence[str]) -> None:
    with conn.cursor() as cur:
        cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
        for table in tables:
            cur.execute(f"SHOW CREATE TABLE {q(source_db)}.{q(table)}")
            cur.execute(cur.fetchone()[1])


def copy_rows(conn: Any, source_db: str, columns: dict[str, Columns], tables: Sequence[str]) -> None:
    """``INSERT … SELECT`` of ``tables`` in one transaction that reads exactly one snapshot (or fails)."""
    for attempt in range(1, SNAPSHOT_TRIES + 1):
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION innodb_snapshot_isolation = ON")
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                for table in tables:
                    cols = ", ".join(q(c) for c in columns[table].stored)
                    cur.execute(
                        f"INSERT INTO {q(table)} ({cols}) SELECT {cols} FROM {q(source_db)}.{q(table)}"
                    )
                cur.execute("COMMIT")
            return
        except pymysql.MySQLError as exc:
            conn.rollback()
            if _code(exc) != ER_CHECKREAD:
                raise
            log.warning("step=%s event=snapshot-changed attempt=%d", STEP, attempt)
    raise Unavailable(f"the source changed during each of {SNAPSHOT_TRIES} snapshot copies.")


def _holds(cols: Columns, anchors: Sequence[bytes]) -> tuple[str, list[bytes]]:
    """WHERE clause (and parameters): a string column holds one of the anchors."""
    terms = [f"INSTR(BINARY {q(c)}, BINARY %s) > 0" for c in cols.strings for _ in anchors]
    return " OR ".join(terms), [a for _ in cols.strings for a in anchors]


def _rewritten(
    rewriter: Rewriter, cols: Columns, names: Sequence[str], row: Sequence[Any]
) -> list[Any] | None:
    """The row with its string fields rewritten (the others as they are), or None if nothing changed."""
    out = list(row)
    changed = False
    for i, name in enumerate(names):
        value = row[i]
        if value is None or name not in cols.strings:
            continue
        raw = value if name in cols.binary else value.encode("utf-8", "surrogateescape")
        new = rewriter.rewrite_field(raw)
        if new != raw:
            changed = True
            out[i] = new if name in cols.binary else new.decode("utf-8", "surrogateescape")
    return out if changed else None


def _batches(rows: Iterator[list[Any]]) -> Iterator[list[list[Any]]]:
    batch: list[list[Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def rewrite_table(conn: Any, reader: Any, table: str, cols: Columns, rewriter: Rewriter) -> int:
    """Rewrite the rows of ``table`` that need it, in place; return how many changed.

    ``reader`` is a second connection to the target (the rows stream from it while ``conn`` writes)."""
    if not cols.strings:
        return 0
    anchors = list(rewriter.plain.anchors)
    holds, params = _holds(cols, anchors)
    if not cols.key:
        return _rewrite_keyless(conn, table, cols, rewriter, holds=holds, params=params)
    names = [*cols.key, *cols.strings]
    select = ", ".join(q(c) for c in names)
    changed = 0
    with conn.cursor() as cur:
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {CHANGED}")
        cur.execute(f"CREATE TEMPORARY TABLE {CHANGED} SELECT {select} FROM {q(table)} LIMIT 0")
        insert = f"INSERT INTO {CHANGED} ({select}) VALUES ({', '.join(['%s'] * len(names))})"
        with reader.cursor(pymysql.cursors.SSCursor) as stream:
            stream.execute(f"SELECT {select} FROM {q(table)} WHERE {holds}", params)
            rows = (new for row in stream if (new := _rewritten(rewriter, cols, names, row)) is not None)
            for batch in _batches(rows):
                cur.executemany(insert, batch)
                changed += len(batch)
        if changed:
            on = " AND ".join(f"t.{q(c)} = r.{q(c)}" for c in cols.key)
            sets = ", ".join(f"t.{q(c)} = r.{q(c)}" for c in cols.strings)
            cur.execute(f"UPDATE {q(table)} t JOIN {CHANGED} r ON {on} SET {sets}")
        cur.execute(f"DROP TEMPORARY TABLE {CHANGED}")
    return changed


def _rewrite_keyless(
    conn: Any, table: str, cols: Columns, rewriter: Rewriter, *, holds: str, params: list[bytes]
) -> int:
    """A table without a primary key: its matching rows, numbered in a temporary table, rewritten there,
    then deleted from the table and inserted again."""
    stored = ", ".join(q(c) for c in cols.stored)
    names = ["_row", *cols.strings]
    changed = 0
    with conn.cursor() as cur:
        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {MATCHED}")
        cur.execute(
            f"CREATE TEMPORARY TABLE {MATCHED} (_row BIGINT AUTO_INCREMENT PRIMARY KEY)"
            f" SELECT {stored} FROM {q(table)} WHERE {holds}",
            params,
        )
        cur.execute(f"SELECT _row, {', '.join(q(c) for c in cols.strings)} FROM {MATCHED}")
        updates = []
        for row in cur.fetchall():
            new = _rewritten(rewriter, cols, names, row)
            if new is not None:
                updates.append([*new[1:], new[0]])
        sets = ", ".join(f"{q(c)} = %s" for c in cols.strings)
        cur.executemany(f"UPDATE {MATCHED} SET {sets} WHERE _row = %s", updates)
        changed = len(updates)
        if changed:
            cur.execute(f"DELETE FROM {q(table)} WHERE {holds}", params)
            cur.execute(f"INSERT INTO {q(table)} ({stored}) SELECT {stored} FROM {MATCHED}")
        cur.execute(f"DROP TEMPORARY TABLE {MATCHED}")
    return changed


def same_server_copy(
    conn: Any,
    reader: Any,
    source_db: str,
    *,
    tables: Sequence[str],
    skip_data: Sequence[str],
    rewriter: Rewriter,
) -> int:
    """Copy ``tables`` of ``source_db`` into ``conn``'s database (structure only for ``skip_data``) and
    rewrite in place; return the rows rewritten. Raises Unavailable when the snapshot cannot be had."""
    columns = table_columns(conn, source_db, tables)
    create_tables(conn, source_db, tables)
    filled = [t for t in tables if t not in set(skip_data)]
    copy_rows(conn, source_db, columns, filled)
    log.info("step=%s event=server-copied tables=%d", STEP, len(filled))
    changed = 0
    for table in filled:
        n = rewrite_table(conn, reader, table, columns[table], rewriter)
        conn.commit()
        changed += n
        if n:
            log.info("step=%s event=rewritten table=%s rows=%d", STEP, table, n)
    return changed
