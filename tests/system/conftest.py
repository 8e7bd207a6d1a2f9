"""System tests: a real ``airflow standalone`` on the tests' stack, driven over HTTP like a user would.

The Airflow runs from the tests' state dir (``.local/test/airflow``) with ``wp_ttl_cleanup`` paused (its
orphan sweep must not see the DAG tests' registry); it is stopped at the end of the session unless
``WPCLONE_KEEP_AIRFLOW=1`` (faster re-runs while developing). It sends its OpenTelemetry metrics and traces to
the package's OTLP receiver (``otlp``: tests/fixtures/otlp.py), on the port it had last time, so an Airflow
kept running still reaches it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.otlp import OtlpReceiver, remembered_port
from wpclone.local.airflow import LocalAirflow
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig

JOB_TIMEOUT_S = 300.0


class Api:
    """Airflow's REST API and ours, as a given user (``None``: no token at all)."""

    def __init__(self, airflow: LocalAirflow) -> None:
        self.airflow = airflow
        self.client = httpx.Client(base_url=airflow.url, timeout=30)
        self._tokens: dict[str, str] = {}

    def token(self, user: str) -> str:
        if user not in self._tokens:
            self._tokens[user] = self.airflow.token(user)
        return self._tokens[user]

    def call(self, method: str, path: str, json: Any = None, user: str | None = "admin") -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return self.client.request(method, path, json=json, headers=headers)

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> None:
        """Start a run through Airflow's own REST API (which skips our API's checks)."""
        response = self.call(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        assert response.status_code == 200, response.text

    def wait_job(
        self,
        job_id: str,
        timeout: float = JOB_TIMEOUT_S,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until it is final; ``on_poll`` sees every answer."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.call("GET", f"/wpclone/api/v1/jobs/{job_id}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if on_poll:
                on_poll(body)
            if body["status"] in ("completed", "failed", "cancelled"):
                return body
            assert time.monotonic() < deadline, f"job {job_id} still {body['status']} after {timeout:.0f} s"
            time.sleep(0.3)


@pytest.fixture(scope="package")
def otlp(stack: StackSettings) -> Iterator[OtlpReceiver]:
    """What the system tests' Airflow sends over OTLP (every span and metric since the package started)."""
    with OtlpReceiver(remembered_port(stack.state_dir / "otlp-receiver.json")) as receiver:
        yield receiver


@pytest.fixture(scope="package")  # stopped once the system tests are done, not at the session's end
def airflow(stack: StackSettings, source_site: SiteConfig, otlp: OtlpReceiver) -> Iterator[LocalAirflow]:
    instance = LocalAirflow(stack, scheduled_cleanup=False, otlp_endpoint=otlp.endpoint)
    instance.start()
    yield instance
    if os.environ.get("WPCLONE_KEEP_AIRFLOW") != "1":
        instance.stop()


@pytest.fixture(scope="package")
def api(airflow: LocalAirflow) -> Iterator[Api]:
    client = Api(airflow)
    yield client
    client.client.close()
