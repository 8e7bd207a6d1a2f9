"""The jobs API on a running Airflow: auth, refusals before anything exists, and whole jobs end to end.

A job triggered through Airflow's own REST API must report exactly like one triggered through ours.
"""

from __future__ import annotations

import functools
import http.cookiejar
import http.server
import json
import re
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fixtures.stack import leftovers
from tests.system.conftest import Api
from wpclone.db import DbEndpoint, quote_identifier
from wpclone.jobs import TYPE_OF_DAG, JobResponse, JobStatusResponse, new_job_id
from wpclone.local.airflow import LocalAirflow
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, http_opener
from wpclone.login import LoginLink
from wpclone.models import ClonePlan, CopyMode, SourceConfig, clone_db_name
from wpclone.registry import CloneRecord, Registry

V1 = "/wpclone/api/v1"
RESULT_KEYS = {"clone_id", "url", "source_url", "admin_url", "admin_user", "admin_password", "expires_at"}


def _id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def made(api: Api) -> Iterator[list[str]]:
    """Clone ids this module created; each is deleted at the end (a no-op for those already gone)."""
    clone_ids: list[str] = []
    yield clone_ids
    responses = [api.call("DELETE", f"{V1}/clones/{clone_id}") for clone_id in clone_ids]
    for response in responses:  # the deletes run side by side
        if response.status_code == 202:
            api.wait_job(response.json()["job_id"])


def _run_count(api: Api, dag_id: str) -> int:
    response = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=1")
    assert response.status_code == 200, response.text
    return int(response.json()["total_entries"])


def _watch(api: Api, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    polls: list[dict[str, Any]] = []
    final = api.wait_job(job_id, on_poll=polls.append)
    return final, polls


def _assert_moves_forward(polls: list[dict[str, Any]]) -> None:
    progress = [p["progress"] for p in polls]
    assert progress == sorted(progress), progress
    assert progress[-1] == 100
    assert all(p < 100 for p, poll in zip(progress, polls, strict=True) if poll["status"] == "running")


def _serves(url: str) -> int:
    with http_opener().open(urllib.request.Request(url), timeout=30) as response:
        return int(response.status)


# -- auth ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{V1}/clones"),
        ("DELETE", f"{V1}/clones/some-clone"),
        ("GET", f"{V1}/clones"),
        ("GET", f"{V1}/clones/some-clone"),
        ("PATCH", f"{V1}/clones/some-clone"),
        ("GET", f"{V1}/jobs/clone-x"),
    ],
)
def test_every_route_needs_a_token(api: Api, method: str, path: str) -> None:
    response = api.call(method, path, json={"source_url": "http://x.localhost"}, user=None)
    assert response.status_code == 401
    assert response.json()["detail"]


