"""The wpclone CLI against a fake jobs API (httpx.MockTransport): configuration, exit codes, output.

The real API and Airflow are in tests/system/test_cli.py; here every answer is made up, so each case (a
backwards progress, a job unknown for a moment, a 500) can be forced.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from wpclone import cli
from wpclone.cli import CliError, LineReporter, Settings, format_table, settings_from_env
from wpclone.jobs import JobStatusResponse
from wpclone.models import FIELD_RULES
from wpclone.settings import API_URL, PASSWORD, TOKEN, USERNAME

URL = "http://airflow.test:8080"
ENV = {API_URL: URL, USERNAME: "alice", PASSWORD: "s3cret"}
NOW = "2026-11-28T20:00:00Z"
SOURCE = "http://source.example"
CLONE = {
    "clone_id": "demo-clone",
    "status": "ready",
    "source_url": SOURCE,
    "url": "http://demo-clone.example",
    "db_name": "wpc_demo_clone",
    "copy_mode": "everything",
    "created_at": NOW,
    "expires_at": "2026-11-28T21:00:00Z",
    "updated_at": NOW,
    "deleted_at": None,
    "last_job_id": "clone-1",
    "last_error": None,
    "lock_job_id": None,
    "requested_by": "alice",
}
RESULT = {
    "clone_id": "demo-clone",
    "url": "http://demo-clone.example/",
    "admin_url": "http://demo-clone.example/wp-admin/",
    "admin_user": "admin",
    "admin_password": "/secrets/clone-demo-clone-admin-password",
    "expires_at": "2026-11-28T21:00:00+00:00",
}


def job(status: str, progress: int, message: str = "Working", **extra: Any) -> dict[str, Any]:
    return {
        "job_id": "clone-1",
        "type": "clone",
        "dag_id": "wp_clone",
        "status": status,
        "progress": progress,
        "status_message": message,
        "created_at": NOW,
        "updated_at": NOW,
        "clone_id": "demo-clone",
        **extra,
    }


class FakeApi:
    """Answers like the jobs API; ``polls`` are the successive answers of ``GET /jobs/clone-1``."""

    def __init__(self, polls: list[httpx.Response] | None = None) -> None:
        self.polls = polls or []
        self.requests: list[httpx.Request] = []
        self.password = "s3cret"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, method = request.url.path, request.method
        if path == "/auth/token":
            login = json.loads(request.content)
            if login["password"] != self.password:
                return httpx.Response(401, json={"detail": "Invalid credentials"})
            return httpx.Response(201, json={"access_token": "tok"})
        if request.headers.get("Authorization") != "Bearer tok":
            return httpx.Response(401, json={"detail": "Not authenticated"})
        if method == "POST" and path == "/wpclone/api/v1/clones":
            body = json.loads(request.content)
            if body["source_url"] != SOURCE:
                return httpx.Response(
                    422, json={"detail": f"{body['source_url']} is not a registered source."}
                )
            accepted = {k: v for k, v in job("pending", 0).items() if k in ("job_id", "type", "status")}
            accepted |= {"status_url": "/wpclone/api/v1/jobs/clone-1", "created_at": NOW, "clone_id": "x"}
            return httpx.Response(202, json=accepted)
        if path == "/wpclone/api/v1/jobs/clone-1":
            return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
        if path == "/wpclone/api/v1/clones":
            return httpx.Response(200, json=[CLONE])
        if path == "/wpclone/api/v1/clones/demo-clone":
            return httpx.Response(200, json=CLONE)
        if path.startswith("/wpclone/api/v1/"):
            return httpx.Response(404, json={"detail": f"{path.rsplit('/', 1)[-1]} does not exist."})
        return httpx.Response(404, json={"detail": "Not Found"})


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "POLL_INTERVAL_S", 0.0)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    def run(
        *argv: str, api: Handler | None = None, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        transport = httpx.MockTransport(api or FakeApi())
        code = cli.main(list(argv), env=ENV if env is None else env, transport=transport)
        out, err = capsys.readouterr()
        return code, out, err

    return run


Handler = Callable[[httpx.Request], httpx.Response]


def ok(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=body)


# -- configuration -------------------------------------------------------------------------------------------


def test_settings_from_the_environment() -> None:
    assert settings_from_env(ENV, lambda: None) == Settings(URL, None, "alice", "s3cret")
    token_env = {API_URL: URL + "/", TOKEN: "tok"}
    assert settings_from_env(token_env, lambda: None) == Settings(URL, "tok")


def test_local_stack_is_the_fallback() -> None:
    local = Settings("http://127.0.0.1:9", username="admin", password="pw")
    assert settings_from_env({}, lambda: local) == local
    assert settings_from_env({TOKEN: "tok"}, lambda: local) == Settings(local.url, "tok")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "set WPCLONE_API_URL"),
        ({API_URL: URL}, "set WPCLONE_TOKEN, or WPCLONE_USERNAME and WPCLONE_PASSWORD"),
        ({API_URL: URL, USERNAME: "alice"}, "set both WPCLONE_USERNAME and WPCLONE_PASSWORD"),
    ],
)
def test_missing_configuration_is_one_sentence_and_exit_3(env: dict[str, str], says: str) -> None:
    with pytest.raises(CliError) as caught:
        settings_from_env(env, lambda: None)
    assert caught.value.code == cli.EXIT_UNAVAILABLE
    assert says in str(caught.value)


def test_local_settings_create_nothing_without_a_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WPCLONE_STATE_DIR", str(tmp_path / "none"))
    assert cli.local_settings() is None
    assert not (tmp_path / "none").exists()


# -- pure parts --------------------------------------------------------------------------------------------


def test_line_reporter_prints_changes_and_never_goes_backwards() -> None:
    lines: list[str] = []
    report = LineReporter(lines.append)
    for status, progress, message in [
        ("pending", 0, "Queued"),
        ("pending", 0, "Queued"),
        ("running", 40, "Copying"),
        ("running", 30, "Copying"),
        ("running", 30, "Deploying"),
        ("completed", 100, "Done"),
    ]:
        report(JobStatusResponse.model_validate(job(status, progress, message)))
    assert lines == [
        "  0% pending: Queued",
        " 40% running: Copying",
        " 40% running: Deploying",
        "100% completed: Done",
    ]


def test_format_table_aligns_columns() -> None:
    table = format_table(("ID", "STATUS"), [("a-long-id", "ready"), ("b", "deleted")])
    assert table.splitlines() == ["ID         STATUS", "a-long-id  ready", "b          deleted"]


def test_when_is_local_time_to_the_minute() -> None:
    moment = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
    assert (
        cli.when(moment) == cli.when(moment.isoformat()) == moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")
    )
    assert cli.when(None) == "-"


# -- commands against the fake API ------------------------------------------------------------------------


def test_clone_without_wait_prints_job_and_status_url(run: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = run("clone", SOURCE, "--ttl", "30", "--id", "x", "--copy-mode", "database")
    assert code == 0
    assert "Job clone-1 accepted" in out
    assert f"{URL}/wpclone/api/v1/jobs/clone-1" in out


def test_clone_sends_only_the_options_given(run: Callable[..., tuple[int, str, str]]) -> None:
    api = FakeApi()
    run("clone", SOURCE, "--ttl", "30", "--copy-mode", "files", api=api)
    posted = next(r for r in api.requests if r.url.path.endswith("/clones"))
    assert json.loads(posted.content) == {"source_url": SOURCE, "ttl_minutes": 30, "copy_mode": "files"}


def test_clone_wait_shows_progress_lines_and_the_result(run: Callable[..., tuple[int, str, str]]) -> None:
    api = FakeApi(
        [
            ok(job("pending", 0, "Queued")),
            ok(job("running", 45, "Copying the database")),
            ok(job("completed", 100, "The clone is ready", result=RESULT)),
        ]
    )
    code, out, err = run("clone", SOURCE, "--wait", api=api)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Job clone-1 started (clone job for clone x)."  # before the first poll's line
    assert lines[1:4] == [
        "  0% pending: Queued",
        " 45% running: Copying the database",
        "100% completed: The clone is ready",
    ]
    assert "Clone demo-clone is ready." in out
    assert "http://demo-clone.example/wp-admin/" in out
    assert "Admin password: stored in /secrets/clone-demo-clone-admin-password" in out


def test_failed_job_exits_1_with_its_error(run: Callable[..., tuple[int, str, str]]) -> None:
    failed = job("failed", 100, "copy failed.", error="the source database cannot be read.")
    code, _, err = run("status", "clone-1", "--wait", api=FakeApi([ok(job("running", 10)), ok(failed)]))
    assert code == cli.EXIT_JOB_FAILED
    assert err == "wpclone: job clone-1 failed: the source database cannot be read.\n"
    code, _, _ = run("status", "clone-1", api=FakeApi([ok(failed)]))
    assert code == cli.EXIT_JOB_FAILED


def test_cancelled_job_exits_1(run: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = run("status", "clone-1", "--wait", api=FakeApi([ok(job("cancelled", 100, "Cancelled"))]))
    assert (code, err) == (cli.EXIT_JOB_FAILED, "wpclone: job clone-1 cancelled.\n")


def test_wait_times_out_with_exit_1(run: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = run("status", "clone-1", "--wait", "--timeout", "0", api=FakeApi([ok(job("running", 10))]))
    assert code == cli.EXIT_JOB_FAILED
    assert "still running after 0 s" in err


def test_unknown_job_is_bad_input(run: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = run("status", "nope-1", "--wait")
    assert (code, err) == (cli.EXIT_BAD_INPUT, "wpclone: nope-1 does not exist.\n")


def test_json_is_the_final_status_and_nothing_else(run: Callable[..., tuple[int, str, str]]) -> None:
    polls = [ok(job("running", 50)), ok(job("completed", 100, result=RESULT))]
    for argv in (("--json", "clone", SOURCE, "--wait"), ("clone", SOURCE, "--wait", "--json")):
        code, out, _ = run(*argv, api=FakeApi(list(polls)))
        assert code == 0
        assert JobStatusResponse.model_validate_json(out).result == RESULT


def test_api_refusal_is_exit_2_with_its_sentence(run: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = run("clone", "http://other.example")
    assert (code, out) == (cli.EXIT_BAD_INPUT, "")
    assert err == "wpclone: http://other.example is not a registered source.\n"


def test_wrong_password_is_exit_3(run: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = run("list", env={**ENV, PASSWORD: "wrong"})
    assert code == cli.EXIT_UNAVAILABLE
    assert "refused the login of alice (Invalid credentials)" in err


@pytest.mark.parametrize(
    ("status", "body", "code", "says"),
    [
        (
            403,
            {"detail": "user bob may not POST runs of the DAG wp_clone."},
            3,
            "refused the request: user bob",
        ),
        (401, {"detail": "Not authenticated"}, 3, "refused the request: Not authenticated."),
        (409, {"detail": "clone x is provisioning by job j; delete it later."}, 2, "clone x is provisioning"),
        (404, {"detail": "Not Found"}, 3, "has no wpclone jobs API"),
        (500, {"detail": "Internal Server Error"}, 3, "answered HTTP 500: Internal Server Error."),
        (502, "<html>bad gateway</html>", 3, "answered HTTP 502 Bad Gateway."),
    ],
)
def test_http_errors_map_to_exit_codes(
    run: Callable[..., tuple[int, str, str]], status: int, body: Any, code: int, says: str
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    exit_code, _, err = run("delete", "x", api=answer)
    assert exit_code == code
    assert says in err


def test_unreachable_airflow_is_exit_3(run: Callable[..., tuple[int, str, str]]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    code, _, err = run("list", api=refuse)
    assert code == cli.EXIT_UNAVAILABLE
    assert err.startswith(
        f"wpclone: cannot reach Airflow at {URL} (Connection refused); check WPCLONE_API_URL"
    )


def test_html_instead_of_json_is_exit_3(run: Callable[..., tuple[int, str, str]]) -> None:
    def html(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        return httpx.Response(200, text="<!doctype html>")

    code, _, err = run("list", api=html)
    assert code == cli.EXIT_UNAVAILABLE
    assert "something other than JSON" in err


def test_list_and_show(run: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = run("list", "--status", "ready", "--source", SOURCE)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["CLONE", "ID", "STATUS", "URL", "SOURCE", "ASKED", "BY", "EXPIRES"]
    assert row.split()[:5] == ["demo-clone", "ready", "http://demo-clone.example", SOURCE, "alice"]
    assert row.endswith("ago (2026-11-28 21:00 UTC)")  # the fixture's expiry is in the past
    code, out, _ = run("show", "demo-clone")
    assert code == 0
    assert "Status:    ready" in out
    code, out, _ = run("show", "demo-clone", "--json")
    assert json.loads(out) == CLONE


def test_bad_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["clone", SOURCE, "--copy-mode", "bogus"], env=ENV)
    assert caught.value.code == cli.EXIT_BAD_INPUT


# -- wpclone login -------------------------------------------------------------------------------------------

LINK = {
    "clone_id": "demo-clone",
    "url": "http://demo-clone.example/wp-login.php?action=wpclone-login#tok3n-abcdefghijklmnop",
    "user": "admin",
    "expires_at": "2099-01-01T00:05:00Z",
}


def login_api(answers: dict[str, httpx.Response]) -> FakeApi:
    """FakeApi, with ``POST /clones/<id>/login`` answered from ``answers`` (by clone id)."""

    class LoginApi(FakeApi):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            path = request.url.path
            if request.method == "POST" and path.endswith("/login") and "/clones/" in path:
                self.requests.append(request)
                return answers[path.split("/")[-2]]
            return super().__call__(request)

    return LoginApi()


def test_login_prints_the_link_alone_on_stdout(run: Callable[..., tuple[int, str, str]]) -> None:
    api = login_api({"demo-clone": ok(LINK)})
    code, out, err = run("login", "demo-clone", api=api)
    assert code == 0
    assert out == LINK["url"] + "\n"  # `open "$(wpclone login demo-clone)"` works
    assert err.startswith(
        "A one-time link into demo-clone's wp-admin as admin: it works once and expires in "
    )
    (posted,) = [r for r in api.requests if r.url.path.endswith("/login")]
    assert (posted.method, posted.url.path) == ("POST", "/wpclone/api/v1/clones/demo-clone/login")
    code, out, _ = run("login", "demo-clone", "--json", api=login_api({"demo-clone": ok(LINK)}))
    assert (code, json.loads(out)) == (0, LINK)


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (404, "clone gone-clone does not exist."),
        (409, "clone gone-clone is provisioning; only a ready clone can be logged in to."),
    ],
)
def test_login_refused_says_why_and_exits_2(
    run: Callable[..., tuple[int, str, str]], status: int, detail: str
) -> None:
    api = login_api({"gone-clone": httpx.Response(status, json={"detail": detail})})
    code, out, err = run("login", "gone-clone", api=api)
    assert (code, out, err) == (cli.EXIT_BAD_INPUT, "", f"wpclone: {detail}\n")


def test_show_and_a_finished_clone_say_how_to_log_in(run: Callable[..., tuple[int, str, str]]) -> None:
    _, out, _ = run("show", "demo-clone")
    assert (
        "Log in:    wpclone login demo-clone (or POST /wpclone/api/v1/clones/demo-clone/login) "
        "gives a one-time wp-admin link." in out.splitlines()
    )
    done = ok(job("completed", 100, "The clone is ready", result=RESULT))
    _, out, _ = run("status", "clone-1", "--wait", api=FakeApi([done]))
    assert "  Log in:         wpclone login demo-clone (a one-time wp-admin link)" in out.splitlines()


# -- messages in the user's words --------------------------------------------------------------------------


def test_a_refused_field_is_said_with_the_cli_option(run: Callable[..., tuple[int, str, str]]) -> None:
    rule = FIELD_RULES["clone_id"]

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/wpclone/api/v1/clones":
            field = {"detail": f"clone_id {rule}.", "field": "clone_id", "rule": rule}
            return httpx.Response(422, json=field)
        return FakeApi()(request)

    code, out, err = run("clone", SOURCE, "--id", "Bad_Clone", api=api)
    assert (code, out) == (cli.EXIT_BAD_INPUT, "")
    assert err == f"wpclone: --id {rule}.\n"


def test_a_field_without_an_option_keeps_the_api_sentence(run: Callable[..., tuple[int, str, str]]) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"detail": "source must be a name.", "field": "source", "rule": "x"})

    code, _, err = run("show", "demo-clone", api=api, env={**ENV, TOKEN: "tok"})
    assert (code, err) == (cli.EXIT_BAD_INPUT, "wpclone: source must be a name.\n")


@pytest.mark.parametrize(("typed", "meant"), [("clnoe", "clone"), ("lst", "list"), ("statsu", "status")])
def test_a_mistyped_command_gets_a_suggestion(
    typed: str, meant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main([typed, "demo-clone"], env=ENV)
    assert caught.value.code == cli.EXIT_BAD_INPUT
    assert (
        f"wpclone: error: '{typed}' is not a wpclone command; did you mean {meant}?"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["jobs", "--status", "faild"], "--status 'faild' is not a value it takes; did you mean failed?"),
        (
            ["jobs", "--type", "xyz"],
            "--type 'xyz' is not a value it takes; it takes clone, delete, backup, restore.",
        ),
        (["clone", "http://a.example", "--copy-mode", "databse"], "did you mean database?"),
    ],
)
def test_a_mistyped_option_value_gets_a_suggestion(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(argv, env=ENV)
    assert caught.value.code == cli.EXIT_BAD_INPUT
    assert said in capsys.readouterr().err


def test_an_unknown_command_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"], env=ENV)
    assert "'frobnicate' is not a wpclone command; the commands are clone, status," in capsys.readouterr().err


def test_a_bare_wpclone_prints_its_help_and_exits_0(run: Callable[..., tuple[int, str, str]]) -> None:
    api = FakeApi()
    code, out, err = run(api=api)
    assert (code, err) == (0, "")
    assert out.startswith("usage: wpclone")
    assert all(command in out for command in cli.COMMANDS) and "Exit codes:" in out
    assert api.requests == []  # nothing asked of Airflow


def test_a_deleted_clone_is_said_so_and_no_job_is_started(run: Callable[..., tuple[int, str, str]]) -> None:
    deleted = {**CLONE, "status": "deleted", "deleted_at": "2026-11-28T20:30:00Z"}
    requests: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/wpclone/api/v1/clones/demo-clone" and request.method == "GET":
            return httpx.Response(200, json=deleted)
        return FakeApi()(request)

    code, out, err = run("delete", "demo-clone", "--wait", api=api)
    assert (code, err) == (0, "")
    assert out == f"demo-clone was already deleted at {cli.when(deleted['deleted_at'])}; nothing to delete.\n"
    assert [r.method for r in requests if r.url.path.startswith("/wpclone/")] == ["GET"]


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``wpclone list | head -3``: the reader goes away; no traceback, exit 141 as a shell reports it."""
    script = textwrap.dedent(
        """
        import sys, httpx
        from wpclone import cli
        from tests.test_cli import CLONE, ENV
        rows = [{**CLONE, "clone_id": f"clone-{i:05d}"} for i in range(3000)]
        def api(request):
            if request.url.path == "/auth/token":
                return httpx.Response(201, json={"access_token": "tok"})
            return httpx.Response(200, json=rows)
        sys.exit(cli.main(["list"], env=ENV, transport=httpx.MockTransport(api)))
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path.cwd()
    )
    assert child.stdout is not None and child.stderr is not None
    head = [child.stdout.readline() for _ in range(3)]
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == cli.EXIT_CLOSED_PIPE, err
    assert head[1].startswith(b"clone-00000") and err == ""


# -- expiry: --ttl in words, wpclone extend, relative times; list live by default ------------------------


@pytest.mark.parametrize(
    ("given", "minutes"), [("90m", 90), ("2h", 120), ("3d", 4320), ("45", 45), ("7d", 10080), ("10m", 10)]
)
def test_ttl_takes_minutes_hours_and_days(
    run: Callable[..., tuple[int, str, str]], given: str, minutes: int
) -> None:
    api = FakeApi()
    code, _, _ = run("clone", SOURCE, "--ttl", given, api=api)
    assert code == 0
    posted = next(r for r in api.requests if r.url.path.endswith("/clones"))
    assert json.loads(posted.content)["ttl_minutes"] == minutes


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("8d", "a time to live of 8d is out of bounds: it must be at least 10m and at most 7d"),
        ("99999", "a time to live of 99999m is out of bounds"),
        ("5m", "a time to live of 5m is out of bounds"),
        ("soon", "'soon' is not a time to live: give minutes, hours or days, at least 10m and at most 7d"),
        ("2w", "'2w' is not a time to live"),
    ],
)
def test_a_bad_ttl_is_one_sentence_with_the_bounds_and_nothing_is_sent(
    capsys: pytest.CaptureFixture[str], given: str, says: str
) -> None:
    for argv in (["clone", SOURCE, "--ttl", given], ["extend", "demo-clone", "--ttl", given]):
        api = FakeApi()
        with pytest.raises(SystemExit) as caught:
            cli.main(argv, env=ENV, transport=httpx.MockTransport(api))
        assert caught.value.code == cli.EXIT_BAD_INPUT
        assert says in capsys.readouterr().err
        assert api.requests == []  # refused before any request


class ExpiryApi(FakeApi):
    """Also answers ``PATCH /clones/{id}`` (ready: extended from now; else 409) and lists by ``all``."""

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.now = now

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "PATCH" and path.startswith("/wpclone/api/v1/clones/"):
            self.requests.append(request)
            if path.endswith("/gone-clone"):
                return httpx.Response(409, json={"detail": "clone gone-clone is deleted; ask for a new one."})
            ttl = json.loads(request.content)["ttl_minutes"]
            expires = (self.now + timedelta(minutes=ttl)).isoformat()
            return httpx.Response(200, json={**CLONE, "expires_at": expires})
        if request.method == "GET" and path == "/wpclone/api/v1/clones":
            self.requests.append(request)
            deleted = {**CLONE, "clone_id": "old-clone", "status": "deleted", "deleted_at": NOW}
            listed = [CLONE, deleted] if request.url.params.get("all") == "true" else [CLONE]
            return httpx.Response(200, json=listed)
        return super().__call__(request)


def test_extend_sends_minutes_and_says_the_new_expiry_in_words(
    run: Callable[..., tuple[int, str, str]],
) -> None:
    now = datetime.now(UTC)
    api = ExpiryApi(now)
    code, out, _ = run("extend", "demo-clone", "--ttl", "2h", api=api)
    assert code == 0
    [patch] = [r for r in api.requests if r.method == "PATCH"]
    assert patch.url.path == "/wpclone/api/v1/clones/demo-clone"
    assert json.loads(patch.content) == {"ttl_minutes": 120}
    expected = (now + timedelta(minutes=120)).strftime("%Y-%m-%d %H:%M UTC")
    # "in 2 h" or, a minute boundary passed meanwhile, "in 1 h 59 min"
    assert out.startswith("Clone demo-clone now expires in ")
    assert f"({expected})." in out and ("in 2 h (" in out or "in 1 h 59 min (" in out)


def test_extend_of_a_clone_that_is_not_ready_is_exit_2_with_the_sentence(
    run: Callable[..., tuple[int, str, str]],
) -> None:
    code, out, err = run("extend", "gone-clone", "--ttl", "1h", api=ExpiryApi(datetime.now(UTC)))
    assert code == cli.EXIT_BAD_INPUT and out == ""
    assert err == "wpclone: clone gone-clone is deleted; ask for a new one.\n"


def test_list_shows_live_clones_unless_all(run: Callable[..., tuple[int, str, str]]) -> None:
    api = ExpiryApi(datetime.now(UTC))
    _, live, _ = run("list", api=api)
    _, everything, _ = run("list", "--all", api=api)
    lists = [r for r in api.requests if r.method == "GET" and r.url.path.endswith("/clones")]
    assert [dict(r.url.params) for r in lists] == [{}, {"all": "true"}]
    assert "old-clone" not in live and "demo-clone" in live
    [old] = [line for line in everything.splitlines() if line.startswith("old-clone")]
    assert "deleted" in old.split() and old.endswith("ago (2026-11-28 20:00 UTC)")


def test_an_empty_live_list_points_at_all(run: Callable[..., tuple[int, str, str]]) -> None:
    def empty(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        return httpx.Response(200, json=[])

    _, out, _ = run("list", "--source", SOURCE, api=empty)
    assert out == f"No live clones of {SOURCE}; `wpclone list --all` shows deleted ones too.\n"


def test_show_says_who_asked_and_times_relative_and_in_utc(run: Callable[..., tuple[int, str, str]]) -> None:
    future = (datetime.now(UTC) + timedelta(hours=1, minutes=20, seconds=30)).replace(microsecond=0)
    clone = {**CLONE, "expires_at": future.isoformat()}

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        return httpx.Response(200, json=clone)

    code, out, _ = run("show", "demo-clone", api=api)
    assert code == 0
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines["Asked by"].strip() == "alice"
    assert lines["Expires"].strip() == f"in 1 h 20 min ({future.strftime('%Y-%m-%d %H:%M')} UTC)"
    assert lines["Created"].strip().endswith("ago (2026-11-28 20:00 UTC)")
