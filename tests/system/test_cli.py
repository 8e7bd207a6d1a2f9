"""The ``wpclone`` CLI as a user runs it: a real subprocess against the running Airflow and its jobs API.

Output is not a terminal here, so ``--wait`` prints plain progress lines. Every clone a test makes is deleted
afterwards through the API (the ``clones`` fixture), whatever the test's outcome.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.system.conftest import JOB_TIMEOUT_S, Api
from wpclone.jobs import JobResponse, JobStatusResponse
from wpclone.local.airflow import LocalAirflow
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, http_opener
from wpclone.registry import CloneRecord

WPCLONE = Path(sys.executable).with_name("wpclone")
PROGRESS_LINE = re.compile(r"^\s*(\d{1,3})% (pending|running|completed|failed|cancelled): (.+)$")
CLONES = "/wpclone/api/v1/clones"
Run = Callable[..., subprocess.CompletedProcess[str]]


def cli_env(airflow: LocalAirflow, user: str = "admin", password: str | None = None) -> dict[str, str]:
    """The environment of a CLI run: this Airflow, logged in as ``user``; no other WPCLONE_ login."""
    env = {k: v for k, v in os.environ.items() if k not in ("WPCLONE_TOKEN", "WPCLONE_API_URL")}
    return {
        **env,
        "WPCLONE_API_URL": airflow.url,
        "WPCLONE_USERNAME": user,
        "WPCLONE_PASSWORD": airflow.password(user) if password is None else password,
    }


@pytest.fixture(scope="module")
def wpclone(airflow: LocalAirflow) -> Run:
    """Run the installed ``wpclone`` script; ``env`` replaces the admin login's environment."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(WPCLONE), *args],
            env=cli_env(airflow) if env is None else env,
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S,
            check=False,
        )

    return run


@pytest.fixture
def clones(api: Api) -> Iterator[list[str]]:
    """Ids of the clones a test makes; whichever of them still exists afterwards is deleted."""
    made: list[str] = []
    yield made
    for clone_id in made:
        found = api.call("GET", f"{CLONES}/{clone_id}")
        if found.status_code == 404 or found.json()["status"] == "deleted":
            continue
        if found.json()["lock_job_id"]:  # a job still works on it: let it finish first
            api.wait_job(found.json()["lock_job_id"])
        started = api.call("DELETE", f"{CLONES}/{clone_id}")
        assert started.status_code == 202, started.text
        assert api.wait_job(started.json()["job_id"])["status"] == "completed"


def new_clone_id(clones: list[str]) -> str:
    clone_id = f"cli-{secrets.token_hex(4)}"
    clones.append(clone_id)
    return clone_id


def field(output: str, label: str) -> str:
    """The value of a ``Label: value`` line of the CLI's output."""
    found = re.search(rf"^\s*{re.escape(label)}:\s+(.+)$", output, re.MULTILINE)
    assert found, f"no {label!r} line in:\n{output}"
    return found.group(1).strip()