def test_a_forged_token_is_refused(api: Api) -> None:
    response = api.client.get(f"{V1}/clones", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code in (401, 403)


def test_a_viewer_may_read_but_not_start_jobs(api: Api, source_site: SiteConfig) -> None:
    before = _run_count(api, "wp_clone")
    response = api.call("POST", f"{V1}/clones", json={"source_url": source_site.url}, user="viewer")
    assert response.status_code == 403
    assert "may not POST runs of the DAG wp_clone" in response.json()["detail"]
    assert api.call("DELETE", f"{V1}/clones/some-clone", user="viewer").status_code == 403
    assert api.call("GET", f"{V1}/clones", user="viewer").status_code == 200
    assert _run_count(api, "wp_clone") == before


# -- refusals: one sentence, nothing created --------------------------------------------------------------


TTL_RULE = "must be a whole number of minutes from 10 to 10080 (7 days), e.g. 120 for two hours"
CLONE_ID_RULE = (
    "must be 3-28 lowercase letters, digits or '-', starting with a letter and not ending with '-', "
    "e.g. qa-checkout"
)
SOURCE_URL_RULE = (
    "must be a registered source site's address, http:// or https:// and the host, with no path, "
    "e.g. https://www.example.com"
)


@pytest.mark.parametrize(
    ("body", "field", "sentence"),
    [
        ({"ttl_minutes": 5}, "ttl_minutes", TTL_RULE),
        ({"ttl_minutes": 99999}, "ttl_minutes", TTL_RULE),
        ({"clone_id": "Bad_Id"}, "clone_id", CLONE_ID_RULE),
        ({"copy_mode": "half"}, "copy_mode", "must be one of everything, database, files, e.g. everything"),
        ({"source_url": "ftp://x"}, "source_url", SOURCE_URL_RULE),
        ({"colour": "blue"}, None, "colour is not a field this request takes."),
    ],
)
def test_bad_requests_get_a_sentence_and_create_nothing(
    api: Api, source_site: SiteConfig, body: dict[str, Any], field: str | None, sentence: str
) -> None:
    """A field that breaks its rule is refused with the rule in words (and the field and rule apart, for a
    client to say in its own words, as the CLI does); a field the request does not take, by its name."""
    before = _run_count(api, "wp_clone")
    response = api.call("POST", f"{V1}/clones", json={"source_url": source_site.url, **body})
    assert response.status_code == 422, response.text
    if field is None:
        assert response.json() == {"detail": sentence}
    else:
        assert response.json() == {"detail": f"{field} {sentence}.", "field": field, "rule": sentence}
    assert _run_count(api, "wp_clone") == before


def test_an_unregistered_source_is_refused_with_the_registered_ones(
    api: Api, source_site: SiteConfig
) -> None:
    before = _run_count(api, "wp_clone")
    unknown = "http://elsewhere.localhost:1"
    response = api.call("POST", f"{V1}/clones", json={"source_url": unknown})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    registered = re.fullmatch(
        rf"{re.escape(unknown)} is not a registered source site \(registered: (.*)\)\.", detail
    )
    assert registered is not None, detail
    assert source_site.url in registered[1].split(", ")
    assert _run_count(api, "wp_clone") == before


def test_unknown_clone_and_job_are_404(api: Api) -> None:
    assert api.call("DELETE", f"{V1}/clones/no-such-clone").json() == {
        "detail": "clone no-such-clone does not exist."
    }
    assert api.call("GET", f"{V1}/clones/no-such-clone").status_code == 404
    response = api.call("GET", f"{V1}/jobs/clone-19990101T000000-deadbeef")
    assert response.status_code == 404 and "does not exist" in response.json()["detail"]


def test_a_login_link_is_only_for_a_ready_clone_and_a_user_who_may_start_jobs(
    api: Api, source_site: SiteConfig, made: list[str]
) -> None:
    unknown = api.call("POST", f"{V1}/clones/no-such-clone/login")
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "clone no-such-clone does not exist."})
    assert api.call("POST", f"{V1}/clones/no-such-clone/login", user="viewer").status_code == 403
    clone_id = _id("sys-login")
    made.append(clone_id)
    started = api.call("POST", f"{V1}/clones", json={"source_url": source_site.url, "clone_id": clone_id})
    assert started.status_code == 202, started.text
    response = api.call("POST", f"{V1}/clones/{clone_id}/login")  # accepted or provisioning: not ready
    assert response.status_code == 409, response.text
    assert re.fullmatch(
        rf"clone {clone_id} is (accepted|provisioning); only a ready clone can be logged in to\.",
        response.json()["detail"],
    )


def _accepted_a_minute_ago(admin_db: DbEndpoint, dag_id: str, conf: dict[str, Any]) -> str:
    """A job recorded as accepted by an API server process that died before it started the run."""
    registry = Registry.from_endpoint(admin_db)
    job_id = new_job_id(TYPE_OF_DAG[dag_id])
    registry.record_job(job_id, dag_id, conf, "admin", None)
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE {quote_identifier(registry.schema)}.`jobs` "
            "SET `created_at` = `created_at` - INTERVAL 1 MINUTE WHERE `job_id` = %s",
            (job_id,),
        )
    return job_id


def test_a_job_its_api_process_dropped_is_started_later_and_runs(api: Api, admin_db: DbEndpoint) -> None:
    clone_id = _id("never")
    job_id = _accepted_a_minute_ago(admin_db, "wp_delete", {"clone_id": clone_id})
    # The status request (or a dispatcher's sweep, whichever comes first) starts the run; it then runs to
    # its end in Airflow: wp_delete refuses a clone that does not exist, with the step's sentence.
    final = api.wait_job(job_id)
    assert final["status"] == "failed", final
    assert final["error"] == f"clone {clone_id} does not exist.", final
    run = api.call("GET", f"/api/v2/dags/wp_delete/dagRuns/{job_id}")
    assert run.status_code == 200 and run.json()["conf"] == {"clone_id": clone_id}
    record = Registry.from_endpoint(admin_db).get_job(job_id)
    assert record is not None and record.triggered_at is not None and record.conf is None


