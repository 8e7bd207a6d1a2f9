"""The run's note (wpclone.summary.run_note): what the Airflow UI shows first on a job's run when it ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wpclone.jobs import DAG_OF_TYPE, JobStatus, JobStatusResponse, JobType
from wpclone.summary import NOTE_LIMIT, expiry_text, in_words, run_note

NOW = datetime(2026, 12, 6, 5, 48, tzinfo=UTC)
EXPIRES = NOW + timedelta(hours=2)


def job(
    job_type: JobType, status: JobStatus, result: dict[str, Any] | None = None, error: str | None = None
) -> JobStatusResponse:
    return JobStatusResponse(
        job_id=f"{job_type.value}-20261206T054800-deadbeef",
        type=job_type,
        dag_id=DAG_OF_TYPE[job_type],
        status=status,
        progress=100,
        status_message="done",
        created_at=NOW,
        updated_at=NOW,
        clone_id="qa-checkout",
        result=result,
        error=error,
    )


CLONE_RESULT = {
    "url": "http://qa-checkout.localhost:8081/",
    "admin_url": "http://qa-checkout.localhost:8081/wp-admin/",
    "admin_user": "admin",
    "admin_password": "/secrets/clone-qa-checkout-admin-password",
    "expires_at": EXPIRES.isoformat(),
    "copied": {},
}
LOGIN = (
    "Log in: `wpclone login qa-checkout` (or `POST /wpclone/api/v1/clones/qa-checkout/login`) "
    "gives a one-time wp-admin link."
)


def test_a_clone_says_where_how_to_log_in_and_when_it_expires() -> None:
    note = run_note(job(JobType.CLONE, JobStatus.COMPLETED, CLONE_RESULT), NOW)
    # The run's page shows the first line: the URL, the way in and the expiry are all there.
    assert note.split("\n\n")[:2] == [
        "**Clone qa-checkout is ready**: http://qa-checkout.localhost:8081/ · "
        "log in with `wpclone login qa-checkout` · expires in 2 h (2026-12-06 07:48 UTC)",
        LOGIN,
    ]
    assert "/secrets/" not in note and "password" not in note  # a way in, not where a secret lies


@pytest.mark.parametrize("job_type", [JobType.BACKUP, JobType.RESTORE])
def test_a_backup_or_restore_says_how_to_log_in_and_the_expiry(job_type: JobType) -> None:
    result = {"url": "http://qa-checkout.localhost:8081/", "expires_at": EXPIRES.isoformat()}
    note = run_note(job(job_type, JobStatus.COMPLETED, {**result, "backup_url": "file:///b.tar"}), NOW)
    way_in = (
        "http://qa-checkout.localhost:8081/ · log in with `wpclone login qa-checkout` · "
        "expires in 2 h (2026-12-06 07:48 UTC)"
    )
    assert way_in in note and LOGIN in note.split("\n\n")


def test_a_deletion_and_a_failure() -> None:
    assert run_note(job(JobType.DELETE, JobStatus.COMPLETED, {}), NOW) == "**Clone qa-checkout is deleted.**"
    sentence = "the source's database refused the login of wp_src; check its password."
    assert run_note(job(JobType.CLONE, JobStatus.FAILED, error=sentence), NOW) == (
        f"**The clone job for clone qa-checkout failed**: {sentence}"
    )
    assert "Log in" not in run_note(job(JobType.RESTORE, JobStatus.FAILED, error=sentence), NOW)


def test_a_note_fits_airflow() -> None:
    long = {**CLONE_RESULT, "url": "http://x.localhost/" + "a" * 2000}
    note = run_note(job(JobType.CLONE, JobStatus.COMPLETED, long), NOW)
    assert len(note) == NOTE_LIMIT and note.endswith("…")


def test_expiry_in_words() -> None:
    assert expiry_text(None) is None
    assert expiry_text(NOW - timedelta(minutes=1), NOW) == "expired (2026-12-06 05:47 UTC)"
    assert (
        expiry_text(NOW + timedelta(minutes=59, seconds=50), NOW)
        == "expires in 60 min (2026-12-06 06:47 UTC)"
    )
    assert in_words(timedelta(days=7)) == "expires in 7 d"
