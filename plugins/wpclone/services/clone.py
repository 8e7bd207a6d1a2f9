"""wp_clone: check and plan a clone, reserve it, make its database, finalize it, or roll it back.

The steps between (copy-database ∥ copy-content, then serving the site) are the runtime's steps and
:mod:`wpclone.services.common`'s; the rollback removes exactly what this job made and records why. The DAG's
first task is :func:`request_clone` (check, plan, then reserve: one task, one scheduling hop less).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pymysql

from wpclone.errors import BadRequest, CloneBusy, CloneTaken, describe
from wpclone.models import (
    ClonePlan,
    CloneRequest,
    CopyMode,
    SourceConfig,
    clone_db_name,
    generate_clone_id,
    is_clone_id,
)
from wpclone.services import common
from wpclone.services.common import Services, remove_clone
from wpclone.steps.copy_database import content_tables
from wpclone.summary import copy_summary

log = logging.getLogger(__name__)

REQUEST_FIELDS = {"source_url", "ttl_minutes", "clone_id", "copy_mode", "source"}


def check_clone_request(
    svc: Services, params: Mapping[str, Any], job_id: str | None = None
) -> tuple[CloneRequest, SourceConfig, str]:
    """The request, its source and its clone id (generated if not given); ``BadRequest`` (or
    ``ValidationError``) with one sentence when the request cannot be carried out. Creates nothing: the
    jobs API runs it before accepting, the job's first task again (as ``job_id``: the clone row the API
    accepted for that job is its own, not a clone that exists)."""
    request = CloneRequest(**{k: v for k, v in params.items() if k in REQUEST_FIELDS})
    source = svc.sources.find(request.source_url, request.source)
    runtime = svc.runtime
    clone_id = request.clone_id or generate_clone_id(source)
    db_name = clone_db_name(clone_id)
    existing, db_exists = svc.registry.get_with_database(clone_id, db_name)  # on the clones' server
    # The row the jobs API accepted for this very job (or gave back when an earlier try of it failed).
    # or the row an earlier try of this job's first task reserved (request_clone reserves last).
    ours = existing is not None and job_id is not None and existing.last_job_id == job_id
    if existing is not None and existing.status not in (
        "deleted",
        *(("accepted", "failed", "provisioning") if ours else ()),
    ):
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
    return request, source, clone_id


def clone_plan(
    svc: Services, request: CloneRequest, source: SourceConfig, clone_id: str, start: datetime
) -> ClonePlan:
    """What a checked clone request will create, its expiry counted from ``start``."""
    return ClonePlan(
        clone_id=clone_id,
        source=source,
        url=svc.runtime.clone_url(clone_id),
        db_name=clone_db_name(clone_id),
        ttl_minutes=request.ttl_minutes,
        copy_mode=request.copy_mode,
        expires_at=start.astimezone(UTC) + timedelta(minutes=request.ttl_minutes),
    )


def validate_request(
    svc: Services, params: Mapping[str, Any], run_after: datetime, job_id: str | None = None
) -> ClonePlan:
    """Check the request against the models, the configuration and what exists; return the clone plan.

    A refusal gives back the clone id the jobs API accepted for this job (its row: ``failed`` with the
    reason; a retry of this task may take it again): nothing after this task runs to do it."""
    try:
        request, source, clone_id = check_clone_request(svc, params, job_id=job_id)
    except Exception as exc:
        requested = params.get("clone_id")
        if job_id and isinstance(requested, str) and is_clone_id(requested):
            svc.registry.mark_failed(requested, job_id, describe(exc))  # a no-op unless this job holds it
        raise
    plan = clone_plan(svc, request, source, clone_id, run_after)
    log.info("plan: clone %s of %s at %s, expires %s", clone_id, source.url, plan.url, plan.expires_at)
    return plan


def reserve_clone(svc: Services, plan: ClonePlan, job_id: str) -> None:
    """The clone's registry row, ``provisioning`` and locked by this job; a race lost to another job for the
    same id is bad input (BadRequest: no retry)."""
    try:
        svc.registry.reserve(plan, job_id)
    except CloneTaken as exc:  # two requests raced for one id: this one lost, at once and without retries
        raise BadRequest(str(exc)) from exc


def request_clone(svc: Services, params: Mapping[str, Any], run_after: datetime, job_id: str) -> ClonePlan:
    """The clone DAG's first task: :func:`validate_request`, then :func:`reserve_clone`; the plan.

    The reservation is its last side effect, so the task's success means the clone is reserved (the rollback
    teardown's setup: it runs only then) and its failure that nothing was (a refusal reserves nothing; a
    reservation refused to this job changes nothing). A retry after a reservation whose task failed later
    (an XCom write) finds the row its job holds and reserves it again: reserving is idempotent for a job."""
    plan = validate_request(svc, params, run_after, job_id)
    reserve_clone(svc, plan, job_id)
    return plan


def create_database(svc: Services, plan: ClonePlan) -> None:
    """The clone's secrets and storage (the runtime), its database and a login that may touch only it."""
    runtime = svc.runtime
    secrets = runtime.prepare_clone(plan)
    svc.mysql.create_database_and_user(
        plan.db_name, plan.db_name, secrets.db_password, user_host=runtime.db_user_host
    )
    on_source_server = runtime.clone_db_server(plan) == (plan.source.db_host, plan.source.db_port)
    if on_source_server and svc.settings.same_server_copy:
        # The same-server copy (wpclone.steps.same_server) reads the source in the clone's own session:
        # the clone's login may SELECT exactly the tables it gets a copy of, until the copy is done.
        skip = content_tables(plan.source.table_prefix) if plan.copy_mode is CopyMode.FILES else []
        try:
            granted = svc.mysql.grant_table_reads(
                plan.source.db_name, plan.db_name, user_host=runtime.db_user_host, skip=skip
            )
            log.info("clone %s may read %d source tables for the copy", plan.clone_id, len(granted))
        except pymysql.MySQLError as exc:  # the copy takes the dump path
            log.warning("no same-server copy for clone %s: %s", plan.clone_id, describe(exc))


