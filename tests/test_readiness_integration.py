"""Ready means right, on a real clone served by the site host: ``await_site_ready`` passes only for a
WordPress front page of the clone and its login form, and fails fast, saying what it saw, for a blank page
(a theme that is not there), a PHP fatal error (quoting the site's log line), a database it cannot reach,
a redirect to the source and a login page without its form. The restore preview is served only to the
worker's token."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures.stack import local_services, run_step
from wpclone.config import load_config
from wpclone.db import DbEndpoint
from wpclone.errors import StepFailed
from wpclone.local.mariadb import LOCAL_USER_HOST
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import (
    SiteConfig,
    content_dir,
    http_opener,
    register_preview,
    register_site,
    unregister_preview,
    unregister_site,
)
from wpclone.models import ClonePlan, CopyMode
from wpclone.mysql_admin import MySqlAdmin
from wpclone.runtimes.local import LocalRuntime
from wpclone.services.common import Services, await_site_ready
from wpclone.staging import write_mu_plugin

CLONE = "ready-check"
TIMEOUT = 60.0  # each broken case must fail long before this: it fails on the third identical answer


@dataclasses.dataclass(frozen=True)
class ReadyClone:
    site: SiteConfig
    plan: ClonePlan
    services: Services


@pytest.fixture(scope="module")
def ready_clone(stack: StackSettings, source_site: SiteConfig, admin_db: DbEndpoint) -> Iterator[ReadyClone]:
    database = user = "wp_ready_check"
    password_file = stack.secrets_dir / f"site-{CLONE}-db"

    def clean() -> None:
        unregister_site(stack, CLONE)
        MySqlAdmin.from_endpoint(admin_db).drop_database_and_user(database, user, user_host=LOCAL_USER_HOST)
        password_file.unlink(missing_ok=True)

    clean()
    stack.secret(password_file.name)
    site = dataclasses.replace(
        source_site, name=CLONE, url=stack.site_url(CLONE), db_name=database, db_user=user,
        db_password_file=password_file,
    )  # fmt: skip
    try:
        MySqlAdmin.from_endpoint(admin_db).create_database_and_user(
            database, user, site.db_password(), user_host=LOCAL_USER_HOST
        )
        source_db = admin_db.with_database(source_site.db_name)
        target_db = DbEndpoint(site.db_host, site.db_port, user, site.db_password(), database)
        run_step(
            "copy-database",
            source_site.url,
            site.url,
            env={**source_db.to_env("SOURCE_DB"), **target_db.to_env("TARGET_DB")},
        )
        run_step("copy-content", str(content_dir(stack, source_site.name)), str(content_dir(stack, CLONE)))
        write_mu_plugin(content_dir(stack, CLONE), CLONE, datetime.now(UTC) + timedelta(hours=1))
        register_site(stack, site, default_content=False)
        config = load_config()
        plan = ClonePlan(
            clone_id=CLONE,
            source=config.source_for(source_site.url),
            url=site.url,
            db_name=database,
            ttl_minutes=60,
            copy_mode=CopyMode.EVERYTHING,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        yield ReadyClone(site, plan, local_services(admin_db, stack))
    finally:
        clean()


def _not_ready(clone: ReadyClone, *, preview: bool = False) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(StepFailed) as failure:
        await_site_ready(clone.services, clone.plan, TIMEOUT, preview=preview)
    return str(failure.value), time.monotonic() - started


@contextlib.contextmanager
def _mu_plugin(stack: StackSettings, name: str, php: str) -> Iterator[None]:
    path = content_dir(stack, CLONE) / "mu-plugins" / name
    path.write_text(php)
    try:
        yield
    finally:
        path.unlink()


def test_a_right_clone_is_ready(ready_clone: ReadyClone) -> None:
    await_site_ready(ready_clone.services, ready_clone.plan, TIMEOUT)


def test_a_blank_page_is_not_ready(ready_clone: ReadyClone, stack: StackSettings) -> None:
    themes = content_dir(stack, CLONE) / "themes"
    active = next(p for p in themes.iterdir() if p.is_dir())
    aside = themes.parent / "themes-aside"
    active.rename(aside)  # the clone's theme is not there: WordPress renders nothing
    try:
        message, seconds = _not_ready(ready_clone)
    finally:
        aside.rename(active)
    assert f"the clone's site at {ready_clone.site.url}/ is not ready" in message
    assert "the front page answered 200 with 0 bytes (a blank page" in message
    assert seconds < TIMEOUT / 2  # a definite answer fails at once, not after the whole timeout


def test_a_php_fatal_error_is_quoted_from_the_site_log(ready_clone: ReadyClone, stack: StackSettings) -> None:
    with _mu_plugin(stack, "aa-broken.php", "<?php wpclone_no_such_function_xyz();\n"):
        message, _ = _not_ready(ready_clone)
    assert "the front page answered 500 with WordPress's critical error page" in message
    assert "its log says: PHP Fatal error: Uncaught Error: Call to undefined function" in message
    assert "wpclone_no_such_function_xyz" in message


def test_a_database_it_cannot_reach_is_not_ready(ready_clone: ReadyClone, stack: StackSettings) -> None:
    broken = dataclasses.replace(ready_clone.site, db_name="wp_no_such_database")
    register_site(stack, broken, default_content=False)
    try:
        message, _ = _not_ready(ready_clone)
    finally:
        register_site(stack, ready_clone.site, default_content=False)
    assert '"Error establishing a database connection"' in message


def test_a_redirect_to_the_source_is_not_ready(
    ready_clone: ReadyClone, stack: StackSettings, source_site: SiteConfig
) -> None:
    php = f"<?php header('Location: {source_site.url}/', true, 302); exit;\n"
    with _mu_plugin(stack, "aa-redirect.php", php):
        message, _ = _not_ready(ready_clone)
    assert (
        f"the front page redirects to {source_site.url}/, outside the site at {ready_clone.site.url}"
        in message
    )


def test_a_login_page_without_its_form_is_not_ready(ready_clone: ReadyClone, stack: StackSettings) -> None:
    php = "<?php add_action('login_init', static function () { echo 'closed'; exit; });\n"
    with _mu_plugin(stack, "aa-no-login.php", php):
        message, _ = _not_ready(ready_clone)
    assert "the login page answered 200 with 6 bytes but no login form" in message


def test_the_preview_is_served_only_with_its_token(ready_clone: ReadyClone, stack: StackSettings) -> None:
    runtime = LocalRuntime(load_config(), stack)
    plan = ready_clone.plan
    assert not runtime.site_ready(plan, preview=True)
    # A preview whose wp-content has no theme: the live site stays right, the preview is caught blank.
    preview_content = Path(stack.sites_dir) / CLONE / "wp-content.preview-test"
    (preview_content / "themes").mkdir(parents=True)
    register_preview(stack, dataclasses.replace(ready_clone.site, content_dir=preview_content))
    try:
        assert runtime.site_ready(plan, preview=True)
        message, _ = _not_ready(ready_clone, preview=True)
        assert "the restored site's preview" in message and "a blank page" in message
        await_site_ready(ready_clone.services, ready_clone.plan, TIMEOUT)  # visitors still get the live site
        wrong_token = urllib.request.Request(
            ready_clone.site.url + "/", headers={"X-Wpclone-Preview": "not-the-token"}
        )
        with pytest.raises(urllib.error.HTTPError, match="404"):
            http_opener().open(wrong_token, timeout=30)
    finally:
        unregister_preview(stack, CLONE)
        shutil.rmtree(preview_content)
    assert not runtime.site_ready(plan, preview=True)
