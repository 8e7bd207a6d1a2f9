"""Sources on the local stack, as a user registers them: seeding keeps them, add-source checks before it
writes, and the second test site (tests/fixtures/othersite.py) is what it says it is.

Commands run as subprocesses (``python -m wpclone.local ...``), as docs/local-stack.md shows them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.othersite import (
    DUE_HOOKS,
    HOSTS,
    NAME,
    PARENT_DIR,
    POSTS,
    PREFIX,
    SISTERS,
    THEME,
    TITLE,
    OtherSite,
)
from tests.fixtures.url_forms import count_strings, scan_forms, total
from tests.local.test_seed import _get, _php_unserialize
from wpclone.config import load_config, local_config_file
from wpclone.errors import ConfigError
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, content_dir, site_dir
from wpclone.local.sources import add_source


def local(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m wpclone.local ARGS`` on the tests' stack."""
    return subprocess.run(
        [sys.executable, "-m", "wpclone.local", *args],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def config_file(stack: StackSettings, source_site: SiteConfig) -> Iterator[Path]:
    """The stack's wpclone.json, put back as it was after the test."""
    path = local_config_file(stack)
    saved = path.read_text()
    yield path
    path.write_text(saved)


def add_source_args(site: OtherSite, **override: str) -> list[str]:
    """The documented add-source command line for the fixture site (``--flag value`` overrides)."""
    s = site.source
    options = {
        "--url": s.url,
        "--alias": "example.com",
        "--db-host": s.db_host,
        "--db-port": str(s.db_port),
        "--db-name": s.db_name,
        "--db-user": s.db_user,
        "--db-password-file": str(s.db_password_file),
        "--table-prefix": s.table_prefix,
        "--content-dir": str(s.content_dir),
        **override,
    }
    args = ["add-source", s.name]
    for flag, value in options.items():
        args += [flag, value]
    for root in s.content_link_roots or ():
        args += ["--link-root", root]
    return args


# -- the configuration file belongs to the user ------------------------------------------------------------


def test_seeding_keeps_a_users_sources_and_settings(config_file: Path, source_site: SiteConfig) -> None:
    data = json.loads(config_file.read_text())
    blog = {
        "name": "blog",
        "url": "https://blog.example.org",
        "db_host": "db.internal.example.org",
        "db_name": "blog",
        "db_user": "blog_ro",
        "db_password_file": "/etc/wpclone/blog-db",
        "content_dir": "/srv/blog/wp-content",
        "aliases": ["https://old-blog.example.org"],
    }
    data["sources"].insert(0, blog)
    data["backups"] = {"keep_per_clone": 3, "max_age_days": 7}
    [seeded] = [s for s in data["sources"] if s["name"] == "source"]
    seeded["aliases"] = ["https://northwind.example"]  # the user's addition to the seeded entry
    seeded["url"] = "http://source.localhost:1"  # stale: the stack's own fields are rewritten
    config_file.write_text(json.dumps(data, indent=4))

    result = local("seed")
    assert result.returncode == 0, result.stderr

    after = json.loads(config_file.read_text())
    assert after["sources"][0] == blog
    assert after["backups"] == {"keep_per_clone": 3, "max_age_days": 7}
    [seeded] = [s for s in after["sources"] if s["name"] == "source"]
    assert seeded["url"] == source_site.url
    assert seeded["aliases"] == ["https://northwind.example"]
    config = load_config({"WPCLONE_STATE_DIR": str(config_file.parent)})
    assert [s.name for s in config.sources] == ["blog", "source"]
    assert config.backups.keep_per_clone == 3


def test_a_broken_configuration_is_refused_not_overwritten(config_file: Path) -> None:
    broken = config_file.read_text().replace('"sources"', '"sources" "oops"', 1)
    config_file.write_text(broken)
    result = local("seed")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()[-1:]
    where = broken[: broken.index('"oops"')].count("\n") + 1  # the line the parser stops at
    assert line == (
        f"error: the wpclone configuration in {config_file} is not valid JSON (Expecting ':' delimiter at "
        f"line {where}); fix it or move it away, then try again."
    )
    assert config_file.read_text() == broken


# -- add-source and remove-source ----------------------------------------------------------------------------


def test_add_source_registers_the_site_and_remove_source_forgets_it(
    config_file: Path, other_site: OtherSite, stack: StackSettings
) -> None:
    result = local(*add_source_args(other_site))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"Registered {NAME}; clone it with: .venv/bin/wpclone clone https://www.example.com --wait"
    )
    config = load_config({"WPCLONE_STATE_DIR": str(stack.state_dir)})
    assert config.source_for("https://www.example.com/") == other_site.source
    assert config.source_for(stack.site_url("source")).name == "source"  # the seeded one is still there
    listed = local("sources").stdout
    assert re.search(rf"^  {NAME} +https://www\.example\.com/ \(also https://example\.com\)", listed, re.M)
    # Registering again updates the entry in place; removing it leaves the rest.
    again = local(*add_source_args(other_site, **{"--alias": "https://fjordside.example"}))
    assert again.returncode == 0, again.stderr
    [entry] = [s for s in json.loads(config_file.read_text())["sources"] if s["name"] == NAME]
    assert entry["aliases"] == ["https://fjordside.example"]
    removed = local("remove-source", NAME)
    assert removed.returncode == 0, removed.stderr
    assert [s.name for s in load_config({"WPCLONE_STATE_DIR": str(stack.state_dir)}).sources] == ["source"]
    unknown = local("remove-source", NAME)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == f"error: no source is named {NAME} (registered: source)."


