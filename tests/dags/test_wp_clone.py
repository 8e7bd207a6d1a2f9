"""The DAGs end to end with ``dag.test()`` on the local runtime, against the real stack.

A clone made by ``wp_clone`` must pass every check the source site passes (the site tests are imported
from ``tests/local/test_seed.py`` and ``tests/steps/test_main_clone_by_hand.py`` and run here on the DAG's
clone), hold the staging safety, and then be removed without a trace by ``wp_delete``. ``wp_ttl_cleanup``
deletes exactly the expired clones and the planted orphans. Real steps are made to fail and the rollback
leaves nothing.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.models.dagrun import DagRun
from airflow.settings import Session
from sqlalchemy import delete

from tests.fixtures.dagtest import SCHEMA, run, states, xcom
from tests.fixtures.stack import leftovers
from tests.steps.test_main_clone_by_hand import (  # noqa: F401  (run here on the DAG's clone)
    test_copy_reports_equal_row_counts,
    test_every_serialized_value_unserializes_in_php,
    test_no_source_url_left_in_the_clone,
)

# The copy's row counts before the seed's tests: logging in to the clone makes WordPress write a draft.
# isort: split
from tests.local.test_seed import (  # noqa: F401
    _get,
    _login,
    test_admin_login_reaches_dashboard,
    test_block_markup_and_builder_meta,
    test_front_page,
    test_menu_and_widgets_render,
    test_post_pages_and_pretty_permalinks,
    test_serialized_options_unserialize_in_php,
    test_site_database_user_has_least_privilege,
    test_uploaded_image_is_served_as_on_disk,
    test_wrong_password_is_rejected,
)
from tests.test_staging_integration import _pages, _post, _site_check, staging_report
from wpclone.airflow import listener
from wpclone.airflow.builders import build_clone_dag
from wpclone.airflow.services import services
from wpclone.api.runs import trigger
from wpclone.config import local_config
from wpclone.db import DbEndpoint
from wpclone.errors import describe
from wpclone.local.mariadb import LOCAL_USER_HOST
from wpclone.local.settings import StackSettings, free_port
from wpclone.local.sitehost import SiteConfig, SiteHost, content_dir, load_site, site_dir
from wpclone.models import CloneStatus
from wpclone.mysql_admin import MySqlAdmin
from wpclone.registry import Registry
from wpclone.services.clone import validate_request

CLONE = "e2e-clone"


# -- one clone, checked like the source, then deleted ------------------------------------------------------


@pytest.fixture(scope="module")
def cloned(dags: Any, source_site: SiteConfig, stack: StackSettings) -> dict[str, Any]:
    dagrun = run(dags, "wp_clone", {"source_url": source_site.url, "clone_id": CLONE, "ttl_minutes": 90})
    return {"run": dagrun, "result": xcom(dagrun, "finalize_clone"), "site": load_site(stack, CLONE)}


@pytest.fixture(scope="module")
def site(cloned: dict[str, Any]) -> SiteConfig:
    clone: SiteConfig = cloned["site"]
    return clone


@pytest.fixture(scope="module")
def clone_site(site: SiteConfig) -> SiteConfig:
    return site


@pytest.fixture(scope="module")
def copy_results(cloned: dict[str, Any]) -> dict[str, Any]:
    return {key: xcom(cloned["run"], key) for key in ("copy_database", "copy_content")}


def test_clone_run_succeeds_with_its_result(
    cloned: dict[str, Any], registry: Registry, stack: StackSettings
) -> None:
    dagrun, result = cloned["run"], cloned["result"]
    assert str(dagrun.state) == "success", states(dagrun)
    assert states(dagrun)["rollback_clone"] == "skipped"
    url = stack.site_url(CLONE)
    assert result["clone_id"] == CLONE and result["url"] == f"{url}/"
    assert result["admin_user"] == "admin"
    assert result["admin_password"] == str(stack.secrets_dir / f"clone-{CLONE}-admin-password")
    record = registry.get(CLONE)
    assert record is not None and record.status is CloneStatus.READY and record.lock_job_id is None
    assert record.last_job_id == dagrun.run_id
    assert record.expires_at == dagrun.run_after + timedelta(minutes=90)
    assert datetime.fromisoformat(result["expires_at"]) == record.expires_at
    # No secret reached XCom.
    password = (stack.secrets_dir / f"clone-{CLONE}-admin-password").read_text().strip()
    for task_id in states(dagrun):
        assert password not in json.dumps(xcom(dagrun, task_id), default=str)


def test_the_result_and_the_runs_note_say_what_was_copied(
    cloned: dict[str, Any], copy_results: dict[str, Any], source_site: SiteConfig, stack: StackSettings
) -> None:
    copied = cloned["result"]["copied"]
    db, content = copy_results["copy_database"], copy_results["copy_content"]
    assert copied["database"]["tables"] == db["tables"] > 10
    assert copied["database"]["rows"] == db["rows"] > 1000
    assert copied["database"]["serialized_rebuilt"] == db["rewrite"]["serialized_rebuilt"] > 0
    assert copied["content"]["files"] == content["files"] > 10
    assert copied["content"]["bytes"] == content["bytes_total"] > 0
    note = _note(cloned["run"])
    url = stack.site_url(CLONE)
    expires = datetime.fromisoformat(cloned["result"]["expires_at"])
    assert note.startswith(
        f"**Clone {CLONE} is ready**: {url}/ · log in with `wpclone login {CLONE}` · expires in "
    )
    assert note.split("\n\n")[0].endswith(f" ({expires:%Y-%m-%d %H:%M} UTC)")
    assert f"\n\nLog in: `wpclone login {CLONE}` (or `POST /wpclone/api/v1/clones/{CLONE}/login`) " in note
    assert f"Database: {db['tables']} tables, {db['rows']:,} rows copied and verified; " in note
    assert f"wp-content: {content['files']:,} files, " in note
    assert password_of(stack) not in note


def password_of(stack: StackSettings) -> str:
    return (stack.secrets_dir / f"clone-{CLONE}-admin-password").read_text().strip()


def _note(dagrun: Any) -> str:
    """The run's note as Airflow stores it (written by our listener when the run ended)."""

    with Session() as session:
        run = session.get(DagRun, dagrun.id)
        return str(run.note or "")


