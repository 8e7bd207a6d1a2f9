"""wp_ttl_cleanup's own tasks: which clones expired, the orphan sweep, the jobs' retention, and the report.

The expired clones are deleted by wp_delete's task group (wpclone.services.delete) mapped over them;
the sweep removes databases, database users and runtime objects that carry our prefix or labels but
belong to no live clone (the registry's ``live_clone_ids``), and a restore's databases no job holds. The
registry's rows of accepted jobs are kept ``WPCLONE_JOBS_RETENTION_DAYS`` once their job has ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from wpclone.models import (
    CLONE_DB_PREFIX,
    OLD_DB_PREFIX,
    RESTORE_DB_PREFIX,
    clone_db_name,
    clone_id_from_db_name,
    restore_db_name,
)
from wpclone.registry import JobRecord
from wpclone.services.common import Services, remove_clone

log = logging.getLogger(__name__)


def find_expired(svc: Services, now: datetime) -> list[str]:
    expired: list[str] = svc.registry.expired(now)
    log.info("%d expired clone(s): %s", len(expired), ", ".join(expired) or "none")
    return expired


def sweep_orphans(svc: Services) -> list[str]:
    """Delete databases, users and runtime objects that carry our prefix or labels but no live clone; a
    restore's databases (``wpr_``, ``wpo_``) of clones no job holds. Returns what was removed: clone ids,
    then the restore databases by name."""
    # Objects first, live clones second: a clone reserved in between counts as live, never as an orphan.
    found = svc.runtime.list_clone_ids()
    names = [*svc.mysql.databases([CLONE_DB_PREFIX]), *svc.mysql.users(CLONE_DB_PREFIX)]
    found |= {clone_id for name in names if (clone_id := clone_id_from_db_name(name))}
    # A restore's own databases (and login), left by a restore whose teardown never ran.
    restore_dbs = svc.mysql.databases([RESTORE_DB_PREFIX, OLD_DB_PREFIX])
    orphans = sorted(found - svc.registry.live_clone_ids())
    for clone_id in orphans:
        removed = remove_clone(svc, clone_id, clone_db_name(clone_id))
        log.info("removed orphan %s: %s", clone_id, "; ".join(removed) or "its database user")
    return orphans + _sweep_restore_databases(svc, restore_dbs)


def _sweep_restore_databases(svc: Services, names: list[str]) -> list[str]:
    """Drop ``wpr_``/``wpo_`` databases of clones no job holds: a job restoring a clone holds its lock."""
    swept = []
    for name in names:
        clone_id = clone_id_from_db_name(CLONE_DB_PREFIX + name[len(RESTORE_DB_PREFIX) :])
        record = svc.registry.get(clone_id) if clone_id else None
        if clone_id is None or (record is not None and record.lock_job_id):
            continue
        svc.mysql.drop_database_and_user(name, restore_db_name(clone_id), user_host=svc.runtime.db_user_host)
        log.info("removed database %s left by a restore of %s", name, clone_id)
        swept.append(name)
    return swept


def purge_jobs(
    svc: Services, now: datetime, days: int, run_has_ended: Callable[[JobRecord], bool]
) -> list[str]:
    """Remove the registry's rows of jobs accepted more than ``days`` before ``now`` that have ended
    (``run_has_ended`` reads Airflow for a job whose run was created); returns their ids."""
    purged = svc.registry.purge_jobs(now - timedelta(days=days), run_has_ended)
    log.info("%d job row(s) older than %d days removed", len(purged), days)
    return purged


def report_cleanup(
    svc: Services, expired: list[str], orphans: list[str] | None, jobs_purged: list[str] | None = None
) -> dict[str, Any]:
    """What the cleanup did, from the registry: which expired clones are now deleted, which are not; how
    many old job rows were removed (when that task ran)."""
    records = {clone_id: svc.registry.get(clone_id) for clone_id in expired}
    deleted = sorted(c for c, r in records.items() if r is not None and r.status == "deleted")
    summary: dict[str, Any] = {"expired_deleted": deleted, "orphans_removed": orphans or []}
    if jobs_purged is not None:
        summary["jobs_purged"] = len(jobs_purged)
    if failed := sorted(set(expired) - set(deleted)):
        summary["expired_not_deleted"] = failed
    log.info("ttl cleanup: %s", summary)
    return summary
