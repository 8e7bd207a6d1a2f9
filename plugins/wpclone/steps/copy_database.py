"""copy-database: stream ``mariadb-dump`` → URL rewrite → load into the target, then verify.

The three stages run concurrently (the dump process, the rewrite in this process, the load); no temporary
file is written. The load runs the rewritten statements over PyMySQL connections (``--parallel N``, default
1; see wpclone.steps.fanout), which measured twice as fast as piping into the ``mariadb`` client on the
bench; sources with views or triggers (and ``--client-load``) are loaded by the ``mariadb`` client, which
handles their DELIMITER blocks. A failure in any stage fails the step with one sentence naming the stage
and the server's or client's own message, scrubbed of secrets; nothing is left looking like a finished copy.

Retry rule (convergence): the target database belongs to the clone being made, so before loading, every
table, view and sequence in it is dropped (a stale table from an earlier attempt can otherwise break the
load, e.g. a foreign key that references it with another column type); the dump then creates every source
table. Whatever an earlier attempt left behind, a successful run leaves the target with exactly the source's
tables and views, each holding exactly the rows of the dump (URLs rewritten). Routines and events are not
copied (WordPress does not use them); triggers are, with their tables.

Pairs: ``OLD NEW`` as given, and with ``--aliases`` each alias of the source as one more site pair to the
first pair's NEW (``with_aliases``). A pair of site URLs covers every form of OLD where its host ends; any
other pair is replaced as given (wpclone.rewrite). The result counts replacements per form.

Verification: per base table, ``COUNT(*)`` in the source (in a consistent snapshot opened just before the
dump starts) equals ``COUNT(*)`` in the target; and no text column (char, varchar, *text) of the target still
holds anything the rewrite replaces: every form of every site pair, host boundary respected (a sister domain,
or a NEW whose host goes on from OLD's, is no leftover), and every explicit OLD, plain or JSON-escaped, once
occurrences that are part of a replacement are set aside (``form_checks``). One scan per table looks for each
site host (or explicit key) with INSTR and runs the forms' regex (MariaDB's PCRE) only on rows that hold it;
a column where that finds something is counted again per form (``count_leftovers``). The rewrite replaces
inside every string field, so anything found fails the step with a sentence naming table, column, form and
count; on success the result names the count per form (zeros).
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import pymysql

from wpclone.db import DbEndpoint, check_identifier, quote_identifier
from wpclone.errors import ConfigError, LoadError, StepError
from wpclone.metrics import peak_rss_kib
from wpclone.rewrite import FORMS, Form, Rewriter, RewriteStats, is_origin, json_escaped, replacement_table
from wpclone.steps.common import mb_per_s, scrub, sentence
from wpclone.steps.fanout import FanOutLoader, has_delimiter_objects
from wpclone.steps.same_server import COPY_CONNECTIONS, Unavailable, check_same_server, same_server_copy

log = logging.getLogger(__name__)

STEP = "copy-database"
CONNECT_TIMEOUT_S = 10
PROGRESS_EVERY_S = 10.0
STDERR_KEEP = 64 * 1024
# Extended-insert statements up to this size: the server parses few statements, any server's
# max_allowed_packet accepts them; 256 KiB..4 MiB measured the same within noise (bench/copy_database.py).
NET_BUFFER_LENGTH = 1024 * 1024
READ_CHUNK = 1024 * 1024
VERIFY_STREAMS = 2  # target connections scanning in parallel once the load is done
# The dump path's load connections by default (--parallel): the server parses and inserts over both (30k-post
# source, 2 cores: 0.65-0.70x a raw mariadb-dump | mariadb, against 0.81-0.87x over one).
LOAD_STREAMS = 2
BASE_KINDS = ("BASE TABLE", "SYSTEM VERSIONED")
TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext")

DUMP_OPTIONS = (
    "--single-transaction",  # consistent InnoDB snapshot without locking the live site
    "--quick",  # stream rows, never buffer a table in the client
    "--skip-lock-tables",
    "--skip-add-locks",  # no LOCK TABLES on load: fewer privileges needed, no gain for InnoDB
    "--no-tablespaces",  # needs no PROCESS privilege
    "--default-character-set=utf8mb4",
    "--extended-insert",
    f"--net-buffer-length={NET_BUFFER_LENGTH}",
    "--max-allowed-packet=1G",
    "--add-drop-table",  # part of the retry rule
    # No --no-autocommit: one commit per 1 MiB statement costs nothing measurable, and a table-sized
    # transaction measured no faster while holding the whole table in one undo log.
    "--triggers",
    "--skip-routines",
    "--skip-events",
    "--tz-utc",  # TIMESTAMP values survive servers in different time zones
    "--skip-dump-date",
)
LOAD_OPTIONS = (
    "--default-character-set=utf8mb4",
    "--binary-mode",  # pass every byte of string literals through untouched
    "--max-allowed-packet=1G",
    "--batch",
    f"--connect-timeout={CONNECT_TIMEOUT_S}",
    "--init-command=SET SESSION unique_checks=0, foreign_key_checks=0",
)


@dataclass(frozen=True)
class TableInfo:
    name: str
    kind: str  # BASE TABLE, VIEW, SYSTEM VERSIONED, SEQUENCE
    approx_bytes: int


@dataclass
class CopyResult:
    source: str
    target: str
    tables: int = 0
    views: int = 0
    rows: int = 0
    bytes_dumped: int = 0
    bytes_loaded: int = 0
    dropped: list[str] = field(default_factory=list)
    rewrite: dict[str, Any] = field(default_factory=dict)  # the rewrite's own counters (RewriteStats)
    replacements: dict[str, int] = field(default_factory=dict)  # per form (wpclone.rewrite.FORMS)
    serialized_rebuilt: int = 0
    leftovers: dict[str, int] = field(default_factory=dict)  # per form, found by the verification: zeros
    copy_s: float = 0.0
    verify_s: float = 0.0
    duration_s: float = 0.0
    mb_per_s: float = 0.0
    peak_rss_kib: int = 0
    loader: str = ""
    streams: int = 1
    path: str = "dump"  # COPY_PATHS: how the rows were copied

    def as_json(self) -> dict[str, Any]:
        return {"step": STEP, "status": "ok", **asdict(self)}


# WordPress's content tables: a ``files`` clone gets them empty (its settings and users come along).
CONTENT_TABLES = (
    "posts",
    "postmeta",
    "comments",
    "commentmeta",
    "terms",
    "termmeta",
    "term_taxonomy",
    "term_relationships",
    "links",
)


def content_tables(table_prefix: str) -> list[str]:
    check_identifier(table_prefix, "table prefix")
    return [table_prefix + name for name in CONTENT_TABLES]


def with_aliases(pairs: list[tuple[str, str]], aliases: Sequence[str]) -> list[tuple[str, str]]:
    """``pairs`` and each alias of the source as one more site pair, to the first pair's NEW."""
    if not aliases:
        return pairs
    new = pairs[0][1]
    if not (is_origin(pairs[0][0]) and is_origin(new)):
        raise ConfigError(
            "aliases need the first pair to be the source's and the clone's site URLs, not "
            f"{pairs[0][0]!r} → {new!r}."
        )
    olds = {old for old, _ in pairs}
    for alias in aliases:
        if not is_origin(alias):
            raise ConfigError(
                f"alias {alias!r} is not a site URL: give it as http(s)://host[:port], lower case."
            )
        if alias == new:
            raise ConfigError(f"alias {alias!r} is the clone's own URL.")
        if alias not in olds:
            olds.add(alias)
            pairs = [*pairs, (alias, new)]
    return pairs


