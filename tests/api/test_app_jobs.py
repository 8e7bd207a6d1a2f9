"""``GET /api/v1/jobs``: the job DAGs' runs and the accepted jobs that never got one, newest first, filtered
in SQL and paged with a cursor, each in the JobStatusResponse format.

Real parts: Airflow's metadata database (the tests' SQLite) holding our DAGs (synced from the DagBag) and
runs made by Airflow's own trigger (wpclone.api.runs.trigger), their states set as Airflow sets them; the
registry on MariaDB; Airflow's simple auth manager deciding who may read what. The app is the real one,
mounted under ``/wpclone``; only the logged-in user is given (Airflow's ``get_user`` dependency), and the
dispatcher's thread is not started (nothing here starts a job).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import airflow.settings
import pytest
from airflow.api_fastapi.app import create_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.api_fastapi.core_api.security import get_user
from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from fastapi import FastAPI
from sqlalchemy import event, select
from starlette.testclient import TestClient

from tests.fixtures.dagtest import sync_dags
from wpclone.api import app as api_app
from wpclone.api.dispatch import Dispatcher
from wpclone.api.runs import trigger
from wpclone.jobs import QUERY_RULES, JobList
from wpclone.models import FIELD_RULES
from wpclone.registry import Registry

JOBS = "/wpclone/api/v1/jobs"


@dataclass
class Made:
    """The jobs a module made, by what they are (their ids are unique to the module)."""

    tag: str
    ids: dict[str, str]


def _run(dag_id: str, name: str, tag: str, clone_id: str, user: str, state: DagRunState | None) -> str:
    job_id = f"{name}-{tag}"
    with create_session() as session:
        conf = {"clone_id": clone_id, "source": "shop"}
        if dag_id == "wp_restore":
            conf["source_backup_url"] = "https://backups.example.com/qa.tar.zst"
        trigger(dag_id, job_id, conf, user, session)
        run = session.scalars(select(DagRun).where(DagRun.run_id == job_id)).one()
        if state is not None:
            run.set_state(state)
        if name.startswith("failed"):
            XComModel.set(
                key="error",
                value=f"the source database of {clone_id} refused the login.",
                dag_id=dag_id,
                task_id="validate_request",
                run_id=job_id,
                session=session,
            )
        if name.startswith("completed"):
            for task_id in ("validate_request", "finalize_clone"):  # only the result task's is the result
                XComModel.set(
                    key="return_value",
                    value={"clone_id": clone_id, "url": f"http://{clone_id}.localhost", "task": task_id},
                    dag_id=dag_id,
                    task_id=task_id,
                    run_id=job_id,
                    session=session,
                )
        if name.startswith("cancelled"):
            run.note = "cancelled by bob."
    return job_id


@pytest.fixture(scope="module")
def made(dags: Any, registry: Registry) -> Made:
    """Seven jobs, oldest first: five runs (completed, failed, cancelled, running, pending) and two accepted
    jobs without a run (one that could not start, one still to start)."""
    sync_dags(dags)
    tag = secrets.token_hex(3)
    ids = {
        "completed": _run("wp_clone", "completed", tag, f"lj-a{tag}", "alice", DagRunState.SUCCESS),
        "failed": _run("wp_clone", "failed", tag, f"lj-b{tag}", "alice", DagRunState.FAILED),
        "cancelled": _run("wp_backup", "cancelled", tag, f"lj-a{tag}", "bob", DagRunState.FAILED),
        "running": _run("wp_delete", "running", tag, f"lj-a{tag}", "bob", DagRunState.RUNNING),
        "pending": _run("wp_restore", "pending", tag, f"lj-c{tag}", "alice", None),
    }
    refused = registry.record_job(f"refused-{tag}", "wp_clone", {}, "bob", f"lj-d{tag}")
    registry.mark_job_triggered(
        refused.job_id, error="the job could not be started: Dag id wp_clone not found."
    )
    ids["refused"] = refused.job_id
    ids["accepted"] = registry.record_job(f"accepted-{tag}", "wp_delete", {}, "alice", f"lj-a{tag}").job_id
    return Made(tag, ids)


@pytest.fixture
def login(monkeypatch: pytest.MonkeyPatch, airflow_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Who the client is logged in as (``user`` in the dict: change it to act as another)."""
    monkeypatch.setattr(Dispatcher, "start", lambda self, warm_up=None: None)
    api_app._registry.cache_clear()  # the registry of this module's schema (airflow_env)
    create_auth_manager()
    who: dict[str, Any] = {"user": SimpleAuthManagerUser(username="alice", role="viewer")}
    yield who
    api_app._registry.cache_clear()


@pytest.fixture
def client(login: dict[str, Any]) -> Iterator[TestClient]:
    app = api_app.create_app()
    app.dependency_overrides[get_user] = lambda: login["user"]
    main = FastAPI()
    main.mount("/wpclone", app)
    with TestClient(main) as client:
        yield client


def listed(client: TestClient, made: Made, **params: Any) -> list[str]:
    """The ids ``GET /jobs`` lists of this module's jobs, as the API orders them (their names only)."""
    answer = client.get(JOBS, params={"limit": 500, **params})
    assert answer.status_code == 200, answer.text
    page = JobList.model_validate(answer.json())
    names = {job_id: name for name, job_id in made.ids.items()}
    return [names[job.job_id] for job in page.jobs if job.job_id in names]


