"""The task execution API's routes are built when an API worker starts, not on the first task's request.

Cadwyn (which serves ``/execution``) builds them lazily, on the event loop: the worker answered nothing for
5-14 s while the first tasks of a burst of jobs started. ``build_execution_api`` does it in our lifespan.
"""

from __future__ import annotations

import sys
import types

import pytest
from airflow.api_fastapi.execution_api.app import create_task_execution_api_app
from fastapi import FastAPI
from starlette.testclient import TestClient

from wpclone.api.runs import build_execution_api


@pytest.fixture
def main_module(monkeypatch: pytest.MonkeyPatch) -> tuple[str, FastAPI]:
    """A stand-in for ``airflow.api_fastapi.main``: an app with Airflow's real execution API mounted."""

    main = FastAPI()
    main.mount("/execution", create_task_execution_api_app())
    monkeypatch.setitem(sys.modules, "wpclone_test_main", types.SimpleNamespace(app=main))
    return "wpclone_test_main", main


def test_the_routes_are_built_once_before_any_request(main_module: tuple[str, FastAPI]) -> None:
    name, main = main_module
    execution = next(r.app for r in main.routes if getattr(r, "path", None) == "/execution")  # type: ignore[attr-defined]
    assert execution._cadwyn_initialized is False  # left alone, the first request would build them
    assert build_execution_api(name) is True
    assert execution._cadwyn_initialized is True
    routes = len(execution.routes)
    assert build_execution_api(name) is False  # once
    with TestClient(main) as client:  # a request finds them built: nothing is added on the way
        assert client.get("/execution/health").status_code == 200
    assert len(execution.routes) == routes


def test_without_an_api_server_there_is_nothing_to_build() -> None:
    assert build_execution_api("wpclone_no_such_module") is False