def parse_pairs(args: Sequence[str]) -> list[tuple[str, str]]:
    """Turn ``OLD NEW [OLD NEW ...]`` into pairs, rejecting anything the rewrite cannot mean."""
    if not args or len(args) % 2:
        raise ConfigError("copy-database needs URL pairs as OLD NEW [OLD NEW ...] (an even, non-zero count).")
    pairs = [(args[i], args[i + 1]) for i in range(0, len(args), 2)]
    seen: set[str] = set()
    for old, new in pairs:
        for value in (old, new):
            if not value or value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise ConfigError(
                    f"URL {value!r} is not usable: it must be non-empty with no spaces at the ends "
                    "and no control characters."
                )
        if old == new:
            raise ConfigError(f"URL pair {old!r} → {new!r} replaces a value with itself.")
        if old in seen:
            raise ConfigError(f"URL {old!r} appears more than once as an OLD value.")
        seen.add(old)
    return pairs


def endpoint_from_env(prefix: str) -> DbEndpoint:
    """The database login ``<prefix>_HOST/_PORT/_USER/_PASSWORD[_FILE]/_NAME``, the name required, and its
    TLS settings ``<prefix>_SSL_MODE/_SSL_CA/_SSL_CERT/_SSL_KEY`` when set (wpclone.db.DbTls)."""
    try:
        endpoint = DbEndpoint.from_env(prefix)
    except OSError as exc:
        raise ConfigError(f"cannot read {prefix}_PASSWORD_FILE: {exc.strerror}.") from exc
    if not endpoint.database:
        raise ConfigError(f"{prefix}_NAME is not set in the environment.")
    check_identifier(endpoint.database, f"{prefix}_NAME")
    return endpoint


def endpoints_from_env() -> tuple[DbEndpoint, DbEndpoint]:
    source, target = endpoint_from_env("SOURCE_DB"), endpoint_from_env("TARGET_DB")
    if (source.host, source.port, source.database) == (target.host, target.port, target.database):
        raise ConfigError(f"source and target are the same database {source.database!r} on {source.host}.")
    return source, target


def describe(endpoint: DbEndpoint) -> str:
    return f"{endpoint.database}@{endpoint.host}:{endpoint.port}"


def _connect(endpoint: DbEndpoint, role: str) -> Any:

    try:
        return endpoint.connect(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=3600, write_timeout=3600)
    except pymysql.MySQLError as exc:
        message = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise StepError(
            sentence(
                f"cannot open the {role} database {describe(endpoint)} as {endpoint.user}: "
                + scrub(str(message), [endpoint.password])
            )
        ) from exc


def list_tables(conn: Any, database: str) -> list[TableInfo]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, TABLE_TYPE, COALESCE(DATA_LENGTH, 0) FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            (database,),
        )
        return [TableInfo(str(n), str(k), int(b)) for n, k, b in cur.fetchall()]


