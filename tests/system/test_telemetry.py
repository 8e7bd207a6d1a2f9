"""Observability from a real run: what the running Airflow sends over OTLP, and what its task logs say.

The package's Airflow sends its metrics and traces to the test's OTLP receiver (tests/fixtures/otlp.py) with
the variables helm-values/airflow.yaml sets (wpclone.local.airflow.otel_env). One clone through the jobs API
and one run that fails in Airflow (so the failed-run duration the success rate divides by exists) must
deliver: a span of every task of the clone carrying the job and clone ids; every metric the dashboard
queries, under the name Prometheus stores it (the collector's mapping), with the labels it filters on; and
task log lines of our code carrying ``job_id`` and ``clone_id``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_dashboards import panels, promql_names
from tests.fixtures.otlp import OtlpReceiver, prometheus_names
from tests.system.conftest import Api
from wpclone.airflow.telemetry import CLONE_ID, JOB_ID
from wpclone.local.airflow import LocalAirflow
from wpclone.local.sitehost import SiteConfig

V1 = "/wpclone/api/v1"


def dashboard_metrics() -> dict[str, dict[str, set[str]]]:
    """Every metric series the dashboard's Prometheus panels query -> label -> values they match."""
    wanted: dict[str, dict[str, set[str]]] = {}
    for panel in panels("prometheus"):
        for target in panel["targets"]:
            metrics, _, matched = promql_names(target["expr"])
            for name in metrics:
                for label, values in matched.items():
                    wanted.setdefault(name, {}).setdefault(label, set()).update(values)
                wanted.setdefault(name, {})
    return wanted


@pytest.fixture(scope="module")
def runs(api: Api, source_site: SiteConfig) -> Iterator[dict[str, str]]:
    """A completed clone (through the jobs API) and a run refused by its first task (Airflow's REST API)."""
    clone_id = f"sys-otel-{secrets.token_hex(3)}"
    started = api.call("POST", f"{V1}/clones", json={"source_url": source_site.url, "clone_id": clone_id})
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    failed_id = f"manual-sys-otel-fail-{secrets.token_hex(3)}"
    api.trigger("wp_clone", failed_id, {"source_url": "http://unregistered.localhost:1"})
    assert api.wait_job(job_id)["status"] == "completed"
    assert api.wait_job(failed_id)["status"] == "failed"
    yield {"job_id": job_id, "clone_id": clone_id, "failed_id": failed_id}
    deleted = api.call("DELETE", f"{V1}/clones/{clone_id}")
    assert deleted.status_code == 202, deleted.text
    api.wait_job(deleted.json()["job_id"])


def test_every_task_of_a_clone_sends_a_span_with_its_job_and_clone(
    runs: dict[str, str], api: Api, otlp: OtlpReceiver
) -> None:
    job_id, clone_id = runs["job_id"], runs["clone_id"]
    listed = api.call("GET", f"/api/v2/dags/wp_clone/dagRuns/{job_id}/taskInstances")
    assert listed.status_code == 200, listed.text
    # A task skipped by another (finalize_clone skips the rollback) gets dates but never runs: no span.
    ran = {
        ti["task_id"]
        for ti in listed.json()["task_instances"]
        if ti["start_date"] and ti["state"] != "skipped"
    }
    assert {"validate_request", "copy_database", "finalize_clone"} <= ran

    def tagged() -> dict[str, dict[str, Any]]:
        found = {
            span.name.removeprefix("worker."): span.attributes
            for span in otlp.spans()
            if span.name.startswith("worker.") and span.attributes.get(JOB_ID) == job_id
        }
        return found if set(found) >= ran else {}

    spans = otlp.wait(f"a span of each task of {job_id} ({sorted(ran)})", tagged)
    for task_id in ran:
        assert spans[task_id][CLONE_ID] == clone_id, task_id
        assert spans[task_id]["airflow.dag_run.run_id"] == job_id  # Airflow's own attribute agrees
    otlp.wait(  # the scheduler's span of the whole run
        "the run's span",
        lambda: [
            s
            for s in otlp.spans()
            if s.attributes.get("airflow.dag_run.run_id") == job_id and s.name == "dag_run.wp_clone"
        ],
    )
    assert all(s.resource.get("service.name") == "airflow" for s in otlp.spans())


def test_every_metric_the_dashboard_queries_arrives_with_its_labels(
    runs: dict[str, str], otlp: OtlpReceiver
) -> None:
    wanted = dashboard_metrics()
    assert {"airflow_task_duration", "airflow_dagrun_duration_failed"} <= set(wanted)

    def gaps() -> dict[str, dict[str, set[str]]]:
        """Each queried series that no received data point answers yet: one with every label the query
        filters on, of a value it matches (of wp_clone where it filters on the DAG: the DAG that ran)."""
        seen: dict[str, list[dict[str, Any]]] = {}
        for metric, points in otlp.metrics().values():
            for name in prometheus_names(metric):
                seen.setdefault(name, []).extend(points)
        missing = {}
        for name, labels in wanted.items():
            want = {**labels, "dag_id": {"wp_clone"}} if "dag_id" in labels else labels
            if not any(all(str(p.get(k)) in v for k, v in want.items()) for p in seen.get(name, [])):
                missing[name] = want
        return missing

    otlp.wait("every metric the dashboard queries", lambda: not gaps(), explain=gaps)


def test_our_task_log_lines_carry_the_job_and_the_clone(runs: dict[str, str], airflow: LocalAirflow) -> None:
    job_id, clone_id = runs["job_id"], runs["clone_id"]
    run_logs = airflow.home / "logs" / "dag_id=wp_clone" / f"run_id={job_id}"
    files = sorted(run_logs.glob("task_id=*/attempt=*.log"))
    assert {f.parent.name for f in files} >= {"task_id=validate_request", "task_id=finalize_clone"}
    ours = []
    for path in files:
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            if str(record.get("logger", "")).startswith("wpclone"):
                ours.append(record)
    assert ours, f"no line of our code in {run_logs}"
    assert all((r.get("job_id"), r.get("clone_id")) == (job_id, clone_id) for r in ours), [
        r for r in ours if (r.get("job_id"), r.get("clone_id")) != (job_id, clone_id)
    ][:3]
