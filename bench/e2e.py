"""A large site, cloned end to end through the jobs API, against a raw ``mariadb-dump | mariadb`` of it.

Seeds (or reuses) the source at SIZE posts (default 30000), clones it through the jobs API (the clone's
database is on the source's server, so copy-database takes the same-server path: docs/same-server-copy.md),
deletes the clone, then times ``mariadb-dump --single-transaction <source> | mariadb <scratch>`` on the same
server in the same run, after one clone not counted (Airflow's warm-up). Prints the clone's wall time (job
accepted → completed), its copy_database task, and each as a ratio of the raw dump, per round and their
medians (``--rounds``, each round a clone and a raw dump side by side). With ``--dump-path`` it then restarts
the stack's Airflow with ``WPCLONE_SAME_SERVER_COPY=off`` and does the same rounds on the dump path (what a
source on another server gets), and restarts Airflow as it was. With ``--remote`` it also times the
copy-database step by hand on both paths (``--copy-path dump`` and ``same-server``) into scratch databases.
With ``--floor`` it times what no rewrite can undercut: the same-server copy's ``INSERT … SELECT`` of every
table (its connections, its snapshot) into a scratch database with nothing rewritten, then with the server's
rewrite passes; the floor is that plain copy plus the clone's time outside its copy_database task (the jobs
API, Airflow and the other tasks), as a ratio of the raw dump.

    SIZE=30000 .venv/bin/python bench/e2e.py [--rounds 3] [--dump-path] [--remote] [--floor]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import API, Api, Stack, parse_time, start_stack

from wpclone.db import DbEndpoint, quote_identifier
from wpclone.jobs import FINAL_STATUSES, JobStatus
from wpclone.rewrite import Rewriter
from wpclone.settings import SAME_SERVER_COPY
from wpclone.steps import same_server


def sql(admin: DbEndpoint, *statements: str) -> None:
    with admin.connect() as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def raw_dump(admin: DbEndpoint, source_db: str) -> float:
    """Seconds for ``mariadb-dump | mariadb`` of the source into a scratch database (dropped after)."""
    scratch = f"bench_raw_{secrets.token_hex(3)}"
    sql(admin, f"CREATE DATABASE {quote_identifier(scratch)} CHARACTER SET utf8mb4")
    env = {**os.environ, **admin.client_env()}
    try:
        started = time.monotonic()
        dump = subprocess.Popen(
            ["mariadb-dump", *admin.client_args(), "--single-transaction", "--quick", source_db],
            stdout=subprocess.PIPE,
            env=env,
        )
        subprocess.run(
            ["mariadb", *admin.client_args(), "--max-allowed-packet=1G", scratch],
            stdin=dump.stdout,
            env=env,
            check=True,
        )
        assert dump.wait() == 0
        return time.monotonic() - started
    finally:
        sql(admin, f"DROP DATABASE IF EXISTS {quote_identifier(scratch)}")


def step_by_hand(admin: DbEndpoint, source_db: str, source_url: str, path: str) -> float:
    scratch = f"bench_step_{secrets.token_hex(3)}"
    sql(admin, f"CREATE DATABASE {quote_identifier(scratch)} CHARACTER SET utf8mb4")
    env = {**os.environ, **admin.with_database(source_db).to_env("SOURCE_DB")}
    env.update(admin.with_database(scratch).to_env("TARGET_DB"))
    try:
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "wpclone.steps",
                "copy-database",
                source_url,
                "http://bench-e2e.localhost",
                "--copy-path",
                path,
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.monotonic() - started
    finally:
        sql(admin, f"DROP DATABASE IF EXISTS {quote_identifier(scratch)}")


def server_copy(admin: DbEndpoint, source_db: str, source_url: str, *, rewrite: bool) -> float:
    """Seconds for the same-server copy's rows (``INSERT … SELECT`` of every table over its connections, in
    one snapshot) into a scratch database, with the server's rewrite passes or none; the engine's share and
    the verification left out."""
    scratch = f"bench_floor_{secrets.token_hex(3)}"
    sql(admin, f"CREATE DATABASE {quote_identifier(scratch)} CHARACTER SET utf8mb4")
    conns = [admin.with_database(scratch).connect() for _ in range(same_server.COPY_CONNECTIONS)]
    try:
        with conns[0].cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (source_db,)
            )
            tables = [str(name) for (name,) in cur.fetchall()]
        columns = same_server.table_columns(conns[0], source_db, tables)
        same_server.create_tables(conns[0], source_db, tables)
        passes = same_server.server_passes(Rewriter([(source_url, "http://bench-e2e.localhost")]))
        started = time.monotonic()
        groups = same_server.split_tables(conns[0], source_db, tables, len(conns))
        same_server.copy_rows(conns, source_db, columns, groups, passes=passes if rewrite else ())
        return time.monotonic() - started
    finally:
        for conn in conns:
            conn.close()
        sql(admin, f"DROP DATABASE IF EXISTS {quote_identifier(scratch)}")


def clone_once(api: Api, source_url: str) -> tuple[float, float, str]:
    """(job wall seconds, copy_database task seconds, the path the copy took) of one clone through the jobs
    API."""
    clone_id = f"e2e{secrets.token_hex(3)}"
    started = time.monotonic()
    answer = api.clone(source_url, clone_id, ttl=60)
    answer.raise_for_status()
    job_id = answer.json()["job_id"]
    while (job := api.job(job_id))["status"] not in FINAL_STATUSES:
        time.sleep(0.1)
    wall = time.monotonic() - started
    if job["status"] != JobStatus.COMPLETED:
        raise SystemExit(f"the clone failed: {job.get('error')}")
    task = next(t for t in api.task_instances("wp_clone", job_id) if t["task_id"] == "copy_database")
    start, end = parse_time(task["start_date"]), parse_time(task["end_date"])
    assert start and end
    copied = (job.get("result") or {}).get("copied") or {}
    path = str((copied.get("database") or {}).get("path", "?")) if isinstance(copied, dict) else "?"
    deleted = api.call("DELETE", f"{API}/clones/{clone_id}")
    while (api.job(deleted.json()["job_id"]))["status"] not in FINAL_STATUSES:
        time.sleep(0.5)  # the next round's copy must not share the server with this deletion
    return wall, (end - start).total_seconds(), path


def rounds(stack: Stack, api: Api, count: int, label: str) -> tuple[float, float]:
    """``count`` rounds of a clone and a raw dump side by side; prints each and the medians. Returns the
    medians of the raw dump and of the clone's time outside its copy_database task."""
    ratios, copy_ratios, raws, outside = [], [], [], []
    # The first clone after Airflow (re)started pays its processes' warm-up (API workers, the DAG's first
    # parse in each): not counted.
    wall, _, _ = clone_once(api, stack.source.url)
    print(f"  {label} warm-up clone: {wall:.1f} s (not counted)")
    for number in range(1, count + 1):
        wall, copy_s, path = clone_once(api, stack.source.url)
        raw = raw_dump(stack.admin, stack.source.db_name)
        ratios.append(wall / raw)
        copy_ratios.append(copy_s / raw)
        raws.append(raw)
        outside.append(wall - copy_s)
        print(
            f"  {label} round {number}: raw {raw:.1f} s; clone {wall:.1f} s = {wall / raw:.2f}x raw "
            f"(copy_database {copy_s:.1f} s = {copy_s / raw:.2f}x, path {path})"
        )
    median = statistics.median(ratios)
    print(
        f"{label}: clone end to end {median:.2f}x raw, "
        f"copy_database {statistics.median(copy_ratios):.2f}x raw (medians of {count})"
    )
    return statistics.median(raws), statistics.median(outside)


