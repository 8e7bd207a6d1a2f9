"""Every ``WPCLONE_*`` setting, read in one place: its name, its default and a typed reader.

Each reader takes the environment (default ``os.environ``; an empty value counts as unset) and returns the
setting's value, or raises :class:`~wpclone.errors.ConfigError` with one sentence naming the variable.
Reading is pure (``os.environ`` only), so the DAG files may read what they need at parse time.

- The control plane: ``WPCLONE_RUNTIME`` (``local`` | ``kubernetes``, what the DAGs are built for),
  ``WPCLONE_CONFIG`` / ``WPCLONE_CONFIG_JSON`` (where the deployment configuration is, wpclone.config),
  ``WPCLONE_CONTROL_SCHEMA`` (the registry's schema), ``WPCLONE_TASK_RETRIES``,
  ``WPCLONE_SITE_READY_TIMEOUT`` and ``WPCLONE_DELETE_WAIT`` (seconds), ``WPCLONE_HEAVY_SLOTS`` (the pool of
  copy steps, ``python -m wpclone.provision``); :class:`Settings` holds what a task reads of them.
- Time limits (docs/operations.md "A stuck job"): ``WPCLONE_TASK_TIMEOUT_S`` (every task; a task that waits
  a bounded wait of its own gets that wait and a minute more), ``WPCLONE_STEP_TIMEOUT_FLOOR_S``,
  ``WPCLONE_STEP_TIMEOUT_CEILING_S`` and ``WPCLONE_STEP_MIN_MB_PER_S`` (a data-plane step's limit, sized to
  its source: wpclone.runtimes.limits), ``WPCLONE_RUN_TIMEOUT_MINUTES`` (every DAG run); :class:`TimeLimits`.
- ``WPCLONE_SAME_SERVER_COPY`` (``on``/``off``): a clone on its source's server copied on the server.
- ``WPCLONE_JOBS_RETENTION_DAYS``: how long the registry keeps an ended job's row (wp_ttl_cleanup).
- The kubernetes runtime: ``WPCLONE_K8S_<FIELD>`` and the two images (:func:`kubernetes_env`, validated by
  wpclone.k8s.settings.KubernetesSettings).
- The local stack: ``WPCLONE_STATE_DIR``, its ports and its Airflow's sizing (wpclone.local).
- The ``wpclone`` CLI: ``WPCLONE_API_URL``, ``WPCLONE_TOKEN``, ``WPCLONE_USERNAME``, ``WPCLONE_PASSWORD``.

What a runtime hands each step (``SOURCE_DB_*``, ``TARGET_DB_*``, ``*_CONTENT_DIR``, ``WPCLONE_JOB_ID``,
``WPCLONE_BACKUP_DIR``, ``WPCLONE_FETCH_POLICY``, ...) is the steps' input contract, named and read in
wpclone.steps (and the content pod's in wpclone.k8s.content), not a setting.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wpclone.db import check_identifier
from wpclone.errors import ConfigError
from wpclone.models import RuntimeKind

Env = Mapping[str, str]

REPO_ROOT = Path(__file__).resolve().parents[2]  # plugins/wpclone/settings.py -> the checkout

RUNTIME = "WPCLONE_RUNTIME"
CONFIG = "WPCLONE_CONFIG"
CONFIG_JSON = "WPCLONE_CONFIG_JSON"
CONTROL_SCHEMA = "WPCLONE_CONTROL_SCHEMA"
TASK_RETRIES = "WPCLONE_TASK_RETRIES"
SITE_READY_TIMEOUT = "WPCLONE_SITE_READY_TIMEOUT"
DELETE_WAIT = "WPCLONE_DELETE_WAIT"
HEAVY_SLOTS = "WPCLONE_HEAVY_SLOTS"
TASK_TIMEOUT = "WPCLONE_TASK_TIMEOUT_S"
STEP_TIMEOUT_FLOOR = "WPCLONE_STEP_TIMEOUT_FLOOR_S"
STEP_TIMEOUT_CEILING = "WPCLONE_STEP_TIMEOUT_CEILING_S"
STEP_MIN_MB_PER_S = "WPCLONE_STEP_MIN_MB_PER_S"
RUN_TIMEOUT = "WPCLONE_RUN_TIMEOUT_MINUTES"
SAME_SERVER_COPY = "WPCLONE_SAME_SERVER_COPY"
JOBS_RETENTION_DAYS = "WPCLONE_JOBS_RETENTION_DAYS"

K8S_PREFIX = "WPCLONE_K8S_"
K8S_OVERRIDES = {"toolbox_image": "WPCLONE_TOOLBOX_IMAGE", "wordpress_image": "WPCLONE_WORDPRESS_IMAGE"}

STATE_DIR = "WPCLONE_STATE_DIR"
STACK_PORTS = {"db": "WPCLONE_DB_PORT", "http": "WPCLONE_HTTP_PORT", "airflow": "WPCLONE_AIRFLOW_PORT"}
AIRFLOW_START_TIMEOUT = "WPCLONE_AIRFLOW_START_TIMEOUT"
KUBE_DIR = "WPCLONE_KUBE_DIR"
AIRFLOW_PARALLELISM = "WPCLONE_AIRFLOW_PARALLELISM"
AIRFLOW_PARSE_INTERVAL = "WPCLONE_AIRFLOW_PARSE_INTERVAL"
AIRFLOW_API_WORKERS = "WPCLONE_AIRFLOW_API_WORKERS"

API_URL = "WPCLONE_API_URL"
TOKEN = "WPCLONE_TOKEN"
USERNAME = "WPCLONE_USERNAME"
PASSWORD = "WPCLONE_PASSWORD"

DEFAULT_CONTROL_SCHEMA = "wpclone_control"


def _env(env: Env | None) -> Env:
    return os.environ if env is None else env


def _get(name: str, env: Env | None) -> str | None:
    value = _env(env).get(name)
    return value if value else None


def _int(name: str, default: int, env: Env | None, minimum: int) -> int:
    raw = _get(name, env)
    if raw is None:
        return default
    if not raw.strip().isdigit() or int(raw) < minimum:
        raise ConfigError(f"{name} must be a whole number of at least {minimum}, not {raw!r}.")
    return int(raw)


def _seconds(name: str, default: float, env: Env | None, unit: str = "seconds") -> float:
    raw = _get(name, env)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{name} must be a number of {unit} above 0, not {raw!r}.")
    return value


# -- the control plane -----------------------------------------------------------------------------------


def runtime_kind(env: Env | None = None) -> RuntimeKind:
    """The runtime the DAGs are built for (default local); read at parse time, as the operators follow it."""
    value = _get(RUNTIME, env) or RuntimeKind.LOCAL.value
    try:
        return RuntimeKind(value)
    except ValueError:
        raise ConfigError(f"{RUNTIME}={value!r} is not a runtime: use local or kubernetes.") from None


def config_file(env: Env | None = None) -> str | None:
    """The path of the configuration JSON file, if one is named."""
    return _get(CONFIG, env)


def config_json(env: Env | None = None) -> str | None:
    """The configuration JSON itself, if it is given inline."""
    return _get(CONFIG_JSON, env)


def control_schema(env: Env | None = None) -> str:
    """The registry's control schema (default ``wpclone_control``), validated."""
    return check_identifier(_get(CONTROL_SCHEMA, env) or DEFAULT_CONTROL_SCHEMA, CONTROL_SCHEMA)


