"""The seeded source site, over real HTTP and in its database: content a real WordPress site holds.

The content checks run on the source and on a clone of it made by hand with the steps CLI
(``copy-database`` + ``copy-content``): the clone must serve the same site at its own URL.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import stat
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pymysql
import pytest

from wpclone.local.seed import SOURCE_TITLE, seed_source, site_admin_password, site_endpoint
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, content_dir, http_opener

URL_RE = re.compile(r"https?:(?://|\\/\\/)[^\s\"'<>)\\]+")


@pytest.fixture(params=["source", "hand-clone"])
def site(request: pytest.FixtureRequest, source_site: SiteConfig) -> SiteConfig:
    """The source site, then the hand-made clone (same content, its own URL, database and files)."""
    if request.param == "source":
        return source_site
    clone: SiteConfig = request.getfixturevalue("hand_clone").site
    return clone


def _get(url: str, opener: urllib.request.OpenerDirector | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with (opener or http_opener()).open(url, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _query(config: SiteConfig, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with site_endpoint(config).connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _option(config: SiteConfig, name: str) -> str:
    rows = _query(
        config, f"SELECT option_value FROM `{config.table_prefix}options` WHERE option_name = %s", (name,)
    )
    assert rows, f"option {name} is missing"
    return str(rows[0][0])


def _php_unserialize(value: str) -> object:
    """Unserialize with PHP itself; returns the value as JSON-decoded Python data."""
    result = subprocess.run(
        [
            "php",
            "-r",
            '$v = unserialize(stream_get_contents(STDIN), ["allowed_classes" => false]);'
            'if ($v === false) { fwrite(STDERR, "not serialized"); exit(1); }'
            "echo json_encode($v);",
        ],
        input=value,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"PHP cannot unserialize {value[:80]!r}: {result.stderr}"
    return json.loads(result.stdout)


def _foreign_urls(html: str, own: str) -> list[str]:
    """URLs on localhost-style hosts that are not this site's own origin (plain or JSON-escaped)."""
    host = urllib.parse.urlsplit(own).netloc
    found = []
    for raw in URL_RE.findall(html):
        url = raw.replace("\\/", "/")
        netloc = urllib.parse.urlsplit(url).netloc
        if netloc != host and ("localhost" in netloc or "127.0.0.1" in netloc):
            found.append(url)
    return found


def _title_prefix(site: SiteConfig) -> str:
    """What the staging must-use plugin puts before titles; these tests run on a clone too (tests/dags)."""
    return "[STAGING] " if site.environment_type == "staging" else ""


