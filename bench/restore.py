"""Benchmark restore-backup of the demo site's backup against copy-database of the same data, side by side.

    WPCLONE_STATE_DIR=$PWD/.local/h-bench .venv/bin/python bench/restore.py \\
        [--rounds 3] [--posts 200] [--no-db-only]

Starts MariaDB and the PHP site host of ``WPCLONE_STATE_DIR`` (default ``.local``; not Airflow: both steps
run here as the CLI, as the local runtime runs them) and seeds the demo source (at least ``--posts``
posts). Then:

1. backs the source up once with ``python -m wpclone.steps backup-clone`` (database + wp-content) into a
   temporary backup directory, and once without ``SOURCE_CONTENT_DIR`` (a database-only archive);
2. alternates, ``--rounds`` times, each into a freshly dropped and re-created database with a login that
   may touch only it (as ``prepare_restore`` makes one), the order rotated every round:

   - copy:    ``copy-database SOURCE_URL CLONE_URL`` from the source database (the baseline; it verifies
              row counts and leftover URLs itself);
   - restore: ``restore-backup CLONE_URL`` of the full archive (``file://`` under the backup directory, a
              fetch policy whose only file root is that directory), wp-content staged beside a throw-away
              ``TARGET_CONTENT_DIR``;
   - restore, database only: the same step with the database-only archive (skip with ``--no-db-only``);

3. after every round checks that the results are the same data: the same tables as the source with the
   same row counts (copy, restore and the source), ``CHECKSUM TABLE`` of every table equal between copy and
   restore (the same rows, rewritten the same), ``siteurl``/``home`` rewritten to the clone URL, the
   restore's staged wp-content holding as many files as the backup archived.

It prints every run's wall time, the median ratio restore/copy (end to end, step process included) and
the restore's phases from its log lines (start-up until ``event=fetch``, fetch until ``event=fetched``,
unpack + load until ``event=done``), with the unpack alone measured by calling ``wpclone.archive.open_backup``
on the same archive in this process (the step logs no event between unpacking and loading).

Exits non-zero when a step or a check fails; drops the databases and logins it made and removes its
temporary directory either way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import row_counts  # (puts the repo's plugins on sys.path)

from wpclone.archive import Limits, open_backup
from wpclone.db import DbEndpoint, quote_identifier
from wpclone.local.__main__ import up
from wpclone.local.mariadb import LOCAL_USER_HOST, LocalMariaDB
from wpclone.local.seed import DEFAULT_POSTS, database_size, seed_source
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, content_dir
from wpclone.mysql_admin import MySqlAdmin

CLONE_ID = "bench-restore"
COPY_DB = "bench_rst_copy"
RESTORE_DB = "bench_rst_restore"
DB_ONLY_DB = "bench_rst_dbonly"
TARGETS = (COPY_DB, RESTORE_DB, DB_ONLY_DB)
URL_OPTIONS = ("siteurl", "home")
_LOG_EVENT = re.compile(r"^ts=(\S+?)Z? .*\bstep=restore-backup event=(\w+)")


class BenchFailed(Exception):
    """A step or a result check failed; the message says which."""


@dataclass
class StepRun:
    """One step process: its wall time, its JSON result and the wall-clock time of each logged event."""

    wall: float
    started_at: float  # time.time() just before the process started
    result: dict[str, Any]
    events: dict[str, float] = field(default_factory=dict)

    def phase(self, start: str, end: str) -> float:
        return self.events[end] - self.events[start]


@dataclass
class Setup:
    admin: DbEndpoint
    source: SiteConfig
    source_db: DbEndpoint
    source_content: Path
    clone_url: str
    work: Path
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def backup_dir(self) -> Path:
        return self.work / "backups"

    def target(self, name: str) -> DbEndpoint:
        return DbEndpoint(self.admin.host, self.admin.port, name, self.passwords[name], name)

    def content_dir(self, name: str) -> Path:
        """A restore target's throw-away TARGET_CONTENT_DIR (never made; the step stages beside it)."""
        return self.work / "sites" / name / "wp-content"


# -- running the steps -------------------------------------------------------------------------------------


