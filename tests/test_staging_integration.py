"""Staging safety on a real clone over HTTP: no indexing, environment ``staging``, no mail, a new password.

The clone is made here as ``hand_clone`` is (steps CLI), under its own name, then made safe the way the
DAG does: the must-use plugin in its wp-content, the site registered with the staging constants, and the
staging SQL with a fresh admin password. The source must come out of it untouched.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures.stack import run_step
from tests.local.test_seed import _get, _login, _option, _query
from wpclone.db import DbEndpoint
from wpclone.local.mariadb import LOCAL_USER_HOST
from wpclone.local.seed import site_endpoint
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import (
    HERE,
    SiteConfig,
    SiteHost,
    content_dir,
    http_opener,
    register_site,
    unregister_site,
)
from wpclone.mysql_admin import MySqlAdmin
from wpclone.php import phpass_check
from wpclone.staging import MU_PLUGIN_FILENAME, STAGING_CONSTANTS, apply_staging_sql, write_mu_plugin

CLONE = "staging-safety"


@dataclasses.dataclass(frozen=True)
class StagingClone:
    site: SiteConfig
    expires_at: datetime
    admin_user_id: int
    source_before: dict[str, object]
    sessions_copied: int  # session_tokens rows in the clone after the copy, before staging safety
    sessions_after: int  # ... and after it


def _source_state(stack: StackSettings, source: SiteConfig) -> dict[str, object]:
    p = source.table_prefix
    sql = f"SELECT user_pass, user_activation_key FROM `{p}users` WHERE user_login = %s"
    return {
        "blog_public": _option(source, "blog_public"),
        "admin": _query(source, sql, (source.admin_user,)),
        "mu_plugins": sorted(
            path.name for path in (content_dir(stack, source.name) / "mu-plugins").glob("*")
        ),
    }


def _count(site: SiteConfig, sql: str) -> int:
    return int(str(_query(site, sql)[0][0]))


def _sessions(site: SiteConfig) -> int:
    return _count(
        site, f"SELECT COUNT(*) FROM `{site.table_prefix}usermeta` WHERE meta_key = 'session_tokens'"
    )


def _apply(site: SiteConfig, expires_at: datetime | None = None) -> int:
    assert site.admin_user
    return apply_staging_sql(
        lambda: site_endpoint(site).connect(),
        site.db_name,
        site.table_prefix,
        site.admin_user,
        site.admin_password(),
        expires_at=expires_at,
    )


@pytest.fixture(scope="module")
def staging_clone(
    stack: StackSettings, source_site: SiteConfig, admin_db: DbEndpoint
) -> Iterator[StagingClone]:
    database = user = "wp_staging_safety"
    db_password_file = stack.secrets_dir / f"site-{CLONE}-db"
    admin_password_file = stack.secrets_dir / f"site-{CLONE}-admin"

    def clean() -> None:
        unregister_site(stack, CLONE)
        MySqlAdmin.from_endpoint(admin_db).drop_database_and_user(database, user, user_host=LOCAL_USER_HOST)
        db_password_file.unlink(missing_ok=True)
        admin_password_file.unlink(missing_ok=True)

    clean()  # leftovers of an interrupted run
    _login(source_site, source_site.admin_password())  # the source has a live session to (not) carry over
    source_before = _source_state(stack, source_site)
    stack.secret(db_password_file.name)
    stack.secret(admin_password_file.name)  # the clone's fresh admin password (urlsafe, owner-only file)
    site = dataclasses.replace(
        source_site,
        name=CLONE,
        url=stack.site_url(CLONE),
        db_name=database,
        db_user=user,
        db_password_file=db_password_file,
        admin_password_file=admin_password_file,
        environment_type="staging",
        disable_wp_cron=True,
        constants=dict(STAGING_CONSTANTS),
    )
    try:
        MySqlAdmin.from_endpoint(admin_db).create_database_and_user(
            database, user, site.db_password(), user_host=LOCAL_USER_HOST
        )
        source_db = admin_db.with_database(source_site.db_name)
        run_step(
            "copy-database",
            source_site.url,
            site.url,
            env={**source_db.to_env("SOURCE_DB"), **site_endpoint(site).to_env("TARGET_DB")},
        )
        run_step("copy-content", str(content_dir(stack, source_site.name)), str(content_dir(stack, CLONE)))
        sessions_copied = _sessions(site)
        written = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
        write_mu_plugin(content_dir(stack, CLONE), CLONE, written)
        # The staging safety's expiry option (a later one, as an extension sets) wins over the plugin's.
        expires_at = written + timedelta(days=1)
        admin_user_id = _apply(site, expires_at)
        sessions_after = _sessions(site)
        register_site(stack, site, default_content=False)
        yield StagingClone(site, expires_at, admin_user_id, source_before, sessions_copied, sessions_after)
    finally:
        clean()


# -- the site in PHP: what WordPress runs with, checked inside WordPress ------------------------------------

_SITE_CHECK = r"""<?php
require getenv('WPCLONE_SITE_PHP');
$cfg = wpclone_load_site((string) getenv('WPCLONE_SITES_DIR'), $argv[1]);
$parts = parse_url($cfg['url']);
$_SERVER['HTTP_HOST'] = $parts['host'] . ':' . $parts['port'];
$_SERVER['SERVER_NAME'] = $parts['host'];
$_SERVER['SERVER_PORT'] = (string) $parts['port'];
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REQUEST_METHOD'] = 'GET';
$_SERVER['SCRIPT_NAME'] = '/index.php';
$_SERVER['PHP_SELF'] = '/index.php';
$_SERVER['REMOTE_ADDR'] = '127.0.0.1';
wpclone_define_site($cfg, (string) getenv('WPCLONE_CORE_DIR'));
$check_password = trim((string) stream_get_contents(STDIN));
unset($cfg);
// No HTTP request leaves this check; a message that reaches PHPMailer is recorded and never sent.
$wp_filter['pre_http_request'][10]['check'] = [
    'function' => static fn () => new WP_Error('check', 'No HTTP requests in this check.'),
    'accepted_args' => 1,
];
$check_phpmailer = false;
$wp_filter['phpmailer_init'][10]['check'] = [
    'function' => static function ($mailer) {
        $GLOBALS['check_phpmailer'] = true;
        $mailer->clearAllRecipients();
    },
    'accepted_args' => 1,
];
require ABSPATH . 'wp-load.php';
$admin = get_user_by('login', $argv[2]);
echo json_encode([
    'environment_type' => wp_get_environment_type(),
    'disable_wp_cron' => defined('DISABLE_WP_CRON') && DISABLE_WP_CRON,
    'automatic_updater_disabled' => defined('AUTOMATIC_UPDATER_DISABLED') && AUTOMATIC_UPDATER_DISABLED,
    'blog_public' => get_option('blog_public'),
    'staging_plugin' => defined('WPCLONE_STAGING_CLONE_ID') ? WPCLONE_STAGING_CLONE_ID : null,
    'wp_check_password' => wp_check_password($check_password, $admin->user_pass, $admin->ID),
    'wp_mail' => wp_mail('someone@example.com', 'Staging check', 'body'),
    'phpmailer_reached' => $check_phpmailer,
]), "\n";
"""


def _site_check(
    stack: StackSettings, site: SiteConfig, password: str, tmp_path: Path
) -> tuple[dict[str, object], str]:
    script = tmp_path / "site-check.php"
    script.write_text(_SITE_CHECK)
    host = SiteHost(stack)
    result = subprocess.run(
        ["php", str(script), site.name, site.admin_user or "admin"],
        input=password,
        env={**host.env(), "WPCLONE_SITE_PHP": str(HERE / "site.php")},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report, result.stderr


def staging_report(clone_id: str) -> dict[str, object]:
    """What ``_site_check`` reports for a safe staging clone."""
    return {
        "environment_type": "staging",
        "disable_wp_cron": True,
        "automatic_updater_disabled": True,
        "blog_public": "0",
        "staging_plugin": clone_id,
        "wp_check_password": True,  # WordPress itself accepts our phpass hash of the new password
        "wp_mail": False,
        "phpmailer_reached": False,  # blocked before WordPress even built the message
    }


def test_wordpress_runs_as_staging(staging_clone: StagingClone, stack: StackSettings, tmp_path: Path) -> None:
    site = staging_clone.site
    report, log = _site_check(stack, site, site.admin_password(), tmp_path)
    assert report == staging_report(CLONE)
    assert f"wpclone staging clone {CLONE}: outgoing mail blocked (1 recipient(s)" in log
    assert "someone@example.com" not in log


def test_source_runs_as_before(
    staging_clone: StagingClone, stack: StackSettings, source_site: SiteConfig, tmp_path: Path
) -> None:
    """The same check on the source: production, mail reaches PHPMailer, the new password is not its own."""
    report, log = _site_check(stack, source_site, staging_clone.site.admin_password(), tmp_path)
    assert report["environment_type"] == "production"
    assert report["disable_wp_cron"] is False
    assert report["blog_public"] == "1"
    assert report["staging_plugin"] is None
    assert report["wp_check_password"] is False
    assert report["phpmailer_reached"] is True
    assert "outgoing mail blocked" not in log
    report, _ = _site_check(stack, source_site, source_site.admin_password(), tmp_path)
    assert report["wp_check_password"] is True


# -- over HTTP -----------------------------------------------------------------------------------------------


def _post(url: str, form: dict[str, str]) -> tuple[dict[str, str], str]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode())
    try:
        with http_opener().open(request, timeout=60) as response:
            return dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return dict(exc.headers), exc.read().decode()


def _pages(site: SiteConfig) -> list[str]:
    return [
        f"{site.url}/",
        f"{site.url}/spring-tides-1/",
        f"{site.url}/about/",
        f"{site.url}/no-such-page-here/",
        f"{site.url}/feed/",
        f"{site.url}/wp-json/wp/v2/posts?per_page=1",
        f"{site.url}/wp-login.php",
        f"{site.url}/wp-admin/",
        f"{site.url}/wp-cron.php",
        f"{site.url}/robots.txt",
    ]


def test_every_page_says_noindex(staging_clone: StagingClone) -> None:
    opener = http_opener(follow_redirects=False)
    for url in _pages(staging_clone.site):
        status, headers, _ = _get(url, opener)
        assert status < 500, url
        # Core sends its own "X-Robots-Tag: noindex" on REST responses, replacing ours.
        expected = "noindex" if "/wp-json/" in url else "noindex, nofollow"
        assert headers.get("X-Robots-Tag") == expected, url


def test_html_has_robots_meta_notice_and_staging_title(staging_clone: StagingClone) -> None:
    site = staging_clone.site
    expires = staging_clone.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    for url in (f"{site.url}/", f"{site.url}/spring-tides-1/", f"{site.url}/wp-login.php"):
        html = _get(url)[2].decode()
        assert "<meta name='robots' content='noindex, nofollow" in html, url
        assert f">Staging clone {CLONE}, expires in 26 h ({expires})</div>" in html, url
        assert "<title>[STAGING] " in html and html.count("[STAGING]") == 1, url


def test_source_is_untouched(
    staging_clone: StagingClone, stack: StackSettings, source_site: SiteConfig
) -> None:
    for url in _pages(source_site):
        _, headers, _ = _get(url, http_opener(follow_redirects=False))
        expected = "noindex" if "/wp-json/" in url else None  # core's own header on REST responses
        assert headers.get("X-Robots-Tag") == expected, url
    html = _get(f"{source_site.url}/")[2].decode()
    assert "noindex" not in html and "Staging clone" not in html and "[STAGING]" not in html
    assert _source_state(stack, source_site) == staging_clone.source_before
    assert staging_clone.source_before["blog_public"] == "1"
    _, final_url, _ = _login(source_site, source_site.admin_password())
    assert final_url == f"{source_site.url}/wp-admin/"


def test_admin_login_with_the_new_password_only(staging_clone: StagingClone, source_site: SiteConfig) -> None:
    site = staging_clone.site
    assert site.admin_password() != source_site.admin_password()
    jar, final_url, html = _login(site, site.admin_password())
    assert final_url == f"{site.url}/wp-admin/"
    assert "<title>[STAGING] Dashboard" in html
    assert f"Staging clone {CLONE}, expires in 26 h" in html  # the admin bar notice...
    assert "#wpadminbar{background:#b32d2e!important}" in html  # ... on a red admin bar
    jar, final_url, html = _login(site, source_site.admin_password())
    assert "/wp-login.php" in final_url and 'id="login_error"' in html
    assert not any(cookie.name.startswith("wordpress_logged_in_") for cookie in jar)
    sql = f"SELECT user_pass FROM `{site.table_prefix}users` WHERE ID = %s"
    (stored,) = _query(site, sql, (staging_clone.admin_user_id,))[0]
    assert phpass_check(site.admin_password(), str(stored))
    assert not phpass_check(source_site.admin_password(), str(stored))


def test_no_source_sessions(staging_clone: StagingClone) -> None:
    assert staging_clone.sessions_copied >= 1  # the copy carried the source's sessions over...
    assert staging_clone.sessions_after == 0  # ...and staging safety removed them


def test_password_reset_mail_is_blocked_and_reapplying_converges(
    staging_clone: StagingClone, stack: StackSettings, tmp_path: Path
) -> None:
    site = staging_clone.site
    p = site.table_prefix
    # A test-only probe (loaded before ours): PHP's log to a file we read, and a header if PHPMailer is
    # reached (with the recipients cleared, so nothing could be sent even then).
    mail_log = tmp_path / "php-errors.log"
    probe = content_dir(stack, site.name) / "mu-plugins" / "aa-test-mail-probe.php"
    probe.write_text(
        f"<?php ini_set('error_log', {str(mail_log)!r});\n"
        "add_action('phpmailer_init', static function ($m) {\n"
        "    header('X-Test-PHPMailer: reached'); $m->clearAllRecipients();\n"
        "});\n"
    )
    try:
        form = {"user_login": site.admin_user or "admin", "redirect_to": "", "wp-submit": "Get New Password"}
        headers, html = _post(f"{site.url}/wp-login.php?action=lostpassword", form)
    finally:
        probe.unlink()
    assert "The email could not be sent" in html
    assert headers.get("X-Robots-Tag") == "noindex, nofollow"
    assert "X-Test-PHPMailer" not in headers
    logged = mail_log.read_text()
    assert f"wpclone staging clone {CLONE}: outgoing mail blocked (1 recipient(s)" in logged
    assert "Password Reset" in logged
    # WordPress stored a reset key before it tried to mail it; applying staging safety again clears it.
    key_sql = f"SELECT COUNT(*) FROM `{p}users` WHERE user_activation_key <> ''"
    assert _count(site, key_sql) == 1
    assert _apply(site) == staging_clone.admin_user_id
    assert _count(site, key_sql) == 0
    assert _option(site, "blog_public") == "0"
    _, final_url, _ = _login(site, site.admin_password())
    assert final_url == f"{site.url}/wp-admin/"
    assert (content_dir(stack, site.name) / "mu-plugins" / MU_PLUGIN_FILENAME).is_file()


def _due_event_scheduled(site: SiteConfig) -> bool:
    return "wpclone_test_due" in _option(site, "cron")


def _run_cron(site: SiteConfig) -> tuple[int, bytes]:
    """GET wp-cron.php as an outside caller does, with WordPress's cron lock free (the copy may carry the
    source's recent lock, which would make wp-cron.php return before looking at any event)."""
    with site_endpoint(site).connect() as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM `{site.table_prefix}options` WHERE option_name = '_transient_doing_cron'")
        conn.commit()
    status, _, body = _get(f"{site.url}/wp-cron.php")
    return status, body


