"""Time clones of the seeded source under the stack's real scheduler, split into step work and overhead.

Uses the local stack of ``WPCLONE_STATE_DIR`` (bench/_common.py :func:`start_stack`: MariaDB, the site host
and Airflow standalone with the settings ``python -m wpclone.local`` ships, wpclone.local.airflow; started if
not running, ``wp_ttl_cleanup`` paused while it measures). Triggers ``wp_clone`` through Airflow's REST API,
reads the task instances back, deletes the clone with ``wp_delete``. Prints, per task, when it was queued,
started and ended (seconds after the run started) and its duration; then the run's wall time (until its
teardown ended), when the clone was ready (``finalize_clone`` ended: the jobs API reports the job completed
then), the work on the critical path (sum of task durations along validate → … → finalize, the slower of the
two copies), and the rest: what Airflow's scheduling and task start-up cost.

The source is cloned as it is: bench/chaos.py grows it to 30,000 posts (time a small clone before that).

    .venv/bin/python bench/clone_timing.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from typing import Any

from _common import start_stack  # also puts the repo's plugins on sys.path

from wpclone.local.airflow import LocalAirflow

CRITICAL_PATH = [
    "validate_request",  # and reserve the clone
    "create_database",
    ("copy_database", "copy_content"),
    "finalize_clone",  # staging safety, serve, wait until right, mark ready
]


def parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}.")


def run_dag(
    airflow: LocalAirflow, token: str, dag_id: str, conf: dict[str, Any], timeout: float = 600
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run_id = f"bench-{time.time_ns()}"
    runs = f"/api/v2/dags/{dag_id}/dagRuns"
    airflow.request("POST", runs, {"dag_run_id": run_id, "logical_date": None, "conf": conf}, token)
    run = wait(
        f"{dag_id} run {run_id}",
        lambda: (
            (r := airflow.request("GET", f"{runs}/{run_id}", token=token))["state"] in ("success", "failed")
            and r
        ),
        timeout,
    )
    tis = airflow.request("GET", f"{runs}/{run_id}/taskInstances", token=token)["task_instances"]
    return run, tis


def seconds(ts: str | None, start: datetime) -> float:
    moment = parse(ts)
    return (moment - start).total_seconds() if moment else float("nan")


def report(run: dict[str, Any], tis: list[dict[str, Any]]) -> dict[str, float]:
    by_id = {ti["task_id"]: ti for ti in tis if ti["map_index"] == -1}
    start = parse(run["start_date"]) or parse(run["queued_at"])
    assert start and run["end_date"]
    print(f"  {'task':24} {'state':9} {'queued+s':>9} {'start+s':>8} {'end+s':>6} {'work s':>7}")
    for ti in sorted(by_id.values(), key=lambda t: t["start_date"] or "~"):
        print(
            f"  {ti['task_id']:24} {ti['state']:9} {seconds(ti.get('queued_when'), start):9.2f} "
            f"{seconds(ti['start_date'], start):8.2f} {seconds(ti['end_date'], start):6.2f} "
            f"{ti['duration'] or 0:7.2f}"
        )
    path = [step if isinstance(step, tuple) else (step,) for step in CRITICAL_PATH]
    work = sum(max(by_id[n]["duration"] or 0.0 for n in names) for names in path)
    wall = seconds(run["end_date"], start)
    ready = seconds(by_id["finalize_clone"]["end_date"], start)
    print(
        f"  run {run['state']}: wall {wall:.1f} s (clone ready at {ready:.1f} s) = step work on the "
        f"critical path {work:.1f} s + Airflow scheduling/start-up {wall - work:.1f} s "
        f"({(wall - work) / len(path):.2f} s per task)"
    )
    return {"wall": wall, "ready": ready, "work": work, "overhead": wall - work}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    stack = start_stack()
    airflow, source = stack.airflow, stack.source
    results = []
    try:
        token = airflow.token()
        for i in range(args.runs):
            clone_id = f"bench-timing-{i}"
            print(f"run {i + 1}/{args.runs}: wp_clone {source.url} -> {clone_id}")
            conf = {"source_url": source.url, "clone_id": clone_id, "ttl_minutes": 30}
            run, tis = run_dag(airflow, token, "wp_clone", conf)
            results.append(report(run, tis))
            deleted, _ = run_dag(airflow, token, "wp_delete", {"clone_id": clone_id})
            print(f"  wp_delete {clone_id}: {deleted['state']}")
    finally:
        stack.restore_cleanup()
    walls = ", ".join(f"{r['wall']:.1f}" for r in results)
    print(
        f"median over {len(results)} runs: wall {statistics.median(r['wall'] for r in results):.1f} s "
        f"(runs: {walls}), clone ready at {statistics.median(r['ready'] for r in results):.1f} s, "
        f"step work {statistics.median(r['work'] for r in results):.1f} s, "
        f"scheduling overhead {statistics.median(r['overhead'] for r in results):.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
