"""Time one clone of the seeded source under a real Airflow scheduler, split into step work and overhead.

Starts ``airflow standalone`` (LocalExecutor, SQLite) in its own home under the state dir on free ports,
triggers ``wp_clone`` through the REST API, reads the task instances back, deletes the clone with
``wp_delete`` and stops Airflow. Prints, per task, queued/start/end times; then the run's wall time, the
work on the critical path (sum of task durations along validate → … → finalize, the slower of the two
copies), and the rest: what Airflow's scheduling and task start-up cost.

    .venv/bin/python bench/clone_timing.py [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from wpclone.local.mariadb import LocalMariaDB  # noqa: E402
from wpclone.local.seed import seed_source  # noqa: E402
from wpclone.local.settings import StackSettings, free_port  # noqa: E402

CRITICAL_PATH = [
    "validate_request",
    "reserve_clone",
    "create_database",
    ("copy_database", "copy_content"),
    "deploy_site",
    "await_site_ready",
    "apply_staging_safety",
    "finalize_clone",
]


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.token = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {self.token}"} if self.token else {}),
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def wait(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if result := check():
                    return result
            except (urllib.error.URLError, OSError, KeyError) as exc:
                last = exc
            time.sleep(0.5)
        raise SystemExit(f"timed out waiting for {what} ({last}).")


def parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def run_dag(
    api: Api, dag_id: str, conf: dict[str, Any], timeout: float = 600
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run_id = f"bench-{time.time_ns()}"
    api.call(
        "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf}
    )
    run = api.wait(
        f"{dag_id} run {run_id}",
        lambda: (
            (r := api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))["state"]
            in ("success", "failed")
            and r
        ),
        timeout,
    )
    tis = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return run, tis


def report(run: dict[str, Any], tis: list[dict[str, Any]]) -> dict[str, float]:
    by_id = {ti["task_id"]: ti for ti in tis if ti["map_index"] == -1}
    start = parse(run["start_date"]) or parse(run["queued_at"])
    end = parse(run["end_date"])
    assert start and end
    print(f"  {'task':24} {'state':9} {'queued+s':>9} {'start+s':>8} {'work s':>7}")
    for ti in sorted(by_id.values(), key=lambda t: t["start_date"] or "~"):
        queued, began = parse(ti.get("queued_when")), parse(ti["start_date"])
        print(
            f"  {ti['task_id']:24} {ti['state']:9} "
            f"{(queued - start).total_seconds() if queued else float('nan'):9.2f} "
            f"{(began - start).total_seconds() if began else float('nan'):8.2f} {ti['duration'] or 0:7.2f}"
        )
    work = 0.0
    for step in CRITICAL_PATH:
        names = step if isinstance(step, tuple) else (step,)
        work += max(by_id[n]["duration"] or 0.0 for n in names)
    wall = (end - start).total_seconds()
    figures = {"wall": wall, "work": work, "overhead": wall - work, "tasks": len(CRITICAL_PATH)}
    print(
        f"  run {run['state']}: wall {wall:.1f} s = step work on the critical path {work:.1f} s "
        f"+ Airflow scheduling/start-up {wall - work:.1f} s "
        f"({(wall - work) / len(CRITICAL_PATH):.2f} s per task)"
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--idle-sleep",
        type=float,
        default=None,
        help="the scheduler's [scheduler] scheduler_idle_sleep_time (Airflow's default is 1 s)",
    )
    args = parser.parse_args()

    settings = StackSettings.load()
    source = seed_source(settings)
    admin = LocalMariaDB(settings).admin
    home = settings.state_dir / "bench-airflow"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone starts `airflow ...`
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API__PORT": str(port),
        # Task supervisors reach the API server here (the default assumes port 8080).
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "bench:admin",
        "AIRFLOW_CONN_WPCLONE_MYSQL": json.dumps(
            {
                "conn_type": "mysql",
                "host": admin.host,
                "port": admin.port,
                "login": admin.user,
                "password": admin.password,
            }
        ),
        "WPCLONE_CONTROL_SCHEMA": "wpclone_control_bench",
    }
    if args.idle_sleep is not None:
        env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] = str(args.idle_sleep)
    subprocess.run([str(venv_bin / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "wpclone.provision"], env=env, check=True, capture_output=True)
    log = (home / "standalone.log").open("wb")
    proc = subprocess.Popen(
        [str(venv_bin / "airflow"), "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    try:
        api = Api(f"http://127.0.0.1:{port}")
        passwords = home / "simple_auth_manager_passwords.json.generated"
        api.wait(
            "the API server", lambda: passwords.exists() and api.call("GET", "/api/v2/monitor/health"), 180
        )
        password = json.loads(passwords.read_text())["bench"]
        token = api.call("POST", "/auth/token", {"username": "bench", "password": password})["access_token"]
        api.token = token
        api.wait("the DAGs to be parsed", lambda: api.call("GET", "/api/v2/dags/wp_clone")["dag_id"], 180)
        results = []
        for i in range(args.runs):
            clone_id = f"bench-timing-{i}"
            print(f"run {i + 1}/{args.runs}: wp_clone {source.url} -> {clone_id}")
            run, tis = run_dag(
                api, "wp_clone", {"source_url": source.url, "clone_id": clone_id, "ttl_minutes": 30}
            )
            results.append(report(run, tis))
            deleted, _ = run_dag(api, "wp_delete", {"clone_id": clone_id})
            print(f"  wp_delete {clone_id}: {deleted['state']}")
        print(
            f"median over {len(results)} runs: wall {statistics.median(r['wall'] for r in results):.1f} s, "
            f"step work {statistics.median(r['work'] for r in results):.1f} s, "
            f"scheduling overhead {statistics.median(r['overhead'] for r in results):.1f} s"
        )
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
