"""``wpclone jobs`` against a fake jobs API (httpx.MockTransport): what it asks for, how it prints a page.

The real API lists real runs in tests/api/test_app_jobs.py, and tests/system/test_cli.py runs this command
against a running Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from wpclone import cli
from wpclone.jobs import PAGE_MAX
from wpclone.settings import API_URL, PASSWORD, USERNAME

ENV = {API_URL: "http://airflow.test:8080", USERNAME: "alice", PASSWORD: "s3cret"}
Run = Callable[..., tuple[int, str, str]]


def listed_job(job_id: str, status: str, **extra: Any) -> dict[str, Any]:
    at = (datetime.now(UTC) - timedelta(hours=2, minutes=5)).isoformat()
    return {
        "job_id": job_id,
        "type": "clone",
        "dag_id": "wp_clone",
        "status": status,
        "progress": 100 if status in ("completed", "failed", "cancelled") else 40,
        "status_message": "Copying the database and rewriting its URLs",
        "created_at": at,
        "updated_at": at,
        "clone_id": "qa-checkout",
        "requested_by": "alice",
        **extra,
    }


class JobsApi:
    """Answers ``GET /jobs`` with ``page`` and records the requests."""

    def __init__(self, page: dict[str, Any]) -> None:
        self.page = page
        self.params: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        assert request.url.path == "/wpclone/api/v1/jobs"
        self.params.append(dict(request.url.params))
        return httpx.Response(200, json=self.page)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str, api: JobsApi) -> tuple[int, str, str]:
        code = cli.main(list(argv), env=ENV, transport=httpx.MockTransport(api))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def failed_job() -> dict[str, Any]:
    """A failed job asked for 2 h 5 min before now (made in the test: the CLI says it relative to now)."""
    return listed_job("clone-20261206T070000-aa", "failed", error="the source database refused the login.")


def test_failed_jobs_are_asked_for_and_shown_with_why(run: Run) -> None:
    api = JobsApi({"jobs": [failed_job()], "next": None})
    code, out, err = run("jobs", "--status", "failed", api=api)
    assert code == 0 and err == ""
    assert api.params == [{"status": "failed", "limit": "50"}]
    header, row = out.splitlines()
    assert header.split() == ["JOB", "ID", "TYPE", "CLONE", "STATUS", "ASKED", "BY", "ASKED", "DETAIL"]
    assert row.split()[:5] == ["clone-20261206T070000-aa", "clone", "qa-checkout", "failed", "alice"]
    assert "2 h 5 min ago" in row and row.endswith("the source database refused the login.")


def test_a_running_job_shows_its_progress_and_step(run: Run) -> None:
    _, out, _ = run("jobs", api=JobsApi({"jobs": [listed_job("clone-1", "running")], "next": None}))
    assert "running 40%" in out and out.rstrip().endswith("Copying the database and rewriting its URLs")


def test_every_filter_is_sent_as_the_api_names_it(run: Run) -> None:
    api = JobsApi({"jobs": [], "next": None})
    before = datetime.now(UTC)
    code, _, _ = run(
        "jobs", "--type", "backup", "--clone", "qa-checkout", "--since", "2h", "--requested-by", "bob",
        "--limit", "7", api=api,
    )  # fmt: skip
    assert code == 0
    [params] = api.params
    since = datetime.fromisoformat(params.pop("since"))
    assert before - timedelta(hours=2) <= since <= datetime.now(UTC) - timedelta(hours=2)
    assert params == {"type": "backup", "clone_id": "qa-checkout", "requested_by": "bob", "limit": "7"}
    run("jobs", "--mine", "--since", "2026-12-06T07:00", api=api)
    assert api.params[1] == {"mine": "true", "since": "2026-12-06T07:00:00+00:00", "limit": "50"}


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--status", "broken"], "--status 'broken' is not a value it takes; it takes pending, running"),
        (["--clone", "Bad_Id"], "argument --clone: clone id 'Bad_Id' is not valid"),
        (["--since", "yesterday"], "argument --since: 'yesterday' is not a time: give how long ago"),
        (["--limit", "0"], f"argument --limit: '0' is not a number of jobs from 1 to {PAGE_MAX}."),
        (["--mine", "--requested-by", "bob"], "argument --requested-by: not allowed with argument --mine"),
    ],
)
def test_bad_arguments_are_one_sentence_and_exit_2_before_any_request(
    run: Run, argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api = JobsApi({"jobs": [], "next": None})
    with pytest.raises(SystemExit) as exited:
        run("jobs", *argv, api=api)
    assert exited.value.code == cli.EXIT_BAD_INPUT
    assert said in capsys.readouterr().err
    assert api.params == []


def test_no_jobs_is_a_sentence_and_exit_0(run: Run) -> None:
    empty = JobsApi({"jobs": [], "next": None})
    assert run("jobs", "--status", "failed", api=empty) == (0, "No jobs match those filters.\n", "")
    assert run("jobs", api=empty) == (0, "No jobs yet.\n", "")


def test_more_jobs_than_the_limit_say_how_to_see_them(run: Run) -> None:
    code, out, err = run("jobs", "--limit", "1", api=JobsApi({"jobs": [failed_job()], "next": "abc"}))
    assert code == 0 and len(out.splitlines()) == 2
    more = f"raise --limit (up to {PAGE_MAX}) or narrow with --since"
    assert err == f"The newest 1 are shown; there are more: {more}.\n"


def test_json_is_the_api_page(run: Run) -> None:
    failed = failed_job()
    page = {"jobs": [failed], "next": None}
    code, out, _ = run("jobs", "--json", api=JobsApi(page))
    assert code == 0
    printed = json.loads(out)
    assert printed["next"] is None and printed["jobs"][0]["job_id"] == failed["job_id"]
    assert printed["jobs"][0]["error"] == failed["error"]