def test_front_page(site: SiteConfig) -> None:
    status, headers, body = _get(f"{site.url}/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    html = body.decode()
    assert f"<title>{_title_prefix(site)}{SOURCE_TITLE}" in html
    # The classic theme is active, its stylesheet served from the site's own wp-content.
    assert f"href='{site.url}/wp-content/themes/twentytwentyone/style.css" in html
    assert _foreign_urls(html, site.url) == []
    assert f"{site.url}/wp-content/uploads/" in html


def test_menu_and_widgets_render(site: SiteConfig) -> None:
    html = _get(f"{site.url}/")[2].decode()
    for text in ("Station home", "About the station", "Open data sets", "Write to us"):  # primary menu
        assert f">{text}</a>" in html, text
    assert f'href="{site.url}/contact/"' in html
    assert "Data licence" in html  # footer menu
    assert "about the field station</a>" in html  # block widget
    assert "Download the survey data</a>" in html  # classic text widget
    assert 'class="custom-logo"' in html  # theme mod custom_logo
    assert f"{site.url}/wp-content/uploads/" in html


def test_post_pages_and_pretty_permalinks(site: SiteConfig) -> None:
    status, _, body = _get(f"{site.url}/spring-tides-1/")
    assert status == 200
    html = body.decode()
    assert "Spring tides (1)" in html
    assert 'class="wp-block-image size-large"' in html
    assert "Lovely note." in html or "Field note 1 on spring tides" in html
    (bulk_id,) = _query(
        site,
        f"SELECT MAX(ID) FROM `{site.table_prefix}posts` "
        "WHERE post_type = 'post' AND post_status = 'publish'",
    )[0]
    status, _, body = _get(f"{site.url}/field-note-{bulk_id}/")
    assert status == 200
    assert f"Field note {bulk_id}" in body.decode()
    status, _, body = _get(f"{site.url}/about/")
    assert status == 200 and "About the station" in body.decode()
    status, _, body = _get(f"{site.url}/no-such-page-{time.time_ns()}/")
    assert status == 404
    assert "Nothing here" in body.decode() or "not found" in body.decode().lower()


def test_uploaded_image_is_served_as_on_disk(site: SiteConfig, settings: StackSettings) -> None:
    rows = _query(
        site,
        f"SELECT guid, post_mime_type FROM `{site.table_prefix}posts` WHERE post_type = 'attachment'",
    )
    assert len(rows) >= 4
    uploads = content_dir(settings, site.name) / "uploads"
    for guid, mime in rows:
        url = str(guid)
        assert url.startswith(f"{site.url}/wp-content/uploads/")
        path = uploads / url.split("/wp-content/uploads/", 1)[1]
        status, headers, body = _get(url)
        assert status == 200
        assert headers["Content-Type"] == mime
        assert body == path.read_bytes()
        assert body[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"\xff\xd8\xff\xfe")
    # Generated sizes exist on disk and are named in the attachment metadata.
    meta = _php_unserialize(
        str(
            _query(
                site,
                f"SELECT meta_value FROM `{site.table_prefix}postmeta` "
                "WHERE meta_key = '_wp_attachment_metadata' LIMIT 1",
            )[0][0]
        )
    )
    assert isinstance(meta, dict) and {"thumbnail", "medium", "large"} <= set(meta["sizes"])
    folder = (uploads / meta["file"]).parent
    for size in meta["sizes"].values():
        assert (folder / size["file"]).is_file()


def _login(config: SiteConfig, password: str) -> tuple[http.cookiejar.CookieJar, str, str]:
    jar = http.cookiejar.CookieJar()
    opener = http_opener(jar)
    status, _, _ = _get(f"{config.url}/wp-login.php", opener)
    assert status == 200
    assert any(cookie.name == "wordpress_test_cookie" for cookie in jar)
    form = urllib.parse.urlencode(
        {
            "log": config.admin_user or "admin",
            "pwd": password,
            "wp-submit": "Log In",
            "redirect_to": f"{config.url}/wp-admin/",
            "testcookie": "1",
        }
    ).encode()
    request = urllib.request.Request(f"{config.url}/wp-login.php", data=form)
    try:
        with opener.open(request, timeout=60) as response:
            final_url, html = response.geturl(), response.read().decode()
    except urllib.error.HTTPError as exc:
        final_url, html = exc.geturl(), exc.read().decode()
    return jar, final_url, html


def test_admin_login_reaches_dashboard(site: SiteConfig, settings: StackSettings) -> None:
    password = site_admin_password(settings, site.name)
    assert password == site.admin_password()
    jar, final_url, html = _login(site, password)
    assert final_url == f"{site.url}/wp-admin/"
    assert 'id="loginform"' not in html
    assert f"<title>{_title_prefix(site)}Dashboard" in html
    assert 'id="wpadminbar"' in html
    assert any(cookie.name.startswith("wordpress_logged_in_") for cookie in jar)
    # The session cookie keeps working on another admin screen.
    status, _, body = _get(f"{site.url}/wp-admin/edit.php", http_opener(jar))
    assert status == 200 and "Spring tides" in body.decode()


def test_wrong_password_is_rejected(site: SiteConfig) -> None:
    jar, final_url, html = _login(site, "not-the-password-123")
    assert "/wp-login.php" in final_url
    assert 'id="login_error"' in html
    assert not any(cookie.name.startswith("wordpress_logged_in_") for cookie in jar)
    status, _, _ = _get(f"{site.url}/wp-admin/", http_opener(jar, follow_redirects=False))
    assert status == 302


def test_serialized_options_unserialize_in_php(site: SiteConfig) -> None:
    url = site.url
    settings_value = _php_unserialize(_option(site, "wpclone_station_settings"))
    assert isinstance(settings_value, dict)
    assert settings_value["home"] == f"{url}/"
    assert settings_value["endpoints"]["feeds"] == [f"{url}/feed/", f"{url}/comments/feed/"]
    legacy = _php_unserialize(settings_value["legacy"])  # a serialized string inside serialized data
    assert isinstance(legacy, dict) and legacy["links"] == [f"{url}/about/"]
    assert json.loads(settings_value["json"])["api"] == f"{url}/wp-json/"
    assert f"{url}/wp-json/".replace("/", "\\/") in settings_value["json"]

    mods = _php_unserialize(_option(site, "theme_mods_twentytwentyone"))
    assert isinstance(mods, dict)
    assert mods["background_image"].startswith(f"{url}/wp-content/uploads/")
    assert set(mods["nav_menu_locations"]) == {"primary", "footer"}

    sidebars = _php_unserialize(_option(site, "sidebars_widgets"))
    assert isinstance(sidebars, dict) and sidebars["sidebar-1"] == ["block-2", "block-3", "text-2"]
    blocks = _php_unserialize(_option(site, "widget_block"))
    assert isinstance(blocks, dict) and f"{url}/about/" in blocks["2"]["content"]
    assert _option(site, "template") == "twentytwentyone"
    assert _option(site, "permalink_structure") == "/%postname%/"


def test_block_markup_and_builder_meta(site: SiteConfig) -> None:
    p = site.table_prefix
    escaped = site.url.replace("/", "\\/")
    (content,) = _query(site, f"SELECT post_content FROM `{p}posts` WHERE post_name = 'spring-tides-1'")[0]
    assert f'"url":"{escaped}\\/wp-content\\/uploads\\/' in str(content)
    assert re.search(r'<!-- wp:image \{"id":\d+,', str(content))
    assert f'href="{site.url}/' in str(content)

    for meta_key in ("_wpclone_builder_layout",):
        rows = _query(site, f"SELECT meta_value FROM `{p}postmeta` WHERE meta_key = %s", (meta_key,))
        assert len(rows) >= 20
        for (value,) in rows[:5] + rows[-5:]:  # WordPress-made and bulk-made rows alike
            layout = _php_unserialize(str(value))
            assert isinstance(layout, dict)
            assert f"{escaped}\\/" in layout["layout"]
            assert json.loads(layout["layout"])["rows"][0]["image"].startswith(f"{site.url}/wp-content/")
    rows = _query(site, f"SELECT meta_value FROM `{p}postmeta` WHERE meta_key = '_elementor_data'")
    for (value,) in rows[:3] + rows[-3:]:
        data = json.loads(str(value))
        assert data[0]["elements"][0]["settings"]["image"]["url"].startswith(f"{site.url}/wp-content/")
        assert escaped in str(value)

    (comments,) = _query(site, f"SELECT COUNT(*) FROM `{p}comments` WHERE comment_approved = '1'")[0]
    assert int(str(comments)) >= 20


def test_site_database_user_has_least_privilege(site: SiteConfig) -> None:

    databases = {str(row[0]) for row in _query(site, "SHOW DATABASES")}
    assert databases == {site.db_name, "information_schema"}
    with pytest.raises(pymysql.err.OperationalError):
        _query(site, "CREATE DATABASE wpclone_should_not_exist")


def test_secrets_are_owner_only(source_site: SiteConfig, settings: StackSettings) -> None:
    files = [source_site.db_password_file, source_site.admin_password_file]
    site_files = [
        Path(settings.sites_dir / source_site.name / name) for name in ("site.json", "secrets.json")
    ]
    for path in [*files, *site_files]:
        assert path is not None and path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    site_json = (settings.sites_dir / source_site.name / "site.json").read_text()
    assert source_site.db_password() not in site_json
    assert source_site.admin_password() not in site_json


def test_reseeding_is_a_no_op(source_site: SiteConfig, settings: StackSettings) -> None:
    p = source_site.table_prefix
    before = _query(source_site, f"SELECT COUNT(*), MAX(ID) FROM `{p}posts`")[0]
    started = time.monotonic()
    again = seed_source(settings)
    assert again == source_site
    assert _query(source_site, f"SELECT COUNT(*), MAX(ID) FROM `{p}posts`")[0] == before
    assert time.monotonic() - started < 30