def task_retries(env: Env | None = None) -> int:
    """Retries of every task (default 2; the tests set 0 to see a failure at once)."""
    return _int(TASK_RETRIES, 2, env, minimum=0)


def heavy_slots(env: Env | None = None) -> int:
    """Slots of the pool that bounds concurrent copy steps against the shared MySQL (default 4)."""
    return _int(HEAVY_SLOTS, 4, env, minimum=1)


def site_ready_timeout(env: Env | None = None) -> float:
    """Seconds a clone's site (or a restore's preview) gets to be deployed and answer (default 300)."""
    return _seconds(SITE_READY_TIMEOUT, 300.0, env)


def delete_wait(env: Env | None = None) -> float:
    """Seconds a delete waits for a cancelled clone job's rollback to release the clone (default 900)."""
    return _seconds(DELETE_WAIT, 900.0, env)


def jobs_retention_days(env: Env | None = None) -> int:
    """Days the registry keeps the row of a job that has ended (default 30): wp_ttl_cleanup removes older
    ones (wpclone.registry.Registry.purge_jobs)."""
    return _int(JOBS_RETENTION_DAYS, 30, env, minimum=1)


@dataclass(frozen=True)
class Settings:
    """What the control plane's tasks read of the settings, read once (wpclone.services.common.Services)."""

    site_ready_timeout: float = 300.0  # seconds
    delete_wait: float = 900.0  # seconds
    same_server_copy: bool = True

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        return cls(
            site_ready_timeout=site_ready_timeout(env),
            delete_wait=delete_wait(env),
            same_server_copy=same_server_copy(env),
        )


def same_server_copy(env: Env | None = None) -> bool:
    """Whether a clone on its source's server may be copied on the server (``WPCLONE_SAME_SERVER_COPY``:
    ``on``, the default, or ``off``: every copy takes the dump path; docs/same-server-copy.md)."""
    raw = (_get(SAME_SERVER_COPY, env) or "on").strip().lower()
    if raw not in ("on", "off"):
        raise ConfigError(f"{SAME_SERVER_COPY} must be on or off, not {raw!r}.")
    return raw == "on"


