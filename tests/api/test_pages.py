"""The new-clone page: served by the jobs API with its fields' words from wpclone.models, nothing loaded
from elsewhere, and listed in Airflow's navigation by the plugin (its external view)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.fixtures.api import jobs_api
from wpclone.api import pages
from wpclone.models import FIELD_RULES, FIELD_TITLES, CopyMode
from wpclone.plugin import URL_PREFIX, WpclonePlugin


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with jobs_api(monkeypatch, any_user=False) as client:  # the page itself needs no login
        yield client


def test_the_page_carries_the_fields_words_and_loads_nothing_from_elsewhere(client: TestClient) -> None:
    page = client.get(URL_PREFIX + pages.PAGE_PATH)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.findall(r'(?:href|src)="[^"#]', page.text)  # no script, style or image fetched
    assert "url(" not in page.text and "@import" not in page.text
    config = json.loads(
        re.search(r'<script id="config" type="application/json">(.*?)</script>', page.text, re.S)[1]
    )
    assert config["rules"] == FIELD_RULES and config["titles"] == FIELD_TITLES
    assert [mode["value"] for mode in config["copy_modes"]] == [mode.value for mode in CopyMode]
    assert config["api"] == "../api/v1"  # relative to /wpclone/ui/new-clone: /wpclone/api/v1


def test_the_config_cannot_end_its_script_element() -> None:
    rendered = pages.render("/api/v1</script><script>alert(1)")
    assert "</script><script>alert(1)" not in rendered


def test_the_plugin_lists_the_page_in_airflows_navigation() -> None:
    (view,) = WpclonePlugin.external_views
    assert view["href"] == URL_PREFIX + pages.PAGE_PATH
    assert view["destination"] == "nav" and view["url_route"]