def serve_site(svc: Services, plan: ClonePlan) -> str:
    """The copy is done: take back the clone login's read of the source (a same-server copy's), then make
    the clone safe as staging, serve it and wait until it is right (common.serve_site); the admin login."""
    if svc.mysql.revoke_table_reads(plan.source.db_name, plan.db_name, user_host=svc.runtime.db_user_host):
        log.info("clone %s no longer reads the source", plan.clone_id)
    return common.serve_site(svc, plan)


def finalize_clone(
    svc: Services,
    plan: ClonePlan,
    job_id: str,
    admin_user: str,
    copied: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None),
) -> dict[str, Any]:
    """Mark the clone ready; the job's result: where it is, how to log in, when it goes, and what was
    copied (``copied``: the copy-database and copy-content steps' results)."""
    svc.registry.mark_ready(plan.clone_id, job_id)
    return {
        "clone_id": plan.clone_id,
        "url": plan.url + "/",
        "source_url": plan.source.url,
        "admin_url": plan.url + "/wp-admin/",
        "admin_user": admin_user,
        "admin_password": svc.runtime.secret_location(plan.clone_id, "admin-password"),
        "expires_at": plan.expires_at.isoformat(),
        "copy_mode": plan.copy_mode.value,
        "copied": copy_summary(*copied),
    }


def rollback_clone(
    svc: Services, plan: ClonePlan | None, job_id: str, errors: list[str | None]
) -> dict[str, Any]:
    """Remove everything this job created and record why it failed; touch nothing it did not create."""
    reason = next((e for e in errors if e), "the job failed (no step reported a reason).")
    if plan is None:
        log.info("nothing to roll back: the request was refused before anything was created (%s)", reason)
        return {"rolled_back": False, "error": reason}
    record = svc.registry.get(plan.clone_id)
    if record is None or record.lock_job_id != job_id:
        log.info("clone %s was not reserved by this job; nothing of it is ours to remove", plan.clone_id)
        return {"rolled_back": False, "error": reason}
    removed = remove_clone(svc, plan.clone_id, plan.db_name)
    svc.registry.mark_failed(plan.clone_id, job_id, reason)
    log.info(
        "rolled back clone %s (%s): %s", plan.clone_id, reason, "; ".join(removed) or "nothing existed yet"
    )
    return {"rolled_back": True, "removed": removed, "error": reason}
