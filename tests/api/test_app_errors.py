"""The jobs API's answers to requests it cannot read: one sentence in the API's vocabulary (its JSON field
names), the rule in words with an example, 400 for a body that is not JSON, 415 for one not sent as JSON;
and its docs page, whose Swagger UI files are served from an installed package (no CDN).

The app is the real one (wpclone.api.app.create_app) mounted under ``/wpclone`` as Airflow's API server
mounts it; the user is any logged-in user (bodies are read before a route asks Airflow's auth manager), and
the dispatcher's thread is not started (these requests never reach the registry).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.fixtures.api import jobs_api
from wpclone.models import FIELD_RULES

CLONES = "/wpclone/api/v1/clones"
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with jobs_api(monkeypatch) as client:
        yield client


def one_sentence(answer: Any) -> str:
    detail: str = answer.json()["detail"]
    assert isinstance(detail, str) and detail.endswith(".") and "\n" not in detail, detail
    assert "Input should" not in detail and "^" not in detail, detail  # no pydantic wording, no regex
    return detail


def test_a_body_that_is_not_json_is_400_with_a_sentence(client: TestClient) -> None:
    answer = client.post(CLONES, content=b'{"source_url": ', headers=JSON)
    assert answer.status_code == 400
    detail = one_sentence(answer)
    assert detail.startswith("The request body is not valid JSON (expecting value at character 15)")
    assert '"source_url": "https://www.example.com"' in answer.json()["detail"]  # what to send instead


@pytest.mark.parametrize("body", [b"[1, 2]", b'"qa-checkout"', b"42"])
def test_a_body_that_is_not_an_object_is_said_so(client: TestClient, body: bytes) -> None:
    answer = client.post(CLONES, content=body, headers=JSON)
    assert answer.status_code == 422
    assert one_sentence(answer).startswith("The request body must be a JSON object, e.g. {")


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ({"content-type": "application/x-www-form-urlencoded"}, "Content-Type application/x-www-form-"),
        ({"content-type": "text/plain; charset=utf-8"}, "Content-Type text/plain"),
        ({}, "no Content-Type"),
    ],
)
def test_a_body_not_sent_as_json_is_415(client: TestClient, headers: dict[str, str], said: str) -> None:
    answer = client.post(CLONES, content=b'{"source_url": "https://www.example.com"}', headers=headers)
    assert answer.status_code == 415
    detail = one_sentence(answer)
    assert "Content-Type: application/json" in detail and f"(this request has {said}" in detail


def test_a_restore_body_is_refused_with_a_restore_example(client: TestClient) -> None:
    answer = client.post(f"{CLONES}/qa-checkout/restore", content=b"[]", headers=JSON)
    assert answer.status_code == 422
    assert '{"source_backup_url": "https://' in one_sentence(answer)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source_url": "https://www.example.com", "clone_id": "Bad_Clone"}, "clone_id"),
        ({"source_url": "https://www.example.com", "clone_id": "ab"}, "clone_id"),
        ({"source_url": "www.example.com"}, "source_url"),
        ({"source_url": "https://www.example.com/shop"}, "source_url"),
        ({"source_url": "https://www.example.com", "ttl_minutes": 99999}, "ttl_minutes"),
        ({"source_url": "https://www.example.com", "ttl_minutes": "2h"}, "ttl_minutes"),
        ({"source_url": "https://www.example.com", "copy_mode": "all"}, "copy_mode"),
    ],
)
def test_a_bad_field_is_its_rule_in_words_with_an_example(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    answer = client.post(CLONES, json=body)
    assert answer.status_code == 422
    assert one_sentence(answer) == f"{field} {FIELD_RULES[field]}."
    assert answer.json()["field"] == field and answer.json()["rule"] == FIELD_RULES[field]
    assert re.search(r"e\.g\. \S", FIELD_RULES[field])


def test_a_missing_field_says_it_is_required(client: TestClient) -> None:
    answer = client.post(CLONES, json={"clone_id": "qa-checkout"})
    assert answer.status_code == 422
    assert one_sentence(answer) == f"source_url is required: it {FIELD_RULES['source_url']}."


def test_a_check_keeps_its_own_sentence_and_no_rule(client: TestClient) -> None:
    answer = client.post(CLONES, json={"source_url": "https://www.example.com", "clone_id": "admin"})
    assert answer.status_code == 422
    assert "'admin' is reserved" in one_sentence(answer)
    assert "rule" not in answer.json()  # a client must not say the shape's rule for this one


def test_an_unknown_field_is_named(client: TestClient) -> None:
    answer = client.post(CLONES, json={"source_url": "https://www.example.com", "ttl": 90})
    assert answer.status_code == 422
    assert one_sentence(answer) == "ttl is not a field this request takes."


def test_the_docs_page_uses_only_files_served_here(client: TestClient) -> None:
    page = client.get("/wpclone/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:href|src)="([^"]+)"', page.text)
    assert assets and all(url.startswith("/wpclone/static/swagger-ui/") for url in assets), assets
    assert "'/wpclone/openapi.json'" in page.text
    for url in assets:
        served = client.get(url)
        assert served.status_code == 200 and len(served.content) > 1000, url
    assert b"SwaggerUIBundle" in client.get("/wpclone/static/swagger-ui/swagger-ui-bundle.js").content


def test_a_query_parameters_rule_is_that_routes(client: TestClient) -> None:
    """``status`` of the jobs listing takes job states; of the clones listing, clone states."""
    jobs_answer = client.get("/wpclone/api/v1/jobs?status=gone")
    assert jobs_answer.status_code == 422
    assert one_sentence(jobs_answer).startswith("status must be one of pending, running, completed")
    clones_answer = client.get("/wpclone/api/v1/clones?status=gone")
    assert clones_answer.status_code == 422
    detail = clones_answer.json()["detail"]
    assert "pending" not in detail and "ready" in detail, detail