def test_add_source_reads_wp_config(
    config_file: Path, other_site: OtherSite, stack: StackSettings, tmp_path: Path
) -> None:
    s = other_site.source
    password = other_site.db.password.replace("'", "\\'")
    wp_config = tmp_path / "wp-config.php"
    wp_config.write_text(
        "<?php\n// ** Database settings ** //\n"
        f"define( 'DB_NAME', '{s.db_name}' );\ndefine('DB_USER', \"{s.db_user}\");\n"
        f"define( 'DB_PASSWORD', '{password}' );\n"
        f"define( 'DB_HOST', 'localhost:{s.db_port}' );\ndefine( 'WP_HOME', getenv( 'HOME_URL' ) );\n"
        f"$table_prefix = '{s.table_prefix}';\nrequire_once ABSPATH . 'wp-settings.php';\n"
    )
    registered = add_source(
        stack, NAME, wp_config=wp_config, content_dir=s.content_dir, aliases=("example.com",)
    )
    secret = stack.secrets_dir / f"source-{NAME}-db"
    assert registered == s.model_copy(
        update={"db_password_file": str(secret), "content_link_roots": None}
    )  # URL from the site's home option, database settings from the file, localhost as 127.0.0.1
    assert secret.read_text().strip() == other_site.db.password
    assert secret.stat().st_mode & 0o077 == 0
    assert load_config({"WPCLONE_STATE_DIR": str(stack.state_dir)}).source_for(s.url) == registered
    assert local("remove-source", NAME).returncode == 0
    assert not secret.exists()


