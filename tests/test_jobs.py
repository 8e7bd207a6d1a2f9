"""Job status from task-instance states: progress that only moves forward, messages, outcome, estimate."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from wpclone import jobs
from wpclone.jobs import JobStatus, JobType, TaskState

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CLONE = "wp_clone"
CLONE_TASKS = list(jobs.STEPS[CLONE])


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fresh() -> dict[str, TaskState]:
    return {t: TaskState(t, None) for t in CLONE_TASKS}


def test_job_ids_are_unique_valid_run_ids_that_sort_by_time() -> None:
    ids = [jobs.new_job_id(JobType.CLONE, at(i)) for i in range(50)]
    assert len(set(ids)) == 50
    assert all(re.fullmatch(jobs.JOB_ID_PATTERN, i) and i.startswith("clone-20261128T1200") for i in ids)
    assert sorted(ids, key=lambda i: i.split("-")[1]) == ids


def test_progress_moves_forward_through_a_whole_run_with_a_retry() -> None:
    """Replays a clone (copy_database fails once and is retried) and reads progress at every step."""
    tis = fresh()
    seen: list[int] = []
    clock = 0.0

    def observe(finished: bool = False) -> None:
        seen.append(jobs.job_progress(CLONE, tis.values(), finished, at(clock)))

    def run(task: str, seconds: float, state: str = "success", try_number: int = 1) -> None:
        nonlocal clock
        tis[task] = TaskState(task, "queued", try_number)
        observe()
        tis[task] = TaskState(task, "running", try_number, start_date=at(clock))
        for _ in range(4):
            clock += seconds / 4
            observe()
        tis[task] = TaskState(task, state, try_number, at(clock - seconds), at(clock))
        observe()

    observe()
    for task in ("validate_request", "create_database"):
        run(task, 1)
    run("copy_content", 3)
    run("copy_database", 20, state="up_for_retry")  # ran far past its expected time, then failed
    run("copy_database", 5, try_number=2)
    run("finalize_clone", 1)
    run("rollback_clone", 0.5, state="skipped")
    observe(finished=True)
    assert seen == sorted(seen), seen
    assert seen[0] == 0 and seen[-1] == 100
    assert max(seen[:-1]) <= 99  # 100 only once the run is over
    assert len(set(seen)) > 20  # it moves smoothly, not in a few jumps


def test_heavier_steps_weigh_more() -> None:
    tis = fresh()
    tis["copy_database"] = TaskState("copy_database", "success", 1)
    heavy = jobs.job_progress(CLONE, tis.values(), False, T0)
    tis = fresh()
    tis["validate_request"] = TaskState("validate_request", "success", 1)
    light = jobs.job_progress(CLONE, tis.values(), False, T0)
    assert 0 < light < heavy


def test_a_running_step_never_claims_more_than_its_cap() -> None:
    ti = TaskState("copy_database", "running", 1, start_date=T0)
    assert jobs.task_credit(CLONE, ti, at(1)) == pytest.approx(1 / jobs.STEPS[CLONE]["copy_database"].seconds)
    assert jobs.task_credit(CLONE, ti, at(3600)) == jobs.RUNNING_CAP
    assert jobs.task_credit(CLONE, replace(ti, state="up_for_retry"), at(1)) == jobs.RUNNING_CAP


def test_mapped_task_counts_as_one_step_by_its_instances() -> None:
    tis = [
        TaskState("validate_request", "success", 1),
        TaskState("delete_clone.begin_delete", "success", 1, map_index=0),
        TaskState("delete_clone.begin_delete", None, 0, map_index=1),
    ]
    half = jobs.job_progress("wp_delete", tis, False, T0)
    tis[2] = replace(tis[2], state="success")
    assert half < jobs.job_progress("wp_delete", tis, False, T0)


def test_outcome_known_once_only_the_teardown_is_left() -> None:
    tis = {t: TaskState(t, "success", 1) for t in CLONE_TASKS}
    tis["rollback_clone"] = TaskState("rollback_clone", "scheduled", 0)
    assert jobs.outcome_known(CLONE, tis.values())
    tis["finalize_clone"] = TaskState("finalize_clone", "running", 1)
    assert not jobs.outcome_known(CLONE, tis.values())
    tis["finalize_clone"] = TaskState("finalize_clone", "success", 1)
    tis["copy_content"] = TaskState("copy_content", "failed", 1)  # a result but a failed step: not known
    assert not jobs.outcome_known(CLONE, tis.values())


@pytest.mark.parametrize(
    ("state", "note", "status"),
    [
        ("queued", None, JobStatus.PENDING),
        ("running", None, JobStatus.RUNNING),
        ("success", None, JobStatus.COMPLETED),
        ("failed", None, JobStatus.FAILED),
        ("failed", "Cancelled by alice: wrong source", JobStatus.CANCELLED),
    ],
)
def test_run_state_maps_to_job_status(state: str, note: str | None, status: JobStatus) -> None:
    assert jobs.job_status(state, note) is status


def test_messages_say_what_runs_or_what_the_job_waits_for() -> None:
    tis = fresh()
    assert jobs.running_message(CLONE, tis.values()) == "Starting"
    tis["validate_request"] = TaskState("validate_request", "queued", 1)
    assert jobs.running_message(CLONE, tis.values()) == "Queued"
    # Between two steps: the next one's words, not the scheduler's.
    tis["validate_request"] = TaskState("validate_request", "success", 1)
    tis["create_database"] = TaskState("create_database", "success", 1)
    tis["copy_database"] = TaskState("copy_database", "scheduled", 1)
    message = jobs.running_message(CLONE, tis.values())
    assert message == "Copying the database and rewriting its URLs"
    assert not any(word in message for word in ("worker", "scheduler", "slot"))
    tis["copy_database"] = TaskState("copy_database", "running", 1, start_date=T0)
    tis["copy_content"] = TaskState("copy_content", "running", 1, start_date=T0)
    message = jobs.running_message(CLONE, tis.values())
    assert "Copying the database" in message and "Copying wp-content" in message
    tis["copy_database"] = TaskState("copy_database", "up_for_retry", 1)
    tis["copy_content"] = TaskState("copy_content", "success", 1)
    assert jobs.running_message(CLONE, tis.values()).endswith("(retrying)")


def test_estimate_counts_what_is_left_once_and_shrinks_as_work_is_done() -> None:
    tis = fresh()
    start = jobs.estimated_completion(CLONE, tis.values(), T0) - T0
    steps = jobs.STEPS[CLONE]
    serial = [s for s in steps.values() if not s.parallel and not s.teardown]
    assert start == timedelta(seconds=sum(s.seconds + jobs.TASK_OVERHEAD_S for s in serial))
    for task in ("validate_request", "create_database", "copy_database"):
        tis[task] = TaskState(task, "success", 1)
    assert jobs.estimated_completion(CLONE, tis.values(), T0) - T0 < start / 2


def test_clone_id_comes_from_the_result_then_the_request() -> None:
    assert jobs.clone_id_of({"clone_id": "asked"}, {"clone_id": "made"}) == "made"
    assert jobs.clone_id_of({"clone_id": "asked"}, None) == "asked"
    assert jobs.clone_id_of({"clone_id": ""}, None) is None


def test_an_accepted_job_without_a_run_is_pending_or_failed_with_its_reason() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    pending = jobs.accepted_status(
        "clone-1", dag_id="wp_clone", clone_id="c-1", created_at=now, error=None, now=now
    )
    assert (pending.status, pending.progress, pending.type) == (JobStatus.PENDING, 0, jobs.JobType.CLONE)
    assert pending.completed_at is None and pending.error is None
    assert pending.estimated_completion is not None and pending.estimated_completion > now
    failed = jobs.accepted_status(
        "delete-1", dag_id="wp_delete", clone_id=None, created_at=now, error="the job could not be started."
    )
    assert (failed.status, failed.status_message) == (JobStatus.FAILED, "the job could not be started.")
    assert failed.completed_at == now and failed.estimated_completion is None
