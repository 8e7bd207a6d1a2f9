"""The API server's side of jobs: trigger a job DAG, and read a job back from Airflow's metadata database.

Only the API server may touch the metadata database (task code cannot in Airflow 3); everything here runs
there, inside one SQLAlchemy session per call. The jobs listing reads a page of runs in one query filtered
in SQL (:func:`list_runs`) and that page's task instances, XComs and paused DAGs in one query each
(:func:`page_facts`), which :func:`job_status` takes instead of reading them per run.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow.api.common.trigger_dag import trigger_dag
from airflow.models.dag import DagModel
from airflow.models.dagbag import DBDagBag
from airflow.models.dagrun import DagRun, DagRunNote
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from airflow.utils.state import State, TaskInstanceState
from airflow.utils.types import DagRunTriggeredByType
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, joinedload
from starlette.routing import Mount

from wpclone import jobs
from wpclone.jobs import JobStatusResponse, TaskState


def trigger(dag_id: str, job_id: str, conf: dict[str, Any], user_name: str, session: Session) -> None:
    """Create a queued manual run of ``dag_id`` with run id ``job_id``, committed."""

    run = trigger_dag(
        dag_id,
        run_id=job_id,
        conf=conf,
        triggered_by=DagRunTriggeredByType.REST_API,
        triggering_user_name=user_name,
        session=session,
    )
    assert run is not None  # trigger_dag raises rather than return None for one DAG
    session.commit()


def warm_up(dag_ids: Iterable[str]) -> None:
    """Do once what a process's first trigger and status read would (imports, ORM mappers, loading our
    DAGs, reading the metrics registry): ~1.7 s that would otherwise land on the first job after a start."""

    # The first Stats call of a process parses Airflow's metrics registry YAML (~0.3 s); a private
    # function, so only if it is there.
    stats = importlib.import_module("airflow._shared.observability.metrics.stats")
    if callable(getattr(stats, "_get_registry", None)):
        stats._get_registry()

    with create_session(scoped=False) as session:
        for dag_id in dag_ids:
            find_run("warm-up", [dag_id], session)
            DBDagBag().get_latest_version_of_dag(dag_id, session=session)


def build_execution_api(main_module: str = "airflow.api_fastapi.main") -> bool:
    """Build the task execution API's versioned routes in this API server process now; True if it did.

    Cadwyn, which serves ``/execution``, builds them on the first request, on the event loop: ~5 s here,
    ~13 s while the first tasks of twenty jobs start, and the worker answers nothing meanwhile (status
    requests of jobs included). Called from our app's lifespan, which Airflow enters at startup, before
    the worker serves requests; a private attribute of Cadwyn's, so only if it is there.
    """

    main_app = getattr(sys.modules.get(main_module), "app", None)  # what uvicorn serves in this process
    for route in getattr(main_app, "routes", ()):
        if isinstance(route, Mount) and route.path == "/execution":
            build = getattr(route.app, "_cadwyn_initialize", None)
            if callable(build) and getattr(route.app, "_cadwyn_initialized", True) is False:
                build()
                return True
    return False


def find_run(job_id: str, dag_ids: Iterable[str], session: Session) -> Any:
    """The run ``job_id`` of one of ``dag_ids`` (the newest if several DAGs have one), or None."""

    return session.scalars(
        select(DagRun)
        .where(DagRun.run_id == job_id, DagRun.dag_id.in_(list(dag_ids)))
        .order_by(DagRun.id.desc())
        .limit(1)
    ).first()


# What a job's status reads of each task instance (wpclone.jobs.TaskState, by _task_state).
_TI_COLUMNS = (
    TaskInstance.task_id,
    TaskInstance.state,
    TaskInstance.try_number,
    TaskInstance.start_date,
    TaskInstance.end_date,
    TaskInstance.map_index,
)


def _task_states(run: Any, session: Session) -> list[TaskState]:

    rows = session.execute(
        select(*_TI_COLUMNS).where(TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id)
    ).all()
    return [_task_state(r) for r in rows]


def _task_state(row: Any) -> TaskState:
    return TaskState(
        row.task_id,
        str(row.state) if row.state else None,
        row.try_number or 0,
        row.start_date,
        row.end_date,
        row.map_index,
    )


def _xcoms(run: Any, key: str, task_ids: str | list[str] | None, session: Session) -> list[tuple[str, Any]]:
    """(task id, value) of the run's XComs named ``key``, in the order the tasks pushed them."""

    rows: Any = session.scalars(
        XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, key=key, task_ids=task_ids).order_by(
            XComModel.timestamp
        )
    ).all()
    return [(row.task_id, XComModel.deserialize_value(row)) for row in rows]


@dataclass(frozen=True)
class RunFacts:
    """What a job's status is read from besides its run: its task instances, its ``error`` XComs (in the
    order they were pushed) and its result task's return values; read for a whole page at once."""

    tis: list[TaskState]
    errors: list[Any]
    results: list[Any]
    paused: bool