def test_staging_safety_holds(site: SiteConfig, source_site: SiteConfig, admin_db: DbEndpoint) -> None:
    status, headers, body = _get(f"{site.url}/")
    assert status == 200
    assert headers["X-Robots-Tag"] == "noindex, nofollow"
    html = body.decode()
    assert "noindex" in html and f"Staging clone {CLONE}" in html
    assert site.environment_type == "staging" and site.disable_wp_cron
    with admin_db.with_database(site.db_name).connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT option_value FROM wp_options WHERE option_name = 'blog_public'")
        assert cur.fetchone()[0] == "0"
    # The source's admin password does not open the clone; the clone's own does (test_admin_login...).
    _, final_url, _ = _login(site, source_site.admin_password())
    assert "/wp-login.php" in final_url
    # The source is untouched.
    assert "X-Robots-Tag" not in _get(f"{source_site.url}/")[1]


def test_wordpress_itself_runs_the_clone_as_staging(
    site: SiteConfig, stack: StackSettings, tmp_path: Any
) -> None:
    """In PHP, in the clone's own context: environment, cron, indexing, plugin, new password, no mail."""
    report, log = _site_check(stack, site, site.admin_password(), tmp_path)
    assert report == staging_report(CLONE)
    assert "outgoing mail blocked" in log
    # Over HTTP too: a password reset cannot send its mail, and the site host's log says why.
    host_log = SiteHost(stack).logfile
    before = host_log.stat().st_size
    _, html = _post(
        f"{site.url}/wp-login.php?action=lostpassword", {"user_login": "admin", "redirect_to": ""}
    )
    assert "The email could not be sent" in html
    assert f"wpclone staging clone {CLONE}: outgoing mail blocked" in host_log.read_text()[before:]
    for url in _pages(site):
        assert "noindex" in _get(url)[1].get("X-Robots-Tag", ""), url


