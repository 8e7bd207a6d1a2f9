"""A source registered as an Airflow connection, as a platform team does it (docs/sources.md): the second
test site (its database on another MariaDB server) is POSTed to Airflow's ``/api/v2/connections`` as
``wpclone_source_<name>``, shows in ``GET /wpclone/api/v1/sources`` (and ``wpclone sources``) without its
password, is cloned through the jobs API, and the clone is checked and deleted; the connection removed,
the source is gone from the listing and the URL is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.othersite import HOSTS, THEME, TITLE, URL, OtherSite
from tests.fixtures.url_forms import count_forms
from tests.system.conftest import Api
from tests.system.test_cli import Run, clones, new_clone_id, wpclone  # noqa: F401  (fixtures)
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import http_opener

pytestmark = pytest.mark.system

NAME = "fjordside"
CONN_ID = f"wpclone_source_{NAME}"
SOURCES = "/wpclone/api/v1/sources"


@pytest.fixture
def connection(api: Api, other_site: OtherSite) -> Iterator[str]:
    """The other site as the Airflow connection ``wpclone_source_fjordside``, removed afterwards."""
    s = other_site.source
    password = Path(str(s.db_password_file)).read_text().strip()
    extra = {
        "url": s.url,
        "aliases": ["example.com"],
        "table_prefix": s.table_prefix,
        "content": s.content_dir,
        "content_link_roots": s.content_link_roots,
    }
    body = {
        "connection_id": CONN_ID,
        "conn_type": "mysql",
        "host": s.db_host,
        "port": s.db_port,
        "login": s.db_user,
        "password": password,
        "schema": s.db_name,
        "extra": json.dumps(extra),
    }
    api.call("DELETE", f"/api/v2/connections/{CONN_ID}")  # left over by an interrupted run
    created = api.call("POST", "/api/v2/connections", json=body)
    assert created.status_code == 201, created.text
    yield password
    api.call("DELETE", f"/api/v2/connections/{CONN_ID}")


def test_a_source_added_as_a_connection_over_rest_is_listed_and_cloned(
    api: Api,
    connection: str,
    wpclone: Run,  # noqa: F811
    clones: list[str],  # noqa: F811
    stack: StackSettings,
) -> None:
    listed = api.call("GET", SOURCES)
    assert listed.status_code == 200, listed.text
    assert connection not in listed.text, "the listing shows the connection's password"
    ours = [s for s in listed.json() if s["name"] == NAME]
    assert ours == [
        {
            "name": NAME,
            "url": URL,
            "aliases": ["https://example.com"],
            "origin": "connection",
            "conn_id": CONN_ID,
        }
    ]
    assert any(s["origin"] == "configuration" for s in listed.json()), "the configuration's source is gone"
    printed = wpclone("sources")
    assert printed.returncode == 0, printed.stderr
    assert NAME in printed.stdout and URL in printed.stdout and CONN_ID in printed.stdout
    assert api.call("GET", SOURCES, user=None).status_code == 401

    clone_id = new_clone_id(clones)
    started = api.call("POST", "/wpclone/api/v1/clones", json={"source_url": URL, "clone_id": clone_id})
    assert started.status_code == 202, started.text
    job = api.wait_job(started.json()["job_id"])
    assert job["status"] == "completed", job
    url = stack.site_url(clone_id) + "/"
    assert job["result"]["url"] == url
    with http_opener().open(url, timeout=60) as response:
        status, page = response.status, response.read().decode()
    assert status == 200
    assert f"<title>[STAGING] {TITLE}" in page  # the clone says it is staging in every title
    assert f"{url}wp-content/themes/{THEME}/style.css" in page, "the child theme is not the clone's theme"
    assert count_forms(page, HOSTS) == {}, "the clone's page links to the source"

    deleted = api.call("DELETE", f"/wpclone/api/v1/clones/{clone_id}")
    assert deleted.status_code == 202, deleted.text
    assert api.wait_job(deleted.json()["job_id"])["status"] == "completed"

    assert api.call("DELETE", f"/api/v2/connections/{CONN_ID}").status_code == 204
    assert NAME not in [s["name"] for s in api.call("GET", SOURCES).json()]
    refused = api.call("POST", "/wpclone/api/v1/clones", json={"source_url": URL})
    assert refused.status_code == 422
    assert f"{URL} is not a registered source site" in refused.json()["detail"]
