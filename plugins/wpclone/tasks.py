"""What the DAGs' tasks do, as plain functions of their inputs (the builders wire them into DAGs).

Every task is idempotent: a retry after a crash at any line converges. A task that fails records one
sentence as XCom ``error`` first, so the rollback and the registry can say why a job failed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from wpclone.db import DbEndpoint
from wpclone.errors import (
    BadRequest,
    CloneBusy,
    CloneNotFound,
    StepFailed,
    describe,
)
from wpclone.models import (
    ClonePlan,
    CloneRequest,
    DeleteRequest,
    RestoreRequest,
    RuntimeKind,
    SourceConfig,
    WpcloneConfig,
    clone_db_name,
    clone_id_from_db_name,
    generate_clone_id,
    is_clone_id,
    old_db_name,
    restore_db_name,
)
from wpclone.runtimes.base import Runtime
from wpclone.settings import delete_wait, site_ready_timeout
from wpclone.steps.copy_database import CONTENT_TABLES

log = logging.getLogger(__name__)

MYSQL_CONN_ID = "wpclone_mysql"  # the shared MySQL server: admin login, also home of the registry
HEAVY_POOL = "wpclone_heavy"  # bounds concurrent copies against the shared MySQL
SITE_READY_POLL_S = 1.0
ERROR_KEY = "error"

F = TypeVar("F", bound=Callable[..., Any])


def push_error(ti: Any, sentence: str) -> None:
    ti.xcom_push(key=ERROR_KEY, value=sentence)


def records_error(func: F) -> F:
    """Push the failure's sentence as XCom ``error`` before failing; bad input fails without retries."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            from airflow.sdk import get_current_context
            from airflow.sdk.exceptions import AirflowFailException

            sentence = describe(exc)
            push_error(get_current_context()["ti"], sentence)
            if isinstance(exc, (BadRequest, ValidationError)):
                raise AirflowFailException(sentence) from exc
            raise

    return cast(F, wrapper)


# -- connections and runtime ----------------------------------------------------------------------------