def job_status(
    run: Any,
    session: Session,
    registry_error: Any = None,
    now: datetime | None = None,
    state: str | None = None,
    *,
    facts: RunFacts | None = None,
) -> JobStatusResponse:
    """Everything a client sees of a job, from the run, its task instances and their XComs (``facts``:
    read already, else read here).

    ``registry_error`` (clone id -> last error or None) is asked for the error of a failed job whose tasks
    recorded none, e.g. one the scheduler failed. ``state``: the run's state when it is being set now.
    """
    now = now or datetime.now(UTC)
    dag_id = run.dag_id
    tis = facts.tis if facts else _task_states(run, session)
    state = str(state or run.state)
    status = jobs.job_status(state, getattr(run, "note", None))
    if status is jobs.JobStatus.RUNNING and jobs.outcome_known(dag_id, tis):
        status = jobs.JobStatus.COMPLETED
    finished = status in jobs.FINAL_STATUSES
    result_task = jobs.RESULT_TASK.get(dag_id)
    result = None
    if status is jobs.JobStatus.COMPLETED and result_task:
        values = facts.results if facts else [v for _, v in _xcoms(run, "return_value", result_task, session)]
        result = _result(dag_id, run.conf or {}, values)
    error = None
    if status is jobs.JobStatus.CANCELLED:
        error = getattr(run, "note", None)  # "cancelled by <user>.", set by cancel() (so is the status)
    elif status is not jobs.JobStatus.COMPLETED:
        errors = [
            v for v in (facts.errors if facts else [v for _, v in _xcoms(run, "error", None, session)]) if v
        ]
        error = str(errors[0]) if errors else None
    clone_id = jobs.clone_id_of(run.conf, result)
    if status is jobs.JobStatus.FAILED and error is None:
        error = (registry_error(clone_id) if registry_error and clone_id else None) or (
            "the job failed without a step reporting why; see the task logs in Airflow."
        )
    if finished:
        message = error if error else jobs.DONE_MESSAGE.get(dag_id, "Done")
        if status is jobs.JobStatus.CANCELLED:
            message = "Cancelled"
    elif status is jobs.JobStatus.PENDING:
        message = "Queued: waiting for the scheduler"
        if facts.paused if facts else _paused(dag_id, session):
            message = f"Queued: the DAG {dag_id} is paused in Airflow; unpause it to run the job"
    else:
        message = jobs.running_message(dag_id, tis)
    updated = max([d for d in (run.updated_at, run.start_date, *(t.end_date for t in tis)) if d], default=now)
    return JobStatusResponse(
        job_id=run.run_id,
        type=jobs.TYPE_OF_DAG[dag_id],
        dag_id=dag_id,
        status=status,
        progress=jobs.job_progress(dag_id, tis, finished, now),
        status_message=message,
        created_at=run.queued_at or run.created_at or now,
        updated_at=updated,
        completed_at=(run.end_date or _result_end(dag_id, tis)) if finished else None,
        estimated_completion=None if finished else jobs.estimated_completion(dag_id, tis, now),
        clone_id=clone_id,
        result=result,
        error=error,
        requested_by=run.triggering_user_name,
    )


# -- listing ---------------------------------------------------------------------------------------------

# A job status as a condition on a run's state (and note: a run an operator cancelled ended failed).
_CANCELLED_NOTE = DagRun.dag_run_note.has(func.lower(DagRunNote.content).like("cancelled%"))
_RUN_STATES: dict[jobs.JobStatus, Any] = {
    jobs.JobStatus.PENDING: or_(
        DagRun.state.is_(None), DagRun.state.not_in(["running", "success", "failed"])
    ),
    jobs.JobStatus.RUNNING: DagRun.state == "running",
    jobs.JobStatus.COMPLETED: DagRun.state == "success",
    jobs.JobStatus.FAILED: and_(DagRun.state == "failed", ~_CANCELLED_NOTE),
    jobs.JobStatus.CANCELLED: and_(DagRun.state == "failed", _CANCELLED_NOTE),
}


def list_runs(session: Session, query: jobs.JobQuery) -> list[Any]:
    """The runs ``query`` asks for and one more (whether a next page exists), newest first (by
    ``run_after``, then run id), filtered in SQL: one query, on the index of ``run_after``."""

    select_runs = (
        select(DagRun).options(joinedload(DagRun.dag_run_note)).where(DagRun.dag_id.in_(query.dag_ids))
    )
    if query.status is not None:
        select_runs = select_runs.where(_RUN_STATES[query.status])
    if query.clone_id is not None:
        select_runs = select_runs.where(DagRun.conf["clone_id"].as_string() == query.clone_id)
    if query.requested_by is not None:
        select_runs = select_runs.where(DagRun.triggering_user_name == query.requested_by)
    if query.since is not None:
        select_runs = select_runs.where(DagRun.run_after >= query.since)
    if (before := query.before) is not None:
        select_runs = select_runs.where(
            or_(
                DagRun.run_after < before.at,
                and_(DagRun.run_after == before.at, DagRun.run_id < before.job_id),
            )
        )
    select_runs = select_runs.order_by(DagRun.run_after.desc(), DagRun.run_id.desc()).limit(query.limit + 1)
    return list(session.scalars(select_runs).unique())