def test_a_request_to_wp_cron_runs_no_scheduled_event(
    staging_clone: StagingClone, stack: StackSettings, tmp_path: Path
) -> None:
    site = staging_clone.site
    ran = tmp_path / "event-ran"
    # A test-only probe: a hook that records that it ran, and a way to schedule it as already due.
    probe = content_dir(stack, site.name) / "mu-plugins" / "aa-test-cron-probe.php"
    probe.write_text(
        "<?php\n"
        f"add_action('wpclone_test_due', static function () {{ file_put_contents({str(ran)!r}, 'ran'); }});\n"
        "add_action('init', static function () {\n"
        "    if (isset($_GET['schedule-test-event']) && !wp_next_scheduled('wpclone_test_due')) {\n"
        "        wp_schedule_single_event(time() - 60, 'wpclone_test_due');\n"
        "    }\n"
        "});\n"
    )
    ours = content_dir(stack, site.name) / "mu-plugins" / MU_PLUGIN_FILENAME
    aside = ours.with_name("wpclone-staging.php.aside")
    try:
        status, _, _ = _get(f"{site.url}/?schedule-test-event=1")
        assert status == 200
        assert _due_event_scheduled(site)

        status, body = _run_cron(site)
        assert status == 403
        assert b"scheduled events do not run on a staging clone" in body
        assert not ran.exists()
        assert _due_event_scheduled(site)  # still due: nothing ran it

        # The control: without our plugin the same request runs the event (so the probe can see it).
        ours.rename(aside)
        status, _ = _run_cron(site)
        assert status == 200
        assert ran.read_text() == "ran"
        assert not _due_event_scheduled(site)
    finally:
        if aside.exists():
            aside.rename(ours)
        probe.unlink(missing_ok=True)
