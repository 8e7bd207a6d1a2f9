"""wp_backup and wp_restore: a ready clone is locked, backed up, or restored beside what it serves.

Both take the clone's lock (``lock_clone``) and release it in their teardown (``release_clone``). A restore
loads the backup into a fresh database (``wpr_<id>``) with a login that may touch only it
(``prepare_restore``; the load is the runtime's ``restore-backup`` step), proves it a complete WordPress
site at the clone's URL (``verify_restore``), previews it (``deploy_preview``), and only then switches it
in: one atomic RENAME TABLE puts the served tables aside (``wpo_<id>``) and the restored ones in their
place, and the runtime switches wp-content (``switch_restore``). ``finish_restore`` drops what was
replaced; a failure anywhere switches back and removes everything of the restore (``rollback_restore``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from wpclone.errors import BadRequest, CloneBusy, CloneNotFound, FetchError, RegistryError, StepFailed
from wpclone.fetch import check_url
from wpclone.models import (
    ClonePlan,
    DeleteRequest,
    RestoreRequest,
    RuntimeKind,
    old_db_name,
    restore_db_name,
)
from wpclone.registry import CloneRecord
from wpclone.services.common import Services, deploy_site
from wpclone.staging import STAGING_CONSTANTS, mu_plugin_php
from wpclone.steps.copy_database import CONTENT_TABLES

log = logging.getLogger(__name__)

# The tables of a single-site WordPress (without the table prefix): a restore must bring all of them.
WORDPRESS_TABLES = ("options", "users", "usermeta", *CONTENT_TABLES)


def ready_clone(svc: Services, clone_id: str) -> CloneRecord:
    """The registry row of a ready clone no other job works on; else CloneNotFound or CloneBusy."""
    record = svc.registry.get(clone_id)
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


def plan_of_clone(svc: Services, record: CloneRecord, source_name: str | None = None) -> ClonePlan:
    """The ClonePlan of an existing clone, from its registry row and its source (found by URL, or by
    ``source_name``: a source registered as an Airflow connection, wpclone.sources)."""
    try:
        source = svc.sources.find(record.source_url, source_name or None)
    except ValueError as exc:
        raise BadRequest(f"clone {record.clone_id}'s source is no longer registered: {exc}") from exc
    return ClonePlan(
        clone_id=record.clone_id,
        source=source,
        url=record.url,
        db_name=record.db_name,
        ttl_minutes=max(0, int((record.expires_at - record.created_at).total_seconds() // 60)),
        copy_mode=record.copy_mode,
        expires_at=record.expires_at,
    )


def validate_backup(svc: Services, params: Mapping[str, Any]) -> ClonePlan:
    request = DeleteRequest(clone_id=params.get("clone_id", ""))  # the same one field: a clone id
    return plan_of_clone(svc, ready_clone(svc, request.clone_id), params.get("source"))


def check_restore_request(svc: Services, clone_id: str, source_backup_url: str) -> CloneRecord:
    """The clone's registry row; BadRequest (or ``ValidationError``) with one sentence before anything is
    created (a clone that is not ready, a URL the policy refuses: checked before any byte is fetched)."""
    request = RestoreRequest(clone_id=clone_id, source_backup_url=source_backup_url)
    record = ready_clone(svc, request.clone_id)
    runtime = svc.runtime
    policy = runtime.fetch_policy()
    try:
        if runtime.kind is RuntimeKind.KUBERNETES and request.source_backup_url.startswith("file:"):
            check_pod_file_url(request.source_backup_url, policy.file_roots)
        else:
            check_url(request.source_backup_url, policy)
    except FetchError as exc:
        raise BadRequest(str(exc)) from exc
    return record


def check_pod_file_url(url: str, roots: tuple[Path, ...]) -> None:
    """A file:// URL on kubernetes names a file on the backups claim, which only the restore step's pod
    mounts: here only its form is checked (the pod's fetch resolves it, symlinks included)."""
    parts = urlsplit(url)
    path = PurePosixPath(unquote(parts.path))
    if parts.netloc not in ("", "localhost") or not path.is_absolute() or ".." in path.parts:
        raise FetchError(f"{url} is not a plain absolute file:// path.")
    if not any(path.is_relative_to(PurePosixPath(root)) for root in roots):
        where = ", ".join(str(root) for root in roots) or "nowhere"
        raise FetchError(f"file://{path} is outside the backup directory ({where}).")


def validate_restore(
    svc: Services, clone_id: str, source_backup_url: str, source_name: str | None = None
) -> ClonePlan:
    return plan_of_clone(svc, check_restore_request(svc, clone_id, source_backup_url), source_name)


def lock_clone(svc: Services, plan: ClonePlan, job_id: str) -> None:
    try:
        svc.registry.lock(plan.clone_id, job_id)
    except RegistryError as exc:  # another job took it since validation: refuse at once
        raise BadRequest(str(exc)) from exc


def prepare_restore(svc: Services, plan: ClonePlan) -> None:
    """A fresh, empty database and a login that may touch only it, for the backup to be loaded into."""
    runtime = svc.runtime
    name = restore_db_name(plan.clone_id)
    svc.mysql.drop_database_and_user(name, name, user_host=runtime.db_user_host)  # a previous try's
    svc.mysql.create_database_and_user(
        name, name, runtime.restore_db_password(plan.clone_id), user_host=runtime.db_user_host
    )


def verify_restore(svc: Services, plan: ClonePlan) -> dict[str, Any]:
    """The loaded database is a complete WordPress site for the clone's table prefix: every core table,
    ``siteurl`` and ``home`` at the clone's URL, an administrator. StepFailed with one sentence otherwise
    (before anything of the restore is served, even as a preview)."""
    prefix = plan.source.table_prefix
    database = restore_db_name(plan.clone_id)
    mysql = svc.mysql
    have = set(mysql.tables(database))
    missing = [prefix + t for t in WORDPRESS_TABLES if prefix + t not in have]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise StepFailed(
            f"the backup is not a complete WordPress site for the table prefix {prefix}: it lacks {shown}."
        )
    urls = mysql.site_urls(database, prefix)
    posts = mysql.count_rows(database, f"{prefix}posts")
    for name in ("siteurl", "home"):
        if name not in urls:
            raise StepFailed(
                f"the backup's {prefix}options has no {name}: it is not a complete WordPress site."
            )
        if urls[name] != plan.url:
            raise StepFailed(
                f"the backup's {name} is {urls[name]!r} after the URL rewrite, not the clone's {plan.url}: "
                "its manifest names another site URL than the one its database holds."
            )
    administrator = mysql.first_administrator(database, prefix)
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


def deploy_preview(svc: Services, plan: ClonePlan) -> None:
    """Serve the restored database and wp-content as the clone's private preview, beside the live site."""
    svc.runtime.deploy_preview(plan, STAGING_CONSTANTS, mu_plugin_php(plan.clone_id, plan.expires_at))


def switch_restore(svc: Services, plan: ClonePlan) -> None:
    """Make the clone serve the restored database and wp-content; the previous ones are kept aside."""
    runtime = svc.runtime
    old = old_db_name(plan.clone_id)
    runtime.remove_preview(plan.clone_id)  # its database and wp-content become the live ones
    if not svc.mysql.swap_tables(plan.db_name, old, restore_db_name(plan.clone_id)):
        if not svc.mysql.tables(old):
            raise StepFailed("the restored database has no tables: nothing to switch to.")
        log.info("clone %s already serves the restored database (a retry)", plan.clone_id)
    runtime.switch_content(plan.clone_id, restored=True)
    deploy_site(svc, plan)  # the staging must-use plugin into the restored wp-content, the site re-registered
    log.info("clone %s now serves the restored database and content", plan.clone_id)


def finish_restore(svc: Services, plan: ClonePlan) -> None:
    """The restored site answers: drop what it replaced and the restore's own database and login."""
    _drop_restore_leftovers(svc, plan.clone_id)


def _drop_restore_leftovers(svc: Services, clone_id: str) -> None:
    """The restore's preview, databases (``wpr_``, ``wpo_``), login and staged or set-aside wp-content."""
    runtime = svc.runtime
    runtime.remove_preview(clone_id)
    name = restore_db_name(clone_id)
    svc.mysql.drop_database_and_user(name, name, user_host=runtime.db_user_host)
    svc.mysql.drop_database_and_user(old_db_name(clone_id), name, user_host=runtime.db_user_host)
    runtime.discard_restore_content(clone_id)


def rollback_restore(svc: Services, plan: ClonePlan, errors: list[str | None]) -> list[str]:
    """After a failed restore: the clone serves what it served before; nothing of the restore stays."""
    undone: list[str] = []
    old = old_db_name(plan.clone_id)
    switched = bool(svc.mysql.tables(old))
    if switched:  # put the previous tables back (the restored ones go back aside, then are dropped)
        svc.mysql.swap_tables(plan.db_name, restore_db_name(plan.clone_id), old)
        undone.append("switched the database back")
    if svc.runtime.switch_content(plan.clone_id, restored=False):
        undone.append("switched wp-content back")
    if switched:
        deploy_site(svc, plan)
    _drop_restore_leftovers(svc, plan.clone_id)
    log.info(
        "restore of clone %s rolled back (%s): %s", plan.clone_id, errors, "; ".join(undone) or "no switch"
    )
    return undone


def release_clone(
    svc: Services,
    plan: ClonePlan | None,
    job_id: str,
    errors: list[str | None],
    *,
    backup: Mapping[str, Any] | None,
    restore: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Teardown of lock_clone: undo a failed restore, release the lock (recording why the job failed) and
    return the job's result: the backup made, and for a restore what was loaded."""
    reason = next((e for e in errors if e), None)
    if plan is None:
        return {"error": reason}
    record = svc.registry.get(plan.clone_id)
    if record is None or record.lock_job_id != job_id:
        return {"clone_id": plan.clone_id, "error": reason}  # never locked by this job: nothing of ours
    if reason:
        rollback_restore(svc, plan, errors)
    svc.registry.unlock(plan.clone_id, job_id, reason)
    if reason:  # the failed task fails the run; this teardown only cleans up
        return {"clone_id": plan.clone_id, "error": reason}
    result: dict[str, Any] = {
        "clone_id": plan.clone_id,
        "url": plan.url + "/",
        "expires_at": plan.expires_at.isoformat(),
    }
    if restore is None:
        result.update(backup or {})
    else:
        result["safety_backup_url"] = (backup or {}).get("backup_url")
        result.update(restore)
    return result
