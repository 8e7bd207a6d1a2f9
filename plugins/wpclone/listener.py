"""Airflow listener: writes the outcome of every wpclone job as its run's note when the run ends.

The note is what the Airflow UI shows first on a run (grid, run details): the clone's URL, how to log in,
its expiry and what was copied, or the failure's sentence (wpclone.summary.run_note). The scheduler calls
these hooks inside its own session when it sets a run's final state, so the note is committed with it; a
note that is already there (a cancel's "cancelled by <user>.") is kept.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)


def write_note(dag_run: Any) -> str | None:
    """Set the note of a finished job run that has none; returns the note written."""
    from sqlalchemy.orm import object_session

    from wpclone.api.runs import job_status
    from wpclone.jobs import TYPE_OF_DAG
    from wpclone.summary import run_note

    if dag_run.dag_id not in TYPE_OF_DAG or dag_run.note:
        return None
    session = object_session(dag_run)
    if session is None:
        return None
    note = run_note(job_status(dag_run, session))
    dag_run.note = note
    return note


def _on_end(dag_run: Any) -> None:
    try:
        write_note(dag_run)
    except Exception:  # a note is a courtesy: never let it disturb the scheduler
        log.exception("could not write the note of run %s of %s", dag_run.run_id, dag_run.dag_id)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _on_end(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _on_end(dag_run)
