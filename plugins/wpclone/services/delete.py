"""wp_delete, and the task group wp_ttl_cleanup maps over expired clones: the one way a clone is deleted.

``begin_delete`` takes the clone's lock (status ``deleting``), ``delete_site`` and ``drop_database`` remove
what exists (each idempotent), ``mark_deleted`` records it; a failure frees the clone for another attempt
(``record_delete_failure``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from wpclone.errors import BadRequest, StepFailed
from wpclone.models import DeleteRequest, clone_db_name
from wpclone.services.common import POLL_S, Services

log = logging.getLogger(__name__)


def validate_delete(svc: Services, params: Mapping[str, Any], timeout: float | None = None) -> list[str]:
    """The clone to delete (none when it is already deleted). A clone still being made (its job cancelled by
    the jobs API's delete) is waited for until that job's rollback has released it (``timeout``: the
    settings' ``delete_wait`` by default)."""
    request = DeleteRequest(clone_id=params.get("clone_id", ""))
    reg = svc.registry
    record = reg.get(request.clone_id)
    deadline = time.monotonic() + (timeout or svc.settings.delete_wait)
    while record is not None and record.lock_job_id and record.status in ("accepted", "provisioning"):
        if time.monotonic() > deadline:
            raise StepFailed(
                f"clone {request.clone_id} is still being made by job {record.lock_job_id}; "
                "cancel that job, then delete the clone."
            )
        log.info(
            "clone %s is being made by job %s: waiting for it to end", record.clone_id, record.lock_job_id
        )
        time.sleep(POLL_S)
        record = reg.get(request.clone_id)
    if record is None:
        raise BadRequest(f"clone {request.clone_id} does not exist.")
    if record.status == "deleted":  # deleting again converges: nothing left to do
        log.info(
            "clone %s was already deleted (by job %s); nothing to do", request.clone_id, record.last_job_id
        )
        return []
    return [request.clone_id]


def begin_delete(svc: Services, clone_id: str, job_id: str) -> None:
    svc.registry.begin_delete(clone_id, job_id)


def delete_site(svc: Services, clone_id: str) -> list[str]:
    """Remove the clone's runtime objects; its URL then says the clone was deleted, or that it expired."""
    removed = svc.runtime.delete_clone_objects(clone_id)
    record = svc.registry.get(clone_id)
    svc.runtime.record_gone(clone_id, expired=record is not None and record.expires_at <= datetime.now(UTC))
    return removed


def drop_database(svc: Services, clone_id: str) -> None:
    name = clone_db_name(clone_id)
    svc.mysql.drop_database_and_user(name, name, user_host=svc.runtime.db_user_host)


def mark_deleted(svc: Services, clone_id: str, job_id: str) -> str:
    svc.registry.mark_deleted(clone_id, job_id)
    return clone_id


def record_delete_failure(svc: Services, clone_ids: list[str], job_id: str, errors: list[str]) -> None:
    """Mark clones whose deletion by this job failed as ``failed`` (lock released), then fail with why."""
    reason = errors[0] if errors else "the deletion failed (no step reported a reason)."
    reg = svc.registry
    for clone_id in clone_ids:
        record = reg.get(clone_id)
        if record is not None and record.status == "deleting" and record.lock_job_id == job_id:
            reg.mark_failed(clone_id, job_id, f"deletion failed: {reason}")
    raise StepFailed(reason)