def existing_runs(session: Session, run_ids: list[str], dag_ids: list[str]) -> set[str]:
    """Which of ``run_ids`` are runs of ``dag_ids`` (one query)."""

    if not run_ids:
        return set()
    found = session.scalars(
        select(DagRun.run_id).where(DagRun.run_id.in_(run_ids), DagRun.dag_id.in_(dag_ids))
    )
    return set(found)


def page_facts(runs: list[Any], session: Session) -> dict[int, RunFacts]:
    """Each run's facts (by the run's id), read for the whole page in three queries: the task instances,
    the XComs (every task's errors, the result tasks' return values) and which DAGs are paused."""

    if not runs:
        return {}
    by_key = {(run.dag_id, run.run_id): run.id for run in runs}
    tis: dict[int, list[TaskState]] = {run.id: [] for run in runs}
    rows = session.execute(
        select(TaskInstance.dag_id, TaskInstance.run_id, *_TI_COLUMNS).where(
            TaskInstance.dag_id.in_({run.dag_id for run in runs}),
            TaskInstance.run_id.in_({run.run_id for run in runs}),
        )
    ).all()
    for r in rows:
        if (run_id := by_key.get((r.dag_id, r.run_id))) is not None:
            tis[run_id].append(_task_state(r))
    errors: dict[int, list[Any]] = {run.id: [] for run in runs}
    results: dict[int, list[Any]] = {run.id: [] for run in runs}
    result_tasks = {run.id: jobs.RESULT_TASK.get(run.dag_id) for run in runs}
    xcoms = session.scalars(
        select(XComModel)
        .where(
            XComModel.dag_run_id.in_(list(tis)),
            or_(
                XComModel.key == "error",
                and_(XComModel.key == "return_value", XComModel.task_id.in_(set(jobs.RESULT_TASK.values()))),
            ),
        )
        .order_by(XComModel.timestamp)
    ).all()
    for xcom in xcoms:
        if xcom.key == "error":
            errors[xcom.dag_run_id].append(XComModel.deserialize_value(xcom))
        elif xcom.task_id == result_tasks[xcom.dag_run_id]:
            results[xcom.dag_run_id].append(XComModel.deserialize_value(xcom))
    paused = set(
        session.scalars(
            select(DagModel.dag_id).where(
                DagModel.dag_id.in_({run.dag_id for run in runs}), DagModel.is_paused
            )
        )
    )
    return {
        run.id: RunFacts(tis[run.id], errors[run.id], results[run.id], run.dag_id in paused) for run in runs
    }


def _paused(dag_id: str, session: Session) -> bool:

    return bool(session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id)))


def _result_end(dag_id: str, tis: list[TaskState]) -> datetime | None:
    ends = [t.end_date for t in tis if t.task_id == jobs.RESULT_TASK.get(dag_id) and t.end_date]
    return max(ends, default=None)


def _result(dag_id: str, conf: dict[str, Any], values: list[Any]) -> dict[str, Any] | None:
    """The final task's return value as the job's result (a delete's is the clone it removed)."""
    if dag_id == "wp_delete":
        return {"clone_id": conf.get("clone_id"), "deleted": True, "already_deleted": not values}
    return dict(values[0]) if values and isinstance(values[0], dict) else None


def cancel(run: Any, user_name: str, session: Session) -> str:
    """Cancel a job that has not ended: its unfinished work tasks are failed (a running one is stopped by
    Airflow), so the scheduler runs the teardown, which rolls back what the job made, and the run ends
    failed with the note "cancelled by <user>" (how :func:`wpclone.jobs.job_status` knows it). Returns
    the reason, also recorded as the job's error."""

    reason = f"cancelled by {user_name}."
    dag = DBDagBag().get_dag_for_run(run, session=session)
    tis = session.scalars(
        select(TaskInstance).where(TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id)
    ).all()
    first = min(tis, key=lambda ti: ti.start_date or datetime.max.replace(tzinfo=UTC))
    failed = []
    for ti in tis:
        if ti.state in State.finished or dag is None or not dag.has_task(ti.task_id):
            continue
        task = dag.get_task(ti.task_id)
        # Work tasks only: a teardown (rollback, release) and a task that runs on failure (record the
        # failure) are left for the scheduler to run once the work has failed.
        if not task.is_teardown and task.trigger_rule == "all_success":
            ti.set_state(TaskInstanceState.FAILED, session=session)
            failed.append(ti)
    # The reason, for the rollback to record on the clone: on the first task (read first) and on every
    # task failed here, which will not run, so no start of theirs clears it (the first may not have run).
    # Stored as a task's own push is (the execution API's: not serialized once more), so a task reads the
    # sentence back, not its JSON text.
    for ti in {(t.task_id, t.map_index): t for t in (first, *failed)}.values():
        XComModel.set(
            key="error",
            value=reason,
            serialize=False,
            dag_id=run.dag_id,
            task_id=ti.task_id,
            run_id=run.run_id,
            map_index=ti.map_index,
            session=session,
        )
    run.note = reason
    session.commit()
    return reason