def test_clone_wait_list_show_delete(
    wpclone: Run, clones: list[str], source_site: SiteConfig, stack: StackSettings
) -> None:
    clone_id = new_clone_id(clones)
    made = wpclone("clone", source_site.url, "--id", clone_id, "--ttl", "30", "--wait")
    assert made.returncode == 0, made.stderr
    assert "\x1b" not in made.stdout, "no terminal: no escape sequences, only plain lines"

    progress = [PROGRESS_LINE.match(line) for line in made.stdout.splitlines()]
    steps = [(int(m.group(1)), m.group(2)) for m in progress if m]
    assert len(steps) >= 2, made.stdout
    percents = [percent for percent, _ in steps]
    assert percents == sorted(percents), f"progress went backwards:\n{made.stdout}"
    assert steps[-1] == (100, "completed")
    assert steps[0][1] in ("pending", "running")

    url = stack.site_url(clone_id) + "/"
    assert field(made.stdout, "URL") == url
    assert field(made.stdout, "Admin") == url + "wp-admin/"
    password_place = field(made.stdout, "Admin password").removeprefix("stored in ")
    assert Path(password_place).is_file(), "the admin password's place (a file here), never the password"
    with http_opener().open(url, timeout=30) as response:
        page = response.read().decode()
    assert response.status == 200
    assert f"{clone_id}.localhost" in page, "the clone serves its own site, its URLs rewritten"

    listed = wpclone("list", "--status", "ready", "--source", source_site.url)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [clone_id, "ready", url.rstrip("/"), source_site.url] in [row[:4] for row in rows]
    assert clone_id not in wpclone("list", "--status", "deleted").stdout

    shown = wpclone("show", clone_id)
    assert shown.returncode == 0, shown.stderr
    assert field(shown.stdout, "Status") == "ready"
    assert field(shown.stdout, "Log in").startswith(f"wpclone login {clone_id} ")
    assert field(made.stdout, "Log in") == f"wpclone login {clone_id} (a one-time wp-admin link)"

    link = wpclone("login", clone_id)
    assert link.returncode == 0, link.stderr
    page_url, token = link.stdout.strip().split("#")
    assert page_url == f"{url}wp-login.php?action=wpclone-login" and "\n" not in link.stdout.strip()
    assert link.stderr.startswith(f"A one-time link into {clone_id}'s wp-admin as admin: it works once and ")
    jar = http.cookiejar.CookieJar()
    http_opener(jar).open(page_url, timeout=30).read()
    form = urllib.parse.urlencode({"token": token}).encode()
    with http_opener(jar).open(urllib.request.Request(page_url, data=form), timeout=30) as answer:
        assert answer.geturl() == f"{url}wp-admin/", "the link logs in: its cookie reaches wp-admin"

    deleted = wpclone("delete", clone_id, "--wait")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.splitlines()[-1] == f"Clone {clone_id} is deleted."
    with pytest.raises(OSError):
        http_opener().open(url, timeout=30)
    assert field(wpclone("show", clone_id).stdout, "Status") == "deleted"


def test_json_for_scripts(
    wpclone: Run, clones: list[str], source_site: SiteConfig, stack: StackSettings
) -> None:
    clone_id = new_clone_id(clones)
    started = wpclone("--json", "clone", source_site.url, "--id", clone_id)
    assert started.returncode == 0, started.stderr
    job = JobResponse.model_validate_json(started.stdout)
    assert job.clone_id == clone_id

    too_soon = wpclone("status", job.job_id, "--wait", "--timeout", "0")
    assert too_soon.returncode == 1
    assert re.search(rf"job {job.job_id} is still (pending|running) after 0 s", too_soon.stderr)

    done = wpclone("status", job.job_id, "--wait", "--json")
    assert done.returncode == 0, done.stderr
    final = JobStatusResponse.model_validate_json(done.stdout)  # the whole output: no progress lines
    assert (final.status, final.progress, final.clone_id) == ("completed", 100, clone_id)
    assert final.result is not None
    assert final.result["url"] == stack.site_url(clone_id) + "/"

    listed = wpclone("list", "--json")
    assert clone_id in [CloneRecord.model_validate(c).clone_id for c in json.loads(listed.stdout)]
    shown = CloneRecord.model_validate_json(wpclone("show", clone_id, "--json").stdout)
    assert shown.status == "ready"

    deleted = wpclone("delete", clone_id, "--wait", "--json")
    assert deleted.returncode == 0, deleted.stderr
    gone = JobStatusResponse.model_validate_json(deleted.stdout)
    assert (gone.type, gone.status, gone.result) == (
        "delete",
        "completed",
        {"clone_id": clone_id, "deleted": True, "already_deleted": False},
    )


@pytest.mark.parametrize(
    ("body", "args", "option"),
    [
        ({"source_url": "http://unknown.localhost"}, ["clone", "http://unknown.localhost"], None),
        ({"source_url": "SOURCE", "clone_id": "Bad_Id"}, ["clone", "SOURCE", "--id", "Bad_Id"], "--id"),
    ],
    ids=["unknown-source", "bad-id"],
)
def test_refused_clone_exits_2_with_the_api_sentence(
    wpclone: Run,
    api: Api,
    source_site: SiteConfig,
    body: dict[str, object],
    args: list[str],
    option: str | None,
) -> None:
    """The API's refusal, said by the CLI: its sentence, or a field's rule with the option the user typed."""
    body = {k: source_site.url if v == "SOURCE" else v for k, v in body.items()}
    refused = api.call("POST", CLONES, json=body)  # what the API itself says (and creates nothing)
    assert refused.status_code == 422, refused.text
    before = api.call("GET", CLONES).json()
    result = wpclone(*(source_site.url if a == "SOURCE" else a for a in args))
    assert result.returncode == 2
    said = refused.json()["detail"] if option is None else f"{option} {refused.json()['rule']}."
    assert result.stderr == f"wpclone: {said}\n"
    assert result.stdout == ""
    assert api.call("GET", CLONES).json() == before, "a refused request creates nothing"


