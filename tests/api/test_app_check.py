"""``POST /api/v1/clones/check`` on the real stack: a clone request's fields checked one by one as ``POST
/clones`` checks them, each refusal by its field, nothing created; the new-clone page relies on it to say
each field's rule beside the field before anything runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.fixtures.api import jobs_api
from tests.fixtures.services import remove
from wpclone.api import app as api_app
from wpclone.local.sitehost import SiteConfig
from wpclone.models import FIELD_RULES, ClonePlan
from wpclone.services.common import Services

CHECK = "/wpclone/api/v1/clones/check"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, svc: Services) -> Iterator[TestClient]:
    monkeypatch.setattr(api_app, "_services", lambda: svc)
    monkeypatch.setattr(api_app, "authorize", lambda user, method, dag_id: None)
    with jobs_api(monkeypatch) as client:
        yield client


def errors_by_field(answer: object) -> dict[str, dict[str, str]]:
    body = answer.json()  # type: ignore[attr-defined]
    return {error["field"]: error for error in body["errors"]}


def test_every_bad_field_is_refused_by_its_rule_at_once(client: TestClient, source_site: SiteConfig) -> None:
    answer = client.post(
        CHECK, json={"source_url": source_site.url, "clone_id": "Bad_Id", "ttl_minutes": 99999}
    )
    assert answer.status_code == 200
    assert answer.json()["ok"] is False
    errors = errors_by_field(answer)
    assert set(errors) == {"clone_id", "ttl_minutes"}
    for field in errors:
        assert errors[field]["rule"] == FIELD_RULES[field]
        assert errors[field]["detail"] == f"{field} {FIELD_RULES[field]}."


def test_a_source_that_is_not_registered_is_the_source_fields_error(client: TestClient) -> None:
    answer = client.post(CHECK, json={"source_url": "http://nowhere.localhost:1"})
    errors = errors_by_field(answer)
    assert list(errors) == ["source_url"]
    assert errors["source_url"]["detail"].startswith(
        "http://nowhere.localhost:1 is not a registered source site"
    )
    assert errors["source_url"]["rule"] is None


def test_a_clone_id_in_use_is_the_clone_id_fields_error(
    client: TestClient, source_site: SiteConfig, made: ClonePlan
) -> None:
    answer = client.post(CHECK, json={"source_url": source_site.url, "clone_id": made.clone_id})
    errors = errors_by_field(answer)
    assert list(errors) == ["clone_id"]
    assert errors["clone_id"]["detail"].startswith(f"clone {made.clone_id} already exists (status ready)")


def test_a_good_request_says_its_address_and_creates_nothing(
    client: TestClient, svc: Services, source_site: SiteConfig
) -> None:
    remove(svc, "svc-check")
    answer = client.post(
        CHECK, json={"source_url": source_site.url, "clone_id": "svc-check", "ttl_minutes": 120}
    )
    assert answer.json() == {
        "ok": True,
        "errors": [],
        "clone_id": "svc-check",
        "url": svc.runtime.clone_url("svc-check"),
    }
    assert svc.registry.get("svc-check") is None
    assert not svc.runtime.clone_exists("svc-check")