def test_duplicate_clone_id_is_refused_and_the_clone_untouched(
    dags: Any, cloned: dict[str, Any], source_site: SiteConfig, registry: Registry
) -> None:
    dagrun = run(dags, "wp_clone", {"source_url": source_site.url, "clone_id": CLONE})
    assert str(dagrun.state) == "failed"
    assert states(dagrun)["validate_request"] == "failed"
    assert xcom(dagrun, "validate_request", "error") == (
        f"clone {CLONE} already exists (status ready); choose another clone id or delete it first."
    )
    assert registry.get(CLONE).status is CloneStatus.READY  # type: ignore[union-attr]
    assert _get(f"{cloned['site'].url}/")[0] == 200


def test_delete_leaves_nothing(
    dags: Any, cloned: dict[str, Any], registry: Registry, admin_db: DbEndpoint, stack: StackSettings
) -> None:
    assert leftovers(admin_db, stack, CLONE)  # there is something to delete
    dagrun = run(dags, "wp_delete", {"clone_id": CLONE})
    assert str(dagrun.state) == "success", states(dagrun)
    assert leftovers(admin_db, stack, CLONE) == []
    record = registry.get(CLONE)
    assert record is not None and record.status is CloneStatus.DELETED and record.deleted_at is not None
    status, _, body = _get(f"{cloned['site'].url}/")  # its host says the clone is gone (the site host's page)
    assert status == 410, body
    gone = (
        rf"This staging clone \({CLONE}\) was deleted at \d{{4}}-\d\d-\d\d \d\d:\d\d UTC; "
        r"ask for a new one\."
    )
    assert re.search(gone, body.decode()), body
    # Deleting again converges (a successful no-op); deleting an unknown clone is refused with a sentence.
    again = run(dags, "wp_delete", {"clone_id": CLONE})
    assert str(again.state) == "success", states(again)
    assert xcom(again, "validate_request") == []
    assert registry.get(CLONE).last_job_id == dagrun.run_id  # type: ignore[union-attr]
    unknown = run(dags, "wp_delete", {"clone_id": "no-such-clone"})
    assert str(unknown.state) == "failed"
    assert xcom(unknown, "validate_request", "error") == "clone no-such-clone does not exist."


# -- TTL cleanup -------------------------------------------------------------------------------------------


def _old_job_rows(registry: Registry, admin_db: DbEndpoint, ended_run: Any) -> tuple[str, str]:
    """Two rows of jobs accepted 31 days ago (past the default retention): one of a run that has ended, one
    of a run that has not (queued: nothing runs it here); returns their ids."""
    unfinished = f"delete-unfinished-{datetime.now(UTC):%H%M%S%f}"
    with Session() as session:
        trigger("wp_delete", unfinished, {"clone_id": "ttl-live"}, "alice", session)
    for job_id, dag_id in ((ended_run.run_id, "wp_clone"), (unfinished, "wp_delete")):
        registry.record_job(job_id, dag_id, {}, "alice", None)
        registry.mark_job_triggered(job_id)
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE {SCHEMA}.jobs SET created_at = UTC_TIMESTAMP(6) - INTERVAL 31 DAY "
            "WHERE job_id IN (%s, %s)",
            (ended_run.run_id, unfinished),
        )
    return ended_run.run_id, unfinished