def test_a_job_whose_run_cannot_be_created_reads_failed_with_the_reason(
    api: Api, admin_db: DbEndpoint
) -> None:
    job_id = _accepted_a_minute_ago(admin_db, "wp_delete", {"clone_id": "Not A Valid Id"})
    final = api.wait_job(job_id)
    assert final["status"] == "failed" and final["progress"] == 0, final
    assert final["error"].startswith("the job could not be started: "), final
    assert final["error"].endswith("."), final
    assert api.call("GET", f"/api/v2/dags/wp_delete/dagRuns/{job_id}").status_code == 404


def test_openapi_documents_the_routes(api: Api) -> None:
    """Paths are relative to the mount point /wpclone; the interactive docs are served there too."""
    paths = api.client.get("/wpclone/openapi.json").json()["paths"]
    assert set(paths) >= {"/api/v1/clones", "/api/v1/clones/{clone_id}", "/api/v1/jobs/{job_id}"}
    assert "JobStatusResponse" in api.client.get("/wpclone/openapi.json").text
    assert api.client.get("/wpclone/docs").status_code == 200


def test_every_api_worker_built_the_execution_api_before_serving(api: Api) -> None:
    """Left to Cadwyn, the first task request to a worker builds the execution API's routes on its event
    loop and the worker answers nothing for 5-14 s; our lifespan builds them at startup instead."""
    log = api.airflow.logfile.read_text(errors="replace")
    this_start = log.rsplit("standalone | Starting Airflow Standalone", 1)[-1]
    api_lines = [line for line in this_start.splitlines() if line.startswith("api-server |")]
    workers = sum("Application startup complete." in line for line in api_lines)
    built = sum("built the task execution API's routes" in line for line in api_lines)
    assert workers >= 1 and built == workers, (workers, built)


# -- whole jobs -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloned(api: Api, source_site: SiteConfig, made: list[str]) -> dict[str, Any]:
    """A clone made through our API, watched from acceptance to completion."""
    clone_id = _id("sys-api")
    made.append(clone_id)
    started = time.monotonic()
    response = api.call("POST", f"{V1}/clones", json={"source_url": source_site.url, "clone_id": clone_id})
    accepted_s = time.monotonic() - started
    assert response.status_code == 202, response.text
    accepted = JobResponse.model_validate(response.json())
    final, polls = _watch(api, accepted.job_id)
    return {"accepted": accepted, "accepted_s": accepted_s, "final": final, "polls": polls}


def test_clone_job_is_accepted_then_reports_progress_to_a_result(
    cloned: dict[str, Any], source_site: SiteConfig, api: Api
) -> None:
    accepted: JobResponse = cloned["accepted"]
    assert accepted.type == "clone" and accepted.status == "pending"
    assert accepted.status_url == f"{V1}/jobs/{accepted.job_id}"
    final = JobStatusResponse.model_validate(cloned["final"])
    assert final.status == "completed", final.error
    assert final.job_id == accepted.job_id and final.clone_id == accepted.clone_id
    assert final.result is not None and set(final.result) >= RESULT_KEYS
    assert final.result["url"].startswith(f"http://{accepted.clone_id}.localhost:")
    assert final.result["source_url"] == source_site.url
    assert final.result["admin_password"].endswith(f"clone-{accepted.clone_id}-admin-password")
    assert final.error is None and final.completed_at is not None and final.estimated_completion is None
    assert final.created_at <= final.updated_at
    _assert_moves_forward(cloned["polls"])
    running = [p for p in cloned["polls"] if p["status"] == "running"]
    assert running and all(p["status_message"] and p["estimated_completion"] for p in running)
    assert any("Copying" in p["status_message"] for p in running)  # the message follows the steps
    assert _serves(final.result["url"]) == 200
    record = CloneRecord.model_validate(api.call("GET", f"{V1}/clones/{accepted.clone_id}").json())
    assert record.status == "ready" and record.last_job_id == accepted.job_id


