"""What bench/load.py and bench/chaos.py share: the stack, the jobs API client, the leftover checks, /proc.

Not a benchmark itself. Importing it puts the repo's plugins on ``sys.path`` (like bench/clone_timing.py).
The stack is the one of ``WPCLONE_STATE_DIR`` (default ``.local``); :func:`start_stack` starts what is not
running (MariaDB, the PHP site host, Airflow standalone) and seeds the source.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import threading
import time
import urllib.error
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from wpclone.db import DbEndpoint  # noqa: E402
from wpclone.local.__main__ import up  # noqa: E402
from wpclone.local.airflow import LocalAirflow  # noqa: E402
from wpclone.local.mariadb import LocalMariaDB  # noqa: E402
from wpclone.local.seed import DEFAULT_POSTS, seed_source  # noqa: E402
from wpclone.local.settings import StackSettings  # noqa: E402
from wpclone.local.sitehost import SiteConfig, http_opener, site_dir  # noqa: E402
from wpclone.models import clone_db_name  # noqa: E402
from wpclone.registry import Registry  # noqa: E402
from wpclone.settings import control_schema  # noqa: E402

API = "/wpclone/api/v1"
FINAL = ("completed", "failed", "cancelled")
ROW_COUNT_TABLES = ("wp_posts", "wp_options")
CLEANUP_DAG = "wp_ttl_cleanup"


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


# -- the stack --------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """The local stack of this state dir, started and seeded; the registry Airflow's tasks use."""

    settings: StackSettings
    airflow: LocalAirflow
    admin: DbEndpoint
    source: SiteConfig
    registry: Registry
    cleanup_was_paused: bool | None = None

    def source_counts(self) -> dict[str, int]:
        return row_counts(self.admin, self.source.db_name)

    def pause_cleanup(self) -> None:
        """Pause wp_ttl_cleanup while we measure: its orphan sweep would hide what a job left behind."""
        token = self.airflow.token()
        dag = self.airflow.request("GET", f"/api/v2/dags/{CLEANUP_DAG}", token=token)
        if self.cleanup_was_paused is None:  # what to restore: the state before our first pause
            self.cleanup_was_paused = bool(dag["is_paused"])
        if not dag["is_paused"]:
            self.airflow.request("PATCH", f"/api/v2/dags/{CLEANUP_DAG}", {"is_paused": True}, token=token)

    def restart_airflow(self) -> None:
        """Stop and start the stack's Airflow (it takes this process's environment), wp_ttl_cleanup paused
        again."""
        self.airflow.stop()
        self.airflow.start()
        self.pause_cleanup()

    def restore_cleanup(self) -> None:
        if self.cleanup_was_paused is False:
            self.airflow.request(
                "PATCH", f"/api/v2/dags/{CLEANUP_DAG}", {"is_paused": False}, token=self.airflow.token()
            )


def start_stack(posts: int = DEFAULT_POSTS) -> Stack:
    """MariaDB, site host and Airflow of ``WPCLONE_STATE_DIR`` running; the source seeded (>= posts)."""
    settings = StackSettings.load()
    print(f"stack: {settings.state_dir} (starting what is not running; first start takes ~1 minute)")
    up(settings, airflow=False)
    source = seed_source(settings, posts=posts)
    up(settings, airflow=True)
    airflow = LocalAirflow(settings)
    admin = LocalMariaDB(settings).admin
    # The schema Airflow's tasks use: WPCLONE_CONTROL_SCHEMA of its environment, else the default.
    registry = Registry.from_endpoint(admin, control_schema(airflow.env()))
    stack = Stack(settings, airflow, admin, source, registry)
    stack.pause_cleanup()
    print(f"airflow: {airflow.url} (pid {airflow.pid()}); registry schema {registry.schema}")
    return stack


def row_counts(admin: DbEndpoint, database: str, tables: Iterable[str] = ROW_COUNT_TABLES) -> dict[str, int]:
    counts = {}
    with admin.connect() as conn, conn.cursor() as cur:
        for table in tables:
            try:
                cur.execute(f"SELECT COUNT(*) FROM `{database}`.`{table}`")
                counts[table] = int(cur.fetchone()[0])
            except Exception:  # a missing table counts as -1: never equal to a source's count
                counts[table] = -1
    return counts


def option_names(admin: DbEndpoint, database: str) -> set[str]:
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT option_name FROM `{database}`.`wp_options`")
        return {str(name) for (name,) in cur.fetchall()}


def site_answers(url: str) -> int:
    """The HTTP status of the clone's front page (0: no answer)."""
    try:
        with http_opener(follow_redirects=False).open(url.rstrip("/") + "/", timeout=15) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def leftovers(stack: Stack, clone_id: str) -> list[str]:
    """Everything of a deleted clone that still exists: database, user, site dir, content, secret files,
    and a registry row that is not ``deleted`` or still holds a lock (as tests/dags/test_wp_clone.py)."""
    found = []
    name = clone_db_name(clone_id)
    with stack.admin.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))
        if cur.fetchone():
            found.append(f"database {name}")
        cur.execute("SELECT host FROM mysql.user WHERE user = %s", (name,))
        found += [f"user {name}@{host}" for (host,) in cur.fetchall()]
    if site_dir(stack.settings, clone_id).exists():
        found.append(f"site dir {site_dir(stack.settings, clone_id)}")
    found += [f"secret file {p.name}" for p in stack.settings.secrets_dir.glob(f"clone-{clone_id}-*")]
    record = stack.registry.get(clone_id)
    if record is not None and (record.status != "deleted" or record.lock_job_id):
        found.append(f"registry row {record.status} (lock {record.lock_job_id})")
    return found