def test_ttl_cleanup_deletes_exactly_the_expired_clones_and_orphans(
    dags: Any, source_site: SiteConfig, registry: Registry, admin_db: DbEndpoint, stack: StackSettings
) -> None:
    for clone_id in ("ttl-expired", "ttl-live"):
        dagrun = run(
            dags, "wp_clone", {"source_url": source_site.url, "clone_id": clone_id, "ttl_minutes": 10}
        )
        assert str(dagrun.state) == "success", states(dagrun)
    ended, unfinished = _old_job_rows(registry, admin_db, dagrun)
    with admin_db.connect() as conn, conn.cursor() as cur:  # expire one of them
        cur.execute(
            f"UPDATE {SCHEMA}.clones SET expires_at = %s WHERE clone_id = 'ttl-expired'",
            (datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1),),
        )
    # Orphans: a database and user with our prefix, and a clone's secret file, with no registry row.
    MySqlAdmin.from_endpoint(admin_db).create_database_and_user(
        "wpc_orphan_db", "wpc_orphan_db", "x" * 20, user_host=LOCAL_USER_HOST
    )
    stack.secret("clone-orphan-files-db-password")
    unrelated = "wp_not_ours"
    MySqlAdmin.from_endpoint(admin_db).create_database_and_user(
        unrelated, unrelated, "y" * 20, user_host=LOCAL_USER_HOST
    )
    try:
        dagrun = run(dags, "wp_ttl_cleanup", {})
        assert str(dagrun.state) == "success", states(dagrun)
        report = xcom(dagrun, "report")
        assert report == {
            "expired_deleted": ["ttl-expired"],
            "orphans_removed": ["orphan-db", "orphan-files"],
            "jobs_purged": 1,
        }
        assert registry.get_job(ended) is None and registry.get_job(unfinished) is not None
        assert leftovers(admin_db, stack, "ttl-expired") == []
        assert leftovers(admin_db, stack, "orphan-db") == leftovers(admin_db, stack, "orphan-files") == []
        assert registry.get("ttl-expired").status is CloneStatus.DELETED  # type: ignore[union-attr]
        assert registry.get("ttl-live").status is CloneStatus.READY  # type: ignore[union-attr]
        assert _get(f"{stack.site_url('ttl-live')}/")[0] == 200
        assert _get(f"{source_site.url}/")[0] == 200
        with admin_db.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (unrelated,))
            assert cur.fetchone(), "the sweep removed a database that is not ours"
    finally:
        MySqlAdmin.from_endpoint(admin_db).drop_database_and_user(
            unrelated, unrelated, user_host=LOCAL_USER_HOST
        )
        with Session() as session:
            session.execute(delete(DagRun).where(DagRun.run_id == unfinished))
            session.commit()
        assert str(run(dags, "wp_delete", {"clone_id": "ttl-live"}).state) == "success"


# -- failures: rollback leaves nothing, the registry says why ----------------------------------------------


def _broken_source_config(source_site: SiteConfig, stack: StackSettings, closed_port: int) -> str:

    config = local_config(stack)
    source = config.sources[0]
    broken = source.model_copy(
        update={"name": "broken", "url": stack.site_url("broken"), "db_port": closed_port}
    )
    return config.model_copy(update={"sources": [source, broken]}).model_dump_json()