def _events(stderr: str) -> dict[str, float]:
    events = {}
    for line in stderr.splitlines():
        if match := _LOG_EVENT.match(line):
            stamp = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
            events[match.group(2)] = stamp.timestamp()
    return events


def run_step(argv: list[str], env: dict[str, str]) -> StepRun:
    started_at = time.time()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "wpclone.steps", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise BenchFailed(f"{argv[0]} exited with {proc.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return StepRun(wall, started_at, result, _events(proc.stderr))


def make_backup(setup: Setup, with_content: bool) -> tuple[Path, dict[str, Any]]:
    env = {**setup.source_db.to_env("SOURCE_DB"), "WPCLONE_BACKUP_DIR": str(setup.backup_dir)}
    clone_id = CLONE_ID if with_content else f"{CLONE_ID}-db"
    if with_content:
        env["SOURCE_CONTENT_DIR"] = str(setup.source_content)
    run = run_step(
        ["backup-clone", clone_id, setup.source.url, "--table-prefix", setup.source.table_prefix], env
    )
    archive = Path(unquote(urlsplit(run.result["backup_url"]).path))
    if not archive.is_file() or archive.stat().st_size != run.result["size"]:
        raise BenchFailed(
            f"backup-clone reported {run.result['backup_url']}, which is not the archive it made."
        )
    return archive, run.result


def fresh_target(setup: Setup, name: str) -> None:
    """Drop and re-create the database and its login (a new password each time), as prepare_restore does."""
    MySqlAdmin.from_endpoint(setup.admin).drop_database_and_user(name, name, user_host=LOCAL_USER_HOST)
    setup.passwords[name] = secrets.token_urlsafe(24)
    MySqlAdmin.from_endpoint(setup.admin).create_database_and_user(
        name, name, setup.passwords[name], user_host=LOCAL_USER_HOST
    )
    shutil.rmtree(setup.content_dir(name).parent, ignore_errors=True)


def run_copy(setup: Setup) -> StepRun:
    fresh_target(setup, COPY_DB)
    env = {**setup.source_db.to_env("SOURCE_DB"), **setup.target(COPY_DB).to_env("TARGET_DB")}
    argv = ["copy-database", "--table-prefix", setup.source.table_prefix, setup.source.url, setup.clone_url]
    return run_step(argv, env)


def run_restore(setup: Setup, name: str, archive: Path) -> StepRun:
    fresh_target(setup, name)
    policy = {"schemes": ["file"], "file_roots": [str(setup.backup_dir)]}
    env = {
        **setup.target(name).to_env("TARGET_DB"),
        "TARGET_CONTENT_DIR": str(setup.content_dir(name)),
        "WPCLONE_BACKUP_URL": archive.as_uri(),
        "WPCLONE_FETCH_POLICY": json.dumps(policy),
    }
    return run_step(["restore-backup", "--table-prefix", setup.source.table_prefix, setup.clone_url], env)


def time_unpack(setup: Setup, archive: Path) -> float:
    """open_backup of the archive (what the step does between fetched and loading), in this process."""
    work = Path(tempfile.mkdtemp(prefix="unpack-", dir=setup.work))
    try:
        started = time.monotonic()
        open_backup(archive, work / "unpacked")
        return time.monotonic() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- checks ------------------------------------------------------------------------------------------------


def _query(admin: DbEndpoint, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def base_tables(admin: DbEndpoint, database: str) -> list[str]:
    rows = _query(
        admin,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
        " AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        (database,),
    )
    return [str(name) for (name,) in rows]


def checksums(admin: DbEndpoint, database: str, tables: list[str]) -> dict[str, int | None]:
    names = ", ".join(f"{quote_identifier(database)}.{quote_identifier(t)}" for t in tables)
    rows = _query(admin, f"CHECKSUM TABLE {names}")
    return {str(name).split(".", 1)[1]: value for name, value in rows}


def url_options(admin: DbEndpoint, database: str, prefix: str) -> dict[str, str]:
    table = f"{quote_identifier(database)}.{quote_identifier(prefix + 'options')}"
    rows = _query(
        admin, f"SELECT option_name, option_value FROM {table} WHERE option_name IN ('siteurl', 'home')"
    )
    return {str(name): str(value) for name, value in rows}


def _differences(label: str, expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    return [
        f"{label}: {key} is {got.get(key)!r}, expected {expected.get(key)!r}"
        for key in sorted(set(expected) | set(got))
        if expected.get(key) != got.get(key)
    ]


def check_round(setup: Setup, backup: dict[str, Any], restored: dict[str, StepRun]) -> list[str]:
    """Every way the results differ from the source or from each other (empty: the same data)."""
    admin, prefix = setup.admin, setup.source.table_prefix
    tables = base_tables(admin, setup.source.db_name)
    source_counts = row_counts(admin, setup.source.db_name, tables)
    copy_sums = checksums(admin, COPY_DB, tables)
    wanted_urls = dict.fromkeys(URL_OPTIONS, setup.clone_url)
    problems = []
    for name in (COPY_DB, *restored):
        problems += _differences(f"{name} tables", {"tables": tables}, {"tables": base_tables(admin, name)})
        problems += _differences(f"{name} rows", source_counts, row_counts(admin, name, tables))
        problems += _differences(f"{name} URL options", wanted_urls, url_options(admin, name, prefix))
        if name != COPY_DB:
            problems += _differences(
                f"{name} checksum vs {COPY_DB}", copy_sums, checksums(admin, name, tables)
            )
    for name, run in restored.items():
        if not run.result.get("fields_rewritten"):
            problems.append(f"{name}: the restore rewrote no URL field")
        staged = setup.content_dir(name).with_name("wp-content.restore-new")
        files = sum(len(f) for _, _, f in os.walk(staged))
        expect = backup["content_files"] if name == RESTORE_DB else 0
        if files != expect or run.result.get("content_files") != expect:
            problems.append(
                f"{name}: staged wp-content holds {files} files (the step says"
                f" {run.result.get('content_files')}), the backup archived {expect}"
            )
    return problems


# -- the benchmark -----------------------------------------------------------------------------------------


@dataclass
class Runs:
    copy: list[StepRun] = field(default_factory=list)
    restore: list[StepRun] = field(default_factory=list)
    db_only: list[StepRun] = field(default_factory=list)
    unpack: list[float] = field(default_factory=list)
    archive_bytes: dict[str, int] = field(default_factory=dict)  # label -> size


def describe(label: str, run: StepRun) -> str:
    line = f"{label:18}{run.wall:6.2f} s"
    if "fetched" in run.events:
        line += (
            f"  (start-up {run.events['fetch'] - run.started_at:.2f} s,"
            f" fetch {run.phase('fetch', 'fetched'):.2f} s, unpack+load {run.phase('fetched', 'done'):.2f} s)"
        )
    elif "copy_s" in run.result:
        line += (
            f"  (start-up+exit {run.wall - run.result['duration_s']:.2f} s,"
            f" copy {run.result['copy_s']:.2f} s, verify {run.result['verify_s']:.2f} s)"
        )
    return line


def bench(setup: Setup, rounds: int, db_only: bool) -> Runs:
    archive, backup = make_backup(setup, with_content=True)
    print(
        f"backup (database + wp-content): {archive.stat().st_size / 1e6:.2f} MB archive,"
        f" {backup['content_files']} content files, made in {backup['seconds']:.2f} s"
    )
    db_archive = None
    if db_only:
        db_archive, _ = make_backup(setup, with_content=False)
        print(f"backup (database only):         {db_archive.stat().st_size / 1e6:.2f} MB archive")
    runs = Runs(archive_bytes={"full": archive.stat().st_size})
    if db_archive is not None:
        runs.archive_bytes["database-only"] = db_archive.stat().st_size
    variants: list[tuple[str, list[StepRun], Any]] = [
        ("copy-database", runs.copy, lambda: run_copy(setup)),
        ("restore-backup", runs.restore, lambda: run_restore(setup, RESTORE_DB, archive)),
    ]
    if db_archive is not None:
        variants.append(
            ("restore (db only)", runs.db_only, lambda: run_restore(setup, DB_ONLY_DB, db_archive))
        )
    for i in range(rounds):
        order = variants[i % len(variants) :] + variants[: i % len(variants)]  # rotate: no fixed first slot
        for label, into, run in order:
            into.append(run())
            print(f"round {i + 1}: {describe(label, into[-1])}")
        restored = {RESTORE_DB: runs.restore[-1]}
        if db_archive is not None:
            restored[DB_ONLY_DB] = runs.db_only[-1]
        if problems := check_round(setup, backup, restored):
            raise BenchFailed("the results are not the same data:\n  " + "\n  ".join(problems))
        runs.unpack.append(time_unpack(setup, archive))
        ratio = runs.restore[-1].wall / runs.copy[-1].wall
        print(
            f"round {i + 1}: checks passed; restore/copy {ratio:.2f}x; unpack alone {runs.unpack[-1]:.2f} s"
        )
    return runs


def summary(runs: Runs) -> None:
    med = statistics.median
    copy = med(r.wall for r in runs.copy)
    print(f"--- medians of {len(runs.copy)} rounds (ratios: median of the per-round ratios)")
    print(
        f"copy-database       {copy:6.2f} s   (copy phase {med(r.result['copy_s'] for r in runs.copy):.2f} s,"
        f" verify {med(r.result['verify_s'] for r in runs.copy):.2f} s)"
    )
    pairs = [("restore-backup", runs.restore), ("restore (db only)", runs.db_only)]
    for label, restores in pairs:
        if not restores:
            continue
        ratio = med(r.wall / c.wall for r, c in zip(restores, runs.copy, strict=True))
        print(f"{label:19} {med(r.wall for r in restores):6.2f} s   ratio restore/copy {ratio:.2f}x")
    unpack_load = med(r.phase("fetched", "done") for r in runs.restore)
    unpack = med(runs.unpack)
    print(
        "restore phases      "
        f"start-up {med(r.events['fetch'] - r.started_at for r in runs.restore):.2f} s,"
        f" fetch {med(r.phase('fetch', 'fetched') for r in runs.restore):.2f} s,"
        f" unpack+load {unpack_load:.2f} s (unpack alone, in-process {unpack:.2f} s;"
        f" load about {max(unpack_load - unpack, 0.0):.2f} s)"
    )
    sql = int(runs.restore[0].result["sql_bytes"])
    ratios = ", ".join(f"{sql / size:.0f}x the {label} archive" for label, size in runs.archive_bytes.items())
    print(
        f"SQL dump            {sql / 1e6:.1f} MB: {ratios}"
        f" (open_backup refuses above {Limits().max_ratio:g}x)"
    )


def prepare(posts: int) -> Setup:
    settings = StackSettings.load()
    print(f"stack: {settings.state_dir} (MariaDB + site host; starting what is not running)")
    up(settings, airflow=False)
    source = seed_source(settings, posts=posts)
    admin = LocalMariaDB(settings).admin
    source_db = DbEndpoint(
        source.db_host, source.db_port, source.db_user, source.db_password(), source.db_name
    )
    size = database_size(admin, source.db_name)
    print(f"source {source.url}: database {source.db_name} {int(size) / 1e6:.1f} MB (data + index)")
    work = Path(tempfile.mkdtemp(prefix="bench-restore-", dir=settings.state_dir))
    clone_url = f"http://{CLONE_ID}.localhost:{settings.http_port}"
    return Setup(admin, source, source_db, content_dir(settings, source.name), clone_url, work)


def cleanup(setup: Setup) -> None:
    for name in TARGETS:
        MySqlAdmin.from_endpoint(setup.admin).drop_database_and_user(name, name, user_host=LOCAL_USER_HOST)
    shutil.rmtree(setup.work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--posts", type=int, default=DEFAULT_POSTS, help="seed the source to at least this")
    parser.add_argument("--no-db-only", action="store_true", help="skip the database-only restore")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    setup = prepare(args.posts)
    try:
        runs = bench(setup, args.rounds, not args.no_db_only)
        summary(runs)
    except BenchFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        cleanup(setup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