def test_a_ttl_out_of_bounds_is_refused_before_the_api_is_asked(
    wpclone: Run, api: Api, source_site: SiteConfig
) -> None:
    before = api.call("GET", CLONES).json()
    result = wpclone("clone", source_site.url, "--ttl", "5", "--wait")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: wpclone clone ")
    assert result.stderr.splitlines()[-1] == (
        "wpclone clone: error: argument --ttl: a time to live of 5m is out of bounds: it must be at least "
        "10m and at most 7d (10-10080 minutes), e.g. 90m, 2h or 3d."
    )
    assert result.stdout == ""
    assert api.call("GET", CLONES).json() == before, "a refused request creates nothing"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["delete", "no-such-clone"], "clone no-such-clone does not exist."),
        (["show", "no-such-clone"], "clone no-such-clone does not exist."),
        (["status", "clone-20000101T000000-00000000"], "job clone-20000101T000000-00000000 does not exist."),
        (["list", "--status", "gone"], "--status 'gone' is not a value it takes"),
        (["clone"], "the following arguments are required: SOURCE_URL"),
    ],
)
def test_bad_input_exits_2(wpclone: Run, args: list[str], says: str) -> None:
    result = wpclone(*args)
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_password_exits_3(wpclone: Run, airflow: LocalAirflow) -> None:
    result = wpclone("list", env=cli_env(airflow, password="not-the-password"))
    assert result.returncode == 3
    assert result.stderr == (
        f"wpclone: Airflow at {airflow.url} refused the login of admin (Invalid credentials); "
        "check WPCLONE_USERNAME and WPCLONE_PASSWORD.\n"
    )


def test_viewer_may_list_but_not_clone(
    wpclone: Run, airflow: LocalAirflow, api: Api, source_site: SiteConfig
) -> None:
    viewer = cli_env(airflow, user="viewer")
    assert wpclone("list", env=viewer).returncode == 0
    before = api.call("GET", CLONES).json()
    refused = wpclone("clone", source_site.url, "--wait", env=viewer)
    assert refused.returncode == 3
    assert "user viewer may not POST runs of the DAG wp_clone." in refused.stderr
    assert api.call("GET", CLONES).json() == before, "a refused request creates nothing"


def test_unreachable_airflow_exits_3(wpclone: Run, airflow: LocalAirflow) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        result = wpclone("list", env={**cli_env(airflow), "WPCLONE_API_URL": f"http://127.0.0.1:{port}"})
    assert result.returncode == 3
    assert result.stderr.startswith(f"wpclone: cannot reach Airflow at http://127.0.0.1:{port} (")
    assert result.stderr.count("\n") == 1


def test_local_stack_is_the_default(wpclone: Run, airflow: LocalAirflow, tmp_path: Path) -> None:
    bare = {k: v for k, v in os.environ.items() if not k.startswith("WPCLONE_")}
    local = wpclone("list", env={**bare, "WPCLONE_STATE_DIR": str(airflow.settings.state_dir)})
    assert local.returncode == 0, local.stderr

    nothing = wpclone("list", env={**bare, "WPCLONE_STATE_DIR": str(tmp_path / "no-stack")})
    assert nothing.returncode == 3
    assert "set WPCLONE_API_URL to Airflow's base URL" in nothing.stderr
    assert not (tmp_path / "no-stack").exists(), "looking for a local stack creates none"


