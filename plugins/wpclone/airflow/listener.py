"""Airflow listener: writes the outcome of every wpclone job as its run's note when the run ends, and
releases a clone that a failed run still holds.

The note is what the Airflow UI shows first on a run (grid, run details): the clone's URL, how to log in,
its expiry and what was copied, or the failure's sentence (wpclone.summary.run_note). The scheduler calls
these hooks inside its own session when it sets a run's final state, so the note is committed with it; a
note that is already there (a cancel's "cancelled by <user>.") is kept.

A job's rollback is a teardown task; when the run's time limit strikes (``WPCLONE_RUN_TIMEOUT_MINUTES``,
``dagrun_timeout``), Airflow skips it with every unfinished task, and a rollback that fails itself leaves
its clone locked too. So when a run of ours ends failed, the clones its job still holds are released in the
registry (wpclone.registry.Registry.release_held): one being made or deleted becomes ``failed``, which the
TTL cleanup's orphan sweep then removes, a ready one is unlocked. Only once every task of the run has ended:
a run marked failed from outside (a cancel) still runs its rollback, which releases the clone with its own
reason (a cancel that stopped the first task after it reserved skips the rollback: the clone is released
with the cancel's reason, the run's note); a normal failure's rollback has released its clone already:
nothing is left to release.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from airflow.listeners import hookimpl

from wpclone import jobs
from wpclone.jobs import TYPE_OF_DAG
from wpclone.summary import run_note

log = logging.getLogger(__name__)


def write_note(dag_run: Any) -> str | None:
    """Set the note of a finished job run that has none; returns the note written.

    In the scheduler the run is bound to the session that is setting its state: the note joins that
    transaction (a second session would wait on the run's row lock). A run not bound to a session (as
    ``dag.test()`` passes it) is written through a session of its own.
    """
    from airflow.models.dagrun import DagRun  # noqa: PLC0415 (the metadata database: only where runs end)
    from airflow.utils.session import create_session  # noqa: PLC0415 (the metadata database: only where runs end)
    from sqlalchemy.orm import object_session  # noqa: PLC0415 (the metadata database: only where runs end)

    from wpclone.api.runs import job_status  # noqa: PLC0415 (the metadata database's models: only where runs end)

    if dag_run.dag_id not in TYPE_OF_DAG:
        return None
    session = object_session(dag_run)
    with contextlib.nullcontext(session) if session is not None else create_session() as session:
        stored = dag_run if object_session(dag_run) is session else session.get(DagRun, dag_run.id)
        if stored is None or stored.note:
            return None
        note = run_note(job_status(stored, session, state=str(dag_run.state)))  # the state being set
        stored.note = note
    return note


def _on_end(dag_run: Any) -> None:
    try:
        write_note(dag_run)
    except Exception:  # a note is a courtesy: never let it disturb the scheduler
        log.exception("could not write the note of run %s of %s", dag_run.run_id, dag_run.dag_id)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _on_end(dag_run)


def release_held_clones(dag_run: Any, msg: str) -> list[str]:
    """Release what the failed run's job still holds (see the module's docstring); the released ids."""
    from wpclone.airflow.services import registry  # noqa: PLC0415 (the MySQL provider: only where runs end)
    from wpclone.settings import RUN_TIMEOUT, TimeLimits  # noqa: PLC0415 (read when a run ends, not at import)

    if dag_run.dag_id not in TYPE_OF_DAG:
        return []
    note = getattr(dag_run, "note", None)
    if msg == "timed_out":
        limit = f"{RUN_TIMEOUT}={TimeLimits.from_env().run_minutes} minutes"
        error = f"the job ran out of time (its run's limit, {limit}) before its rollback ran"
    elif jobs.job_status("failed", note) is jobs.JobStatus.CANCELLED:
        # A cancel that stopped the first task after it reserved: its rollback (whose setup it is) is skipped.
        error = str(note)
    else:
        error = "the job ended without its rollback releasing the clone"
    if error != note:
        error += "; the TTL cleanup removes what it left."
    return [record.clone_id for record in registry(check=False).release_held(dag_run.run_id, error)]


def unfinished_tasks(dag_run: Any) -> list[str]:
    """The run's tasks not in a final state: a run marked failed from outside (a cancel) still has its
    rollback to run, which releases the clone itself; a timed-out run has none (all skipped)."""
    from airflow.utils.session import create_session  # noqa: PLC0415 (the metadata database: only where runs end)
    from airflow.utils.state import State  # noqa: PLC0415 (the metadata database: only where runs end)
    from sqlalchemy.orm import object_session  # noqa: PLC0415 (the metadata database: only where runs end)

    session = object_session(dag_run)
    with contextlib.nullcontext(session) if session is not None else create_session() as session:
        instances = dag_run.get_task_instances(session=session)
        return [ti.task_id for ti in instances if ti.state not in State.finished]


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _on_end(dag_run)
    try:
        if dag_run.dag_id in TYPE_OF_DAG and not unfinished_tasks(dag_run):
            release_held_clones(dag_run, msg)
    except Exception:  # the registry unreachable: the lock stays, as it would without us
        log.exception("could not release the clones held by run %s of %s", dag_run.run_id, dag_run.dag_id)
