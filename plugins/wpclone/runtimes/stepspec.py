"""A data-plane step as the DAG builders declare it, and what it gets: one pure function of the typed plan.

A :class:`Step` names the step (``python -m wpclone.steps <step>``), its arguments (literal text, or
:class:`PlanValue` s filled in from the clone's plan), the database logins it needs by role
(:class:`DbRole`: the source's, the clone's, the fresh one a restore loads into) and the wp-content trees
(:class:`ContentRole`), each under the environment prefix or variable the step reads them from, and the run
params it gets by reference (a backup URL may carry a token).

:func:`step_spec` turns a step and a :class:`~wpclone.models.ClonePlan` into a :class:`StepSpec`: the
command line, the plain environment (logins' host, port, user and database, and for the clone's and the
restore's logins on the shared server its TLS settings, ``<prefix>_SSL_MODE`` and ``_SSL_CA/_CERT/_KEY``
as the runtime places the files (:class:`wpclone.db.DbTls`); the job and clone ids; the
link roots, fetch policy and retention where the step reads them), and what only a runtime can hand over:
each login's password, each tree's location, the backups, the params. Every name comes from the plan and
wpclone.models (``restore_db_name``), never rebuilt elsewhere. Both runtimes render the same spec: the
local one as a process environment with password *files* and directories
(:meth:`wpclone.runtimes.local.LocalRuntime.step_env`), the kubernetes one as the pod's env with
``secretKeyRef`` s, claims and mounts (wpclone.k8s.pod), when the task runs.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from wpclone.db import DbTls
from wpclone.fetch import FetchPolicy
from wpclone.models import BackupConfig, ClonePlan, restore_db_name
from wpclone.steps.backup import BACKUP_STEP, FETCH_POLICY_ENV, RESTORE_STEP, retention_env
from wpclone.steps.common import CLONE_ID_ENV, JOB_ID_ENV
from wpclone.steps.content_tree import LINK_ROOTS_ENV

STEP_COMMAND = ("python", "-m", "wpclone.steps")

STEP_RE = re.compile(r"[a-z][a-z0-9-]{0,40}")
ENV_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]{0,100}")
PARAM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,100}")


class DbRole(StrEnum):
    """Whose database login a step gets."""

    SOURCE = "source"  # the live source site's, with the source's own login
    CLONE = "clone"  # the clone's database and its login
    RESTORE = "restore"  # the fresh database a restore loads into (restore_db_name) and its login


class ContentRole(StrEnum):
    """Whose wp-content tree a step gets."""

    SOURCE = "source"  # the source's (read only)
    CLONE = "clone"  # the clone's live tree (a restore stages beside it)


class BackupAccess(StrEnum):
    """What a step does with the backup directory (the backups claim on kubernetes)."""

    READ = "read"  # restore-backup: may read file:// backups there
    WRITE = "write"  # backup-clone: writes and prunes the clone's backups there


class PlanValue(StrEnum):
    """A value of the clone's plan in a step's command line, filled in when the task runs."""

    CLONE_ID = "clone_id"
    CLONE_URL = "clone_url"
    SOURCE_URL = "source_url"
    COPY_MODE = "copy_mode"
    TABLE_PREFIX = "table_prefix"
    ALIASES = "aliases"  # the source's aliases, comma-separated

    def of(self, plan: ClonePlan) -> str:
        values = {
            PlanValue.CLONE_ID: plan.clone_id,
            PlanValue.CLONE_URL: plan.url,
            PlanValue.SOURCE_URL: plan.source.url,
            PlanValue.COPY_MODE: plan.copy_mode.value,
            PlanValue.TABLE_PREFIX: plan.source.table_prefix,
            PlanValue.ALIASES: ",".join(plan.source.aliases),
        }
        return values[self]


@dataclass(frozen=True)
class Step:
    """A data-plane step as the builders declare it; a runtime's operator runs it (wpclone.airflow.steps).

    ``db_env`` names the logins it needs by env prefix: ``{"SOURCE_DB": DbRole.SOURCE, ...}`` (the step reads
    ``<prefix>_HOST``, ``_PORT``, ``_USER``, ``_NAME`` and the password); ``content`` the trees by variable:
    ``{"SOURCE_CONTENT_DIR": ContentRole.SOURCE, ...}``; ``param_env`` variables filled from the run's
    params, never through the plan or a plain value: ``{"WPCLONE_BACKUP_URL": "source_backup_url"}``.
    """

    task_id: str
    step: str
    arguments: Sequence[str | PlanValue] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    db_env: Mapping[str, DbRole] = field(default_factory=dict)
    content: Mapping[str, ContentRole] = field(default_factory=dict)
    param_env: Mapping[str, str] = field(default_factory=dict)


def check_step(step: Step) -> None:
    """ValueError with one sentence when ``step`` could not be run (at parse time, before any task)."""
    if not STEP_RE.fullmatch(step.step):
        raise ValueError(f"step {step.step!r} is not a step name: use lower-case letters, digits and '-'.")
    for name in (*step.env, *step.db_env, *step.content, *step.param_env):
        if not ENV_NAME_RE.fullmatch(name):
            raise ValueError(f"environment variable name {name!r} is not valid: use A-Z, 0-9 and '_'.")
    for prefix, login in step.db_env.items():
        if login not in tuple(DbRole):
            raise ValueError(f"{prefix} must name 'source', 'clone' or 'restore', not {login!r}.")
    for name, tree in step.content.items():
        if tree not in tuple(ContentRole):
            raise ValueError(f"{name} must name 'source' or 'clone', not {tree!r}.")
    for param in step.param_env.values():
        if not PARAM_RE.fullmatch(param):
            raise ValueError(f"param {param!r} is not a parameter name.")


@dataclass(frozen=True)
class DbLogin:
    """A database login a step gets: everything but its password, which the runtime hands over by role."""

    role: DbRole
    host: str
    port: int
    user: str
    name: str
    tls: DbTls | None = None  # the shared server's TLS settings (clone and restore logins)


@dataclass(frozen=True)
class StepSpec:
    """What a step gets from whichever runtime runs it (see the module docstring)."""

    step: str
    argv: tuple[str, ...]  # after STEP_COMMAND: the step, then its arguments
    env: Mapping[str, str]  # plain values, set as they are
    logins: Mapping[str, DbLogin]  # env prefix -> login; the runtime sets <prefix>_PASSWORD(_FILE)
    content: Mapping[str, ContentRole]  # env var -> tree; the runtime sets where it is
    params: Mapping[str, str]  # env var -> run param; the runtime hands the value over
    backups: BackupAccess | None  # the runtime sets WPCLONE_BACKUP_DIR (and mounts it) when not None


BACKUP_ACCESS = {BACKUP_STEP: BackupAccess.WRITE, RESTORE_STEP: BackupAccess.READ}


def step_spec(
    step: Step,
    plan: ClonePlan,
    *,
    clone_server: tuple[str, int],
    default_link_roots: Sequence[str],
    fetch_policy: FetchPolicy,
    backups: BackupConfig,
    job_id: str | None = None,
    clone_tls: DbTls | None = None,
) -> StepSpec:
    """What ``step`` gets for the clone ``plan`` describes (the module docstring).

    ``clone_server`` is where the clones' databases live (host, port); ``default_link_roots`` the
    directories a link in wp-content may point into when the source sets no ``content_link_roots``;
    ``fetch_policy`` and ``backups`` are the configuration's, for the restore and backup steps; ``job_id``
    the DAG run id every log line of the step carries; ``clone_tls`` the TLS settings of the clones' server
    (the ``wpclone_mysql`` connection's, its files where the step sees them).
    """
    env: dict[str, str] = dict(step.env)
    env[CLONE_ID_ENV] = plan.clone_id
    if job_id:
        env[JOB_ID_ENV] = job_id
    logins = {
        prefix: _login(DbRole(which), plan, clone_server, clone_tls) for prefix, which in step.db_env.items()
    }
    for prefix, login in logins.items():
        env.update(
            {
                f"{prefix}_HOST": login.host,
                f"{prefix}_PORT": str(login.port),
                f"{prefix}_USER": login.user,
                f"{prefix}_NAME": login.name,
            }
        )
        if login.tls:
            env.update(login.tls.to_env(prefix))
    content = {name: ContentRole(which) for name, which in step.content.items()}
    if content:
        roots = plan.source.content_link_roots
        env[LINK_ROOTS_ENV] = json.dumps(list(default_link_roots) if roots is None else roots)
    if any(login.role is DbRole.RESTORE for login in logins.values()):
        env[FETCH_POLICY_ENV] = json.dumps(dataclasses.asdict(fetch_policy), default=str, sort_keys=True)
    if step.step == BACKUP_STEP:
        env.update(retention_env(backups))
    arguments = tuple(a.of(plan) if isinstance(a, PlanValue) else a for a in step.arguments)
    return StepSpec(
        step=step.step,
        argv=(step.step, *arguments),
        env=env,
        logins=logins,
        content=content,
        params=dict(step.param_env),
        backups=BACKUP_ACCESS.get(step.step),
    )


def _login(role: DbRole, plan: ClonePlan, clone_server: tuple[str, int], clone_tls: DbTls | None) -> DbLogin:
    if role is DbRole.SOURCE:
        source = plan.source
        return DbLogin(role, source.db_host, source.db_port, source.db_user, source.db_name)
    name = restore_db_name(plan.clone_id) if role is DbRole.RESTORE else plan.db_name
    host, port = clone_server
    return DbLogin(role, host, port, name, name, clone_tls)