@pytest.mark.parametrize(
    ("override", "sentence"),
    [
        (
            {"--db-password-file": "WRONG"},
            "cannot log in to database fx7_wordpress on 127.0.0.1:{port} as fx7_site (Access denied for user "
            "'fx7_site'@'127.0.0.1' (using password: YES)); check the database host, port, name, user and "
            "password.",
        ),
        (
            {"--table-prefix": "wp_"},
            "database fx7_wordpress on 127.0.0.1:{port} has no table wp_options, so its table prefix is not "
            "wp_ (prefixes with an options table: fx7_).",
        ),
        (
            {"--url": "https://shop.example.org"},
            "the site's home is https://www.example.com, not https://shop.example.org or an alias of it; "
            "register it with --url https://www.example.com, or add --alias https://www.example.com.",
        ),
        (
            {"--content-dir": "/tmp"},
            "/tmp is not a wp-content directory (it has no themes/ directory).",
        ),
        (
            {"--db-password-file": "SHARED"},
            "the password file {shared} is readable by others; chmod 600 {shared} and retry.",
        ),
        ({"source": ""}, "source is the name of the seeded demo site; choose another name."),
    ],
    ids=[
        "wrong-password",
        "wrong-prefix",
        "url-mismatch",
        "not-wp-content",
        "password-file-mode",
        "seeded-name",
    ],
)
def test_add_source_refuses_with_a_sentence_and_writes_nothing(
    config_file: Path,
    other_site: OtherSite,
    stack: StackSettings,
    tmp_path: Path,
    override: dict[str, str],
    sentence: str,
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    shared = tmp_path / "shared-password"
    shared.write_text(other_site.db.password)
    shared.chmod(0o644)
    values = {"WRONG": str(wrong), "SHARED": str(shared)}
    args = add_source_args(other_site, **{k: values.get(v, v) for k, v in override.items() if k != "source"})
    if "source" in override:
        args[1] = "source"
    before = config_file.read_bytes()
    result = local(*args)
    assert result.returncode == 1
    expected = sentence.format(port=other_site.source.db_port, shared=shared)
    assert result.stderr.strip().splitlines()[-1] == f"error: {expected}"
    assert config_file.read_bytes() == before
    assert not (stack.secrets_dir / f"source-{NAME}-db").exists()


def test_add_source_without_a_login_says_what_is_missing(stack: StackSettings, config_file: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        add_source(stack, "blog", url="https://blog.example.org", db_user="blog")
    assert str(caught.value) == "the source's db name is not known: pass --db-name or --wp-config."


# -- the second test site ----------------------------------------------------------------------------------


def test_the_other_site_renders_through_the_site_host(other_site: OtherSite) -> None:
    url = other_site.site.url
    status, headers, body = _get(f"{url}/")
    html = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert f"<title>{TITLE}" in html
    assert "wp-site-blocks" in html  # the parent block theme's templates
    assert "Fjordside Kooperativ · laget med ☕ og 🌊" in html  # the child theme's own footer part
    stylesheet = f"{url}/wp-content/themes/{THEME}/style.css?ver=1.4.2"
    assert f"<link rel='stylesheet' id='{THEME}-css' href='{stylesheet}'" in html
    status, _, css = _get(stylesheet)
    assert status == 200 and b"Template: twentytwentythree" in css
    with other_site.db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT post_name, YEAR(post_date), post_title FROM {PREFIX}posts "
            "WHERE post_type = 'post' ORDER BY ID DESC LIMIT 1"
        )
        slug, year, title = cur.fetchone()
    status, _, body = _get(f"{url}/{year}/{slug}/")
    assert status == 200
    assert str(title) in body.decode() and "Fra fjorden, notat" in body.decode()


def test_the_other_site_holds_what_it_planted(other_site: OtherSite, stack: StackSettings) -> None:
    planted = other_site.planted
    found = total(scan_forms(other_site.db, HOSTS))
    # Every form of the URL and of the alias, planted many times over; WordPress adds its own on top.
    assert {form for host, form in planted.forms if host == "www.example.com"} >= {
        "https://", "http://", "//", "https:\\/\\/", "http:\\/\\/", "\\/\\/",
        "https%3A%2F%2F", "https%3a%2f%2f", "http%3A%2F%2F", "%2F%2F",
    }  # fmt: skip
    assert {form for host, form in planted.forms if host == "example.com"} >= {
        "https://", "http://", "//", "https:\\/\\/", "https%3A%2F%2F", "http%3A%2F%2F",
    }  # fmt: skip
    assert all(found[key] >= n for key, n in planted.forms.items()), (found, planted.forms)
    assert sum(planted.forms.values()) > 9000
    assert count_strings(other_site.db, SISTERS) == planted.sisters
    assert all(planted.sisters[s] > 0 for s in SISTERS)

    with other_site.db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT COUNT(*) FROM {PREFIX}posts WHERE post_type = 'post' AND post_status = 'publish'"
        )
        assert cur.fetchone()[0] == POSTS + 1  # and WordPress's own "Hello world!"
        cur.execute(f"SELECT option_value FROM {PREFIX}options WHERE option_name IN ('home', 'siteurl')")
        assert {row[0] for row in cur.fetchall()} == {"https://www.example.com"}
        cur.execute(f"SELECT option_value FROM {PREFIX}options WHERE option_name = 'cron'")
        cron = _php_unserialize(str(cur.fetchone()[0]))
        cur.execute(f"SELECT COUNT(*) FROM {PREFIX}posts WHERE post_content LIKE %s", ("%🌊%",))
        assert cur.fetchone()[0] >= POSTS  # 4-byte UTF-8 kept (utf8mb4)
    assert isinstance(cron, dict)
    due = {
        hook
        for when, hooks in cron.items()
        if when != "version" and int(when) <= time.time()
        for hook in hooks
    }
    assert set(DUE_HOOKS) <= due

    wp_content = content_dir(stack, NAME)
    assert (wp_content / "themes" / "twentytwentythree").readlink() == PARENT_DIR
    assert (wp_content / "uploads").readlink() == Path("../shared/uploads")
    uploads = site_dir(stack, NAME) / "shared" / "uploads"
    assert len(list(uploads.rglob("*.jpg"))) >= 3