def test_unreachable_source_database_rolls_back_everything(
    dags: Any,
    source_site: SiteConfig,
    registry: Registry,
    admin_db: DbEndpoint,
    stack: StackSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed_port = free_port()  # a port nothing listens on
    monkeypatch.setenv("WPCLONE_CONFIG_JSON", _broken_source_config(source_site, stack, closed_port))
    dagrun = run(dags, "wp_clone", {"source_url": stack.site_url("broken"), "clone_id": "fail-source"})
    assert str(dagrun.state) == "failed"
    assert states(dagrun)["copy_database"] == "failed"
    assert states(dagrun)["rollback_clone"] == "success"
    assert leftovers(admin_db, stack, "fail-source") == []
    record = registry.get("fail-source")
    assert record is not None and record.status is CloneStatus.FAILED and record.lock_job_id is None
    assert record.last_error and record.last_error.startswith("copy-database: ")
    assert "connect" in record.last_error.lower()
    assert _note(dagrun) == f"**The clone job for clone fail-source failed**: {record.last_error}"


def test_site_never_ready_rolls_back_everything(
    dags: Any,
    source_site: SiteConfig,
    registry: Registry,
    admin_db: DbEndpoint,
    stack: StackSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WPCLONE_SITE_READY_TIMEOUT", "3")
    host = SiteHost(stack)
    host.stop()
    try:
        dagrun = run(dags, "wp_clone", {"source_url": source_site.url, "clone_id": "fail-ready"})
    finally:
        host.start()
    assert str(dagrun.state) == "failed"
    assert states(dagrun)["finalize_clone"] == "failed"  # it serves the site and waits for it
    assert leftovers(admin_db, stack, "fail-ready") == []
    record = registry.get("fail-ready")
    assert record is not None and record.status is CloneStatus.FAILED
    assert record.last_error == (
        f"the clone's site at {stack.site_url('fail-ready')}/ is not ready within 3 s: "
        "the site does not answer ([Errno 111] Connection refused)."
    )


def test_taken_database_name_is_refused_and_left_intact(
    dags: Any, source_site: SiteConfig, registry: Registry, admin_db: DbEndpoint, stack: StackSettings
) -> None:
    MySqlAdmin.from_endpoint(admin_db).create_database_and_user(
        "wpc_taken_one", "wpc_taken_one", "z" * 20, user_host=LOCAL_USER_HOST
    )
    with admin_db.with_database("wpc_taken_one").connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE keep (v TEXT)")
        cur.execute("INSERT INTO keep VALUES ('precious')")
    try:
        dagrun = run(dags, "wp_clone", {"source_url": source_site.url, "clone_id": "taken-one"})
        assert str(dagrun.state) == "failed"
        assert xcom(dagrun, "validate_request", "error") == (
            "database wpc_taken_one already exists on the server; choose another clone id."
        )
        assert registry.get("taken-one") is None
        assert not site_dir(stack, "taken-one").exists()
        with admin_db.with_database("wpc_taken_one").connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT v FROM keep")
            assert cur.fetchall() == (("precious",),)
    finally:
        MySqlAdmin.from_endpoint(admin_db).drop_database_and_user(
            "wpc_taken_one", "wpc_taken_one", user_host=LOCAL_USER_HOST
        )


@pytest.mark.parametrize(
    ("conf", "sentence"),
    [
        (
            {"source_url": "https://not-registered.example.com"},
            "https://not-registered.example.com is not a registered source site",
        ),
        ({"ttl_minutes": 100000}, "ttl_minutes: Input should be less than or equal to 10080."),
        ({"clone_id": "x;drop database wp_source"}, "clone_id: String should match pattern"),
        ({"clone_id": "../../etc"}, "clone_id: String should match pattern"),
    ],
)
def test_bad_requests_are_refused_by_the_first_task(
    dags: Any, source_site: SiteConfig, stack: StackSettings, conf: dict[str, Any], sentence: str
) -> None:
    """What the REST API could send past the form: the first task validates again, creates nothing."""

    sites_before = sorted(p.name for p in stack.sites_dir.iterdir())
    with pytest.raises(Exception) as caught:
        validate_request(services(), {"source_url": source_site.url, **conf}, datetime.now(UTC))
    assert describe(caught.value).startswith(sentence)
    assert sorted(p.name for p in stack.sites_dir.iterdir()) == sites_before


def test_bad_input_fails_the_first_task_at_once_and_reserves_nothing(
    airflow_env: dict[str, str],
    registry: Registry,
    admin_db: DbEndpoint,
    stack: StackSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With retries configured, a refused request still fails validate_request on its first try (no retry)
    with its sentence; nothing is reserved or created, so the rollback (its teardown) never runs."""
    monkeypatch.setenv("WPCLONE_TASK_RETRIES", "2")
    dag = build_clone_dag()
    assert dag.get_task("validate_request").retries == 2
    sites_before = sorted(p.name for p in stack.sites_dir.iterdir())
    url = "https://not-registered.example.com"
    dagrun = dag.test(run_conf={"source_url": url, "clone_id": "bad-input"})
    assert str(dagrun.state) == "failed"
    first = next(ti for ti in dagrun.get_task_instances() if ti.task_id == "validate_request")
    assert (str(first.state), first.try_number) == ("failed", 1)
    assert xcom(dagrun, "validate_request", "error").startswith(f"{url} is not a registered source site")
    assert {task: state for task, state in states(dagrun).items() if task != "validate_request"} == {
        task: "upstream_failed" for task in dag.task_ids if task != "validate_request"
    }
    assert registry.get("bad-input") is None
    assert leftovers(admin_db, stack, "bad-input") == []
    assert sorted(p.name for p in stack.sites_dir.iterdir()) == sites_before
    assert listener.unfinished_tasks(dagrun) == []  # so the listener looked for held clones: none


@pytest.mark.parametrize("mode", ["database", "files"])
def test_copy_modes(
    dags: Any, mode: str, source_site: SiteConfig, admin_db: DbEndpoint, stack: StackSettings
) -> None:
    """database: no uploads, all rows; files: all of wp-content, settings and users but no content rows."""
    clone_id = f"mode-{mode}"
    dagrun = run(dags, "wp_clone", {"source_url": source_site.url, "clone_id": clone_id, "copy_mode": mode})
    try:
        assert str(dagrun.state) == "success", states(dagrun)
        site = load_site(stack, clone_id)
        assert _get(f"{site.url}/")[0] == 200
        uploads = site_dir(stack, clone_id) / "wp-content" / "uploads"
        images = [p for p in uploads.rglob("*") if p.suffix in (".png", ".jpg")]

        def count(database: str, table: str) -> int:
            with admin_db.connect() as conn, conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) FROM `{database}`.`{table}`")
                return int(cur.fetchone()[0])

        posts, users = (count(site.db_name, t) for t in ("wp_posts", "wp_users"))
        assert users == count(source_site.db_name, "wp_users")
        if mode == "database":
            assert images == [] and uploads.is_dir()
            assert posts == count(source_site.db_name, "wp_posts")
        else:
            assert len(images) > 10
            assert posts == 0 and count(site.db_name, "wp_comments") == 0
            assert count(site.db_name, "wp_options") > 50
    finally:
        assert str(run(dags, "wp_delete", {"clone_id": clone_id}).state) == "success"
    assert leftovers(admin_db, stack, clone_id) == []


def test_a_link_no_rule_allows_fails_the_clone_naming_it_and_leaves_nothing(
    dags: Any, source_site: SiteConfig, registry: Registry, admin_db: DbEndpoint, stack: StackSettings
) -> None:

    link = content_dir(stack, source_site.name) / "uploads" / "private-keys"
    link.symlink_to("/etc/ssl/private")  # outside wp-content, not under the local default roots
    try:
        dagrun = run(dags, "wp_clone", {"source_url": source_site.url, "clone_id": "bad-link"})
    finally:
        link.unlink()
    assert str(dagrun.state) == "failed"
    assert states(dagrun)["copy_content"] == "failed"
    assert states(dagrun)["rollback_clone"] == "success"
    error = xcom(dagrun, "copy_content", "error")
    assert error.startswith(
        "copy-content: The symlink wp-content/uploads/private-keys points outside wp-content to "
        "/etc/ssl/private, which is not under a directory the source allows links into (/usr/share/wordpress)"
    ), error
    assert leftovers(admin_db, stack, "bad-link") == []
    record = registry.get("bad-link")
    assert record is not None and record.status is CloneStatus.FAILED and record.last_error == error
