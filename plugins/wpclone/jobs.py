"""Jobs: what the API answers about a DAG run, derived only from the run and its task instances.

A job is one run of a job DAG and its ``job_id`` is the run id, whoever triggered it (our API, Airflow's
REST API or its UI). Pure models and functions, no Airflow imports: the API server feeds in what it reads
from the metadata database, the CLI parses the same models.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wpclone.errors import BadRequest
from wpclone.models import SourceConfig

# Airflow's default [scheduler] allowed_run_id_pattern is ^[A-Za-z0-9_.~:+-]+$.
JOB_ID_PATTERN = r"^[A-Za-z0-9_.~:+-]{1,250}$"
# What a task costs besides its own work (the scheduler's hop, the task runner's start-up), measured by
# bench/clone_timing.py on the local Airflow's settings (wpclone.local.airflow): 0.3-0.5 s.
TASK_OVERHEAD_S = 0.5
RUNNING_CAP = 0.9  # a running step never claims more than this share of its weight


class JobType(StrEnum):
    CLONE = "clone"
    DELETE = "delete"
    BACKUP = "backup"
    RESTORE = "restore"


DAG_OF_TYPE = {
    JobType.CLONE: "wp_clone",
    JobType.DELETE: "wp_delete",
    JobType.BACKUP: "wp_backup",
    JobType.RESTORE: "wp_restore",
}
TYPE_OF_DAG = {dag_id: job_type for job_type, dag_id in DAG_OF_TYPE.items()}


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobResponse(BaseModel):
    """The answer to a request that started a job (HTTP 202)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    type: JobType
    status: JobStatus
    status_url: str
    created_at: datetime
    clone_id: str | None = None


class JobStatusResponse(BaseModel):
    """A job's state, progress and outcome."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    type: JobType
    dag_id: str
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    status_message: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    estimated_completion: datetime | None = None
    clone_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    requested_by: str | None = None  # the user who started it (Airflow's triggering user), if known


def new_job_id(job_type: JobType, now: datetime | None = None) -> str:
    """A job id that sorts by time and is unique across our DAGs: ``clone-20261128T203100-3f9a1c2b``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"{job_type.value}-{stamp}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class StepInfo:
    """One task of a job DAG: its expected seconds (weight) and what the job is doing while it runs."""

    seconds: float
    message: str
    parallel: bool = False  # runs alongside a longer step: adds no time to the estimate
    teardown: bool = False  # runs after the others whatever happened; skips itself after a good run


STEPS: dict[str, dict[str, StepInfo]] = {
    "wp_clone": {
        "validate_request": StepInfo(1, "Validating the request and reserving the clone"),
        "create_database": StepInfo(1, "Creating the clone's database and user"),
        "copy_database": StepInfo(6, "Copying the database and rewriting its URLs"),
        "copy_content": StepInfo(4, "Copying wp-content", parallel=True),
        "finalize_clone": StepInfo(
            3, "Applying staging safety, serving the site and waiting for it to answer"
        ),
        "rollback_clone": StepInfo(1, "Rolling back what this job created", teardown=True),
    },
    "wp_delete": {
        "validate_request": StepInfo(1, "Validating the request"),
        "delete_clone.begin_delete": StepInfo(1, "Marking the clone as deleting"),
        "delete_clone.delete_site": StepInfo(2, "Removing the site and its content"),
        "delete_clone.drop_database": StepInfo(1, "Dropping the database and its user"),
        "delete_clone.mark_deleted": StepInfo(1, "Recording the deletion"),
        "record_delete_failure": StepInfo(1, "Recording why the deletion failed", teardown=True),
    },
    "wp_backup": {
        "validate_request": StepInfo(1, "Validating the request"),
        "lock_clone": StepInfo(1, "Locking the clone"),
        "backup_clone": StepInfo(4, "Archiving the database and wp-content"),
        "release_clone": StepInfo(1, "Releasing the clone"),
    },
    "wp_restore": {
        "validate_request": StepInfo(1, "Validating the request and the backup URL"),
        "lock_clone": StepInfo(1, "Locking the clone"),
        "prepare_restore": StepInfo(1, "Creating a fresh database for the backup"),
        "load_backup": StepInfo(6, "Fetching, checking and loading the backup"),
        "verify_restore": StepInfo(1, "Checking that the backup is a complete WordPress site"),
        "apply_staging_safety": StepInfo(1, "Applying staging safety to the restored site"),
        "deploy_preview": StepInfo(1, "Serving the restored site as a private preview"),
        "await_preview_ready": StepInfo(2, "Checking the restored site's preview"),
        "backup_clone": StepInfo(4, "Backing up the clone before it is switched"),
        "switch_site": StepInfo(1, "Switching the site to the restored database and content"),
        "await_site_ready": StepInfo(2, "Waiting for the restored site to answer"),
        "finish_restore": StepInfo(1, "Dropping what the restore replaced"),
        "release_clone": StepInfo(1, "Releasing the clone"),
    },
}
# The task whose return value is the job's result.
RESULT_TASK = {
    "wp_clone": "finalize_clone",
    "wp_delete": "delete_clone.mark_deleted",
    "wp_backup": "release_clone",
    "wp_restore": "release_clone",
}
DONE_MESSAGE = {
    "wp_clone": "The clone is ready",
    "wp_delete": "The clone is deleted",
    "wp_backup": "The backup is written",
    "wp_restore": "The clone serves the restored backup",
}


