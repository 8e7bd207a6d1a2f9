"""The local stack: site host routing, site registration and up/down/status over the real processes."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from wpclone.errors import ConfigError
from wpclone.local.mariadb import LocalMariaDB
from wpclone.local.procs import group_pids
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import (
    SiteConfig,
    SiteHost,
    check_site_name,
    http_opener,
    list_sites,
    register_site,
    site_dir,
    unregister_site,
)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with http_opener().open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_unknown_host_gets_a_clear_404(stack: StackSettings) -> None:
    status, headers, body = _get(f"http://no-such-site.localhost:{stack.http_port}/")
    assert status == 404
    assert headers["Content-Type"].startswith("text/plain")
    assert b"no site is registered for host 'no-such-site.localhost'" in body
    status, _, _ = _get(f"http://127.0.0.1:{stack.http_port}/wp-login.php")
    assert status == 404


def test_path_traversal_is_refused(stack: StackSettings, source_site: SiteConfig) -> None:
    status, _, body = _get(f"{source_site.url}/wp-content/../../site.json")
    assert status in (400, 404)
    assert b"db_password_file" not in body
    status, _, body = _get(f"{source_site.url}/wp-content/%2e%2e/secrets.json")
    assert status in (400, 404)
    assert b"salts" not in body
    status, _, body = _get(f"{source_site.url}/wp-config.php")
    assert status == 404
    assert b"WPCLONE" not in body


def test_core_static_files_are_served(stack: StackSettings, source_site: SiteConfig) -> None:
    status, headers, body = _get(f"{source_site.url}/wp-includes/css/dashicons.min.css")
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert body == Path("/usr/share/wordpress/wp-includes/css/dashicons.min.css").read_bytes()


def test_core_entry_points_load_wordpress(stack: StackSettings, source_site: SiteConfig) -> None:
    """Entry points that decide themselves whether to load WordPress still run with our wp-config.php."""
    # wp-cron.php loads WordPress, then runs the due events only if ``doing_wp_cron`` matches its lock:
    # with a value that cannot match it returns at once. (Running them would make a freshly seeded site do
    # its first HTTPS detection and site-health loopbacks: tens of seconds against a plain-HTTP host.)
    status, _, body = _get(f"{source_site.url}/wp-cron.php?doing_wp_cron=0.wpclone-test")
    assert status == 200, body[:300]
    status, headers, body = _get(f"{source_site.url}/wp-json/wp/v2/posts?per_page=1")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)[0]["link"].startswith(f"{source_site.url}/")
    status, _, body = _get(f"{source_site.url}/wp-admin/load-styles.php?load%5Bchunk_0%5D=dashicons")
    assert status == 200 and b".dashicons" in body
    status, _, body = _get(f"{source_site.url}/wp-admin/admin-ajax.php")
    assert (status, body) == (400, b"0")  # WordPress's own answer to an ajax call without an action


@pytest.mark.parametrize("name", ["", "A", "-x", "a_b", "a/b", "../etc", "a;b", "a b", "x" * 40, "ß"])
def test_site_names_are_validated(name: str) -> None:
    with pytest.raises(ConfigError):
        check_site_name(name)


def test_site_names_accepted() -> None:
    assert check_site_name("source") == "source"
    assert check_site_name("c-0123456789abcdef") == "c-0123456789abcdef"
    assert check_site_name("a" * 39) == "a" * 39


def test_register_serves_by_host_then_unregister_removes(
    stack: StackSettings, source_site: SiteConfig
) -> None:
    """A second site on the source database answers with its own URLs; unregistering removes it."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    url = stack.site_url(name)
    config = SiteConfig(
        name=name,
        url=url,
        db_host=source_site.db_host,
        db_port=source_site.db_port,
        db_name=source_site.db_name,
        db_user=source_site.db_user,
        db_password_file=source_site.db_password_file,
        environment_type="staging",
        disable_wp_cron=True,
    )
    directory = register_site(stack, config)
    try:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE((directory / "secrets.json").stat().st_mode) == 0o600
        assert stat.S_IMODE((directory / "site.json").stat().st_mode) == 0o600
        style = directory / "wp-content/themes/twentytwentyone/style.css"
        assert style.is_file() and not style.is_symlink()
        assert not (directory / "wp-content/themes/twentytwentyone").is_symlink()
        assert name in [site.name for site in list_sites(stack)]
        secrets = json.loads((directory / "secrets.json").read_text())["salts"]
        assert len(secrets) == 8 and len(set(secrets.values())) == 8
        # Re-registering keeps the salts (logins survive) and is otherwise a no-op.
        register_site(stack, config)
        assert json.loads((directory / "secrets.json").read_text())["salts"] == secrets

        # A must-use plugin in the site's own wp-content reports what WordPress was configured with.
        mu_plugins = directory / "wp-content/mu-plugins"
        mu_plugins.mkdir()
        (mu_plugins / "report.php").write_text(
            "<?php header('X-Wpclone-Report: ' . json_encode([wp_get_environment_type(), "
            "defined('DISABLE_WP_CRON') && DISABLE_WP_CRON, WP_CONTENT_DIR, DB_NAME, "
            "$GLOBALS['table_prefix'], home_url('/'), defined('AUTH_KEY') ? strlen(AUTH_KEY) : 0, "
            "is_wp_error($r = wp_remote_get('https://api.wordpress.org/', ['timeout' => 5])) "
            "? $r->get_error_message() : 'fetched']));\n"
        )
        status, headers, body = _get(f"{url}/")
        assert status == 200
        assert json.loads(headers["X-Wpclone-Report"]) == [
            "staging",
            True,
            str(directory / "wp-content"),
            source_site.db_name,
            "wp_",
            f"{url}/",
            len(secrets["AUTH_KEY"]),
            "User has blocked requests through HTTP.",  # the sandbox never calls the internet
        ]
        html = body.decode()
        # WordPress builds its own links from this site's URL (the content still holds the source's URLs:
        # rewriting them is the clone's job, not the site host's).
        assert f'href="{url}/wp-json/"' in html
        assert (
            f"id='twenty-twenty-one-style-css' href='{url}/wp-content/themes/twentytwentyone/style.css"
            in html
        )
    finally:
        assert unregister_site(stack, name) is True
    assert not directory.exists()
    assert unregister_site(stack, name) is False
    status, _, _ = _get(f"{url}/")
    assert status == 404


