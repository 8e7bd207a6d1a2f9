"""wp_clone's trigger form: the configured sources to pick from, each field's rule in words, a TTL out of
range refused (not clamped), and Airflow's refusal of a bad value said as the field's rule
(wpclone.api.form's middleware around a trigger route that validates like Airflow's own)."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError
from fastapi import FastAPI, HTTPException, Request
from starlette.testclient import TestClient

from wpclone.airflow.builders import clone_params
from wpclone.airflow.sources import connection_source_names
from wpclone.api.form import ParamErrorsMiddleware, param_sentence
from wpclone.models import FIELD_RULES, SourceConfig

SHOP = SourceConfig(name="shop", url="https://shop.example.com", db_host="db", db_name="shop", db_user="shop")
BLOG = SourceConfig(name="blog", url="https://blog.example.com", db_host="db", db_name="blog", db_user="blog")


def validated(params: dict[str, Any], **values: Any) -> dict[str, Any]:
    resolved = ParamsDict(params)
    resolved.update(values)
    return resolved.validate()


def test_the_configured_sources_are_offered_with_the_first_as_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WPCLONE_SOURCE_LEGACY", "mysql://u:p@db/legacy")
    params = clone_params([SHOP, BLOG])
    source_url = params["source_url"]
    assert source_url.value == "https://shop.example.com"
    assert source_url.schema["examples"] == ["https://shop.example.com", "https://blog.example.com"]
    assert "enum" not in source_url.schema  # a connection's source can still be typed in
    assert params["source"].schema["examples"] == ["shop", "blog", "legacy"]
    # A connection's source URL is accepted by the form (the task finds it by the name in `source`).
    assert validated(params, source_url="https://legacy.example.com", source="legacy")["source"] == "legacy"


def test_without_a_configuration_the_source_url_is_required() -> None:
    params = clone_params([])
    assert "examples" not in params["source_url"].schema
    with pytest.raises(ParamValidationError, match="source_url"):
        validated(params)


@pytest.mark.parametrize("field", ["source_url", "ttl_minutes", "clone_id", "source"])
def test_each_field_describes_its_rule_in_words(field: str) -> None:
    description = clone_params([SHOP])[field].description or ""
    assert FIELD_RULES[field] in description and "^" not in description


@pytest.mark.parametrize(
    ("ttl", "ok"), [(9, False), (10, True), (10080, True), (10081, False), (99999, False)]
)
def test_a_ttl_out_of_range_is_refused_not_clamped(ttl: int, ok: bool) -> None:
    schema = clone_params([SHOP])["ttl_minutes"].schema
    assert "maximum" not in schema and "minimum" not in schema  # the form's number field would clamp
    if ok:
        assert validated(clone_params([SHOP]), ttl_minutes=ttl)["ttl_minutes"] == ttl
    else:
        with pytest.raises(ParamValidationError, match="ttl_minutes"):
            validated(clone_params([SHOP]), ttl_minutes=ttl)


def test_connection_source_names_come_from_the_environment_only() -> None:
    env = {
        "AIRFLOW_CONN_WPCLONE_SOURCE_B": "x",
        "AIRFLOW_CONN_WPCLONE_SOURCE_A": "x",
        "AIRFLOW_CONN_OTHER": "x",
    }
    assert connection_source_names(env) == ["a", "b"]


# -- Airflow's refusal, said in words ---------------------------------------------------------------------


@pytest.fixture
def server() -> TestClient:
    """A trigger route that validates a conf as Airflow's does (400 with ParamValidationError's text)."""
    app = FastAPI()

    @app.post("/api/v2/dags/{dag_id}/dagRuns")
    async def trigger(dag_id: str, request: Request) -> dict[str, Any]:
        try:
            return validated(clone_params([SHOP]), **(await request.json())["conf"])
        except ParamValidationError as exc:
            raise HTTPException(400, str(exc)) from exc

    return TestClient(ParamErrorsMiddleware(app))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("conf", "said"),
    [
        ({"clone_id": "Bad_Clone"}, f"Clone id (clone_id) {FIELD_RULES['clone_id']}."),
        ({"ttl_minutes": 99999}, f"Time to live (minutes) (ttl_minutes) {FIELD_RULES['ttl_minutes']}."),
        ({"source_url": "shop.example.com"}, f"Source site URL (source_url) {FIELD_RULES['source_url']}."),
    ],
)
def test_a_refused_trigger_says_the_rule(server: TestClient, conf: dict[str, Any], said: str) -> None:
    answer = server.post("/api/v2/dags/wp_clone/dagRuns", json={"conf": conf})
    assert answer.status_code == 400
    assert answer.json() == {"detail": said}
    assert int(answer.headers["content-length"]) == len(answer.content)


def test_other_dags_and_good_triggers_pass_through(server: TestClient) -> None:
    other = server.post("/api/v2/dags/someone_elses/dagRuns", json={"conf": {"clone_id": "Bad_Clone"}})
    assert other.status_code == 400 and other.json()["detail"].startswith("Invalid input for param clone_id:")
    good = server.post("/api/v2/dags/wp_clone/dagRuns", json={"conf": {"clone_id": "qa-checkout"}})
    assert good.status_code == 200 and good.json()["clone_id"] == "qa-checkout"


def test_only_our_fields_are_rewritten() -> None:
    assert param_sentence("Invalid input for param other: 'x' is too long") is None
    assert param_sentence("DAG with dag_id: 'x' not found") is None