def test_a_ready_clone_gives_a_one_time_login_link_no_log_shows(
    cloned: dict[str, Any], api: Api, airflow: LocalAirflow
) -> None:
    clone_id = cloned["accepted"].clone_id
    response = api.call("POST", f"{V1}/clones/{clone_id}/login")
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    link = LoginLink.model_validate(response.json())
    page, token = link.url.split("#", 1)
    assert page == f"{cloned['final']['result']['url']}wp-login.php?action=wpclone-login"
    assert link.clone_id == clone_id and link.user == "admin"
    jar = http.cookiejar.CookieJar()
    opener = http_opener(jar)
    opener.open(page, timeout=60).read()
    form = urllib.parse.urlencode({"token": token}).encode()
    with opener.open(urllib.request.Request(page, data=form), timeout=60) as answer:
        assert answer.geturl().endswith("/wp-admin/") and "[STAGING] Dashboard" in answer.read().decode()
    assert token not in airflow.logfile.read_text(errors="replace")  # the API server's log, access log too


def test_list_filters_by_status_and_source(cloned: dict[str, Any], api: Api, source_site: SiteConfig) -> None:
    clone_id = cloned["accepted"].clone_id
    listed = api.call("GET", f"{V1}/clones?status=ready&source={source_site.url}").json()
    assert clone_id in {c["clone_id"] for c in listed}
    assert all(c["status"] == "ready" and c["source_url"] == source_site.url for c in listed)
    assert clone_id not in {c["clone_id"] for c in api.call("GET", f"{V1}/clones?status=deleted").json()}
    bad = api.call("GET", f"{V1}/clones?status=sleeping")
    assert bad.status_code == 422 and "status:" in bad.json()["detail"]


def test_a_ready_clone_is_extended_from_now_and_says_who_asked(
    cloned: dict[str, Any], api: Api, source_site: SiteConfig
) -> None:
    clone_id = cloned["accepted"].clone_id
    before = datetime.now(UTC)
    response = api.call("PATCH", f"{V1}/clones/{clone_id}", json={"ttl_minutes": 180})
    after = datetime.now(UTC)
    assert response.status_code == 200, response.text
    record = CloneRecord.model_validate(response.json())
    assert before + timedelta(minutes=180) <= record.expires_at <= after + timedelta(minutes=180)
    assert record.requested_by == "admin"  # the user whose POST /clones made it
    assert CloneRecord.model_validate(api.call("GET", f"{V1}/clones/{clone_id}").json()) == record
    for minutes, says in ((5, "a time to live of 5m is out of bounds"), (99999, "at most 7d")):
        refused = api.call("PATCH", f"{V1}/clones/{clone_id}", json={"ttl_minutes": minutes})
        assert refused.status_code == 422 and says in refused.json()["detail"], refused.text
    unknown = api.call("PATCH", f"{V1}/clones/no-such-clone", json={"ttl_minutes": 60})
    assert unknown.status_code == 404 and unknown.json() == {"detail": "clone no-such-clone does not exist."}
    viewer = api.call("PATCH", f"{V1}/clones/{clone_id}", json={"ttl_minutes": 60}, user="viewer")
    assert viewer.status_code == 403
    assert CloneRecord.model_validate(api.call("GET", f"{V1}/clones/{clone_id}").json()) == record