def test_invalid_site_config_is_refused(stack: StackSettings, source_site: SiteConfig) -> None:
    base = dict(
        name="bad-config",
        url=stack.site_url("bad-config"),
        db_host="127.0.0.1",
        db_port=stack.db_port,
        db_name="wp_bad",
        db_user="wp_bad",
        db_password_file=source_site.db_password_file,
    )
    for change in (
        {"db_name": "wp-bad;drop"},
        {"table_prefix": "wp"},
        {"url": "http://bad.localhost/x?y"},
        {"environment_type": "prod"},
        {"constants": {"lower": True}},
    ):
        with pytest.raises(ConfigError):
            register_site(stack, SiteConfig(**{**base, **change}))  # type: ignore[arg-type]
    assert not site_dir(stack, "bad-config").exists()


def _cli(private: StackSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WPCLONE_STATE_DIR": str(private.state_dir),
        "WPCLONE_DB_PORT": str(private.db_port),
        "WPCLONE_HTTP_PORT": str(private.http_port),
    }
    return subprocess.run(
        [sys.executable, "-m", "wpclone.local", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def test_up_down_status_are_idempotent_and_leave_no_process(private_stack: StackSettings) -> None:
    down = _cli(private_stack, "status")
    assert down.returncode == 3
    assert "mariadb:    stopped" in down.stdout and "site host:  stopped" in down.stdout

    refused = _cli(private_stack, "seed")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: MariaDB is not running; start the stack with `python -m wpclone.local up` first."
    ]

    first = _cli(private_stack, "up")
    assert first.returncode == 0, first.stderr
    db_pid = LocalMariaDB(private_stack).pid()
    php_pid = SiteHost(private_stack).pid()
    assert db_pid and php_pid
    workers = group_pids(php_pid)
    assert len(workers) >= 3  # the server and its PHP_CLI_SERVER_WORKERS

    second = _cli(private_stack, "up")
    assert second.returncode == 0, second.stderr
    assert LocalMariaDB(private_stack).pid() == db_pid
    assert SiteHost(private_stack).pid() == php_pid

    status = _cli(private_stack, "status")
    assert status.returncode == 0, status.stdout
    assert f"127.0.0.1:{private_stack.db_port}" in status.stdout
    assert f"127.0.0.1:{private_stack.http_port}" in status.stdout
    assert str(private_stack.secrets_dir / "mysql-admin") in status.stdout
    assert private_stack.secret("mysql-admin") not in status.stdout + status.stderr
    status_code, _, body = _get(f"http://127.0.0.1:{private_stack.http_port}/__wpclone/health")
    assert (status_code, body.strip()) == (200, b"ok")

    stopped = _cli(private_stack, "down")
    assert stopped.returncode == 0, stopped.stderr
    assert not _alive(db_pid)
    assert not [pid for pid in workers if _alive(pid)]
    assert group_pids(php_pid) == []
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", private_stack.http_port)) != 0

    again = _cli(private_stack, "down")
    assert again.returncode == 0, again.stderr
    assert _cli(private_stack, "status").returncode == 3


def test_port_in_use_fails_with_one_sentence(private_stack: StackSettings) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", private_stack.http_port))
        blocker.listen()
        with pytest.raises(RuntimeError, match="already in use"):
            SiteHost(private_stack).start()
    assert SiteHost(private_stack).pid() is None


def test_the_site_host_is_known_by_its_state_dir_whichever_checkout_started_it(tmp_path: Path) -> None:
    """A site host started from another checkout (another router.php path) serving this state dir's core is
    still this stack's: ``down`` stops it instead of forgetting it; a process serving another core is not."""
    settings = StackSettings(tmp_path / "state", 1, 2)
    host = SiteHost(settings)
    host.base.mkdir(parents=True)
    sleeper = "import time; time.sleep(60)"
    ours = subprocess.Popen(  # argv as php -S has it: the core dir, and a router from elsewhere
        [
            sys.executable,
            "-c",
            sleeper,
            "-t",
            str(host.core_dir),
            "/elsewhere/plugins/wpclone/local/router.php",
        ],
        start_new_session=True,
    )
    other = subprocess.Popen([sys.executable, "-c", sleeper, "-t", str(tmp_path / "other" / "core")])
    try:
        host.pidfile.write_text(f"{other.pid}\n")
        assert host.pid() is None
        host.pidfile.write_text(f"{ours.pid}\n")
        assert host.pid() == ours.pid
        host.stop()
        assert ours.wait(timeout=30) is not None and not host.pidfile.exists()
    finally:
        for process in (ours, other):
            process.kill()
            process.wait()