# -- time limits -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeLimits:
    """How long a task, a data-plane step and a DAG run may take (docs/operations.md "A stuck job").

    A step's limit is its source's size at ``step_mb_per_s``, kept between ``step_floor_s`` and
    ``step_ceiling_s`` (wpclone.runtimes.limits); the run's limit is a last resort above every step's, as a
    run that overruns it is failed with its rollback skipped (Airflow skips a timed-out run's teardowns).
    """

    task_s: float = 600.0
    step_floor_s: float = 600.0
    step_ceiling_s: float = 14400.0  # 4 h: a 14 GB source at 1 MB/s
    step_mb_per_s: float = 1.0
    run_minutes: int = 1440

    @classmethod
    def from_env(cls, env: Env | None = None) -> TimeLimits:
        limits = cls(
            task_s=_seconds(TASK_TIMEOUT, cls.task_s, env),
            step_floor_s=_seconds(STEP_TIMEOUT_FLOOR, cls.step_floor_s, env),
            step_ceiling_s=_seconds(STEP_TIMEOUT_CEILING, cls.step_ceiling_s, env),
            step_mb_per_s=_seconds(STEP_MIN_MB_PER_S, cls.step_mb_per_s, env, unit="MB per second"),
            run_minutes=_int(RUN_TIMEOUT, cls.run_minutes, env, minimum=1),
        )
        if limits.step_floor_s > limits.step_ceiling_s:
            raise ConfigError(
                f"{STEP_TIMEOUT_FLOOR}={limits.step_floor_s:g} is above {STEP_TIMEOUT_CEILING}="
                f"{limits.step_ceiling_s:g}: the floor of a step's time limit must not exceed its ceiling."
            )
        if limits.run_minutes * 60 <= max(limits.step_ceiling_s, limits.task_s):
            raise ConfigError(
                f"{RUN_TIMEOUT}={limits.run_minutes} is not above the limit of a task "
                f"({STEP_TIMEOUT_CEILING}={limits.step_ceiling_s:g} s, {TASK_TIMEOUT}={limits.task_s:g} s): "
                "a run that times out skips its rollback, so its limit must be the last to strike."
            )
        return limits


# -- the kubernetes runtime ------------------------------------------------------------------------------


def kubernetes_env_name(field: str) -> str:
    """The variable of a KubernetesSettings field: ``WPCLONE_K8S_<FIELD>``, or one of the two images'."""
    return K8S_OVERRIDES.get(field, K8S_PREFIX + field.upper())


def kubernetes_env(fields: Iterable[str], env: Env | None = None) -> dict[str, str]:
    """The set variables of the kubernetes runtime's ``fields``, by field (raw text; the model validates)."""
    found = {name: _get(kubernetes_env_name(name), env) for name in fields}
    return {name: value for name, value in found.items() if value is not None}


# -- the local stack -------------------------------------------------------------------------------------


def state_dir(env: Env | None = None) -> Path:
    """Where the local stack keeps everything (default ``<checkout>/.local``), absolute."""
    return Path(_get(STATE_DIR, env) or REPO_ROOT / ".local").resolve()


def stack_port(which: str, env: Env | None = None) -> int | None:
    """The port asked for the local stack's ``db``, ``http`` or ``airflow`` server; None: pick a free one."""
    name = STACK_PORTS[which]
    raw = _get(name, env)
    if raw is None:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name} must be a port number, not {raw!r}.")
    return int(raw)


def kube_dir(version: str, env: Env | None = None) -> Path:
    """Where ``scripts/kube-build.sh`` keeps the local control plane it built (``WPCLONE_KUBE_DIR``, else
    ``$XDG_CACHE_HOME`` or ``~/.cache``, then ``wpclone/kubernetes-<version>``)."""
    explicit = _get(KUBE_DIR, env)
    if explicit:
        return Path(explicit)
    cache = Path(_get("XDG_CACHE_HOME", env) or Path.home() / ".cache")
    return cache / "wpclone" / f"kubernetes-{version}"


def airflow_start_timeout(env: Env | None = None) -> float:
    """Seconds the local Airflow gets to start and serve our DAGs (default 240)."""
    return _seconds(AIRFLOW_START_TIMEOUT, 240.0, env)


@dataclass(frozen=True)
class LocalAirflowSizing:
    """The local Airflow's size: task processes, seconds between DAG parses, API server workers."""

    parallelism: int = 8
    parse_interval: int = 300
    api_workers: int = 4

    @classmethod
    def from_env(cls, env: Env | None = None) -> LocalAirflowSizing:
        return cls(
            parallelism=_int(AIRFLOW_PARALLELISM, cls.parallelism, env, minimum=1),
            parse_interval=_int(AIRFLOW_PARSE_INTERVAL, cls.parse_interval, env, minimum=0),
            api_workers=_int(AIRFLOW_API_WORKERS, cls.api_workers, env, minimum=1),
        )


# -- the CLI ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiAccess:
    """What the environment says of the jobs API: Airflow's URL and a token or a login (each may be unset)."""

    url: str | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Env | None = None) -> ApiAccess:
        url = (_get(API_URL, env) or "").strip().rstrip("/")
        return cls(
            url=url or None,
            token=(_get(TOKEN, env) or "").strip() or None,
            username=_get(USERNAME, env),
            password=_get(PASSWORD, env),
        )