def text_columns(conn: Any, database: str) -> dict[str, list[str]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.TABLE_NAME, c.COLUMN_NAME FROM information_schema.COLUMNS c"
            " JOIN information_schema.TABLES t"
            "   ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME"
            " WHERE c.TABLE_SCHEMA = %s AND t.TABLE_TYPE <> 'VIEW'"
            f" AND c.DATA_TYPE IN ({', '.join(['%s'] * len(TEXT_TYPES))})"
            " ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
            (database, *TEXT_TYPES),
        )
        columns: dict[str, list[str]] = {}
        for table, column in cur.fetchall():
            columns.setdefault(str(table), []).append(str(column))
        return columns


def empty_target(conn: Any, target_tables: list[TableInfo]) -> list[str]:
    """The retry rule: drop every table, view and sequence of the target before the load."""
    dropped = []
    with conn.cursor() as cur:
        cur.execute("SET SESSION foreign_key_checks = 0")
        for table in target_tables:
            kind = "VIEW" if table.kind == "VIEW" else "SEQUENCE" if table.kind == "SEQUENCE" else "TABLE"
            cur.execute(f"DROP {kind} IF EXISTS {quote_identifier(table.name)}")
            dropped.append(table.name)
        cur.execute("SET SESSION foreign_key_checks = 1")
    if dropped:
        log.info("step=%s event=emptied-target dropped=%d", STEP, len(dropped))
    return dropped


class _StderrDrain(threading.Thread):
    """Reads a child's stderr so it never blocks, keeping the last STDERR_KEEP bytes."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.data = b""

    def run(self) -> None:
        for line in iter(self.stream.readline, b""):
            self.data = (self.data + line)[-STDERR_KEEP:]

    def text(self, secrets: Sequence[str]) -> str:
        self.join(timeout=5)
        lines = [
            ln
            for ln in self.data.decode("utf-8", "replace").splitlines()
            if ln.strip() and not ln.lower().startswith("warning")
        ]
        return scrub(" ".join(lines[-3:]), secrets)[:600] or "no message"


class _CountingReader:
    """A binary reader that counts bytes for progress lines; ``read(n)`` is all the rewrite needs."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data


def dump_command(
    source: DbEndpoint, tables: Sequence[str] = (), skip_data: Sequence[str] = (), extra: Sequence[str] = ()
) -> list[str]:
    """The dump; tables in ``skip_data`` are dumped as structure only; ``extra``: more options."""
    assert source.database
    skips = [f"--ignore-table-data={source.database}.{check_identifier(t, 'table')}" for t in skip_data]
    return ["mariadb-dump", *source.client_args(), *DUMP_OPTIONS, *extra, *skips, source.database, *tables]


def load_command(target: DbEndpoint) -> list[str]:
    assert target.database
    return ["mariadb", *target.client_args(), *LOAD_OPTIONS, f"--database={target.database}"]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _start_progress(reader: _CountingReader, total_hint: int) -> threading.Event:
    done = threading.Event()
    started = time.monotonic()

    def progress() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            elapsed = time.monotonic() - started
            pct = f" approx_pct={min(99, 100 * reader.count // total_hint)}" if total_hint else ""
            log.info(
                "step=%s event=progress dumped_mb=%.1f mb_per_s=%.1f%s",
                STEP,
                reader.count / 1e6,
                mb_per_s(reader.count, elapsed),
                pct,
            )

    threading.Thread(target=progress, daemon=True).start()
    return done


def client_env(endpoint: DbEndpoint) -> dict[str, str]:
    """The client tool's environment: its own password in MYSQL_PWD and no other *_DB_PASSWORD."""
    env = endpoint.client_env()
    return {k: v for k, v in env.items() if not k.endswith(("_DB_PASSWORD", "_DB_PASSWORD_FILE"))}