def admin_endpoint() -> DbEndpoint:
    """The shared MySQL server's admin login, from Airflow's connection ``wpclone_mysql``."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(MYSQL_CONN_ID)
    return DbEndpoint(conn.host or "127.0.0.1", int(conn.port or 3306), conn.login or "", conn.password or "")


def registry(pooled: bool = False) -> Any:
    """The clone registry on the shared server, through Airflow's MySQL connection (MySqlHook); with
    ``pooled``, over connections kept open between calls (for a long-lived process: the API server)."""
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    from wpclone.db import ConnectionPool
    from wpclone.registry import Registry
    from wpclone.settings import control_schema

    hook = MySqlHook(mysql_conn_id=MYSQL_CONN_ID)
    reg = Registry(ConnectionPool(hook.get_conn) if pooled else hook.get_conn, control_schema())
    reg.migrate()
    return reg


def get_runtime(config: WpcloneConfig) -> Runtime:
    from wpclone.runtimes import runtime_for

    return runtime_for(config)


def _plan(value: Mapping[str, Any]) -> ClonePlan:
    return ClonePlan.model_validate(value)


def database_exists(admin: DbEndpoint, name: str) -> bool:
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))
        return cur.fetchone() is not None


# -- wp_clone ---------------------------------------------------------------------------------------------


def check_clone_request(
    params: Mapping[str, Any], reg: Any = None, job_id: str | None = None
) -> tuple[CloneRequest, SourceConfig, str, Runtime]:
    """The request, its source, its clone id (generated if not given) and the runtime; ``BadRequest`` (or
    ``ValidationError``) with one sentence when the request cannot be carried out. Creates nothing: the
    jobs API runs it before accepting, the job's first task again (as ``job_id``: the clone row the API
    accepted for that job is its own, not a clone that exists)."""
    from wpclone.config import load_config

    known = {"source_url", "ttl_minutes", "clone_id", "copy_mode"}
    request = CloneRequest(**{k: v for k, v in params.items() if k in known})
    config = load_config()
    try:
        source = config.source_for(request.source_url)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    runtime = get_runtime(config)
    clone_id = request.clone_id or generate_clone_id(source)
    reg = reg or registry()
    db_name = clone_db_name(clone_id)
    existing, db_exists = reg.get_with_database(clone_id, db_name)  # the registry is on the clones' server
    # The row the jobs API accepted for this very job (or gave back when an earlier try of it failed).
    ours = existing is not None and job_id is not None and existing.last_job_id == job_id
    if existing is not None and existing.status not in ("deleted", *(("accepted", "failed") if ours else ())):
        raise CloneBusy(
            f"clone {clone_id} already exists (status {existing.status}); "
            "choose another clone id or delete it first."
        )
    if db_exists:
        raise BadRequest(f"database {db_name} already exists on the server; choose another clone id.")
    if runtime.clone_exists(clone_id):
        raise BadRequest(f"a site or content named {clone_id} already exists; choose another clone id.")
    try:
        runtime.check_clone_names(clone_id)  # names the configuration uses, objects that are not ours
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return request, source, clone_id, runtime


def clone_plan(
    request: CloneRequest, source: SourceConfig, clone_id: str, runtime: Runtime, start: datetime
) -> ClonePlan:
    """What a checked clone request will create, its expiry counted from ``start``."""
    return ClonePlan(
        clone_id=clone_id,
        source=source,
        url=runtime.clone_url(clone_id),
        db_name=clone_db_name(clone_id),
        ttl_minutes=request.ttl_minutes,
        copy_mode=request.copy_mode,
        expires_at=start.astimezone(UTC) + timedelta(minutes=request.ttl_minutes),
    )


def validate_request(
    params: Mapping[str, Any], run_after: datetime, job_id: str | None = None
) -> dict[str, Any]:
    """Check the request against the models, the configuration and what exists; return the clone plan.

    A refusal gives back the clone id the jobs API accepted for this job (its row: ``failed`` with the
    reason; a retry of this task may take it again): nothing after this task runs to do it."""
    try:
        request, source, clone_id, runtime = check_clone_request(params, job_id=job_id)
    except Exception as exc:
        requested = params.get("clone_id")
        if job_id and isinstance(requested, str) and is_clone_id(requested):
            registry().mark_failed(requested, job_id, describe(exc))  # a no-op unless this job holds it
        raise
    plan = clone_plan(request, source, clone_id, runtime, run_after)
    log.info("plan: clone %s of %s at %s, expires %s", clone_id, source.url, plan.url, plan.expires_at)
    return plan.model_dump(mode="json")


def reserve_clone(plan: Mapping[str, Any], job_id: str) -> None:
    from wpclone.errors import CloneTaken

    try:
        registry().reserve(_plan(plan), job_id)
    except CloneTaken as exc:  # two requests raced for one id: this one lost, at once and without retries
        raise BadRequest(str(exc)) from exc


def create_database(plan: Mapping[str, Any]) -> None:
    from wpclone.config import load_config
    from wpclone.mysql_admin import create_database_and_user

    p = _plan(plan)
    runtime = get_runtime(load_config())
    secrets = runtime.prepare_clone(p)
    create_database_and_user(
        admin_endpoint(), p.db_name, p.db_name, secrets.db_password, user_host=runtime.db_user_host
    )


def deploy_site(plan: Mapping[str, Any]) -> None:
    from wpclone.config import load_config
    from wpclone.staging import STAGING_CONSTANTS, mu_plugin_php

    p = _plan(plan)
    get_runtime(load_config()).deploy_site(p, STAGING_CONSTANTS, mu_plugin_php(p.clone_id, p.expires_at))


def await_site_ready(plan: Mapping[str, Any], timeout: float | None = None, *, preview: bool = False) -> None:
    """Until the clone's site (or its restore preview) is deployed and serves a right WordPress site (front
    page and login form: wpclone.readiness); StepFailed with what it saw otherwise."""
    from wpclone.config import load_config
    from wpclone.errors import SiteNotReady
    from wpclone.readiness import await_ready

    timeout = timeout or site_ready_timeout()
    p = _plan(plan)
    runtime = get_runtime(load_config())
    what = "the restored site's preview" if preview else "the clone's site"
    deadline = time.monotonic() + timeout
    while not runtime.site_ready(p, preview=preview):
        if time.monotonic() > deadline:
            raise StepFailed(f"{what} at {p.url}/ was not deployed within {timeout:.0f} s.")
        time.sleep(SITE_READY_POLL_S)
    try:
        await_ready(
            runtime.page_fetcher(p, preview=preview),
            p.url,
            timeout=max(1.0, deadline - time.monotonic()),
            poll=SITE_READY_POLL_S,
            errors=runtime.site_errors(p),
            what=what,
        )
    except SiteNotReady as exc:
        raise StepFailed(str(exc)) from exc
    log.info("%s answers at %s/ with its front page and login form", what, p.url)


def _first_administrator(admin: DbEndpoint, database: str, prefix: str) -> str | None:
    with admin.with_database(database).connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT u.user_login FROM `{prefix}users` u JOIN `{prefix}usermeta` m ON m.user_id = u.ID "
            f"WHERE m.meta_key = %s AND m.meta_value LIKE %s ORDER BY u.ID LIMIT 1",
            (f"{prefix}capabilities", '%"administrator"%'),
        )
        row = cur.fetchone()
    return str(row[0]) if row else None


def apply_staging_safety(plan: Mapping[str, Any], *, restored: bool = False) -> str:
    """No indexing, no mail, no visitor cron, a fresh admin password; returns the admin login. With
    ``restored``, on the database a restore loaded (before it is previewed and switched in)."""
    from wpclone.config import load_config
    from wpclone.staging import apply_staging_sql

    p = _plan(plan)
    runtime = get_runtime(load_config())
    admin = admin_endpoint()
    database = restore_db_name(p.clone_id) if restored else p.db_name
    admin_user = _first_administrator(admin, database, p.source.table_prefix)
    if admin_user is None:
        raise StepFailed(f"the database {database} has no administrator in {p.source.table_prefix}users.")
    secrets = runtime.prepare_clone(p)  # reads back the secrets made by create_database
    apply_staging_sql(
        admin.with_database(database).connect,
        database,
        p.source.table_prefix,
        admin_user,
        secrets.admin_password,
    )
    return admin_user


def finalize_clone(
    plan: Mapping[str, Any],
    job_id: str,
    admin_user: str,
    copied: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None),
) -> dict[str, Any]:
    """Mark the clone ready; the job's result: where it is, how to log in, when it goes, and what was
    copied (``copied``: the copy-database and copy-content steps' results)."""
    from wpclone.config import load_config
    from wpclone.summary import copy_summary

    p = _plan(plan)
    runtime = get_runtime(load_config())
    registry().mark_ready(p.clone_id, job_id)
    return {
        "clone_id": p.clone_id,
        "url": p.url + "/",
        "source_url": p.source.url,
        "admin_url": p.url + "/wp-admin/",
        "admin_user": admin_user,
        "admin_password": runtime.secret_location(p.clone_id, "admin-password"),
        "expires_at": p.expires_at.isoformat(),
        "copy_mode": p.copy_mode.value,
        "copied": copy_summary(*copied),
    }


def rollback_clone(plan: Mapping[str, Any] | None, job_id: str, errors: list[str | None]) -> dict[str, Any]:
    """Remove everything this job created and record why it failed; touch nothing it did not create."""
    reason = next((e for e in errors if e), "the job failed (no step reported a reason).")
    if not plan:
        log.info("nothing to roll back: the request was refused before anything was created (%s)", reason)
        return {"rolled_back": False, "error": reason}
    from wpclone.config import load_config

    p = _plan(plan)
    reg = registry()
    record = reg.get(p.clone_id)
    if record is None or record.lock_job_id != job_id:
        log.info("clone %s was not reserved by this job; nothing of it is ours to remove", p.clone_id)
        return {"rolled_back": False, "error": reason}
    removed = _remove_clone(get_runtime(load_config()), p.clone_id, p.db_name)
    reg.mark_failed(p.clone_id, job_id, reason)
    log.info("rolled back clone %s (%s): %s", p.clone_id, reason, "; ".join(removed) or "nothing existed yet")
    return {"rolled_back": True, "removed": removed, "error": reason}


def _remove_clone(runtime: Runtime, clone_id: str, db_name: str) -> list[str]:
    from wpclone.mysql_admin import drop_database_and_user

    removed = runtime.delete_clone_objects(clone_id)
    admin = admin_endpoint()
    if database_exists(admin, db_name):
        removed.append(f"database {db_name}")
    drop_database_and_user(admin, db_name, db_name, user_host=runtime.db_user_host)
    return removed


# -- wp_delete and wp_ttl_cleanup --------------------------------------------------------------------------


def validate_delete(params: Mapping[str, Any], timeout: float | None = None) -> list[str]:
    """The clone to delete. A clone still being made (its job cancelled by the jobs API's delete) is waited
    for until that job's rollback has released it."""
    request = DeleteRequest(clone_id=params.get("clone_id", ""))
    reg = registry()
    record = reg.get(request.clone_id)
    deadline = time.monotonic() + (timeout or delete_wait())
    while record is not None and record.lock_job_id and record.status in ("accepted", "provisioning"):
        if time.monotonic() > deadline:
            raise StepFailed(
                f"clone {request.clone_id} is still being made by job {record.lock_job_id}; "
                "cancel that job, then delete the clone."
            )
        log.info(
            "clone %s is being made by job %s: waiting for it to end", record.clone_id, record.lock_job_id
        )
        time.sleep(SITE_READY_POLL_S)
        record = reg.get(request.clone_id)
    if record is None:
        raise BadRequest(f"clone {request.clone_id} does not exist.")
    if record.status == "deleted":  # deleting again converges: nothing left to do
        log.info(
            "clone %s was already deleted (by job %s); nothing to do", request.clone_id, record.last_job_id
        )
        return []
    return [request.clone_id]


def begin_delete(clone_id: str, job_id: str) -> None:
    registry().begin_delete(clone_id, job_id)


def delete_site(clone_id: str) -> list[str]:
    from wpclone.config import load_config

    return get_runtime(load_config()).delete_clone_objects(clone_id)


def drop_database(clone_id: str) -> None:
    from wpclone.config import load_config
    from wpclone.mysql_admin import drop_database_and_user

    runtime = get_runtime(load_config())
    name = clone_db_name(clone_id)
    drop_database_and_user(admin_endpoint(), name, name, user_host=runtime.db_user_host)


def mark_deleted(clone_id: str, job_id: str) -> str:
    registry().mark_deleted(clone_id, job_id)
    return clone_id


def record_delete_failure(clone_ids: list[str], job_id: str, errors: list[str]) -> None:
    """Mark clones whose deletion by this job failed as ``failed`` (lock released), then fail with why."""
    reason = errors[0] if errors else "the deletion failed (no step reported a reason)."
    reg = registry()
    for clone_id in clone_ids:
        record = reg.get(clone_id)
        if record is not None and record.status == "deleting" and record.lock_job_id == job_id:
            reg.mark_failed(clone_id, job_id, f"deletion failed: {reason}")
    raise StepFailed(reason)


def find_expired(now: datetime) -> list[str]:
    expired: list[str] = registry().expired(now)
    log.info("%d expired clone(s): %s", len(expired), ", ".join(expired) or "none")
    return expired


def sweep_orphans() -> list[str]:
    """Delete databases, users and runtime objects that carry our prefix or labels but no live clone."""
    from wpclone.config import load_config

    runtime = get_runtime(load_config())
    admin = admin_endpoint()
    # Objects first, live clones second: a clone reserved in between counts as live, never as an orphan.
    found = runtime.list_clone_ids()
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'wpc\\_%'")
        found |= {cid for (name,) in cur.fetchall() if (cid := clone_id_from_db_name(str(name)))}
        cur.execute("SELECT user FROM mysql.user WHERE user LIKE 'wpc\\_%'")
        found |= {cid for (name,) in cur.fetchall() if (cid := clone_id_from_db_name(str(name)))}
        # A restore's own databases (and login), left by a restore whose teardown never ran.
        cur.execute(
            "SELECT schema_name FROM information_schema.schemata "
            "WHERE schema_name LIKE 'wpr\\_%' OR schema_name LIKE 'wpo\\_%'"
        )
        restore_dbs = [str(name) for (name,) in cur.fetchall()]
    reg = registry()
    orphans = sorted(found - reg.live_clone_ids())
    for clone_id in orphans:
        removed = _remove_clone(runtime, clone_id, clone_db_name(clone_id))
        log.info("removed orphan %s: %s", clone_id, "; ".join(removed) or "its database user")
    return orphans + _sweep_restore_databases(admin, runtime, reg, restore_dbs)


def _sweep_restore_databases(admin: DbEndpoint, runtime: Runtime, reg: Any, names: list[str]) -> list[str]:
    """Drop ``wpr_``/``wpo_`` databases of clones no job holds: a job restoring a clone holds its lock."""
    from wpclone.mysql_admin import drop_database_and_user

    swept = []
    for name in names:
        clone_id = clone_id_from_db_name("wpc_" + name[4:])
        record = reg.get(clone_id) if clone_id else None
        if clone_id is None or (record is not None and record.lock_job_id):
            continue
        drop_database_and_user(admin, name, restore_db_name(clone_id), user_host=runtime.db_user_host)
        log.info("removed database %s left by a restore of %s", name, clone_id)
        swept.append(name)
    return swept


def report_cleanup(expired: list[str], orphans: list[str] | None) -> dict[str, Any]:
    """What the cleanup did, from the registry: which expired clones are now deleted, which are not."""
    reg = registry()
    records = {clone_id: reg.get(clone_id) for clone_id in expired}
    deleted = sorted(c for c, r in records.items() if r is not None and r.status == "deleted")
    summary: dict[str, Any] = {"expired_deleted": deleted, "orphans_removed": orphans or []}
    if failed := sorted(set(expired) - set(deleted)):
        summary["expired_not_deleted"] = failed
    log.info("ttl cleanup: %s", summary)
    return summary


# -- wp_backup and wp_restore ------------------------------------------------------------------------------


def ready_clone(clone_id: str, reg: Any = None) -> Any:
    """The registry row of a ready clone no other job works on; else CloneNotFound or CloneBusy."""
    record = (reg or registry()).get(clone_id)
    if record is None or record.status == "deleted":
        raise CloneNotFound(f"clone {clone_id} does not exist.")
    if record.lock_job_id:
        raise CloneBusy(
            f"clone {clone_id} is being worked on by job {record.lock_job_id}; try again when it finishes."
        )
    if record.status != "ready":
        raise CloneBusy(
            f"clone {clone_id} is {record.status}; only a ready clone can be backed up or restored."
        )
    return record


def plan_of_clone(record: Any, config: WpcloneConfig) -> dict[str, Any]:
    """The ClonePlan of an existing clone, from its registry row and the configuration."""
    try:
        source = config.source_for(record.source_url)
    except ValueError as exc:
        raise BadRequest(f"clone {record.clone_id}'s source is no longer registered: {exc}") from exc
    plan = ClonePlan(
        clone_id=record.clone_id,
        source=source,
        url=record.url,
        db_name=record.db_name,
        ttl_minutes=max(0, int((record.expires_at - record.created_at).total_seconds() // 60)),
        copy_mode=record.copy_mode,
        expires_at=record.expires_at,
    )
    return plan.model_dump(mode="json")


def fetch_policy(runtime: Runtime) -> Any:
    """The URL policy a restore fetches its archive under (wpclone.fetch): the configuration's, widened
    by the runtime (the local one may read its backup directory and the machine's own addresses, which
    its sites serve over plain http)."""
    from wpclone.fetch import FetchPolicy

    backups = runtime.config.backups
    file_roots, allow_private = runtime.fetch_policy_overrides()
    schemes = tuple(dict.fromkeys([*backups.schemes, *(["http"] if allow_private else [])]))
    return FetchPolicy(
        schemes=schemes,
        allowed_hosts=tuple(backups.allowed_hosts),
        allowed_networks=tuple(backups.allowed_networks),
        max_bytes=backups.max_bytes,
        file_roots=file_roots,
        allow_private=allow_private,
    )


def validate_backup(params: Mapping[str, Any]) -> dict[str, Any]:
    from wpclone.config import load_config

    request = DeleteRequest(clone_id=params.get("clone_id", ""))  # the same one field: a clone id
    return plan_of_clone(ready_clone(request.clone_id), load_config())


def check_restore_request(params: Mapping[str, Any], reg: Any = None) -> tuple[RestoreRequest, Any]:
    """The request and the clone's registry row; BadRequest with one sentence before anything is created
    (a clone that is not ready, a URL the policy refuses: checked before any byte is fetched)."""
    from wpclone.config import load_config
    from wpclone.errors import FetchError
    from wpclone.fetch import check_url
    from wpclone.runparams import resolve

    request = RestoreRequest(
        clone_id=params.get("clone_id", ""), source_backup_url=resolve(params, "source_backup_url")
    )
    record = ready_clone(request.clone_id, reg)
    runtime = get_runtime(load_config())
    policy = fetch_policy(runtime)
    try:
        if runtime.kind is RuntimeKind.KUBERNETES and request.source_backup_url.startswith("file:"):
            _check_pod_file_url(request.source_backup_url, policy.file_roots)
        else:
            check_url(request.source_backup_url, policy)
    except FetchError as exc:
        raise BadRequest(str(exc)) from exc
    return request, record


def _check_pod_file_url(url: str, roots: tuple[Path, ...]) -> None:
    """A file:// URL on kubernetes names a file on the backups claim, which only the restore step's pod
    mounts: here only its form is checked (the pod's fetch resolves it, symlinks included)."""
    from urllib.parse import unquote, urlsplit

    from wpclone.errors import FetchError

    parts = urlsplit(url)
    path = PurePosixPath(unquote(parts.path))
    if parts.netloc not in ("", "localhost") or not path.is_absolute() or ".." in path.parts:
        raise FetchError(f"{url} is not a plain absolute file:// path.")
    if not any(path.is_relative_to(PurePosixPath(root)) for root in roots):
        where = ", ".join(str(root) for root in roots) or "nowhere"
        raise FetchError(f"file://{path} is outside the backup directory ({where}).")


def validate_restore(params: Mapping[str, Any]) -> dict[str, Any]:
    from wpclone.config import load_config

    _, record = check_restore_request(params)
    return plan_of_clone(record, load_config())


def lock_clone(plan: Mapping[str, Any], job_id: str) -> None:
    from wpclone.errors import RegistryError

    try:
        registry().lock(_plan(plan).clone_id, job_id)
    except RegistryError as exc:  # another job took it since validation: refuse at once
        raise BadRequest(str(exc)) from exc


def prepare_restore(plan: Mapping[str, Any]) -> None:
    """A fresh, empty database and a login that may touch only it, for the backup to be loaded into."""
    from wpclone.config import load_config
    from wpclone.mysql_admin import create_database_and_user, drop_database_and_user

    p = _plan(plan)
    runtime = get_runtime(load_config())
    name = restore_db_name(p.clone_id)
    admin = admin_endpoint()
    drop_database_and_user(admin, name, name, user_host=runtime.db_user_host)  # a previous try's
    create_database_and_user(
        admin, name, name, runtime.restore_db_password(p.clone_id), user_host=runtime.db_user_host
    )


# The tables of a single-site WordPress (without the table prefix): a restore must bring all of them.
WORDPRESS_TABLES = ("options", "users", "usermeta", *CONTENT_TABLES)


def verify_restore(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The loaded database is a complete WordPress site for the clone's table prefix: every core table,
    ``siteurl`` and ``home`` at the clone's URL, an administrator. StepFailed with one sentence otherwise
    (before anything of the restore is served, even as a preview)."""
    p = _plan(plan)
    prefix = p.source.table_prefix
    database = restore_db_name(p.clone_id)
    admin = admin_endpoint()
    with admin.connect() as conn, conn.cursor() as cur:
        have = set(_tables(cur, database))
    missing = [prefix + t for t in WORDPRESS_TABLES if prefix + t not in have]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise StepFailed(
            f"the backup is not a complete WordPress site for the table prefix {prefix}: it lacks {shown}."
        )
    with admin.with_database(database).connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT option_name, option_value FROM `{prefix}options` "
            "WHERE option_name IN ('siteurl', 'home')"
        )
        urls = {str(name): str(value).rstrip("/") for name, value in cur.fetchall()}
        cur.execute(f"SELECT COUNT(*) FROM `{prefix}posts`")
        posts = int(cur.fetchone()[0])
    for name in ("siteurl", "home"):
        if name not in urls:
            raise StepFailed(
                f"the backup's {prefix}options has no {name}: it is not a complete WordPress site."
            )
        if urls[name] != p.url:
            raise StepFailed(
                f"the backup's {name} is {urls[name]!r} after the URL rewrite, not the clone's {p.url}: "
                "its manifest names another site URL than the one its database holds."
            )
    administrator = _first_administrator(admin, database, prefix)
    if administrator is None:
        raise StepFailed(f"the backup has no administrator in {prefix}users, so nobody could log in to it.")
    log.info(
        "restored database %s: %d tables, %d posts, administrator %s",
        database,
        len(have),
        posts,
        administrator,
    )
    return {"tables": len(have), "posts": posts, "administrator": administrator}


def deploy_preview(plan: Mapping[str, Any]) -> None:
    """Serve the restored database and wp-content as the clone's private preview, beside the live site."""
    from wpclone.config import load_config
    from wpclone.staging import STAGING_CONSTANTS, mu_plugin_php

    p = _plan(plan)
    get_runtime(load_config()).deploy_preview(p, STAGING_CONSTANTS, mu_plugin_php(p.clone_id, p.expires_at))


def _tables(cur: Any, database: str) -> list[str]:
    cur.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY table_name",
        (database,),
    )
    return [str(row[0]) for row in cur.fetchall()]


def _swap_tables(admin: DbEndpoint, live: str, out: str, into_live: str) -> bool:
    """In one atomic RENAME TABLE: every table of ``live`` to ``out`` and every table of ``into_live`` to
    ``live``. Returns False (and does nothing) when ``into_live`` has no tables."""
    from wpclone.db import quote_identifier as q

    with admin.connect() as conn, conn.cursor() as cur:
        incoming = _tables(cur, into_live)
        if not incoming:
            return False
        cur.execute(
            f"CREATE DATABASE IF NOT EXISTS {q(out)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
        renames = [f"{q(live)}.{q(t)} TO {q(out)}.{q(t)}" for t in _tables(cur, live)]
        renames += [f"{q(into_live)}.{q(t)} TO {q(live)}.{q(t)}" for t in incoming]
        cur.execute("RENAME TABLE " + ", ".join(renames))
    return True


def switch_restore(plan: Mapping[str, Any]) -> None:
    """Make the clone serve the restored database and wp-content; the previous ones are kept aside."""
    from wpclone.config import load_config

    p = _plan(plan)
    runtime = get_runtime(load_config())
    admin = admin_endpoint()
    runtime.remove_preview(p.clone_id)  # its database and wp-content become the live ones
    if not _swap_tables(admin, p.db_name, old_db_name(p.clone_id), restore_db_name(p.clone_id)):
        with admin.connect() as conn, conn.cursor() as cur:
            if not _tables(cur, old_db_name(p.clone_id)):
                raise StepFailed("the restored database has no tables: nothing to switch to.")
        log.info("clone %s already serves the restored database (a retry)", p.clone_id)
    runtime.switch_content(p.clone_id, restored=True)
    deploy_site(plan)  # the staging must-use plugin into the restored wp-content, the site re-registered
    log.info("clone %s now serves the restored database and content", p.clone_id)


def finish_restore(plan: Mapping[str, Any]) -> None:
    """The restored site answers: drop what it replaced and the restore's own database and login."""
    from wpclone.config import load_config

    p = _plan(plan)
    _drop_restore_leftovers(admin_endpoint(), get_runtime(load_config()), p.clone_id)


def _drop_restore_leftovers(admin: DbEndpoint, runtime: Runtime, clone_id: str) -> None:
    """The restore's preview, databases (``wpr_``, ``wpo_``), login and staged or set-aside wp-content."""
    from wpclone.mysql_admin import drop_database_and_user

    runtime.remove_preview(clone_id)
    name = restore_db_name(clone_id)
    drop_database_and_user(admin, name, name, user_host=runtime.db_user_host)
    drop_database_and_user(admin, old_db_name(clone_id), name, user_host=runtime.db_user_host)
    runtime.discard_restore_content(clone_id)


def rollback_restore(plan: Mapping[str, Any], errors: list[str | None]) -> list[str]:
    """After a failed restore: the clone serves what it served before; nothing of the restore stays."""
    from wpclone.config import load_config

    p = _plan(plan)
    runtime = get_runtime(load_config())
    admin = admin_endpoint()
    undone: list[str] = []
    old = old_db_name(p.clone_id)
    with admin.connect() as conn, conn.cursor() as cur:
        switched = bool(_tables(cur, old))
    if switched:  # put the previous tables back (the restored ones go back aside, then are dropped)
        _swap_tables(admin, p.db_name, restore_db_name(p.clone_id), old)
        undone.append("switched the database back")
    if runtime.switch_content(p.clone_id, restored=False):
        undone.append("switched wp-content back")
    if switched:
        deploy_site(plan)
    _drop_restore_leftovers(admin, runtime, p.clone_id)
    log.info("restore of clone %s rolled back (%s): %s", p.clone_id, errors, "; ".join(undone) or "no switch")
    return undone


def release_clone(
    plan: Mapping[str, Any] | None,
    job_id: str,
    errors: list[str | None],
    *,
    backup: Mapping[str, Any] | None,
    restore: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Teardown of lock_clone: undo a failed restore, release the lock (recording why the job failed) and
    return the job's result: the backup made, and for a restore what was loaded."""
    reason = next((e for e in errors if e), None)
    if not plan:
        return {"error": reason}
    p = _plan(plan)
    record = registry().get(p.clone_id)
    if record is None or record.lock_job_id != job_id:
        return {"clone_id": p.clone_id, "error": reason}  # never locked by this job: nothing of ours
    if reason:
        rollback_restore(plan, errors)
    registry().unlock(p.clone_id, job_id, reason)
    if reason:  # the failed task fails the run; this teardown only cleans up
        return {"clone_id": p.clone_id, "error": reason}
    result: dict[str, Any] = {"clone_id": p.clone_id, "url": p.url + "/"}
    if restore is None:
        result.update(backup or {})
    else:
        result["safety_backup_url"] = (backup or {}).get("backup_url")
        result.update(restore)
    return result