def test_failed_jobs_are_those_whose_run_failed_or_that_could_not_start(
    client: TestClient, made: Made
) -> None:
    answer = client.get(JOBS, params={"status": "failed", "limit": 500})
    page = JobList.model_validate(answer.json())
    mine = {job.job_id: job for job in page.jobs if job.job_id.endswith(made.tag)}
    assert sorted(mine) == sorted([made.ids["failed"], made.ids["refused"]])
    failed = mine[made.ids["failed"]]
    assert failed.status == "failed" and failed.type == "clone" and failed.clone_id == f"lj-b{made.tag}"
    assert failed.error == f"the source database of lj-b{made.tag} refused the login."
    assert failed.requested_by == "alice" and failed.progress == 100 and failed.completed_at is not None
    refused = mine[made.ids["refused"]]
    assert refused.error == "the job could not be started: Dag id wp_clone not found."
    assert refused.requested_by == "bob"
    assert all(job.status == "failed" for job in page.jobs)


def test_a_completed_job_has_its_result_and_a_cancelled_one_who_cancelled_it(
    client: TestClient, made: Made
) -> None:
    page = JobList.model_validate(client.get(JOBS, params={"limit": 500}).json())
    found = {job.job_id: job for job in page.jobs}
    completed, cancelled = found[made.ids["completed"]], found[made.ids["cancelled"]]
    clone_id = f"lj-a{made.tag}"
    assert completed.result == {
        "clone_id": clone_id,
        "url": f"http://{clone_id}.localhost",
        "task": "finalize_clone",
    }
    assert completed.status_message == "The clone is ready" and completed.error is None
    assert cancelled.status == "cancelled" and cancelled.error == "cancelled by bob."
    assert cancelled.type == "backup" and cancelled.requested_by == "bob"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("cancelled", ["cancelled"]),
        ("running", ["running"]),
        ("completed", ["completed"]),
        ("pending", ["accepted", "pending"]),
    ],
)
def test_each_status_lists_its_jobs(client: TestClient, made: Made, status: str, expected: list[str]) -> None:
    assert listed(client, made, status=status) == expected


def test_everything_is_listed_newest_first(client: TestClient, made: Made) -> None:
    assert listed(client, made) == [
        "accepted",
        "refused",
        "pending",
        "running",
        "cancelled",
        "failed",
        "completed",
    ]


def test_filters_by_type_clone_who_asked_and_since(
    client: TestClient, made: Made, login: dict[str, Any]
) -> None:
    assert listed(client, made, type="clone") == ["refused", "failed", "completed"]
    assert listed(client, made, clone_id=f"lj-a{made.tag}") == [
        "accepted",
        "running",
        "cancelled",
        "completed",
    ]
    assert listed(client, made, requested_by="bob") == ["refused", "running", "cancelled"]
    assert listed(client, made, mine="true") == ["accepted", "pending", "failed", "completed"]  # alice
    login["user"] = SimpleAuthManagerUser(username="bob", role="viewer")
    assert listed(client, made, mine="true", status="failed") == ["refused"]
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert listed(client, made, since=future) == []
    past = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()  # no offset: UTC
    assert len(listed(client, made, since=past)) == len(made.ids)


def test_pages_follow_each_other_without_gaps_or_repeats(client: TestClient, made: Made) -> None:
    everything = [job["job_id"] for job in client.get(JOBS, params={"limit": 500}).json()["jobs"]]
    # A long-lived metadata database may hold more than one page of 500: then page as far as this module's
    # oldest job (ours are among the newest), else to the end.
    whole = len(everything) < 500
    window = everything if whole else everything[: max(everything.index(j) for j in made.ids.values()) + 1]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = JobList.model_validate(client.get(JOBS, params=params).json())
        assert len(page.jobs) <= 2
        seen += [job.job_id for job in page.jobs]
        if page.next is None or (not whole and len(seen) >= len(window)):
            break
        params["cursor"] = page.next
    assert seen[: len(window)] == window
    assert not whole or len(seen) == len(window)


def test_a_page_costs_the_same_queries_whatever_its_size(client: TestClient, made: Made) -> None:
    """The task instances and XComs of a page are read in one query each, not one per job."""
    counts = []
    for limit in (3, 7):  # each page holds runs (the newest two jobs have none)
        statements: list[str] = []
        count = functools.partial(lambda seen, *args: seen.append(args[2]), statements)
        event.listen(airflow.settings.engine, "before_cursor_execute", count)
        try:
            assert len(client.get(JOBS, params={"limit": limit}).json()["jobs"]) == limit
        finally:
            event.remove(airflow.settings.engine, "before_cursor_execute", count)
        counts.append(len(statements))
    assert counts[0] == counts[1], counts


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "broken"}, "status"),
        ({"type": "wp_clone"}, "type"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"clone_id": "Bad_Id"}, "clone_id"),
    ],
)
def test_a_bad_filter_is_its_rule_in_words(client: TestClient, params: dict[str, Any], field: str) -> None:
    answer = client.get(JOBS, params=params)
    assert answer.status_code == 422
    rule = {**FIELD_RULES, **QUERY_RULES}[field]
    assert answer.json() == {"detail": f"{field} {rule}.", "field": field, "rule": rule}


def test_a_cursor_that_is_not_ours_is_refused_with_a_sentence(client: TestClient) -> None:
    answer = client.get(JOBS, params={"cursor": "not-a-cursor"})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("cursor is not a position in the jobs listing")


def test_a_user_without_a_role_may_not_list_jobs(client: TestClient, login: dict[str, Any]) -> None:
    login["user"] = SimpleAuthManagerUser(username="eve", role=None)
    answer = client.get(JOBS)
    assert answer.status_code == 403
    assert answer.json()["detail"] == "user eve may not GET the runs of any job DAG."
    assert client.get(JOBS, params={"type": "clone"}).status_code == 403
