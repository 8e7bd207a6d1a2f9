"""wpclone.api.runs.cancel: the reason it records reaches the job's rollback as the sentence itself.

The cancel writes its reason as the XCom ``error`` of the run's tasks from the API server (Airflow's
XComModel); the rollback task reads it back through the task SDK: the execution API hands a task the stored
value and the SDK's XCom class deserializes it. Stored as a task's own push is, it reads back unchanged
(stored serialized once more, a task read it with its JSON quotes: ``"cancelled by bob."``).

Real parts: Airflow's metadata database (the tests' SQLite) holding our DAGs and a run made by Airflow's
own trigger (wpclone.api.runs.trigger).
"""

from __future__ import annotations

import secrets
from typing import Any

from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from airflow.sdk.bases.xcom import BaseXCom
from airflow.utils.session import create_session
from sqlalchemy import select

from tests.fixtures.dagtest import sync_dags
from wpclone.api.runs import cancel, trigger


def test_the_reason_reads_back_in_a_task_as_the_sentence(dags: Any) -> None:
    sync_dags(dags)
    job_id = f"clone-cancel-{secrets.token_hex(3)}"
    with create_session() as session:
        trigger("wp_clone", job_id, {"clone_id": "cancel-me", "source": "shop"}, "bob", session)
        run = session.scalars(select(DagRun).where(DagRun.run_id == job_id)).one()
        reason = cancel(run, "bob", session)
    assert reason == "cancelled by bob."
    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(XComModel.run_id == job_id, XComModel.key == "error")
        ).all()
        assert {row.task_id for row in rows} >= {"validate_request", "finalize_clone"}  # it failed them all
        for row in rows:
            assert BaseXCom.deserialize_value(row) == reason, row.value  # as a task reads it
            assert XComModel.deserialize_value(row) == reason  # as the jobs API reads it