def test_list_is_live_by_default_and_matches_the_source_in_any_spelling(
    cloned: dict[str, Any], api: Api, source_site: SiteConfig, admin_db: DbEndpoint
) -> None:
    clone_id = cloned["accepted"].clone_id
    registry = Registry.from_endpoint(admin_db)  # a clone deleted long ago, in the API's registry
    gone = _id("sys-gone")
    plan = ClonePlan(
        clone_id=gone,
        source=SourceConfig(name="gone", url=source_site.url, db_host="127.0.0.1", db_name="x", db_user="x"),
        url=f"http://{gone}.localhost",
        db_name=clone_db_name(gone),
        ttl_minutes=60,
        copy_mode=CopyMode.EVERYTHING,
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    registry.reserve(plan, "manual__sys-gone")
    registry.begin_delete(gone, "manual__sys-gone")
    registry.mark_deleted(gone, "manual__sys-gone")
    live = {c["clone_id"]: c for c in api.call("GET", f"{V1}/clones").json()}
    assert clone_id in live and gone not in live
    assert all(c["status"] != "deleted" for c in live.values())
    history = {c["clone_id"] for c in api.call("GET", f"{V1}/clones?all=true").json()}
    assert {clone_id, gone} <= history
    assert gone in {c["clone_id"] for c in api.call("GET", f"{V1}/clones?status=deleted").json()}
    spelled = source_site.url.upper() + "/"
    listed = api.call("GET", f"{V1}/clones?source={urllib.parse.quote(spelled, safe='')}").json()
    assert clone_id in {c["clone_id"] for c in listed}


def test_a_taken_clone_id_is_refused(cloned: dict[str, Any], api: Api, source_site: SiteConfig) -> None:
    clone_id = cloned["accepted"].clone_id
    response = api.call("POST", f"{V1}/clones", json={"source_url": source_site.url, "clone_id": clone_id})
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"clone {clone_id} already exists (status ready); choose another clone id or delete it first."
    )


def test_a_job_triggered_through_airflows_api_reports_identically(
    api: Api, source_site: SiteConfig, made: list[str], cloned: dict[str, Any]
) -> None:
    clone_id = _id("sys-core")
    made.append(clone_id)
    run_id = f"manual-{clone_id}"
    api.trigger("wp_clone", run_id, {"source_url": source_site.url, "clone_id": clone_id})
    final, polls = _watch(api, run_id)
    _assert_moves_forward(polls)
    ours = cloned["final"]
    assert final["status"] == ours["status"] == "completed"
    assert set(final) == set(ours) and set(final["result"]) == set(ours["result"])
    assert final["type"] == "clone" and final["clone_id"] == clone_id and final["error"] is None
    assert final["result"]["url"] == ours["result"]["url"].replace(ours["clone_id"], clone_id)
    assert _serves(final["result"]["url"]) == 200


def test_a_job_failing_in_airflow_reports_the_steps_sentence(api: Api, source_site: SiteConfig) -> None:
    """Airflow's API bypasses our checks; the job's first task refuses, and the job says why."""
    run_id = f"manual-{_id('sys-fail')}"
    unknown = "http://unregistered.localhost:1"
    api.trigger("wp_clone", run_id, {"source_url": unknown})
    final, polls = _watch(api, run_id)
    assert final["status"] == "failed" and final["progress"] == 100 and final["result"] is None
    assert final["error"] == (  # a task cannot list the connections' sources: it says how to name one
        f"{unknown} is not a registered source site (registered: {source_site.url}); a source registered as "
        "an Airflow connection is found by its name: set the job's source param to it."
    )
    assert final["status_message"] == final["error"]
    _assert_moves_forward(polls)


@pytest.mark.parametrize("when", ["accepted", "provisioning"])
def test_the_id_is_taken_at_accept_and_deleting_a_clone_being_made_cancels_it(
    when: str, api: Api, source_site: SiteConfig, made: list[str], admin_db: DbEndpoint, stack: StackSettings
) -> None:
    clone_id = _id(f"sys-del-{when[:4]}")
    made.append(clone_id)
    request = {"source_url": source_site.url, "clone_id": clone_id}
    job = api.call("POST", f"{V1}/clones", json=request).json()
    # The 202 means the id is taken: at once, a second request for it is refused and the clone is listed.
    second = api.call("POST", f"{V1}/clones", json=request)
    assert second.status_code == 409, second.text
    assert second.json()["detail"].startswith(f"clone {clone_id} already exists (status ")
    assert api.call("GET", f"{V1}/clones/{clone_id}").json()["lock_job_id"] == job["job_id"]

    if when == "provisioning":  # the job's run exists and works on the clone
        deadline = time.monotonic() + 120
        while api.call("GET", f"{V1}/clones/{clone_id}").json()["status"] != "provisioning":
            assert time.monotonic() < deadline, "the clone was never reserved"
            time.sleep(0.2)
    response = api.call("DELETE", f"{V1}/clones/{clone_id}")
    assert response.status_code == 202, response.text
    deleted = JobResponse.model_validate(response.json())
    assert deleted.type == "delete" and deleted.clone_id == clone_id

    made_job = api.wait_job(job["job_id"])
    assert made_job["status"] == "cancelled", made_job
    assert made_job["error"].startswith("cancelled by admin"), made_job
    final, polls = _watch(api, deleted.job_id)
    assert final["status"] == "completed", final["error"]
    assert final["result"]["clone_id"] == clone_id and final["result"]["deleted"] is True
    _assert_moves_forward(polls)
    assert leftovers(admin_db, stack, clone_id) == []
    record = api.call("GET", f"{V1}/clones/{clone_id}").json()
    assert record["status"] == "deleted" and record["deleted_at"] and record["lock_job_id"] is None

    # Deleting it again answers at once, with when it was deleted; no job is started.
    again = api.call("DELETE", f"{V1}/clones/{clone_id}")
    assert again.status_code == 409, again.text
    assert again.json()["detail"].startswith(f"{clone_id} was already deleted at 20"), again.text
    assert api.call("GET", f"{V1}/clones/{clone_id}").json()["last_job_id"] == record["last_job_id"]


