"""What docs/local-stack.md's "Your own sites as sources" says, done as a user does it against a running
Airflow:
register the second test site (its database on another MariaDB server) with ``python -m wpclone.local
add-source``, clone it with ``wpclone clone URL --wait``, look at the clone, delete it, unregister the site.
"""

from __future__ import annotations

from tests.fixtures.othersite import HOSTS, NAME, THEME, TITLE, URL, OtherSite
from tests.fixtures.url_forms import count_forms
from tests.local.test_sources_integration import add_source_args, local
from tests.system.test_cli import Run, clones, field, new_clone_id, wpclone  # noqa: F401  (fixtures)
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import http_opener


def test_register_another_site_and_clone_it_with_the_cli(
    wpclone: Run,  # noqa: F811
    clones: list[str],  # noqa: F811
    other_site: OtherSite,
    stack: StackSettings,
) -> None:
    added = local(*add_source_args(other_site))
    assert added.returncode == 0, added.stderr
    assert f"clone it with: .venv/bin/wpclone clone {URL} --wait" in added.stdout
    try:
        clone_id = new_clone_id(clones)
        made = wpclone("clone", URL, "--id", clone_id, "--ttl", "30", "--wait")
        assert made.returncode == 0, made.stdout + made.stderr
        url = stack.site_url(clone_id) + "/"
        assert field(made.stdout, "URL") == url
        with http_opener().open(url, timeout=60) as response:
            status, page = response.status, response.read().decode()
        assert status == 200
        assert f"<title>[STAGING] {TITLE}" in page  # the clone says it is staging in every title
        assert f"{url}wp-content/themes/{THEME}/style.css" in page, "the child theme is not the clone's theme"
        assert "Fjordside Kooperativ · laget med ☕ og 🌊" in page, "the child theme's footer is missing"
        assert count_forms(page, HOSTS) == {}, "the clone's page links to the source"
        deleted = wpclone("delete", clone_id, "--wait")
        assert deleted.returncode == 0, deleted.stderr
    finally:
        removed = local("remove-source", NAME)
    assert removed.returncode == 0, removed.stderr
    refused = wpclone("clone", URL)
    assert refused.returncode == 2
    assert f"{URL} is not a registered source site" in refused.stderr
