"""The listener's release of clones a failed run still holds, through Airflow's MySQL connection (the
tests' admin login) on the real registry: what a run whose time limit skipped its rollback leaves locked."""

from __future__ import annotations

from types import SimpleNamespace

from tests.fixtures.registry import plan
from wpclone.airflow.listener import release_held_clones
from wpclone.models import CloneStatus
from wpclone.registry import Registry
from wpclone.settings import RUN_TIMEOUT


def test_a_timed_out_clone_run_leaves_its_clone_failed_and_unlocked(registry: Registry) -> None:
    registry.reserve(plan("lst-timed-out"), "clone-lst-1")
    run = SimpleNamespace(dag_id="wp_clone", run_id="clone-lst-1")
    assert release_held_clones(run, "timed_out") == ["lst-timed-out"]
    record = registry.get("lst-timed-out")
    assert record is not None and record.status is CloneStatus.FAILED and record.lock_job_id is None
    assert record.last_error is not None and f"its run's limit, {RUN_TIMEOUT}=" in record.last_error
    assert "lst-timed-out" not in registry.live_clone_ids()  # the sweep's to remove


def test_runs_of_other_dags_release_nothing(registry: Registry) -> None:
    registry.reserve(plan("lst-other"), "clone-lst-2")
    assert (
        release_held_clones(SimpleNamespace(dag_id="someone_elses", run_id="clone-lst-2"), "timed_out") == []
    )
    record = registry.get("lst-other")
    assert record is not None and record.lock_job_id == "clone-lst-2"
    assert release_held_clones(SimpleNamespace(dag_id="wp_clone", run_id="clone-lst-2"), "task_failure") == [
        "lst-other"
    ]


def test_a_cancelled_run_releases_its_clone_with_the_cancels_reason(registry: Registry) -> None:
    """Cancelled while its first task (the rollback's setup) had reserved: the rollback never runs."""
    registry.reserve(plan("lst-cancelled"), "clone-lst-3")
    run = SimpleNamespace(dag_id="wp_clone", run_id="clone-lst-3", note="cancelled by admin.")
    assert release_held_clones(run, "task_failure") == ["lst-cancelled"]
    record = registry.get("lst-cancelled")
    assert (
        record is not None
        and record.status is CloneStatus.FAILED
        and record.last_error == "cancelled by admin."
    )