@dataclass(frozen=True)
class TaskState:
    """What the status computation needs of one task instance."""

    task_id: str
    state: str | None
    try_number: int = 0
    start_date: datetime | None = None
    end_date: datetime | None = None
    map_index: int = -1


TERMINAL_TI = frozenset({"success", "skipped", "failed", "upstream_failed", "removed"})
RETRYING_TI = frozenset({"up_for_retry", "up_for_reschedule", "restarting"})
STARTED_TI = frozenset({"running", "deferred"})
FINISHED_TI = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


def step_info(dag_id: str, task_id: str) -> StepInfo:
    return STEPS.get(dag_id, {}).get(task_id) or StepInfo(1, f"Running {task_id}")


def task_credit(dag_id: str, ti: TaskState, now: datetime) -> float:
    """How much of one task instance is done, 0..1; never decreases over the instance's life.

    A started first try earns its elapsed share of the expected time, capped at RUNNING_CAP; a task that
    is retrying (or whose earlier try ran) holds RUNNING_CAP, which is at least what it had earned.
    """
    if ti.state in TERMINAL_TI:
        return 1.0
    if ti.state in RETRYING_TI or ti.try_number > 1:
        return RUNNING_CAP
    if ti.state in STARTED_TI and ti.start_date is not None:
        expected = step_info(dag_id, ti.task_id).seconds
        return min(RUNNING_CAP, max(0.0, (now - ti.start_date).total_seconds()) / expected)
    return 0.0


def _credits(dag_id: str, tis: Iterable[TaskState], now: datetime) -> dict[str, float]:
    """Per task id: the mean credit of its instances (a mapped task counts as one step); the DAG's steps
    with no instance yet (a run not created yet) earn nothing."""
    by_task: dict[str, list[float]] = {task_id: [] for task_id in STEPS.get(dag_id, {})}
    for ti in tis:
        by_task.setdefault(ti.task_id, []).append(task_credit(dag_id, ti, now))
    return {task_id: sum(c) / len(c) if c else 0.0 for task_id, c in by_task.items()}


def job_progress(dag_id: str, tis: Iterable[TaskState], finished: bool, now: datetime) -> int:
    """0-100: the weighted share of the DAG's steps that is done; 100 only once the run has finished."""
    if finished:
        return 100
    credits = _credits(dag_id, tis, now)
    weights = {t: step_info(dag_id, t).seconds + TASK_OVERHEAD_S for t in credits}
    total = sum(weights.values())
    if not total:
        return 0
    done = sum(weights[t] * credits[t] for t in credits)
    return min(99, math.floor(100 * done / total))


def estimated_completion(dag_id: str, tis: Iterable[TaskState], now: datetime) -> datetime:
    """Now plus the expected time of what is left, parallel steps and teardowns not counted twice."""
    credits = _credits(dag_id, tis, now)
    left = 0.0
    for task_id, credit in credits.items():
        info = step_info(dag_id, task_id)
        if info.parallel or info.teardown:
            continue
        left += (info.seconds + TASK_OVERHEAD_S) * (1.0 - credit)
    return now + timedelta(seconds=round(left, 1))


def outcome_known(dag_id: str, tis: Iterable[TaskState]) -> bool:
    """Whether the job has succeeded though its run has not ended: the result task succeeded and only
    teardowns (which skip themselves after a good run) are left. Saves the client the teardown's round trip
    through the scheduler."""
    tis = list(tis)
    result_task = RESULT_TASK.get(dag_id)
    if not result_task or not any(t.task_id == result_task and t.state == "success" for t in tis):
        return False
    return all(t.state in ("success", "skipped") or step_info(dag_id, t.task_id).teardown for t in tis)


def running_message(dag_id: str, tis: Iterable[TaskState]) -> str:
    """What the job is doing: the running steps' messages, or what it is waiting for."""
    tis = list(tis)
    running = sorted({ti.task_id for ti in tis if ti.state in STARTED_TI})
    if running:
        return "; ".join(step_info(dag_id, t).message for t in running)
    if any(ti.state in RETRYING_TI for ti in tis):
        retrying = sorted({ti.task_id for ti in tis if ti.state in RETRYING_TI})
        return "; ".join(f"{step_info(dag_id, t).message} (retrying)" for t in retrying)
    return waiting_message(dag_id, tis)


