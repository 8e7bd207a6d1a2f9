"""A large site, cloned end to end through the jobs API, against a raw ``mariadb-dump | mariadb`` of it.

Seeds (or reuses) the source at SIZE posts (default 30000), clones it through the jobs API (the clone's
database is on the source's server, so copy-database takes the same-server path: docs/same-server-copy.md),
deletes the clone, then times ``mariadb-dump --single-transaction <source> | mariadb <scratch>`` on the same
server in the same run. Prints the clone's wall time (job accepted → succeeded), its copy_database task, and
each as a ratio of the raw dump. With ``--remote`` it also times the copy-database step by hand on both
paths (``--copy-path dump`` and ``same-server``) into scratch databases: the dump path is what a source on
another server gets.

    SIZE=30000 .venv/bin/python bench/e2e.py [--remote]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import API, Api, parse_time, start_stack

from wpclone.db import DbEndpoint, quote_identifier
from wpclone.jobs import FINAL_STATUSES, JobStatus


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


def clone_once(api: Api, source_url: str) -> tuple[float, float, str]:
    """(job wall seconds, copy_database task seconds, copy path) of one clone through the jobs API."""
    clone_id = f"e2e{secrets.token_hex(3)}"
    started = time.monotonic()
    answer = api.clone(source_url, clone_id, ttl=60)
    answer.raise_for_status()
    job_id = answer.json()["job_id"]
    while (job := api.job(job_id))["status"] not in FINAL_STATUSES:
        time.sleep(1)
    wall = time.monotonic() - started
    if job["status"] != JobStatus.COMPLETED:
        raise SystemExit(f"the clone failed: {job.get('error')}")
    task = next(t for t in api.task_instances("wp_clone", job_id) if t["task_id"] == "copy_database")
    start, end = parse_time(task["start_date"]), parse_time(task["end_date"])
    assert start and end
    copied = (job.get("result") or {}).get("copied", {})
    api.call("DELETE", f"{API}/clones/{clone_id}")
    return wall, (end - start).total_seconds(), str(copied)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remote", action="store_true", help="also time the step by hand on both paths")
    args = parser.parse_args()
    size = int(os.environ.get("SIZE", "30000"))
    stack = start_stack(posts=size)
    api = Api(stack.airflow, timeout=120)
    try:
        wall, copy_s, copied = clone_once(api, stack.source.url)
        raw = raw_dump(stack.admin, stack.source.db_name)
        print(f"size={size} posts; raw mariadb-dump | mariadb: {raw:.1f} s")
        print(f"clone end to end (jobs API): {wall:.1f} s = {wall / raw:.2f}x raw")
        print(f"copy_database task: {copy_s:.1f} s = {copy_s / raw:.2f}x raw; copied: {copied[:300]}")
        if args.remote:
            for path in ("same-server", "dump"):
                seconds = step_by_hand(stack.admin, stack.source.db_name, stack.source.url, path)
                print(f"step by hand, --copy-path {path}: {seconds:.1f} s = {seconds / raw:.2f}x raw")
    finally:
        api.close()
        stack.restore_cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
