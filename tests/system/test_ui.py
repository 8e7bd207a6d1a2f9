"""Airflow's own UI in a real browser: log in, trigger ``wp_clone`` from its form, watch the run succeed.

Headless Chromium from Debian's ``chromium`` package, driven by Playwright (never ``playwright install``:
CI cannot download browsers). Screenshots of each step are kept in ``<state>/artifacts/ui/`` (the tests'
state dir: ``.local/test/artifacts/ui``); when a test fails, a screenshot and the page's HTML of that
moment land there too (``FAILED-<test>.png``/``.html``).

Selectors are roles, labels and the UI's test ids where Airflow 3.3 has them. The trigger form's
parameter fields are found by their ``name``, ``element_<param>``: most of their labels point at another
id than their inputs, so they have no accessible name.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import string
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pytest
from playwright.sync_api import Browser, Locator, Page, Playwright, Response, Route, expect, sync_playwright

from wpclone.models import FIELD_RULES

if TYPE_CHECKING:
    from tests.system.conftest import Api
    from wpclone.local.airflow import LocalAirflow
    from wpclone.local.settings import StackSettings
    from wpclone.local.sitehost import SiteConfig

DAG_ID = "wp_clone"
UI_TIMEOUT_MS = 60_000  # any one page or element on a slow shared machine
RUN_TIMEOUT_MS = 300_000  # the run, start to end (about a minute when idle; retries back off)
TTL_MINUTES = 30


# -- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("no `chromium` on PATH: install Debian's chromium package (make setup).")
    instance = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
    yield instance
    instance.close()


@pytest.fixture
def artifacts(stack: StackSettings) -> Path:
    directory = stack.state_dir / "artifacts" / "ui"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies: logged out) per test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.set_default_navigation_timeout(UI_TIMEOUT_MS)
    new_page = context.new_page()
    yield new_page
    context.close()


@contextlib.contextmanager
def on_failure(page: Page, artifacts: Path, name: str) -> Iterator[None]:
    """Screenshot and HTML of the page when the block fails, then the failure itself."""
    for stale in artifacts.glob(f"FAILED-{name}.*"):
        stale.unlink()
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=artifacts / f"FAILED-{name}.png", full_page=True)
            (artifacts / f"FAILED-{name}.html").write_text(page.content())
        raise


@pytest.fixture
def clone_id(api: Api) -> Iterator[str]:
    """A fresh clone id; afterwards the clone is gone even when the test stopped half-way."""
    name = "ui-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(6))
    yield name
    record = api.call("GET", f"/wpclone/api/v1/clones/{name}")
    if record.status_code == 404:
        return
    assert record.status_code == 200, record.text
    if record.json()["lock_job_id"]:  # the run (or a deletion) still works on it: let it finish first
        api.wait_job(record.json()["lock_job_id"])
        record = api.call("GET", f"/wpclone/api/v1/clones/{name}")
    if record.json()["status"] in ("ready", "failed"):
        started = api.call("DELETE", f"/wpclone/api/v1/clones/{name}")
        assert started.status_code == 202, started.text
        assert api.wait_job(started.json()["job_id"])["status"] == "completed"


# -- steps --------------------------------------------------------------------------------------------------


def log_in(page: Page, airflow: LocalAirflow, artifacts: Path) -> None:
    page.goto(airflow.url)
    username = page.get_by_label("Username")
    expect(username).to_be_visible()
    page.screenshot(path=artifacts / "01-login.png")
    username.fill("admin")
    page.get_by_label("Password").fill(airflow.password("admin"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def open_trigger_form(page: Page, airflow: LocalAirflow) -> Locator:
    """The DAG's page, its Trigger button; returns the trigger dialog with its run parameters shown."""
    page.goto(f"{airflow.url}/dags/{DAG_ID}")
    page.get_by_test_id("trigger-dag-button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=re.compile(rf"Trigger Dag\b.*\b{DAG_ID}$"))).to_be_visible()
    section = dialog.get_by_role("button", name="Run Parameters")
    if section.get_attribute("aria-expanded") != "true":
        section.click()
    expect(param_field(dialog, "source_url")).to_be_visible()
    return dialog


def param_field(dialog: Locator, param: str) -> Locator:
    return dialog.locator(f'[name="element_{param}"]')


def ttl_field(dialog: Locator) -> Locator:
    return dialog.get_by_role("spinbutton", name="Time to live (minutes)")


def fill_form(dialog: Locator, source_url: str, ttl: str, clone_id: str) -> None:
    param_field(dialog, "source_url").fill(source_url)
    ttl_field(dialog).fill(ttl)
    ttl_field(dialog).press("Tab")  # the number field commits (and clamps) its value when it loses focus
    param_field(dialog, "clone_id").fill(clone_id)
    param_field(dialog, "clone_id").press("Tab")


def trigger(page: Page, dialog: Locator) -> Response:
    """Press the form's Trigger button; returns the answer to the POST that creates the run."""
    button = dialog.get_by_role("button", name="Trigger", exact=True)
    expect(button).to_be_enabled()
    with page.expect_response(
        lambda r: r.request.method == "POST" and urlsplit(r.url).path == f"/api/v2/dags/{DAG_ID}/dagRuns"
    ) as answer:
        button.click()
    return answer.value


def run_count(api: Api) -> int:
    response = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=1")
    assert response.status_code == 200, response.text
    total: int = response.json()["total_entries"]
    return total


def job_error(api: Api, run_id: str) -> Any:
    """What our jobs API says went wrong with a run (for assertion messages)."""
    response = api.call("GET", f"/wpclone/api/v1/jobs/{run_id}")
    return response.json().get("error") if response.status_code == 200 else response.text


# -- tests --------------------------------------------------------------------------------------------------


def test_trigger_clone_from_the_ui_and_see_it_succeed(
    page: Page,
    airflow: LocalAirflow,
    api: Api,
    source_site: SiteConfig,
    artifacts: Path,
    clone_id: str,
) -> None:
    with on_failure(page, artifacts, "trigger-clone"):
        log_in(page, airflow, artifacts)
        dialog = open_trigger_form(page, airflow)
        fill_form(dialog, source_site.url, str(TTL_MINUTES), clone_id)
        expect(param_field(dialog, "source_url")).to_have_value(source_site.url)
        expect(ttl_field(dialog)).to_have_value(str(TTL_MINUTES))
        expect(param_field(dialog, "clone_id")).to_have_value(clone_id)
        page.screenshot(path=artifacts / "02-trigger-form-filled.png")

        answer = trigger(page, dialog)
        assert answer.ok, f"the UI's trigger was refused: HTTP {answer.status} {answer.text()}"
        run = answer.json()
        run_id: str = run["dag_run_id"]
        assert run["conf"] == {
            "source_url": source_site.url,
            "ttl_minutes": TTL_MINUTES,
            "clone_id": clone_id,
            "copy_mode": "everything",
            "source": None,  # a configured source: no connection's name
        }

        # The UI goes to the new run's page; its state badge (next to the run's heading) follows the run.
        page.wait_for_url(lambda url: unquote(urlsplit(url).path) == f"/dags/{DAG_ID}/runs/{run_id}")
        heading = page.get_by_role("heading", name=run_id, exact=True)
        state = heading.locator("xpath=..").get_by_test_id("state-badge")
        expect(state).to_have_text(re.compile(r"^\s*(Success|Failed)\s*$"), timeout=RUN_TIMEOUT_MS)
        final_state = state.inner_text().strip()
        assert final_state == "Success", f"run {run_id} ended {final_state}: {job_error(api, run_id)}"
        # ... and so does the last task's row, once the task table has caught up.
        last_task = page.get_by_role("row").filter(
            has=page.get_by_role("link", name="finalize_clone", exact=True)
        )
        expect(last_task.get_by_test_id("state-badge")).to_have_text("Success")
        page.screenshot(path=artifacts / "03-run-succeeded.png")

    record = api.call("GET", f"/wpclone/api/v1/clones/{clone_id}")
    assert record.status_code == 200, record.text
    assert record.json()["status"] == "ready", record.json()
    assert record.json()["source_url"] == source_site.url
    assert record.json()["last_job_id"] == run_id

    deletion = api.call("DELETE", f"/wpclone/api/v1/clones/{clone_id}")
    assert deletion.status_code == 202, deletion.text
    job = api.wait_job(deletion.json()["job_id"])
    assert job["status"] == "completed", job
    assert api.call("GET", f"/wpclone/api/v1/clones/{clone_id}").json()["status"] == "deleted"


def test_trigger_form_offers_the_sources_and_refuses_a_bad_value_in_words(
    page: Page, airflow: LocalAirflow, api: Api, source_site: SiteConfig, artifacts: Path
) -> None:
    bad_clone_id = "Bad_Clone"  # upper case and '_'
    runs_before = run_count(api)
    with on_failure(page, artifacts, "trigger-refused"):
        log_in(page, airflow, artifacts)
        dialog = open_trigger_form(page, airflow)
        # The source is a choice of the configured sources (suggestions: a connection's may be typed in).
        source = param_field(dialog, "source_url")
        offered = source.evaluate("input => [...input.list.options].map(option => option.value)")
        assert source_site.url in offered, offered
        assert source.input_value() in offered  # the default is a configured source
        expect(dialog.get_by_text("pick a configured source from the list")).to_be_visible()
        page.screenshot(path=artifacts / "04-trigger-form-sources.png")

        # A TTL out of range is kept as typed (refused on trigger, not clamped by the field).
        ttl_field(dialog).fill("99999")
        ttl_field(dialog).press("Tab")
        expect(ttl_field(dialog)).to_have_value("99999")
        fill_form(dialog, source_site.url, "90", bad_clone_id)

        answer = trigger(page, dialog)
        assert answer.status == 400, f"expected the trigger to be refused: HTTP {answer.status}"
        expect(dialog.get_by_text(f"Clone id (clone_id) {FIELD_RULES['clone_id']}.")).to_be_visible()
        expect(dialog.get_by_text("Failed validating")).to_have_count(0)  # no schema dump
        expect(dialog).to_be_visible()  # still open, the values still there to correct
        expect(param_field(dialog, "clone_id")).to_have_value(bad_clone_id)
        page.screenshot(path=artifacts / "05-trigger-form-refused.png")
        assert urlsplit(page.url).path == f"/dags/{DAG_ID}"
    assert run_count(api) == runs_before, "a refused trigger created a run"


def test_the_runs_note_says_where_how_to_log_in_and_when_it_expires(
    page: Page, airflow: LocalAirflow, api: Api, source_site: SiteConfig, artifacts: Path, clone_id: str
) -> None:
    """After a clone, its run's page shows the note (the URL, the way in, the expiry in words); the one-time
    link from the jobs API opens the clone's wp-admin once, under its staging look."""
    body = {"source_url": source_site.url, "clone_id": clone_id, "ttl_minutes": 120}
    started = api.call("POST", "/wpclone/api/v1/clones", json=body)
    assert started.status_code == 202, started.text
    run_id = started.json()["job_id"]  # a job's id is its run's id
    job = api.wait_job(run_id)
    assert job["status"] == "completed", job
    url = job["result"]["url"]
    with on_failure(page, artifacts, "run-note"):
        log_in(page, airflow, artifacts)
        page.goto(f"{airflow.url}/dags/{DAG_ID}/runs/{run_id}")
        # The run's page shows the note's first line above the task instances, beside the grid.
        note = page.get_by_text(f"Clone {clone_id} is ready").locator("xpath=..")
        expect(note).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(note).to_contain_text(f"{url} · log in with wpclone login {clone_id} · expires in 2 h (")
        expect(note).to_contain_text(re.compile(r"expires in 2 h \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\)"))
        page.screenshot(path=artifacts / "05-run-note.png", full_page=True)

    link = api.call("POST", f"/wpclone/api/v1/clones/{clone_id}/login")
    assert link.status_code == 200, link.text
    with on_failure(page, artifacts, "login-link"):
        page.goto(link.json()["url"])
        page.wait_for_url(f"{url}wp-admin/")
        expect(page).to_have_title(re.compile(r"^\[STAGING\] Dashboard"))
        bar = page.locator("#wpadminbar")
        expect(bar).to_have_css("background-color", "rgb(179, 45, 46)")  # #b32d2e: red, not WordPress's grey
        expect(
            bar.get_by_text(re.compile(rf"Staging clone {clone_id}, expires in (2 h|1[0-2]\d min)"))
        ).to_be_visible()
        page.screenshot(path=artifacts / "06-clone-admin-by-login-link.png")
        page.goto(url)
        expect(page).to_have_title(re.compile(r"^\[STAGING\] "))
        expect(page.locator("#wpadminbar")).to_have_css("background-color", "rgb(179, 45, 46)")
        page.screenshot(path=artifacts / "07-clone-front-page.png")
        page.goto(link.json()["url"])  # the same link again: used up
        expect(page.get_by_text("this login link was used already")).to_be_visible()
        page.screenshot(path=artifacts / "08-login-link-used-twice.png")


def test_the_new_clone_page_says_each_fields_rule_beside_it_and_follows_the_clone(
    page: Page, airflow: LocalAirflow, api: Api, source_site: SiteConfig, artifacts: Path, clone_id: str
) -> None:
    """The "New clone" page in Airflow's navigation: the sources as a closed choice, each bad field's rule in
    words beside it before any job is asked for, then the clone started, followed to its URL and a way in."""
    posted: list[str] = []
    page.on(
        "request",
        lambda r: (
            posted.append(r.url) if r.method == "POST" and urlsplit(r.url).path.endswith("/clones") else None
        ),
    )
    with on_failure(page, artifacts, "new-clone-page"):
        log_in(page, airflow, artifacts)
        page.get_by_role("link", name="New clone").click()
        page.wait_for_url(lambda url: urlsplit(url).path == "/plugin/new-clone")
        form = page.frame_locator("iframe").first
        source = form.get_by_label("Source site URL")
        expect(source.locator("option")).not_to_have_count(0)
        offered = source.locator("option").evaluate_all("options => options.map(option => option.value)")
        assert source_site.url in offered, offered
        assert source.input_value() == offered[0]  # the first registered source is the default

        form.get_by_label("Clone id").fill("Bad_Clone")
        form.get_by_label("Time to live (minutes)").fill("8")
        form.get_by_label("unit").select_option("days")
        expect(form.locator("#clone_id-error")).to_have_text(f"Clone id {FIELD_RULES['clone_id']}.")
        expect(form.locator("#ttl_minutes-error")).to_have_text(
            f"Time to live (minutes) {FIELD_RULES['ttl_minutes']}."
        )
        expect(form.get_by_label("Clone id")).to_have_attribute("aria-invalid", "true")
        expect(form.get_by_role("button", name="Clone", exact=True)).to_be_disabled()
        page.screenshot(path=artifacts / "09-new-clone-page-refused.png")
        assert posted == [], f"a job was asked for with bad fields: {posted}"

        source.select_option(source_site.url)
        form.get_by_label("Clone id").fill(clone_id)
        form.get_by_label("Time to live (minutes)").fill(str(TTL_MINUTES))
        form.get_by_label("unit").select_option("minutes")
        expect(form.locator("#clone_id-error")).to_be_empty()
        expect(form.locator("#ttl_minutes-error")).to_be_empty()
        form.get_by_role("button", name="Clone", exact=True).click()
        expect(form.locator("#job-id")).to_have_text(re.compile(r"^clone-"))
        job_id = form.locator("#job-id").inner_text()
        run_link = form.get_by_role("link", name="its run in Airflow")
        expect(run_link).to_have_attribute("href", f"../../dags/{DAG_ID}/runs/{job_id}")
        clone_url = form.locator("#clone-url")
        expect(clone_url).to_be_visible(timeout=RUN_TIMEOUT_MS)
        page.screenshot(path=artifacts / "10-new-clone-page-ready.png")
        with page.expect_popup() as popup:
            form.get_by_role("button", name="Log in to wp-admin").click()
        admin = popup.value
        admin.wait_for_url(f"{clone_url.inner_text()}wp-admin/")
        expect(admin).to_have_title(re.compile(r"^\[STAGING\] Dashboard"))
        admin.screenshot(path=artifacts / "11-new-clone-page-login.png")
        run_link.click()  # from the frame, Airflow's page moves to the run
        page.wait_for_url(lambda url: unquote(urlsplit(url).path) == f"/dags/{DAG_ID}/runs/{job_id}")

    record = api.call("GET", f"/wpclone/api/v1/clones/{clone_id}").json()
    assert record["status"] == "ready" and record["last_job_id"] == job_id, record
    lifetime = datetime.fromisoformat(record["expires_at"]) - datetime.fromisoformat(record["created_at"])
    assert abs(lifetime.total_seconds() - TTL_MINUTES * 60) < 120, record  # 30 minutes, not 30 days
    assert len(posted) == 1, posted


def test_the_jobs_api_docs_render_with_the_internet_cut_off(
    page: Page, airflow: LocalAirflow, artifacts: Path
) -> None:
    """Every request to anything but this machine is aborted: Swagger UI's files must come from us."""
    blocked: list[str] = []

    def loopback_only(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", loopback_only)
    with on_failure(page, artifacts, "docs-offline"):
        page.goto(f"{airflow.url}/wpclone/docs")
        operation = page.get_by_text("Clone a registered source into a new staging site", exact=False)
        expect(operation.first).to_be_visible()
        expect(page.get_by_role("heading", name=re.compile("wpclone jobs API"))).to_be_visible()
        page.screenshot(path=artifacts / "06-docs-offline.png", full_page=True)
    assert blocked == [], f"the docs page asked the internet for {blocked}"