def _start_dump(
    source: DbEndpoint, skip_data: Sequence[str] = (), tables: Sequence[str] = (), extra: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        dump_command(source, tables, skip_data=skip_data, extra=extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=client_env(source),
    )


def _stage_error(stage: str, detail: str) -> StepError:
    return StepError(sentence(f"copy-database failed in the {stage} stage: {detail}"))


def stream_copy(
    source: DbEndpoint,
    target: DbEndpoint,
    pairs: Sequence[tuple[str, str]],
    total_hint: int = 0,
    *,
    skip_data: Sequence[str] = (),
    tables: Sequence[str] = (),
    dump_options: Sequence[str] = (),
) -> RewriteStats:
    """Run dump | rewrite | load concurrently (of ``tables`` only, if given; ``dump_options``: more options of
    the dump); raise StepError naming the stage that failed."""
    secrets = [source.password, target.password]
    dump = _start_dump(source, skip_data, tables, dump_options)
    load = subprocess.Popen(
        load_command(target),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=client_env(target),
    )
    assert dump.stdout and dump.stderr and load.stdin and load.stderr
    dump_err, load_err = _StderrDrain(dump.stderr), _StderrDrain(load.stderr)
    dump_err.start()
    load_err.start()
    reader = _CountingReader(dump.stdout)
    done = _start_progress(reader, total_hint)
    try:
        try:
            stats = Rewriter(pairs).rewrite_stream(reader, load.stdin)  # type: ignore[arg-type]
        except BrokenPipeError:
            _kill(dump)
            rc = load.wait()
            raise StepError(
                sentence(
                    f"copy-database failed in the load stage (mariadb exited with {rc}): "
                    + load_err.text(secrets)
                )
            ) from None
        except Exception as exc:
            dump_rc = dump.poll()  # a dump that died mid-literal makes the rewrite fail: blame the dump
            _kill(dump)
            if dump_rc:
                _kill(load)
                raise _stage_error(
                    "dump", f"mariadb-dump exited with {dump_rc}: {dump_err.text(secrets)}"
                ) from exc
            load_rc = load.poll()
            if load_rc:  # the loader died first and the rewrite saw it as some other error
                raise StepError(
                    sentence(
                        f"copy-database failed in the load stage (mariadb exited with {load_rc}): "
                        + load_err.text(secrets)
                    )
                ) from exc
            _kill(load)
            detail = scrub(f"{type(exc).__name__}: {exc}", secrets)[:400]
            raise StepError(sentence(f"copy-database failed in the rewrite stage: {detail}")) from exc
        dump_rc = dump.wait()
        if dump_rc != 0:
            _kill(load)  # never let the loader commit a truncated dump
            raise StepError(
                sentence(
                    f"copy-database failed in the dump stage (mariadb-dump exited with {dump_rc}): "
                    + dump_err.text(secrets)
                )
            )
        with contextlib.suppress(BrokenPipeError):
            load.stdin.close()
        load_rc = load.wait()
        if load_rc != 0:
            raise StepError(
                sentence(
                    f"copy-database failed in the load stage (mariadb exited with {load_rc}): "
                    + load_err.text(secrets)
                )
            )
        return stats
    finally:
        done.set()
        for proc in (dump, load):
            if proc.poll() is None:
                _kill(proc)
        with contextlib.suppress(BrokenPipeError):
            load.stdin.close()
        dump.stdout.close()


def stream_copy_parallel(
    source: DbEndpoint,
    target: DbEndpoint,
    pairs: Sequence[tuple[str, str]],
    streams: int,
    total_hint: int = 0,
    *,
    skip_data: Sequence[str] = (),
) -> RewriteStats:
    """One dump, one rewrite, statements loaded over ``streams`` connections (see wpclone.steps.fanout)."""
    secrets = [source.password, target.password]
    dump = _start_dump(source, skip_data)
    assert dump.stdout and dump.stderr
    dump_err = _StderrDrain(dump.stderr)
    dump_err.start()
    try:
        sink = FanOutLoader(target, streams)
    except LoadError as exc:
        _kill(dump)
        raise _stage_error("load", scrub(str(exc), secrets)) from exc
    reader = _CountingReader(dump.stdout)
    done = _start_progress(reader, total_hint)
    try:
        try:
            stats = Rewriter(pairs).rewrite_stream(reader, sink)  # type: ignore[arg-type]
        except Exception as exc:
            dump_rc = dump.poll()
            load_failed = isinstance(exc, LoadError) or sink.failed.is_set()
            _kill(dump)
            sink.abort()
            if dump_rc:
                raise _stage_error(
                    "dump", f"mariadb-dump exited with {dump_rc}: {dump_err.text(secrets)}"
                ) from exc
            if load_failed:
                errors = [ld.error for ld in sink.loaders if ld.error]
                raise _stage_error("load", scrub(errors[0] if errors else str(exc), secrets)) from exc
            detail = scrub(f"{type(exc).__name__}: {exc}", secrets)[:400]
            raise _stage_error("rewrite", detail) from exc
        dump_rc = dump.wait()
        if dump_rc != 0:
            sink.abort()
            raise _stage_error("dump", f"mariadb-dump exited with {dump_rc}: {dump_err.text(secrets)}")
        try:
            sink.close()
        except LoadError as exc:
            raise _stage_error("load", scrub(str(exc), secrets)) from exc
        return stats
    finally:
        done.set()
        if dump.poll() is None:
            _kill(dump)
        dump.stdout.close()


def count_rows(conn: Any, tables: Sequence[str]) -> dict[str, int]:
    counts = {}
    with conn.cursor() as cur:
        for table in tables:
            cur.execute(f"SELECT COUNT(*) FROM {quote_identifier(table)}")
            counts[table] = int(cur.fetchone()[0])
    return counts


def _explicit_needles(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Each OLD (plain and JSON-escaped), with the NEW values that hold it (removed before looking)."""
    needles: list[tuple[str, list[str]]] = []
    news = sorted({v for _, new in pairs for v in (new, json_escaped(new))}, key=len, reverse=True)
    for old, _ in pairs:
        for needle in dict.fromkeys((old, json_escaped(old))):
            needles.append((needle, [n for n in news if needle in n]))
    return needles


def _masked(column: str, masks: Sequence[str], params: list[Any]) -> str:
    """The column's value as bytes, with each of ``masks`` removed (their parameters appended)."""
    expr = f"BINARY {quote_identifier(column)}"
    for mask in masks:
        expr = f"REPLACE({expr}, BINARY %s, '')"
        params.append(mask)
    return expr


def leftover_checks(
    pairs: Sequence[tuple[str, str]], columns: Sequence[str]
) -> tuple[list[str], list[Any], list[tuple[str, str]]]:
    """SQL expressions (and their parameters) counting rows where an OLD survived as given, per column.

    This is the check of *explicit* pairs (anywhere, plain and JSON-escaped; ``leftover_probes`` uses it).
    For each OLD, NEW values that contain it are removed from the column first, so a NEW that extends its
    OLD (``http://a`` → ``http://a.staging``) is not mistaken for a leftover.
    """
    exprs: list[str] = []
    params: list[Any] = []
    labels: list[tuple[str, str]] = []
    for column in columns:
        for needle, masks in _explicit_needles(pairs):
            exprs.append(f"COALESCE(SUM(INSTR({_masked(column, masks, params)}, BINARY %s) > 0), 0)")
            params.append(needle)
            labels.append((column, needle))
    return exprs, params, labels


@dataclass(frozen=True)
class FormCheck:
    """One form the rule covers, as the verification counts what is left of it in a text column.

    Of a site pair's host: ``anchor`` is the host (an INSTR picks the rows worth a regex), ``pattern`` a
    regex (Python's and MariaDB's PCRE alike) of the form's keys, each with its host boundary and not where
    it is the end of a longer key (``//h`` inside ``https://h``). Of an explicit pair: ``anchor`` is the key
    and ``pattern`` None. ``masks``: replacements that hold a match, removed from the value before looking.
    """

    form: str
    anchor: str
    pattern: str | None
    masks: tuple[str, ...] = ()


def form_checks(pairs: Sequence[tuple[str, str]]) -> list[FormCheck]:
    """What the rewrite of ``pairs`` promises is gone: per site host each form, and each explicit key."""
    table = replacement_table(pairs)
    replacements = {f.new for f in table.values()}
    by_form: dict[tuple[str, str], list[Form]] = {}
    for key in table.values():
        if key.host:
            by_form.setdefault((key.host, key.form), []).append(key)
    checks = []
    for (host, form), keys in by_form.items():
        alternatives = []
        for key in sorted(keys, key=lambda k: len(k.old), reverse=True):
            longer = [
                k.old[: -len(key.old)] for k in table.values() if k.old != key.old and k.old.endswith(key.old)
            ]
            alternatives.append("".join(f"(?<!{re.escape(p)})" for p in longer) + key.pattern)
        pattern = "|".join(alternatives)
        found = re.compile(pattern).search
        masks = tuple(sorted((r for r in replacements if found(r)), key=len, reverse=True))
        checks.append(FormCheck(form, host, pattern, masks))
    for key in table.values():  # explicit keys: OLD and its JSON-escaped form, each as given
        if not key.host:
            masks = tuple(sorted((r for r in replacements if key.old in r), key=len, reverse=True))
            checks.append(FormCheck("explicit", key.old, None, masks))
    return checks


def _probe(column: str, checks: Sequence[FormCheck], params: list[Any]) -> str:
    """SQL counting the rows where any of ``checks`` (one anchor) may have something left: the anchor's INSTR
    first, the regex only where it is found."""
    masks = sorted({m for c in checks for m in c.masks}, key=len, reverse=True)
    params.append(checks[0].anchor)
    found = f"INSTR(BINARY {quote_identifier(column)}, BINARY %s) > 0"
    if checks[0].pattern is None:
        masked = _masked(column, masks, params)
        params.append(checks[0].anchor)
        return f"COALESCE(SUM({found} AND INSTR({masked}, BINARY %s) > 0), 0)"
    masked = _masked(column, masks, params)
    params.append("|".join(c.pattern for c in checks if c.pattern))
    return f"COALESCE(SUM({found} AND {masked} REGEXP %s), 0)"


def _occurrences(column: str, check: FormCheck, params: list[Any]) -> str:
    """SQL summing the occurrences of ``check`` in a column (each match grows the value by one byte)."""
    before = _masked(column, check.masks, params)  # parameters go in the order their marks appear
    if check.pattern is None:
        again = _masked(column, check.masks, params)
        params.extend((check.anchor, check.anchor))
        return (
            f"COALESCE(SUM((LENGTH({before}) - LENGTH(REPLACE({again}, BINARY %s, ''))) DIV LENGTH(%s)), 0)"
        )
    params.append(check.pattern)
    again = _masked(column, check.masks, params)
    return f"COALESCE(SUM(LENGTH(REGEXP_REPLACE({before}, %s, '\\\\0#')) - LENGTH({again})), 0)"


def _int_pk(conn: Any, table: str) -> str | None:
    """The table's primary key column if it is a single integer column (to split scans into ranges)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME = %s AND COLUMN_KEY = 'PRI'",
            (table,),
        )
        rows = cur.fetchall()
    if len(rows) == 1 and str(rows[0][1]) in ("tinyint", "smallint", "mediumint", "int", "bigint"):
        return str(rows[0][0])
    return None


def _scan_jobs(conn: Any, tables: Sequence[str], chunks: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """(table, WHERE clause, parameters): whole tables, or PK ranges of tables when scanning in parallel."""
    jobs: list[tuple[str, str, tuple[int, ...]]] = []
    for table in tables:
        pk = _int_pk(conn, table) if chunks > 1 else None
        bounds = None
        if pk:
            with conn.cursor() as cur:
                col = quote_identifier(pk)
                cur.execute(f"SELECT MIN({col}), MAX({col}) FROM {quote_identifier(table)}")
                bounds = cur.fetchone()
        if not pk or not bounds or bounds[0] is None:
            jobs.append((table, "", ()))
            continue
        low, high = int(bounds[0]), int(bounds[1])
        step = max(1, (high - low + chunks) // chunks)
        col = quote_identifier(pk)
        jobs.append((table, f" WHERE {col} < %s OR {col} IS NULL", (low,)))
        for start in range(low, high + 1, step):
            jobs.append((table, f" WHERE {col} >= %s AND {col} < %s", (start, start + step)))
        jobs.append((table, f" WHERE {col} >= %s", (low + step * ((high - low) // step + 1),)))
    return jobs


@dataclass
class Leftovers:
    """What the verification found of the forms the rule covers: occurrences per table, column and form."""

    found: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def per_form(self) -> dict[str, int]:
        """Occurrences per form, every form named (zeros on success)."""
        totals = dict.fromkeys(FORMS, 0)
        for (_, _, form), n in self.found.items():
            totals[form] += n
        return totals

    def places(self, limit: int = 5) -> str:
        """``wp_posts.post_content (protocol-relative 3, url-encoded 1); …`` (the first ``limit`` columns)."""
        where: dict[tuple[str, str], list[str]] = {}
        for (table, column, form), n in self.found.items():
            where.setdefault((table, column), []).append(f"{form} {n}")
        more = f" and {len(where) - limit} more columns" if len(where) > limit else ""
        return (
            "; ".join(f"{t}.{c} ({', '.join(forms)})" for (t, c), forms in list(where.items())[:limit]) + more
        )


def verify_target(
    conn: Any,
    tables: Sequence[str],
    columns: dict[str, list[str]],
    pairs: Sequence[tuple[str, str]],
    extra_conns: Sequence[Any] = (),
) -> tuple[dict[str, int], Leftovers]:
    """Scan the target: row counts, and per text column what is left of every form the rule covers.

    One scan of each table counts its rows and, per text column and anchor (a site host, an explicit key),
    the rows where something may be left: an INSTR of the anchor, and only where it is found the forms'
    regex. Columns with such rows are then scanned again, those rows only, to count occurrences per form.
    With ``extra_conns``, tables with an integer primary key are scanned in ranges over all connections.
    """
    checks = form_checks(pairs)
    by_anchor: dict[str, list[FormCheck]] = {}
    for check in checks:
        by_anchor.setdefault(check.anchor, []).append(check)
    conns = [conn, *extra_conns]
    jobs = _scan_jobs(conn, tables, len(conns))
    counts: dict[str, int] = dict.fromkeys(tables, 0)
    suspect: dict[tuple[str, str], int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(worker_conn: Any, my_jobs: list[tuple[str, str, tuple[int, ...]]]) -> None:
        try:
            with worker_conn.cursor() as cur:
                for table, where, where_params in my_jobs:
                    params: list[Any] = []
                    places = [(c, group) for c in columns.get(table, []) for group in by_anchor.values()]
                    exprs = [_probe(column, group, params) for column, group in places]
                    cur.execute(
                        f"SELECT {', '.join(['COUNT(*)', *exprs])} FROM {quote_identifier(table)}{where}",
                        [*params, *where_params],
                    )
                    row = cur.fetchone()
                    with lock:
                        counts[table] += int(row[0])
                        for (column, _), n in zip(places, row[1:], strict=True):
                            suspect[(table, column)] = suspect.get((table, column), 0) + int(n)
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c, jobs[i :: len(conns)])) for i, c in enumerate(conns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    places = [place for place, n in suspect.items() if n]
    return counts, count_leftovers(conn, places, checks) if places else Leftovers()


def count_leftovers(conn: Any, places: Sequence[tuple[str, str]], checks: Sequence[FormCheck]) -> Leftovers:
    """Occurrences of each check in each (table, column), over the rows that hold one of their anchors."""
    anchors = list(dict.fromkeys(c.anchor for c in checks))
    leftovers = Leftovers()
    with conn.cursor() as cur:
        for table, column in places:
            params: list[Any] = []
            exprs = [_occurrences(column, check, params) for check in checks]
            holds = " OR ".join(f"INSTR(BINARY {quote_identifier(column)}, BINARY %s) > 0" for _ in anchors)
            cur.execute(
                f"SELECT {', '.join(exprs)} FROM {quote_identifier(table)} WHERE {holds}", [*params, *anchors]
            )
            for check, found in zip(checks, cur.fetchone(), strict=True):
                if int(found):
                    place = (table, column, check.form)
                    leftovers.found[place] = leftovers.found.get(place, 0) + int(found)
    return leftovers


def verify(
    src_conn: Any,
    dst_conn: Any,
    target: DbEndpoint,
    source_tables: list[TableInfo],
    pairs: Sequence[tuple[str, str]],
    *,
    verify_streams: int = VERIFY_STREAMS,
    skip_data: Sequence[str] = (),
) -> tuple[int, dict[str, int]]:
    """Row counts equal per table (zero for ``skip_data``) and nothing left of any form the rule covers;
    return the total row count and what is left per form (zeros)."""
    assert target.database
    base = [t.name for t in source_tables if t.kind in BASE_KINDS]
    src_counts: dict[str, int] = {}
    src_error: list[BaseException] = []

    def count_source() -> None:
        try:
            src_counts.update(count_rows(src_conn, base))
        except BaseException as exc:  # reported below, in the calling thread
            src_error.append(exc)

    counter = threading.Thread(target=count_source)
    counter.start()
    have = {t.name for t in list_tables(dst_conn, target.database)}
    missing = [t.name for t in source_tables if t.name not in have]
    if missing:
        counter.join()
        raise StepError(f"verification failed: the target lacks {', '.join(missing[:5])}.")
    extra = [_connect(target, "target") for _ in range(verify_streams - 1)]
    try:
        dst_counts, leftovers = verify_target(
            dst_conn, base, text_columns(dst_conn, target.database), pairs, extra
        )
    finally:
        for conn in extra:
            with contextlib.suppress(Exception):
                conn.close()
    counter.join()
    if src_error:
        raise StepError(sentence(f"copy-database could not count the source rows: {src_error[0]}"))
    src_counts.update(dict.fromkeys(skip_data, 0))
    diffs = [
        f"{t} (source {src_counts[t]}, target {dst_counts[t]})"
        for t in base
        if src_counts[t] != dst_counts[t]
    ]
    if diffs:
        raise StepError(
            "verification failed: row counts differ in "
            + "; ".join(diffs[:5])
            + " (if the source changed during the copy, run the step again)."
        )
    if leftovers.found:
        raise StepError(
            "verification failed: the clone still holds what the rewrite replaces (occurrences per form): "
            f"{leftovers.places()}."
        )
    return sum(dst_counts.values()), leftovers.per_form()


COPY_PATHS = ("auto", "dump", "same-server")


def _same_server_wanted(
    copy_path: str,
    *,
    source: DbEndpoint,
    target: DbEndpoint,
    src_conn: Any,
    dst_conn: Any,
    tables: list[TableInfo],
) -> bool:
    """Whether to copy on the server (wpclone.steps.same_server): ``auto`` when source and target share a
    host and port and the server and the target's login can; ``same-server`` insists (else a sentence)."""
    if copy_path == "dump" or (
        copy_path == "auto" and (source.host, source.port) != (target.host, target.port)
    ):
        return False
    assert source.database
    try:
        if blockers := has_delimiter_objects(src_conn, source.database):
            raise Unavailable(f"the source has {' and '.join(blockers)}.")
        check_same_server(dst_conn, source.database, [(t.name, t.kind) for t in tables])
    except Unavailable as exc:
        if copy_path == "same-server":
            raise StepError(sentence(f"the same-server copy is not possible: {exc}")) from exc
        log.info("step=%s event=same-server-unavailable reason=%r", STEP, str(exc))
        return False
    return True


def _copy_on_server(
    source: DbEndpoint,
    target: DbEndpoint,
    dst_conn: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    tables: Sequence[str],
    skip: Sequence[str],
) -> RewriteStats:
    """The same-server copy; on failure the target is emptied again (nothing of the copy is left)."""
    assert source.database and target.database
    started = time.monotonic()
    others = [_connect(target, "target") for _ in range(COPY_CONNECTIONS - 1)]
    try:
        stats = same_server_copy(
            dst_conn,
            others,
            source.database,
            tables=tables,
            skip_data=skip,
            rewriter=Rewriter(pairs),
            # tables rewritten into themselves (with a WHERE clause: only the rows it matches), rows replaced
            # by key while the dump reads its snapshot (no DROP, CREATE or ALTER … DISABLE KEYS: each would
            # wait for the dump's metadata lock)
            rewrite_tables=lambda names, where: stream_copy(
                target,
                target,
                pairs,
                tables=names,
                dump_options=(
                    "--no-create-info",
                    "--skip-disable-keys",
                    "--replace",
                    *((f"--where={where}",) if where else ()),
                ),
            ),
        )
    except BaseException as exc:
        with contextlib.suppress(Exception):
            dst_conn.rollback()
            empty_target(dst_conn, list_tables(dst_conn, target.database))
        if isinstance(exc, pymysql.MySQLError):
            message = exc.args[1] if len(exc.args) > 1 else str(exc)
            raise _stage_error(
                "server copy", scrub(str(message), [source.password, target.password])
            ) from exc
        raise
    finally:
        for other in others:
            with contextlib.suppress(Exception):
                other.close()
    stats.seconds = round(time.monotonic() - started, 3)
    return stats


def _copy_stage(
    result: CopyResult,
    conns: tuple[Any, Any],
    source: DbEndpoint,
    target: DbEndpoint,
    source_tables: list[TableInfo],
    *,
    pairs: Sequence[tuple[str, str]],
    on_server: bool,
    copy_path: str,
    client_load: bool,
    streams: int,
    skip_data: Sequence[str],
    total_hint: int,
) -> RewriteStats:
    """Copy the rows: on the server when ``on_server`` (falling back to the dump if the source will not hold
    still), else dump | rewrite | load; ``result`` gets the loader, streams and path used."""
    src_conn, dst_conn = conns
    assert source.database
    stats: RewriteStats | None = None
    if on_server:
        result.loader, result.streams, result.path = "server", 1, "same-server"
        try:
            names = [t.name for t in source_tables]
            stats = _copy_on_server(source, target, dst_conn, pairs, tables=names, skip=skip_data)
        except Unavailable as exc:  # the source kept changing under the snapshot: the dump copes
            if copy_path == "same-server":
                raise StepError(sentence(f"the same-server copy is not possible: {exc}")) from exc
            log.warning("step=%s event=dump-fallback reason=%r", STEP, str(exc))
    if stats is None:
        if not client_load and (blockers := has_delimiter_objects(src_conn, source.database)):
            log.warning("step=%s event=client-load-fallback reason=%s", STEP, "+".join(blockers))
            client_load = True
        result.loader = "mariadb-client" if client_load else "pymysql"
        result.streams, result.path = 1 if client_load else streams, "dump"
        if not client_load:
            stats = stream_copy_parallel(source, target, pairs, streams, total_hint, skip_data=skip_data)
        else:
            stats = stream_copy(source, target, pairs, total_hint, skip_data=skip_data)
    return stats


def copy_database(
    source: DbEndpoint,
    target: DbEndpoint,
    pairs: Sequence[tuple[str, str]],
    streams: int = 1,
    *,
    client_load: bool = False,
    skip_data: Sequence[str] = (),
    copy_path: str = "auto",
) -> CopyResult:
    """Copy with URL rewrite and verify; load over ``streams`` connections, or with the mariadb client, or
    on the server when source and target share it (``copy_path``: COPY_PATHS, wpclone.steps.same_server).

    Tables named in ``skip_data`` are copied as structure only (the ``files`` copy mode).
    """
    assert source.database and target.database
    started = time.monotonic()
    result = CopyResult(describe(source), describe(target))
    log.info(
        "step=%s event=start source=%s target=%s pairs=%d", STEP, result.source, result.target, len(pairs)
    )

    src_conn = _connect(source, "source")
    dst_conn = _connect(target, "target")
    try:
        source_tables = list_tables(src_conn, source.database)
        if not source_tables:
            raise StepError(
                f"the source database {describe(source)} has no tables, so there is nothing to copy."
            )
        result.tables = sum(t.kind in BASE_KINDS for t in source_tables)
        result.views = sum(t.kind == "VIEW" for t in source_tables)
        skip_data = sorted({t.name for t in source_tables if t.kind in BASE_KINDS} & set(skip_data))
        on_server = _same_server_wanted(
            copy_path,
            source=source,
            target=target,
            src_conn=src_conn,
            dst_conn=dst_conn,
            tables=source_tables,
        )
        result.dropped = empty_target(dst_conn, list_tables(dst_conn, target.database))

        # The snapshot the source row counts are read from, opened just before the dump opens its own.
        with src_conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        total_hint = sum(t.approx_bytes for t in source_tables)
        log.info(
            "step=%s event=copy-start tables=%d views=%d approx_mb=%.1f",
            STEP,
            result.tables,
            result.views,
            total_hint / 1e6,
        )
        copy_started = time.monotonic()
        stats = _copy_stage(
            result,
            (src_conn, dst_conn),
            source,
            target,
            source_tables,
            pairs=pairs,
            on_server=on_server,
            copy_path=copy_path,
            client_load=client_load,
            streams=streams,
            skip_data=skip_data,
            total_hint=total_hint,
        )
        result.copy_s = round(time.monotonic() - copy_started, 3)
        result.bytes_dumped, result.bytes_loaded = stats.bytes_in, stats.bytes_out
        result.rewrite = asdict(stats)
        result.replacements, result.serialized_rebuilt = dict(stats.replacements), stats.serialized_rebuilt
        log.info(
            "step=%s event=copy-done dumped_mb=%.1f loaded_mb=%.1f seconds=%.2f mb_per_s=%.1f",
            STEP,
            stats.bytes_in / 1e6,
            stats.bytes_out / 1e6,
            result.copy_s,
            mb_per_s(stats.bytes_in, result.copy_s),
        )

        verify_started = time.monotonic()
        result.rows, result.leftovers = verify(
            src_conn, dst_conn, target, source_tables, pairs, skip_data=skip_data
        )
        result.verify_s = round(time.monotonic() - verify_started, 3)
        log.info(
            "step=%s event=verified tables=%d rows=%d seconds=%.2f",
            STEP,
            result.tables,
            result.rows,
            result.verify_s,
        )
    finally:
        with contextlib.suppress(Exception):
            src_conn.close()
        with contextlib.suppress(Exception):
            dst_conn.close()

    result.duration_s = round(time.monotonic() - started, 3)
    result.mb_per_s = mb_per_s(result.bytes_dumped, result.duration_s)
    result.peak_rss_kib = peak_rss_kib()
    log.info(
        "step=%s event=summary tables=%d rows=%d dumped_bytes=%d loaded_bytes=%d fields_rewritten=%d "
        "serialized_rebuilt=%d malformed_serialized=%d replacements=%s copy_s=%.2f verify_s=%.2f "
        "duration_s=%.2f mb_per_s=%.1f",
        STEP,
        result.tables,
        result.rows,
        result.bytes_dumped,
        result.bytes_loaded,
        result.rewrite.get("fields_rewritten", 0),
        result.rewrite.get("serialized_rebuilt", 0),
        result.rewrite.get("malformed_serialized", 0),
        ",".join(f"{form}:{n}" for form, n in result.replacements.items()),
        result.copy_s,
        result.verify_s,
        result.duration_s,
        result.mb_per_s,
    )
    return result
