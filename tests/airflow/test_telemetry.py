"""A task's job and clone ids on its span and in its log context (the real OpenTelemetry SDK and structlog;
the listener hook in a real Airflow is tests/system/test_telemetry.py's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from wpclone.airflow.telemetry import CLONE_ID, JOB_ID, NO_CLONE, clone_id_of, tag_current_task

JOB = "clone-20261128T203100-3f9a1c2b"


@pytest.fixture
def exported() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    structlog.contextvars.clear_contextvars()
    yield provider, exporter
    structlog.contextvars.clear_contextvars()
    provider.shutdown()


def test_the_clone_id_is_the_params_else_the_plans_and_only_a_valid_one() -> None:
    assert clone_id_of({"clone_id": "shop-abc123"}) == "shop-abc123"
    assert clone_id_of({"clone_id": None}, {"clone_id": "shop-abc123"}) == "shop-abc123"
    assert clone_id_of({}, None) is None
    assert clone_id_of({"clone_id": "Not A Clone!"}, "not a plan") is None
    assert clone_id_of({"clone_id": ""}, {"clone_id": 7}) is None


def test_the_current_span_and_every_later_log_line_carry_the_job_and_clone(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    with provider.get_tracer(__name__).start_as_current_span("worker.copy_database"):
        tag_current_task(JOB, "shop-abc123")
    with provider.get_tracer(__name__).start_as_current_span("worker.find_expired"):
        tag_current_task(JOB, None)
    [clone_span, cleanup_span] = exporter.get_finished_spans()
    assert (clone_span.attributes or {})[JOB_ID] == JOB and (clone_span.attributes or {})[
        CLONE_ID
    ] == "shop-abc123"
    assert CLONE_ID not in (cleanup_span.attributes or {}) and (cleanup_span.attributes or {})[JOB_ID] == JOB
    # Airflow's log processors merge these into every line (structlog.contextvars.merge_contextvars).
    assert structlog.contextvars.get_contextvars() == {"job_id": JOB, "clone_id": NO_CLONE}
    line = structlog.contextvars.merge_contextvars(None, "info", {"event": "x"})
    assert (line["job_id"], line["clone_id"]) == (JOB, NO_CLONE)