def test_failed_job_exits_1_with_its_error(wpclone: Run, api: Api, source_site: SiteConfig) -> None:
    """A job started through Airflow's own API (which skips our checks) fails in its first task."""
    job_id = f"manual-cli-{secrets.token_hex(4)}"
    unknown = "http://unregistered.localhost:1"
    api.trigger("wp_clone", job_id, {"source_url": unknown})
    waited = wpclone("status", job_id, "--wait")
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert waited.stderr == (  # a task cannot list the connections' sources: it says how to name one
        f"wpclone: job {job_id} failed: {unknown} is not a registered source site "
        f"(registered: {source_site.url}); a source registered as an Airflow connection is found by its "
        "name: set the job's source param to it.\n"
    )
    last = PROGRESS_LINE.match(waited.stdout.splitlines()[-1])
    assert last and last.groups()[:2] == ("100", "failed"), waited.stdout
    again = wpclone("status", job_id)  # without --wait the outcome still decides the exit code
    assert again.returncode == 1


def test_a_failed_clone_job_is_listed_by_wpclone_jobs_status_failed(wpclone: Run, api: Api) -> None:
    """Whoever started it (here Airflow's own API), a failed job is found with its error, by status and
    by clone, and is not among the completed ones."""
    job_id = f"manual-jobs-{secrets.token_hex(4)}"
    clone_id = f"sys-jobs-{secrets.token_hex(3)}"
    api.trigger("wp_clone", job_id, {"source_url": "http://unregistered.localhost:1", "clone_id": clone_id})
    assert api.wait_job(job_id)["status"] == "failed"

    failed = wpclone("jobs", "--status", "failed", "--since", "1h")
    assert failed.returncode == 0, failed.stderr
    header, *rows = failed.stdout.splitlines()
    assert header.split()[:4] == ["JOB", "ID", "TYPE", "CLONE"]
    [row] = [r for r in rows if r.startswith(job_id)]
    assert row.split()[1:5] == ["clone", clone_id, "failed", "admin"]
    assert "http://unregistered.localhost:1 is not a registered source site" in row
    assert all(r.split()[3] == "failed" for r in rows)

    mine = json.loads(wpclone("jobs", "--clone", clone_id, "--mine", "--json").stdout)
    assert [j["job_id"] for j in mine["jobs"]] == [job_id] and mine["next"] is None
    completed = wpclone("jobs", "--status", "completed", "--clone", clone_id)
    assert (completed.returncode, completed.stdout) == (0, "No jobs match those filters.\n")


def test_backup_then_restore_through_the_api(
    wpclone: Run, api: Api, clones: list[str], source_site: SiteConfig, stack: StackSettings
) -> None:
    clone_id = new_clone_id(clones)
    assert wpclone("clone", source_site.url, "--id", clone_id, "--wait").returncode == 0
    backed = wpclone("backup", clone_id, "--wait", "--json")
    assert backed.returncode == 0, backed.stderr
    backup = json.loads(backed.stdout)
    assert backup["type"] == "backup" and backup["status"] == "completed", backup
    archive = Path(backup["result"]["backup_url"].removeprefix("file://"))
    assert archive.is_file() and archive.stat().st_size == backup["result"]["size"]

    restored = wpclone("restore", clone_id, backup["result"]["backup_url"], "--wait")
    assert restored.returncode == 0, restored.stderr
    assert f"Clone {clone_id} serves the restored backup." in restored.stdout.splitlines()
    assert field(restored.stdout, "Restored from") == stack.site_url(clone_id)
    assert field(restored.stdout, "Backup made first").startswith("file://")
    with http_opener().open(stack.site_url(clone_id) + "/", timeout=30) as response:
        assert response.status == 200 and f"{clone_id}.localhost" in response.read().decode()

    runs = api.call("GET", "/api/v2/dags/wp_restore/dagRuns?limit=1").json()["total_entries"]
    refused = wpclone("restore", clone_id, "file:///etc/passwd")
    assert refused.returncode == 2 and "/etc/passwd" in refused.stderr, refused.stderr
    assert api.call("GET", "/api/v2/dags/wp_restore/dagRuns?limit=1").json()["total_entries"] == runs
    missing = wpclone("backup", "no-such-clone")
    assert missing.returncode == 2 and "no-such-clone does not exist" in missing.stderr, missing.stderr
