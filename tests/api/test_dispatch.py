"""The dispatcher that starts accepted jobs' runs, over a real registry on MariaDB.

Airflow's side (creating the run) is the ``trigger`` callable the dispatcher is built with; here it records
its calls, so these tests pin down the dispatcher's own rules. tests/system/test_api.py runs it for real.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from wpclone.api import dispatch
from wpclone.api.dispatch import Dispatcher, RunExists, is_stale
from wpclone.registry import JobRecord, Registry


@pytest.fixture
def registry(scratch_registry: Registry) -> Registry:
    return scratch_registry


class Recorder:
    """A trigger that records the jobs it was given, failing as told."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.called = threading.Event()

    def __call__(self, job: JobRecord) -> None:
        self.calls.append(job.job_id)
        self.called.set()
        if self.fail is not None:
            raise self.fail


def _job(reg: Registry, n: int = 0) -> JobRecord:
    return reg.record_job(f"clone-test-{n}", "wp_clone", {"clone_id": f"clone-{n}x"}, "admin", f"clone-{n}x")


def test_a_started_job_is_marked_triggered_and_its_conf_dropped(registry: Registry) -> None:
    trigger = Recorder()
    job = _job(registry)
    assert Dispatcher(lambda: registry, trigger).dispatch(job) is None
    assert trigger.calls == [job.job_id]
    after = registry.get_job(job.job_id)
    assert after is not None and after.triggered_at is not None and after.conf is None and after.error is None


def test_a_run_that_exists_already_counts_as_started(registry: Registry) -> None:
    job = _job(registry)
    assert Dispatcher(lambda: registry, Recorder(RunExists(job.job_id))).dispatch(job) is None
    after = registry.get_job(job.job_id)
    assert after is not None and after.triggered_at is not None and after.error is None


def test_a_run_that_cannot_be_created_is_retried_then_recorded_as_the_jobs_error(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "RETRY_BACKOFF_S", 0.0)
    trigger = Recorder(ValueError("Dag id wp_clone not found"))
    job = _job(registry)
    error = Dispatcher(lambda: registry, trigger).dispatch(job)
    assert error == "the job could not be started: Dag id wp_clone not found."
    assert trigger.calls == [job.job_id] * dispatch.ATTEMPTS
    after = registry.get_job(job.job_id)
    assert after is not None and after.error == error and after.triggered_at is None
    assert registry.untriggered_jobs(datetime.now(UTC) + timedelta(hours=1)) == []  # not retried forever


def test_the_sweep_starts_only_jobs_nobody_started_in_time(registry: Registry) -> None:
    trigger = Recorder()
    stale, fresh = _job(registry, 1), _job(registry, 2)
    dispatcher = Dispatcher(lambda: registry, trigger)
    assert dispatcher.sweep(now=stale.created_at) == 0  # just accepted: its own process will start it
    assert not is_stale(stale, now=stale.created_at)
    later = fresh.created_at + timedelta(seconds=dispatch.STALE_AFTER_S + 1)
    assert is_stale(stale, now=later)
    assert dispatcher.sweep(now=later) == 2
    assert sorted(trigger.calls) == [stale.job_id, fresh.job_id]
    assert dispatcher.sweep(now=later) == 0  # started once


def test_runs_wait_while_the_process_is_accepting_requests(registry: Registry) -> None:
    trigger = Recorder()
    dispatcher = Dispatcher(lambda: registry, trigger)
    job = _job(registry)
    try:
        with dispatcher.accepting():
            dispatcher.submit(job)
            # Held while a request is in flight (at most MAX_HOLD_S): not started within a tenth of that.
            assert not trigger.called.wait(dispatch.MAX_HOLD_S / 10)
        assert trigger.called.wait(10), "the job was not started once the request ended"
        assert trigger.calls == [job.job_id]
    finally:
        dispatcher.stop()
    # Stopped, no thread of it is left to sweep a registry that is gone after the test.
    assert not [t for t in threading.enumerate() if t.name == "wpclone-dispatcher"]