def floor(stack: Stack, raw: float, outside: float) -> None:
    """What no rewrite can undercut on this machine (``--floor``); prints it against the raw dump."""
    source = stack.source
    plain = server_copy(stack.admin, source.db_name, source.url, rewrite=False)
    passes = server_copy(stack.admin, source.db_name, source.url, rewrite=True)
    least = plain + outside
    print(
        f"floor: the server copy with nothing rewritten {plain:.1f} s (with the server's rewrite passes "
        f"{passes:.1f} s) + the clone's time outside copy_database {outside:.1f} s = {least:.1f} s = "
        f"{least / raw:.2f}x raw {raw:.1f} s (a same-server clone with any rewrite takes at least this)"
    )


def restart_airflow(stack: Stack, same_server_copy: bool) -> None:
    if same_server_copy:
        os.environ.pop(SAME_SERVER_COPY, None)
    else:
        os.environ[SAME_SERVER_COPY] = "off"
    print(f"restarting Airflow with {SAME_SERVER_COPY}={'on' if same_server_copy else 'off'}")
    stack.restart_airflow()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="clones and raw dumps per path (default 1)")
    parser.add_argument("--dump-path", action="store_true", help="also clone on the dump path")
    parser.add_argument("--remote", action="store_true", help="also time the step by hand on both paths")
    parser.add_argument("--floor", action="store_true", help="also time the copy with nothing rewritten")
    args = parser.parse_args()
    size = int(os.environ.get("SIZE", "30000"))
    stack = start_stack(posts=size)
    api = Api(stack.airflow, timeout=120)
    print(f"size={size} posts")
    try:
        raw, outside = rounds(stack, api, args.rounds, "same server")
        if args.floor:
            floor(stack, raw, outside)
        if args.dump_path:
            restart_airflow(stack, same_server_copy=False)
            try:
                rounds(stack, api, args.rounds, "dump path")
            finally:
                restart_airflow(stack, same_server_copy=True)
        if args.remote:
            raw = raw_dump(stack.admin, stack.source.db_name)
            for path in ("same-server", "dump"):
                seconds = step_by_hand(stack.admin, stack.source.db_name, stack.source.url, path)
                print(
                    f"step by hand, --copy-path {path}: {seconds:.1f} s = {seconds / raw:.2f}x "
                    f"raw {raw:.1f} s"
                )
    finally:
        api.close()
        stack.restore_cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
