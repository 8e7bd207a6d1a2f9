"""copy-database's same-server path: the server copies the tables, the engine rewrites only the rows it must.

When the source and the target are databases of one server (``copy_database`` decides: same host and port,
or ``--copy-path same-server``), the copy never leaves the server:

1. **Structure.** Each source table's ``SHOW CREATE TABLE`` is run in the target (the dump's DDL: indexes,
   foreign keys, table options, ``AUTO_INCREMENT``), foreign key checks off.
2. **Rows, one snapshot.** ``INSERT … SELECT`` of every table (every stored column, generated ones left to the
   server), the tables split by size over ``COPY_CONNECTIONS`` sessions, one transaction each, every snapshot
   opened before any row is read (``copy_rows`` says why that is one state of the source). ``INSERT … SELECT``
   at REPEATABLE READ is a *locking* read of the source (InnoDB reads the newest rows and share-locks them
   until commit, not the transaction's snapshot: measured), so the session turns on
   ``innodb_snapshot_isolation`` (MariaDB 10.6.18, 10.11.8, 11.4+): a row changed after the snapshot was
   opened makes the statement fail (error 1020) instead of being read. The copy is therefore exactly the
   snapshot or nothing; it is tried ``SNAPSHOT_TRIES`` times, then the step copies by the dump path. The
   transactions commit right after the last table: the live site's writes to a table already copied wait for
   that commit (the copy phase, seconds), its reads never wait. A server without ``innodb_snapshot_isolation``
   gets the dump path.
3. **The server's share of the rewrite, on the way.** The ``INSERT … SELECT`` puts each value of a bytewise
   string column (binary types; text in a ``SERVER_SAFE_CHARSETS`` set: its bytes are what the dump path's
   engine reads) that holds a source host and does not start like serialized data through
   ``server_passes``: one ``REGEXP_REPLACE`` per host over ``BINARY`` bytes for ``http(s)://host`` and its
   JSON form, with the engine's host boundary as a lookahead. Exact only for a host-by-host table (see
   ``server_passes``); otherwise there are no passes and the engine does everything.
4. **The engine's share, on the way.** In the same sessions, in the same snapshot: the rows where a string
   column holds an anchor of the rewrite (``Rewriter`` anchors: every key holds one) and starts like
   serialized data (the server leaves those whole: only the engine rebuilds their lengths) are left out of
   the table's ``INSERT … SELECT`` and copied by ``copy_engine_rows`` instead: read by key in batches, written
   as the dump writes them (an ``INSERT`` of quoted, escaped literals), put through the engine's stream and
   run, so the engine sees exactly what the dump path's would. Only where the rows can be read and written
   back so (``engine_rows``: a single integer primary key, every other column an integer or a bytewise
   string). Each session then checks whether the table it copied still holds an anchor.
5. **The rest of the engine's share.** The rows of those tables whose string columns (text and binary types:
   the dump quotes both, and the stream rewrites every quoted field) still hold an anchor (the forms the
   server leaves, tables the engine could not copy on the way: usually none) go through the dump path's
   ``dump | rewrite | load`` (``rewrite_tables``, given by ``copy_database``) into the target itself, rows
   replaced by key (``REPLACE``) while the dump reads its snapshot. A table whose rows may be replaced so
   (``Columns.replaceable``: a primary key of no string column, no other unique index, no foreign key
   referring to it) is rewritten in place (``mariadb-dump --where``); any other is staged first: its matching
   rows are copied into a residue table (``stage_residue``: key and string columns, or every stored column
   and a row number without a primary key), rewritten there, and written back by ``apply_residue`` (one
   ``UPDATE … JOIN``; a keyless table: the matching rows deleted and inserted again).

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
import re
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pymysql

from wpclone.db import quote_identifier as q
from wpclone.rewrite import Rewriter, RewriteStats, mysql_encode

log = logging.getLogger(__name__)

STEP = "copy-database"
ER_CHECKREAD = 1020  # "Record has changed since last read": innodb_snapshot_isolation saw a newer row
DENIED = (1044, 1142, 1143)  # database, table, column access denied
SNAPSHOT_TRIES = 3
COPY_CONNECTIONS = 2  # INSERT … SELECT in parallel (measured on 2 cores)
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
INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "bigint")
# The rows the engine copies itself are read by key: first ENGINE_FIRST_ROWS, then as many as held about
# ENGINE_BATCH_BYTES in the batch before (at most ENGINE_BATCH_ROWS), so memory stays flat.
ENGINE_FIRST_ROWS = 100
ENGINE_BATCH_ROWS = 5000
ENGINE_BATCH_BYTES = 8 << 20
ENGINE_STATEMENT_BYTES = 4 << 20  # an INSERT of the engine's share is cut after this many bytes
# Character sets whose bytes (as ``BINARY`` reads them) are the bytes the dump path's engine reads: UTF-8 (the
# dump's character set) and its ASCII subset. A text column in any other is left to the engine.
SERVER_SAFE_CHARSETS = ("utf8mb4", "utf8mb3", "utf8", "ascii")
# rewrite._SERIALIZED_START, anchored, in PCRE: a value that starts so is the engine's, whole (it may be
# serialized, and then its lengths are rebuilt).
SERIALIZED_PCRE = rb"^(?:[aOsCE]:[0-9]|[id]:|b:[01];|N;)"
SCRATCH = "_wpclone_rw_"  # the residue tables' names: + a random token and a number (dropped once applied)


def _literal(text: bytes) -> bytes:
    """``text`` as a REGEXP_REPLACE replacement reads it (there ``\\N`` is group N, ``\\\\`` a backslash)."""
    return text.replace(b"\\", b"\\\\")


@dataclass(frozen=True)
class ServerPass:
    """One ``REGEXP_REPLACE`` of the rewrite on the server: a PCRE pattern (site keys, longest first, each
    with its boundary test: ``Form.pattern``, which PCRE reads as Python's ``re`` does), its replacement."""

    pattern: bytes
    replacement: bytes  # as REGEXP_REPLACE reads it (``_literal``; ``\\1`` the separator the key had)

    def sql(self, value: str) -> str:
        return f"REGEXP_REPLACE({value}, X'{self.pattern.hex()}', X'{self.replacement.hex()}')"


def _host_passes(keys: Sequence[Any]) -> list[ServerPass]:
    """The passes of one host's schemed keys: one when they are every scheme with every separator, going to
    one scheme and host (the usual table: ``http(s)://host`` and ``http(s):\\/\\/host`` become NEW with the
    separator kept), else one per replacement."""
    parts = set()
    for key in keys:
        scheme, sep = key.old[: key.host_at].split(b":", 1)
        new_scheme, new_rest = key.new.split(b":", 1)
        if not new_rest.startswith(sep):
            break
        parts.add(
            (scheme, sep, key.old[key.host_at :], new_scheme, new_rest[len(sep) :], key.goes_on.pattern)
        )
    else:
        schemes = sorted({p[0] for p in parts}, key=len, reverse=True)
        seps = sorted({p[1] for p in parts}, key=len, reverse=True)
        tails = {p[2:] for p in parts}
        if len(tails) == 1 and len(parts) == len(schemes) * len(seps):
            ((rest, new_scheme, new_host, goes_on),) = tails
            pattern = b"(?:%s):(%s)%s(?!%s)" % (
                b"|".join(schemes),
                b"|".join(re.escape(sep) for sep in seps),
                re.escape(rest),
                goes_on,
            )
            return [ServerPass(pattern, _literal(new_scheme + b":") + b"\\1" + _literal(new_host))]
    by_new: dict[bytes, list[bytes]] = {}
    for key in keys:
        by_new.setdefault(key.new, []).append(key.regex.pattern)
    return [ServerPass(b"(?:" + b"|".join(p) + b")", _literal(new)) for new, p in by_new.items()]


def server_passes(rewriter: Rewriter) -> list[ServerPass]:
    """The passes the server rewrites plain values with: the keys ``http(s)://host`` and their JSON form
    ``http(s):\\/\\/host``, what nearly every URL in WordPress data is; [] when the table is not host by host.

    Exact (the engine's result) because the table is host by host (``Replacer`` mode ``by-host``:
    ``_sequential_is_strtr``, no replacement makes any key match, inside it or across its edges), so applying
    some keys first and the whole table afterwards is strtr of the whole table: the keys the server leaves
    (``//host``, the URL-encoded forms) match the same host occurrences in the rewritten text as in the
    original, because every longer key that ends at such an occurrence (``https://host`` ends where
    ``//host`` does) is among the server's, and keys of other encodings cannot meet at one occurrence (the
    bytes before the host differ)."""
    if rewriter.plain.mode != "by-host":
        return []
    by_host: dict[bytes, list[Any]] = {}
    for key in sorted(rewriter.plain.keys, key=lambda k: (len(k.host), len(k.old)), reverse=True):
        if key.old.startswith(b"http") and b"%" not in key.old[: key.host_at]:
            by_host.setdefault(key.host, []).append(key)
    return [one for keys in by_host.values() for one in _host_passes(keys)]


def server_value(column: str, passes: Sequence[ServerPass]) -> str:
    """The SELECT expression that copies ``column`` with ``passes`` applied to its bytes, unless the value
    starts like serialized data (``SERIALIZED_PCRE`` reads at most its first 4 bytes): that one stays for the
    engine, whole. (A guard on the hosts measured slower than the passes' own search.)"""
    c = q(column)
    value = f"BINARY {c}"
    for one in passes:
        value = one.sql(value)
    return f"CASE WHEN BINARY LEFT({c}, 4) REGEXP X'{SERIALIZED_PCRE.hex()}' THEN {c} ELSE {value} END"


class Unavailable(Exception):
    """The same-server path cannot copy this source; the message (a sentence) says why. The dump path does."""


@dataclass(frozen=True)
class Columns:
    stored: tuple[str, ...]  # every column INSERT … SELECT copies (not generated), in table order
    strings: tuple[str, ...]  # the stored columns of string types, rewritten
    binary: frozenset[str]  # those of them that are binary (bytes in, bytes out)
    key: tuple[str, ...]  # the primary key's columns, () without one
    bytewise: frozenset[str] = (
        frozenset()
    )  # string columns whose bytes are the engine's (SERVER_SAFE_CHARSETS)
    # Rows may be replaced by key (REPLACE): a primary key of no string column, no other unique index, and
    # no foreign key refers to the table (so a REPLACE deletes nothing but the row it rewrites).
    replaceable: bool = False
    kinds: tuple[str, ...] = ()  # each stored column's DATA_TYPE, in table order


def table_columns(conn: Any, database: str, tables: Sequence[str]) -> dict[str, Columns]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, EXTRA, CHARACTER_SET_NAME"
            " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
        )
        found: dict[str, list[tuple[str, str, str]]] = {}
        bytewise: set[tuple[str, str]] = set()
        for table, column, kind, extra, charset in cur.fetchall():
            found.setdefault(str(table), []).append((str(column), str(kind).lower(), str(extra).upper()))
            if str(kind).lower() in BINARY_TYPES or str(charset).lower() in SERVER_SAFE_CHARSETS:
                bytewise.add((str(table), str(column)))
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s"
            " AND INDEX_NAME = 'PRIMARY' ORDER BY TABLE_NAME, SEQ_IN_INDEX",
            (database,),
        )
        keys: dict[str, list[str]] = {}
        for table, column in cur.fetchall():
            keys.setdefault(str(table), []).append(str(column))
        cur.execute(
            "SELECT TABLE_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s"
            " AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY' UNION SELECT REFERENCED_TABLE_NAME"
            " FROM information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_SCHEMA = %s",
            (database, database),
        )
        unreplaceable = {str(table) for (table,) in cur.fetchall()}
    result = {}
    for table in tables:
        stored = [(c, k) for c, k, extra in found.get(table, []) if "GENERATED" not in extra]
        result[table] = Columns(
            stored=tuple(c for c, _ in stored),
            strings=tuple(c for c, k in stored if k in STRING_TYPES),
            binary=frozenset(c for c, k in stored if k in BINARY_TYPES),
            key=tuple(keys.get(table, ())),
            bytewise=frozenset(c for c, k in stored if k in STRING_TYPES and (table, c) in bytewise),
            replaceable=bool(keys.get(table))
            and table not in unreplaceable
            and not any(k in STRING_TYPES for c, k in stored if c in keys[table]),
            kinds=tuple(k for _, k in stored),
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


def engine_rows(cols: Columns, anchors: Sequence[bytes]) -> str | None:
    """The condition of the rows the engine copies itself during the copy (``copy_engine_rows``): a string
    column holds an anchor and starts like serialized data (the server's passes leave such a value whole, and
    only the engine can rebuild its lengths). None where the engine cannot copy so: it reads the rows in
    batches by a single integer primary key and writes back every value as it read it, so every stored column
    must be an integer or a string whose bytes are the engine's (``Columns.bytewise``)."""
    if len(cols.key) != 1 or cols.key[0] not in cols.stored or not cols.strings:
        return None
    kinds = dict(zip(cols.stored, cols.kinds, strict=True))
    if kinds[cols.key[0]] not in INTEGER_TYPES or any(
        kind not in INTEGER_TYPES and (kind not in STRING_TYPES or column not in cols.bytewise)
        for column, kind in kinds.items()
    ):
        return None
    serialized = f"REGEXP X'{SERIALIZED_PCRE.hex()}'"
    return " OR ".join(
        "(({}) AND BINARY LEFT({}, 4) {})".format(
            " OR ".join(f"INSTR(BINARY {q(c)}, X'{a.hex()}') > 0" for a in anchors), q(c), serialized
        )
        for c in cols.strings
    )


def _statements(head: bytes, rows: Sequence[Sequence[Any]]) -> list[bytes]:
    """``rows`` (bytes, ints, None) as the dump writes them: ``head`` + quoted, escaped values, one
    statement per ENGINE_STATEMENT_BYTES."""
    statements: list[bytes] = []
    values: list[bytes] = []
    size = 0
    for row in rows:
        one = b"(%s)" % b",".join(
            b"NULL" if v is None else b"'%s'" % mysql_encode(v) if isinstance(v, bytes) else b"%d" % v
            for v in row
        )
        if values and size + len(one) > ENGINE_STATEMENT_BYTES:
            statements.append(head + b",".join(values))
            values, size = [], 0
        values.append(one)
        size += len(one) + 1
    if values:
        statements.append(head + b",".join(values))
    return statements


def copy_engine_rows(
    conn: Any, source_db: str, table: str, cols: Columns, *, where: str, rewriter: Rewriter
) -> RewriteStats:
    """Copy the rows of ``source_db.table`` that ``where`` selects into ``table`` through the engine, in
    this session's transaction (its snapshot, like the ``INSERT … SELECT`` of the others): read by key in
    batches of about ENGINE_BATCH_BYTES, written as the dump writes them (``_statements``), rewritten by the
    engine's stream, run."""
    key, at = q(cols.key[0]), cols.stored.index(cols.key[0])
    select = ", ".join(f"BINARY {q(c)}" if c in cols.strings else q(c) for c in cols.stored)
    head = f"INSERT INTO {q(table)} ({', '.join(q(c) for c in cols.stored)}) VALUES ".encode()
    query = f"SELECT {select} FROM {q(source_db)}.{q(table)} WHERE ({where}) IS TRUE"
    stats = RewriteStats(engine=rewriter.engine)
    last: int | None = None
    limit = ENGINE_FIRST_ROWS
    with conn.cursor() as cur:
        while True:
            after = "" if last is None else f" AND {key} > {int(last)}"
            cur.execute(f"{query}{after} ORDER BY {key} LIMIT {limit}")
            rows = cur.fetchall()
            if not rows:
                return stats
            last = rows[-1][at]
            size = sum(len(v) for row in rows for v in row if isinstance(v, bytes))
            limit = max(1, min(ENGINE_BATCH_ROWS, limit * ENGINE_BATCH_BYTES // max(size, 1)))
            for statement in _statements(head, rows):
                cur.execute(rewriter.rewrite_bytes(statement))
                _add_stats(stats, rewriter.stats)


def _insert_rows(
    conn: Any,
    source_db: str,
    columns: dict[str, Columns],
    tables: Sequence[str],
    *,
    passes: Sequence[ServerPass],
    engine: dict[str, str],
    rewriter: Rewriter | None,
    anchors: Sequence[bytes],
) -> Copied:
    """``INSERT … SELECT`` of each table (with ``passes``), but the rows ``engine`` selects of a table:
    ``copy_engine_rows`` copies those; then whether the table still holds an anchor (in this session's
    transaction, while the other session copies)."""
    copied = Copied(RewriteStats(engine=rewriter.engine if rewriter else "python"))
    stats = copied.stats
    # One engine per session (an engine has state), if the session has rows for one.
    own = (
        Rewriter(rewriter.pairs, engine=rewriter.engine)
        if rewriter is not None and any(t in engine for t in tables)
        else None
    )
    with conn.cursor() as cur:
        for table in tables:
            found = columns[table]
            cols = ", ".join(q(c) for c in found.stored)
            values = ", ".join(
                server_value(c, passes) if passes and c in found.bytewise else q(c) for c in found.stored
            )
            where = engine.get(table)
            cur.execute(
                f"INSERT INTO {q(table)} ({cols}) SELECT {values} FROM {q(source_db)}.{q(table)}"
                + (f" WHERE ({where}) IS NOT TRUE" if where else "")
            )
            if where and own is not None:
                _add_stats(stats, copy_engine_rows(conn, source_db, table, found, where=where, rewriter=own))
            if (
                anchors
                and found.strings
                and cur.execute(f"SELECT 1 FROM {q(table)} WHERE {_holds(found, anchors)} LIMIT 1")
            ):
                copied.holding.append(table)
    return copied


@dataclass
class Copied:
    """What ``copy_rows`` did: the engine's counts, the tables that still hold an anchor."""

    stats: RewriteStats
    holding: list[str] = field(default_factory=list)


def split_tables(
    conn: Any, source_db: str, tables: Sequence[str], ways: int, *, heavier: Collection[str] = ()
) -> list[list[str]]:
    """``tables`` in ``ways`` groups of about the same size (the largest first into the smallest group);
    the tables in ``heavier`` count three times (the engine copies some of their rows, at about a third of the
    server's speed: measured on the 30k-post source of bench/e2e.py)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (source_db,),
        )
        sizes = {str(name): int(size or 0) * (3 if name in heavier else 1) for name, size in cur.fetchall()}
    groups: list[list[str]] = [[] for _ in range(ways)]
    loads = [0] * ways
    for table in sorted(tables, key=lambda t: sizes.get(t, 0), reverse=True):
        i = loads.index(min(loads))
        groups[i].append(table)
        loads[i] += sizes.get(table, 0)
    return [g for g in groups if g]


def copy_rows(
    conns: Sequence[Any],
    source_db: str,
    columns: dict[str, Columns],
    groups: Sequence[Sequence[str]],
    *,
    passes: Sequence[ServerPass] = (),
    engine: dict[str, str] | None = None,
    rewriter: Rewriter | None = None,
) -> Copied:
    """``INSERT … SELECT`` of each group of tables over its own connection, in parallel, the values of
    bytewise string columns put through ``passes`` on the way (``server_value``), the rows ``engine`` selects
    of a table (table → condition, ``engine_rows``) through ``rewriter`` (``copy_engine_rows``); exactly one
    state of the source, or it fails. Returns the engine's counts and the tables that still hold one of
    ``rewriter``'s anchors.

    Each connection reads its own snapshot under ``innodb_snapshot_isolation``, and every snapshot is open
    before any row is read, so the copy is the state at the last snapshot: a row changed after an earlier
    snapshot and read by that connection fails its statement (error 1020, then the whole copy is tried
    again), and a connection whose rows did not change since its snapshot read exactly what the last
    snapshot holds."""
    conns = conns[: len(groups)]
    for attempt in range(1, SNAPSHOT_TRIES + 1):
        try:
            for conn in conns:
                with conn.cursor() as cur:
                    cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
                    cur.execute("SET SESSION innodb_snapshot_isolation = ON")
                    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            with ThreadPoolExecutor(len(conns)) as pool:
                done = [
                    pool.submit(
                        _insert_rows,
                        conn,
                        source_db,
                        columns,
                        group,
                        passes=passes,
                        engine=engine or {},
                        rewriter=rewriter,
                        anchors=rewriter.plain.anchors if rewriter else (),
                    )
                    for conn, group in zip(conns, groups, strict=True)
                ]
            if failed := next((e for f in done if (e := f.exception()) is not None), None):
                raise failed
            for conn in conns:
                conn.commit()
            copied = Copied(RewriteStats(engine=rewriter.engine if rewriter else "python"))
            for one in done:
                _add_stats(copied.stats, one.result().stats)
                copied.holding += one.result().holding
            return copied
        except pymysql.MySQLError as exc:
            for conn in conns:
                conn.rollback()
            if _code(exc) != ER_CHECKREAD:
                raise
            log.warning("step=%s event=snapshot-changed attempt=%d", STEP, attempt)
    raise Unavailable(f"the source changed during each of {SNAPSHOT_TRIES} snapshot copies.")


def _holds(cols: Columns, anchors: Sequence[bytes]) -> str:
    """WHERE clause: a string column holds one of the anchors."""
    return " OR ".join(f"INSTR(BINARY {q(c)}, X'{a.hex()}') > 0" for c in cols.strings for a in anchors)


@dataclass(frozen=True)
class Residue:
    """The rows of ``table`` that still hold an anchor after the copy, copied into the regular table
    ``scratch`` for the engine: key and string columns, or (without a primary key) every stored column and a
    row number ``_row``."""

    table: str
    scratch: str
    cols: Columns
    holds: str  # the WHERE clause that found them in ``table``
    rows: int


def stage_residue(
    conn: Any, table: str, cols: Columns, anchors: Sequence[bytes], scratch: str
) -> Residue | None:
    """Copy the rows of ``table`` that hold an anchor into ``scratch``; None (and no table) when none do."""
    if not cols.strings:
        return None
    holds = _holds(cols, anchors)
    with conn.cursor() as cur:
        if cols.key:
            select = ", ".join(q(c) for c in (*cols.key, *cols.strings))
            key = ", ".join(q(c) for c in cols.key)
            cur.execute(
                f"CREATE TABLE {q(scratch)} (PRIMARY KEY ({key})) ENGINE=InnoDB"
                f" SELECT {select} FROM {q(table)} WHERE {holds}"
            )
        else:
            stored = ", ".join(q(c) for c in cols.stored)
            cur.execute(
                f"CREATE TABLE {q(scratch)} (_row BIGINT AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB"
                f" SELECT {stored} FROM {q(table)} WHERE {holds}"
            )
        rows = int(cur.rowcount)
        if rows <= 0:
            cur.execute(f"DROP TABLE {q(scratch)}")
            return None
    return Residue(table, scratch, cols, holds, rows)


def apply_residue(conn: Any, residue: Residue) -> int:
    """Put the rewritten rows of ``residue.scratch`` back into its table, drop it; return the rows changed."""
    cols, table, scratch = residue.cols, q(residue.table), q(residue.scratch)
    with conn.cursor() as cur:
        if cols.key:
            on = " AND ".join(f"t.{q(c)} = r.{q(c)}" for c in cols.key)
            sets = ", ".join(f"t.{q(c)} = r.{q(c)}" for c in cols.strings)
            changed = int(cur.execute(f"UPDATE {table} t JOIN {scratch} r ON {on} SET {sets}"))
        else:  # the same rows, rewritten: deleted and inserted again (a duplicate row stays a duplicate)
            stored = ", ".join(q(c) for c in cols.stored)
            cur.execute(f"DELETE FROM {table} WHERE {residue.holds}")
            changed = int(
                cur.execute(f"INSERT INTO {table} ({stored}) SELECT {stored} FROM {scratch} ORDER BY _row")
            )
        cur.execute(f"DROP TABLE {scratch}")
    conn.commit()
    return changed


def _add_stats(total: RewriteStats, more: RewriteStats) -> None:
    for name in ("bytes_in", "bytes_out", "fields_rewritten", "serialized_rebuilt", "malformed_serialized"):
        setattr(total, name, getattr(total, name) + getattr(more, name))
    total.peak_rss_kib = max(total.peak_rss_kib, more.peak_rss_kib)
    total.replacements = {f: n + more.replacements.get(f, 0) for f, n in total.replacements.items()}


def same_server_copy(
    conn: Any,
    others: Sequence[Any],
    source_db: str,
    *,
    tables: Sequence[str],
    skip_data: Sequence[str],
    rewriter: Rewriter,
    rewrite_tables: Callable[[Sequence[str], str], RewriteStats],
) -> RewriteStats:
    """Copy ``tables`` of ``source_db`` into ``conn``'s database (structure only for ``skip_data``) over
    ``conn`` and the ``others`` (sessions of the same login and database), the server rewriting what it can
    on the way (``server_passes``), then the rows that still hold an anchor
    through the engine (``rewrite_tables``: dump | rewrite | load of the named tables of the target, rows
    replaced by key, only those matching a WHERE clause if one is given): in place where the table's rows may
    be replaced by key (``Columns.replaceable``), else through residue tables. Returns the engine's counts;
    raises Unavailable when the snapshot cannot be had."""
    columns = table_columns(conn, source_db, tables)
    create_tables(conn, source_db, tables)
    filled = [t for t in tables if t not in set(skip_data)]
    passes = server_passes(rewriter)
    anchors = list(rewriter.plain.anchors)
    engine = {t: where for t in filled if (where := engine_rows(columns[t], anchors))}
    started = time.monotonic()
    conns = [conn, *others]
    groups = split_tables(conn, source_db, filled, len(conns), heavier=engine.keys())
    copied = copy_rows(conns, source_db, columns, groups, passes=passes, engine=engine, rewriter=rewriter)
    stats = copied.stats
    log.info(
        "step=%s event=server-copied tables=%d server_passes=%d engine_fields=%d holding=%s seconds=%.2f",
        STEP,
        len(filled),
        len(passes),
        stats.fields_rewritten,
        ",".join(copied.holding) or "-",
        time.monotonic() - started,
    )
    started = time.monotonic()
    token = secrets.token_hex(3)
    holding = [t for t in filled if t in set(copied.holding)]
    direct = [t for t in holding if columns[t].replaceable]
    in_place = []
    for table in direct:  # rewritten where they are: the rows that hold an anchor, replaced by key
        _add_stats(stats, rewrite_tables([table], _holds(columns[table], anchors)))
        in_place.append(table)
    phases = [time.monotonic()]
    residues = [
        r
        for i, table in enumerate(t for t in holding if t not in direct)
        if (r := stage_residue(conn, table, columns[table], anchors, f"{SCRATCH}{token}_{i}")) is not None
    ]
    conn.commit()
    if residues:
        _add_stats(stats, rewrite_tables([r.scratch for r in residues], ""))
    changed = sum(apply_residue(conn, r) for r in residues)
    phases.append(time.monotonic())
    log.info(
        "step=%s event=rewritten in_place=%s staged=%s rows_changed=%d in_place_s=%.2f staged_s=%.2f"
        " seconds=%.2f",
        STEP,
        ",".join(in_place) or "-",
        ",".join(f"{r.table}:{r.rows}" for r in residues) or "-",
        changed,
        phases[0] - started,
        phases[1] - phases[0],
        phases[1] - started,
    )
    return stats