def test_cancel_stops_the_job_rolls_back_and_reads_cancelled(
    api: Api, source_site: SiteConfig, admin_db: DbEndpoint, stack: StackSettings
) -> None:
    clone_id = _id("sys-cancel")
    response = api.call("POST", f"{V1}/clones", json={"source_url": source_site.url, "clone_id": clone_id})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 60
    while (body := api.call("GET", f"{V1}/jobs/{job_id}").json())["status"] != "running":
        assert body["status"] == "pending" and time.monotonic() < deadline, body
        time.sleep(0.2)
    cancelled = api.call("POST", f"{V1}/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    final = api.wait_job(job_id)
    assert final["status"] == "cancelled", final
    assert final["error"] == "cancelled by admin." and final["status_message"] == "Cancelled", final
    assert leftovers(admin_db, stack, clone_id) == []  # the rollback ran
    record = api.call("GET", f"{V1}/clones/{clone_id}")
    assert record.status_code == 404 or (
        record.json()["status"] == "failed" and record.json()["last_error"] == "cancelled by admin."
    ), record.text
    again = api.call("POST", f"{V1}/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["detail"]
    viewer = api.call("POST", f"{V1}/jobs/{job_id}/cancel", user="viewer")
    assert viewer.status_code == 403


@pytest.fixture
def archive_server(stack: StackSettings) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on loopback serving the backup directory; its request lines are recorded."""

    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            requests.append(self.requestline)

    handler = functools.partial(Handler, directory=str(stack.state_dir / "backups"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    thread.join()


def test_a_presigned_backup_url_never_reaches_the_runs_conf(
    api: Api, cloned: dict[str, Any], stack: StackSettings, archive_server: tuple[str, list[str]]
) -> None:
    clone_id = cloned["accepted"].clone_id
    backed = api.call("POST", f"{V1}/clones/{clone_id}/backup")
    assert backed.status_code == 202, backed.text
    backup = api.wait_job(backed.json()["job_id"])
    assert backup["status"] == "completed", backup
    archive = urllib.parse.urlsplit(backup["result"]["backup_url"]).path
    relative = archive.removeprefix(str(stack.state_dir / "backups"))
    token = f"X-Amz-Signature={secrets.token_hex(16)}"
    url = f"{archive_server[0]}{relative}?X-Amz-Expires=300&{token}"

    response = api.call("POST", f"{V1}/clones/{clone_id}/restore", json={"source_backup_url": url})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    final = api.wait_job(job_id)
    assert final["status"] == "completed", final
    assert any(token in line for line in archive_server[1])  # the step fetched the whole URL

    run = api.call("GET", f"/api/v2/dags/wp_restore/dagRuns/{job_id}").json()
    assert token not in json.dumps(run)
    assert run["conf"]["source_backup_url"] == f"{archive_server[0]}{relative}"
    ref = run["conf"]["source_backup_url_ref"]
    assert ref.startswith("wpclone_secret_source_backup_url_")
    assert api.call("GET", f"/api/v2/variables/{ref}").status_code == 404  # gone with the job
    status = api.call("GET", f"{V1}/jobs/{job_id}").json()
    assert token not in json.dumps(status)
