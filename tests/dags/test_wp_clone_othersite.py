"""``wp_clone`` end to end on a site built unlike our seeded source: issue 11's "done when".

The second test site (``tests/fixtures/othersite.py``: table prefix ``fx7_``, its database on a second
MariaDB, a child theme over a parent that is a symlink out of wp-content, an uploads link, every form of
its URL ``https://www.example.com`` and of its alias ``example.com``, sister domains, due wp-cron events) is
registered as a source the way ``add-source`` does it, cloned with ``dag.test()``, and the clone must be
right: nothing of the source URL left in any form (every text column, counted at host boundaries by
``tests.fixtures.url_forms``), no sister-domain string changed, serialized values valid, the parent theme
and uploads present as files, the front page and a post rendering with the child theme's stylesheet, and a
request to its ``wp-cron.php`` running none of the due events. Then ``wp_delete`` leaves nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.dagtest import run, states, xcom
from tests.fixtures.othersite import (
    DUE_HOOKS,
    HOSTS,
    NAME,
    PARENT_DIR,
    PREFIX,
    SISTERS,
    THEME,
    TITLE,
    OtherSite,
)
from tests.fixtures.stack import leftovers
from tests.fixtures.url_forms import count_forms, count_strings, scan_forms, text_values
from tests.local.test_seed import _get, _php_unserialize
from tests.steps.test_main_clone_by_hand import (  # noqa: F401  (run here on this clone)
    test_every_serialized_value_unserializes_in_php,
)
from wpclone.db import DbEndpoint, quote_identifier
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, content_dir, load_site, site_dir
from wpclone.local.sources import register_source, remove_source
from wpclone.models import SourceConfig

CLONE = "fx7-clone"


@pytest.fixture(scope="module")
def registered(
    other_site: OtherSite, stack: StackSettings, airflow_env: dict[str, str]
) -> Iterator[SourceConfig]:
    """The site registered as a source in the stack's wpclone.json (add-source's checks), then removed."""
    source = register_source(stack, other_site.source)
    yield source
    remove_source(stack, NAME)


@pytest.fixture(scope="module")
def cloned(dags: Any, registered: SourceConfig, stack: StackSettings) -> dict[str, Any]:
    dagrun = run(dags, "wp_clone", {"source_url": registered.url, "clone_id": CLONE, "ttl_minutes": 60})
    exists = (site_dir(stack, CLONE) / "site.json").is_file()
    return {"run": dagrun, "site": load_site(stack, CLONE) if exists else None}


@pytest.fixture(scope="module")
def clone_site(cloned: dict[str, Any]) -> SiteConfig:
    site: SiteConfig | None = cloned["site"]
    if site is None:
        pytest.fail(f"the clone was not deployed: {states(cloned['run'])}")
    return site


def _db(site: SiteConfig) -> DbEndpoint:
    return DbEndpoint(site.db_host, site.db_port, site.db_user, site.db_password(), site.db_name)


def _cron(db: DbEndpoint) -> dict[str, Any]:
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT option_value FROM {PREFIX}options WHERE option_name = 'cron'")
        cron = _php_unserialize(str(cur.fetchone()[0]))
    assert isinstance(cron, dict)
    return cron


def _due(cron: dict[str, Any]) -> dict[str, int]:
    """Each hook that is due now, and when."""
    now = time.time()
    return {
        hook: int(when)
        for when, hooks in cron.items()
        if when != "version" and int(when) <= now
        for hook in hooks
    }


def test_clone_run_succeeds(cloned: dict[str, Any]) -> None:
    dagrun = cloned["run"]
    assert str(dagrun.state) == "success", (states(dagrun), xcom(dagrun, "copy_content", "error"))
    assert states(dagrun)["rollback_clone"] == "skipped"


def test_nothing_of_the_source_url_is_left_in_any_form(clone_site: SiteConfig, other_site: OtherSite) -> None:
    left = scan_forms(_db(clone_site), HOSTS)
    assert left == {}, f"the source URL is left in the clone: {left}"
    # ... because it became the clone's URL, not because it went away.
    clone_host = clone_site.url.split("://", 1)[1].split(":", 1)[0]
    renamed = sum(value.count(clone_host) for _, value in text_values(_db(clone_site)))
    assert renamed >= sum(other_site.planted.forms.values())


def test_no_sister_domain_string_changed(clone_site: SiteConfig, other_site: OtherSite) -> None:
    in_source = count_strings(other_site.db, SISTERS)
    assert in_source == other_site.planted.sisters
    assert count_strings(_db(clone_site), SISTERS) == in_source


def test_rows_are_copied(clone_site: SiteConfig, other_site: OtherSite) -> None:
    def counts(db: DbEndpoint) -> dict[str, int]:
        with db.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (db.database,)
            )
            found = {}
            for (table,) in cur.fetchall():
                # Staging safety ends the source's login sessions; a first request adds options (transients).
                if str(table) == f"{PREFIX}options":
                    continue
                where = " WHERE meta_key <> 'session_tokens'" if str(table).endswith("usermeta") else ""
                cur.execute(f"SELECT COUNT(*) FROM {quote_identifier(str(table))}{where}")
                found[str(table)] = int(cur.fetchone()[0])
        return found

    source = counts(other_site.db)
    assert f"{PREFIX}posts" in source and source[f"{PREFIX}posts"] > other_site.planted.posts
    assert counts(_db(clone_site)) == source


def _files(root: Path) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(d, f), root): Path(d, f).read_bytes()
        for d, _, names in os.walk(root, followlinks=True)
        for f in names
    }


def test_parent_theme_and_uploads_are_in_the_clone(clone_site: SiteConfig, stack: StackSettings) -> None:
    clone = content_dir(stack, clone_site.name)
    parent = clone / "themes" / PARENT_DIR.name
    assert parent.is_dir() and not parent.is_symlink(), "the parent theme is not a directory of the clone"
    assert _files(parent) == _files(PARENT_DIR)
    source_uploads = site_dir(stack, NAME) / "shared" / "uploads"
    uploads = clone / "uploads"
    assert uploads.is_dir() and not uploads.is_symlink()
    assert _files(uploads) == _files(source_uploads) and len(_files(uploads)) >= 3
    assert _files(clone / "themes" / THEME) == _files(content_dir(stack, NAME) / "themes" / THEME)


def _renders(url: str, clone_site: SiteConfig) -> str:
    status, headers, body = _get(url)
    assert status == 200, f"{url} answered {status}"
    assert headers["Content-Type"].startswith("text/html")
    html = body.decode()
    assert len(body) > 5000, f"{url} answered {len(body)} bytes"
    stylesheet = f"{clone_site.url}/wp-content/themes/{THEME}/style.css?ver=1.4.2"
    assert f"<link rel='stylesheet' id='{THEME}-css' href='{stylesheet}'" in html
    assert "wp-site-blocks" in html  # the parent block theme's template
    assert count_forms(html, HOSTS) == {}, "the page links to the source"
    return html


def test_front_page_and_a_post_render(clone_site: SiteConfig) -> None:
    html = _renders(f"{clone_site.url}/", clone_site)
    assert f"<title>[STAGING] {TITLE}" in html
    assert "Fjordside Kooperativ · laget med ☕ og 🌊" in html  # the child theme's footer part
    status, _, css = _get(f"{clone_site.url}/wp-content/themes/{THEME}/style.css?ver=1.4.2")
    assert status == 200 and b"Template: twentytwentythree" in css
    with _db(clone_site).connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT post_name, YEAR(post_date), post_title FROM {PREFIX}posts "
            "WHERE post_type = 'post' AND post_name LIKE 'fjordnotat-%%' ORDER BY ID DESC LIMIT 1"
        )
        slug, year, title = cur.fetchone()
    post = _renders(f"{clone_site.url}/{year}/{slug}/", clone_site)
    assert str(title) in post and "Fra fjorden, notat" in post


def test_a_request_to_wp_cron_runs_no_due_event(clone_site: SiteConfig) -> None:
    db = _db(clone_site)
    due = _due(_cron(db))
    assert set(DUE_HOOKS) <= set(due), "the source's due events were not copied"
    status, _, _ = _get(f"{clone_site.url}/wp-cron.php")
    assert status < 500
    after = _due(_cron(db))
    assert {hook: after.get(hook) for hook in DUE_HOOKS} == {hook: due[hook] for hook in DUE_HOOKS}
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT option_name FROM {PREFIX}options WHERE option_name LIKE 'fx7\\_%%\\_ran'")
        assert cur.fetchall() == (), "a request to the clone's wp-cron.php ran the source's jobs"


def test_delete_leaves_nothing(
    dags: Any, cloned: dict[str, Any], admin_db: DbEndpoint, stack: StackSettings
) -> None:
    dagrun = run(dags, "wp_delete", {"clone_id": CLONE})
    assert str(dagrun.state) == "success", states(dagrun)
    assert leftovers(admin_db, stack, CLONE) == []