def waiting_message(dag_id: str, tis: list[TaskState]) -> str:
    """Between steps, in the user's words: ``Queued`` (its first step waits its turn) or ``Starting``
    before any step ran, then the next step's message (its own words), never Airflow's machinery."""
    if not any(ti.state in FINISHED_TI for ti in tis):
        return "Queued" if any(ti.state in ("queued", "scheduled") for ti in tis) else "Starting"
    order = list(STEPS.get(dag_id, {}))
    waiting = [
        ti.task_id for ti in tis if ti.state not in FINISHED_TI and not step_info(dag_id, ti.task_id).teardown
    ]
    if not waiting:
        return "Finishing"
    first = min(waiting, key=lambda t: order.index(t) if t in order else len(order))
    return step_info(dag_id, first).message


def job_status(run_state: str, note: str | None = None) -> JobStatus:
    """Airflow's run state as a job status; a run an operator stopped is ``cancelled``."""
    if run_state == "success":
        return JobStatus.COMPLETED
    if run_state == "failed":
        return JobStatus.CANCELLED if (note or "").lower().startswith("cancelled") else JobStatus.FAILED
    if run_state == "running":
        return JobStatus.RUNNING
    return JobStatus.PENDING


def clone_id_of(conf: Mapping[str, Any] | None, result: Mapping[str, Any] | None = None) -> str | None:
    """The clone a job is about: from its result once known, else from what it was asked."""
    for source in (result, conf):
        if source and isinstance(source.get("clone_id"), str) and source["clone_id"]:
            return str(source["clone_id"])
    return None


def accepted_status(
    job_id: str,
    *,
    dag_id: str,
    clone_id: str | None,
    created_at: datetime,
    error: str | None,
    requested_by: str | None = None,
    now: datetime | None = None,
) -> JobStatusResponse:
    """A job the API accepted whose run does not exist yet: pending, failed if it could not start, or
    cancelled before it started."""
    now = now or datetime.now(UTC)
    ended = JobStatus.CANCELLED if (error or "").startswith("cancelled") else JobStatus.FAILED
    return JobStatusResponse(
        job_id=job_id,
        type=TYPE_OF_DAG[dag_id],
        dag_id=dag_id,
        status=ended if error else JobStatus.PENDING,
        progress=0,
        status_message=error or "Accepted: starting the job",
        created_at=created_at,
        updated_at=created_at,
        completed_at=created_at if error else None,
        estimated_completion=None if error else estimated_completion(dag_id, [], now),
        clone_id=clone_id,
        error=error,
        requested_by=requested_by,
    )


# -- listing -------------------------------------------------------------------------------------------------

PAGE_DEFAULT = 50
PAGE_MAX = 500
# The listing's query parameters' rules in words (as wpclone.models.FIELD_RULES for the request fields).
QUERY_RULES: dict[str, str] = {
    "status": "must be one of " + ", ".join(s.value for s in JobStatus) + ", e.g. failed",
    "type": "must be one of " + ", ".join(t.value for t in JobType) + ", e.g. clone",
    "limit": f"must be a whole number from 1 to {PAGE_MAX}, e.g. {PAGE_DEFAULT}",
    "since": "must be a time in ISO 8601, e.g. 2026-12-06T07:00:00Z (without an offset: UTC)",
    "mine": "must be true or false",
}


@dataclass(frozen=True)
class JobQuery:
    """What ``GET /jobs`` asks for: the job DAGs to list (those the user may read), the filters, the end of
    the previous page (``before``) and the page's size."""

    dag_ids: list[str]
    status: JobStatus | None = None
    clone_id: str | None = None
    requested_by: str | None = None
    since: datetime | None = None
    before: PagePosition | None = None
    limit: int = PAGE_DEFAULT


class JobList(BaseModel):
    """A page of ``GET /jobs``, newest first; ``next``: the cursor of the following page (None: the last)."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobStatusResponse]
    next: str | None = None


@dataclass(frozen=True, order=True)
class PagePosition:
    """Where a page of jobs ends, in the listing's order (newest first): the time a job's run was asked
    for (a run's ``run_after``, an accepted job's ``created_at``), then its id."""

    at: datetime
    job_id: str

    def cursor(self) -> str:
        """The position as an opaque ``cursor`` for the next request."""
        text = json.dumps([self.at.astimezone(UTC).isoformat(), self.job_id])
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def of(cls, cursor: str) -> PagePosition:
        """The position a ``cursor`` names; BadRequest when it is not one of ours."""
        try:
            at, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            return cls(datetime.fromisoformat(at).astimezone(UTC), str(job_id))
        except (ValueError, TypeError) as exc:
            raise BadRequest(
                "cursor is not a position in the jobs listing: pass the `next` of the previous page as it is."
            ) from exc


class SourceInfo(BaseModel):
    """A registered source as ``GET /sources`` shows it: never a password, nor where one is kept."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: str
    aliases: list[str]
    origin: Literal["configuration", "connection"]  # where it is registered (wpclone.sources)
    conn_id: str | None = None  # the Airflow connection, for a connection's source

    @classmethod
    def of(cls, source: SourceConfig) -> SourceInfo:
        return cls(
            name=source.name,
            url=source.url,
            aliases=list(source.aliases),
            origin="connection" if source.db_conn_id else "configuration",
            conn_id=source.db_conn_id,
        )
