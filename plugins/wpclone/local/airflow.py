"""A real Airflow for the local stack: ``airflow standalone`` (LocalExecutor, SQLite), our DAGs and plugin.

Its home is ``<state>/airflow``; its port ``WPCLONE_AIRFLOW_PORT`` or a free one remembered in ``ports.json``.
Before starting it, the metadata database is migrated, and the clone registry and our pool provisioned (all
idempotent); the MySQL connections and the configuration reach every Airflow process through the environment
(``AIRFLOW_CONN_WPCLONE_MYSQL``: the provisioning login; ``AIRFLOW_CONN_WPCLONE_REGISTRY``: the registry
login of the API server and the tasks' registry; ``WPCLONE_STATE_DIR``), never through the metadata
database. Logins: ``admin`` (role admin) and ``viewer`` (role viewer); passwords in
``<state>/secrets/airflow-<user>``.

With ``otlp_endpoint``, every component sends its OpenTelemetry metrics and traces there over OTLP/HTTP
(:func:`otel_env`: the variables helm-values/airflow.yaml sets, the export interval shortened to a second);
the system tests point it at their receiver (tests/system/test_telemetry.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from wpclone.db import DbEndpoint
from wpclone.jobs import DAG_OF_TYPE
from wpclone.local.mariadb import LocalMariaDB
from wpclone.local.procs import group_alive, kill_group, pid_from_file
from wpclone.local.settings import StackSettings, free_port
from wpclone.settings import REPO_ROOT, STATE_DIR, LocalAirflowSizing, airflow_start_timeout

log = logging.getLogger(__name__)

USERS = {"admin": "admin", "viewer": "viewer"}  # login -> simple auth manager role
# SQLite, Airflow's database here, allows one writer: concurrent jobs make the scheduler, the API server and
# the task supervisors queue for it. Without a busy timeout a component that waits gets "database is
# locked" and dies (standalone does not restart it); with one, it waits its turn. A pool big enough for
# the API server's concurrent requests keeps them from queueing for a connection instead.
SQLITE_CONNECT_ARGS = {"timeout": 60}
STOP_TIMEOUT_S = 30.0
T = TypeVar("T")


JOB_DAGS = tuple(DAG_OF_TYPE.values())  # the DAGs users trigger: unpaused at start
# What every task process imports, imported once by the LocalExecutor's fork server (a module missing here
# is only imported again in each task: the fork server ignores what it cannot import).
TASK_PRELOAD = (
    "airflow.executors.local_executor",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.dagbag",  # the task runner parses the DAG file with it
    "airflow.providers.standard.decorators.python",
    "airflow.providers.mysql.hooks.mysql",
    "wpclone.airflow.builders",
    "wpclone.airflow.services",
)


def mysql_connection(login: DbEndpoint) -> str:
    """An Airflow MySQL connection to ``login``, as ``AIRFLOW_CONN_<ID>`` JSON."""
    connection = {"conn_type": "mysql", "host": login.host, "port": login.port, "login": login.user}
    return json.dumps({**connection, "password": login.password})


def otel_env(endpoint: str, export_interval_ms: int = 1000) -> dict[str, str]:
    """Airflow's OpenTelemetry metrics and traces on, to the OTLP/HTTP collector at ``endpoint``
    (``http://host:4318``). The standard OTEL_* variables, not the deprecated ``[metrics]``/``[traces]``
    ``otel_host``/``otel_port``, with which Airflow's traces would go out over gRPC to the HTTP port."""
    return {
        "AIRFLOW__METRICS__OTEL_ON": "True",
        "AIRFLOW__TRACES__OTEL_ON": "True",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp_proto_http",
        "OTEL_METRIC_EXPORT_INTERVAL": str(export_interval_ms),
        "OTEL_SERVICE_NAME": "airflow",
    }


class LocalAirflow:
    """``scheduled_cleanup=False`` keeps ``wp_ttl_cleanup`` paused (the tests share their MariaDB with other
    registries, whose clones its orphan sweep must not see); the job DAGs always run. ``otlp_endpoint``:
    metrics and traces sent there (:func:`otel_env`)."""

    def __init__(
        self, settings: StackSettings, scheduled_cleanup: bool = True, otlp_endpoint: str | None = None
    ) -> None:
        self.settings = settings
        self.scheduled_cleanup = scheduled_cleanup
        self.otlp_endpoint = otlp_endpoint
        self.home = settings.state_dir / "airflow"
        self.port = settings.airflow_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.pidfile = self.home / "standalone.pid"
        self.logfile = self.home / "standalone.log"
        self.bin = Path(sys.executable).parent
        # Every standalone on a machine would otherwise serve task logs on 8793/8794: only the first could.
        self.log_ports = (free_port(), free_port())

    # -- configuration ------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment of every Airflow process (and of ``airflow`` commands run against this home)."""
        mariadb = LocalMariaDB(self.settings)
        sizing = LocalAirflowSizing.from_env()
        return {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone runs `airflow ...`
            STATE_DIR: str(self.settings.state_dir),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(not self.scheduled_cleanup),
            # Task processes at once (each a Python process); the heavy pool bounds the copies within it.
            "AIRFLOW__CORE__PARALLELISM": str(sizing.parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
            # A task's start-up and its hops on a small clone (bench/clone_timing.py; docs/benchmarks.md):
            # the scheduler's loop sleeps 0.2 s, not 1 s, when it had nothing to do;
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            # the executor's workers fork from a server that imported what every task imports (Airflow's
            # task runner, our DAGs' modules), so a task parses its DAG file in ~0.05 s instead of ~0.5 s;
            "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
            "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(TASK_PRELOAD),
            # a task's supervisor notices its process's exit within 1 s, not 5 s: a teardown that skips
            # itself (rollback_clone after a good run) ends the run that much sooner, and a worker is free.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            # Our DAG files change only with the package: re-parsing all of them every 30 s (the default)
            # takes ~2 s of CPU that a request burst on two cores would share.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(sizing.parse_interval),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": str(sizing.api_workers),
            "AIRFLOW__API__HOST": "127.0.0.1",
            # Task supervisors reach the API server here (the default assumes port 8080).
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW_CONN_WPCLONE_MYSQL": mysql_connection(mariadb.admin),
            "AIRFLOW_CONN_WPCLONE_REGISTRY": mysql_connection(mariadb.registry),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{__name__}.SQLITE_CONNECT_ARGS",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": f"{__name__}.SQLITE_CONNECT_ARGS",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "20",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "30",
            # A SQLite file is never dropped by a server: no "SELECT 1" before each session's first query
            # (every API request opens one to check its token against the revoked ones).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_PRE_PING": "False",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_ports[0]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.log_ports[1]),
            **(otel_env(self.otlp_endpoint) if self.otlp_endpoint else {}),
        }

    @property
    def passwords_file(self) -> Path:
        return self.home / "passwords.json"

    def password(self, user: str = "admin") -> str:
        return self.settings.secret(f"airflow-{user}")

    # -- processes ----------------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The standalone process's pid if it runs (checked against its command line)."""
        return pid_from_file(self.pidfile, b"standalone")

    def healthy(self) -> bool:
        try:
            health = self.request("GET", "/api/v2/monitor/health")
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return bool(health.get("scheduler", {}).get("status") == "healthy")

    def is_running(self) -> bool:
        return self.pid() is not None and self.healthy()

    def _run(self, *argv: str) -> None:
        result = subprocess.run(argv, env=self.env(), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
            raise RuntimeError(f"`{' '.join(Path(a).name for a in argv[:3])}` failed: {detail}")

    def provision(self) -> None:
        """Metadata database migrated, the clone registry migrated and our pool (``python -m
        wpclone.provision``), the logins' passwords: all idempotent."""
        self.home.mkdir(parents=True, exist_ok=True)
        passwords = {user: self.password(user) for user in USERS}
        if not self.passwords_file.exists() or json.loads(self.passwords_file.read_text()) != passwords:
            fd = os.open(self.passwords_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(passwords, handle)
        self._run(str(self.bin / "airflow"), "db", "migrate")
        self._run(sys.executable, "-m", "wpclone.provision")

    def start(self) -> None:
        """Start Airflow (provisioned first) and wait until it serves our DAGs; no-op when it runs."""
        if self.is_running():
            log.info("Airflow already running at %s", self.url)
            return
        if self.pid() is not None:
            log.warning("Airflow is not answering; restarting it")
            self.stop()
        if not LocalMariaDB(self.settings).is_running():
            raise RuntimeError(
                "MariaDB is not running; start the stack first (`python -m wpclone.local up`)."
            )
        log.info("provisioning Airflow in %s (metadata database, pool, logins)", self.home)
        self.provision()
        log.info("starting Airflow (standalone) on %s; log in %s", self.url, self.logfile)
        with open(os.devnull, "rb") as devnull, open(self.logfile, "ab") as logf:
            process = subprocess.Popen(
                [str(self.bin / "airflow"), "standalone"],
                env=self.env(),
                stdin=devnull,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches every component
                # A background job starts with SIGINT ignored, and standalone only stops cleanly on it.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
            )
        self.pidfile.write_text(f"{process.pid}\n")
        try:
            self.wait("the API server and scheduler", self.healthy, process)
            self.wait("our DAGs to be parsed", self._dags_parsed, process)
            self.unpause(*JOB_DAGS)
        except BaseException:
            self.stop()
            raise
        log.info("Airflow running at %s", self.url)

    def _dags_parsed(self) -> bool:
        found = self.request("GET", "/api/v2/dags?dag_id_pattern=wp_", token=self.token())
        return set(JOB_DAGS) <= {d["dag_id"] for d in found["dags"]}

    def unpause(self, *dag_ids: str) -> None:
        token = self.token()
        for dag_id in dag_ids:
            self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token=token)

    def wait(self, what: str, check: Callable[[], T], process: subprocess.Popen[bytes] | None = None) -> T:
        timeout = airflow_start_timeout()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if result := check():
                    return result
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                pass
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"Airflow exited with status {process.returncode}; see {self.logfile}.")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; see {self.logfile}.")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop every Airflow process (SIGINT, as standalone expects; then SIGTERM/SIGKILL to the group)."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return
        log.info("stopping Airflow (pid %s)", pid)
        with contextlib.suppress(ProcessLookupError):
            # SIGINT to standalone alone: it stops its components in order (~5 s). SIGINT to the whole
            # group leaves the scheduler waiting on its executor's workers, which ignore it.
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        kill_group(pid, 10)
        self.pidfile.unlink(missing_ok=True)
        log.info("Airflow stopped")

    # -- REST ----------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def put_connection(self, body: dict[str, Any]) -> None:
        """Create the connection ``body`` describes (``POST /api/v2/connections``), or replace its fields."""
        token = self.token()
        try:
            self.request("POST", "/api/v2/connections", body, token)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise
            self.request("PATCH", f"/api/v2/connections/{body['connection_id']}", body, token)

    def token(self, user: str = "admin") -> str:
        answer = self.request("POST", "/auth/token", {"username": user, "password": self.password(user)})
        return str(answer["access_token"])