# -- the jobs API -----------------------------------------------------------------------------------------


class Api:
    """Our jobs API (and Airflow's REST API) as ``admin``, with a bearer token from ``POST /auth/token``."""

    def __init__(self, airflow: LocalAirflow, timeout: float = 60, token: str | None = None) -> None:
        self.airflow = airflow
        self.client = httpx.Client(
            base_url=airflow.url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
        )
        if token is None:
            answer = self.client.post(
                "/auth/token", json={"username": "admin", "password": airflow.password("admin")}
            )
            answer.raise_for_status()
            token = str(answer.json()["access_token"])
        self.token = token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, json: Any = None) -> httpx.Response:
        return self.client.request(method, path, json=json, headers=self.headers)

    def timed(self, method: str, path: str, json: Any = None) -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        response = self.call(method, path, json)
        return response, time.perf_counter() - started

    def clone(self, source_url: str, clone_id: str, ttl: int) -> httpx.Response:
        body = {"source_url": source_url, "clone_id": clone_id, "ttl_minutes": ttl}
        return self.call("POST", f"{API}/clones", body)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.call("GET", f"{API}/jobs/{job_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        response = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        response.raise_for_status()
        tis: list[dict[str, Any]] = response.json()["task_instances"]
        return tis

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of one task instance, oldest first (its history plus the current try)."""
        response = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")
        response.raise_for_status()
        tries: list[dict[str, Any]] = response.json()["task_instances"]
        return sorted(tries, key=lambda t: t["try_number"])

    def close(self) -> None:
        self.client.close()


@dataclass
class JobTrace:
    """Every answer of one job's status endpoint, with the client's clock and the request's latency."""

    job_id: str
    clone_id: str
    polls: list[tuple[float, float, dict[str, Any]]] = field(default_factory=list)  # (t, latency, body)
    errors: list[str] = field(default_factory=list)
    lost: bool = False

    @property
    def last(self) -> dict[str, Any]:
        return self.polls[-1][2] if self.polls else {}

    @property
    def status(self) -> str:
        return "lost" if self.lost else str(self.last.get("status", "unknown"))

    @property
    def final_at(self) -> float | None:
        """The client's clock at the first poll that saw a final status."""
        return next((t for t, _, body in self.polls if body["status"] in FINAL), None)

    def progress_problems(self) -> list[str]:
        values = [int(body["progress"]) for _, _, body in self.polls]
        problems = [f"progress went back {a} -> {b}" for a, b in itertools.pairwise(values) if b < a]
        if self.status in FINAL and (not values or values[-1] != 100):
            problems.append(f"ended at progress {values[-1] if values else None}, not 100")
        return problems


def poll_jobs(
    api: Api,
    traces: Sequence[JobTrace],
    timeout: float,
    *,
    interval: float = 1.0,
    on_poll: Callable[[JobTrace, dict[str, Any]], None] | None = None,
    lost_after: float = 60.0,
) -> None:
    """Poll every job from its own thread until it is final or ``timeout`` passes; a job that answers
    404 for ``lost_after`` seconds is marked lost."""
    started = time.monotonic()
    deadline = started + timeout

    def follow(trace: JobTrace) -> None:
        while time.monotonic() < deadline:
            try:
                response, latency = api.timed("GET", f"{API}/jobs/{trace.job_id}")
            except httpx.HTTPError as exc:
                trace.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(interval)
                continue
            if response.status_code == 404 and time.monotonic() - started > lost_after:
                trace.lost = True  # accepted (202) but no such run: the job was lost
                trace.errors.append(f"HTTP 404 for {lost_after:.0f} s: {response.text[:200]}")
                return
            if response.status_code != 200:
                trace.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
            else:
                body = response.json()
                trace.polls.append((time.monotonic(), latency, body))
                if on_poll:
                    on_poll(trace, body)
                if body["status"] in FINAL:
                    return
            time.sleep(interval)

    threads = [threading.Thread(target=follow, args=(t,), daemon=True) for t in traces]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- processes --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    cmdline: str

    def __str__(self) -> str:
        return f"pid {self.pid} (ppid {self.ppid}, pgid {self.pgid}): {self.cmdline[:160]}"


def _proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0], cmdline)


def proc_tree(sid: int) -> list[Proc]:
    """Live processes of session ``sid``: ``airflow standalone`` leads its own session (LocalAirflow starts
    it with start_new_session), and every Airflow component, task runner and step stays in it (task runners
    get their own process group, not their own session). Other developers' stacks are other sessions.
    (Not the environment: Airflow's setproctitle overwrites /proc/<pid>/environ.)"""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        proc = _proc(int(entry.name))
        if proc is not None and proc.sid == sid and proc.state != "Z":
            found.append(proc)
    return sorted(found, key=lambda p: p.pid)


def processes(match: Callable[[Proc], bool]) -> list[Proc]:
    """Every live process ``match`` accepts (whatever its session: an orphan may have left ours)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            proc = _proc(int(entry.name))
            if proc is not None and proc.state != "Z" and match(proc):
                found.append(proc)
    return sorted(found, key=lambda p: p.pid)


def alive(pid: int) -> bool:
    proc = _proc(pid)
    return proc is not None and proc.state != "Z"
