"""The registry's rows of accepted jobs on the real local MariaDB: the listing's part of them (jobs whose run
was never created) and their retention (only ended jobs' rows, only old ones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.registry import plan
from wpclone.db import DbEndpoint, quote_identifier
from wpclone.registry import JobRecord, Registry


@pytest.fixture
def registry(scratch_registry: Registry) -> Registry:
    return scratch_registry


def age(admin_db: DbEndpoint, registry: Registry, job_id: str, days: float) -> None:
    """Make ``job_id`` accepted ``days`` ago."""
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE {quote_identifier(registry.schema)}.`jobs` "
            "SET `created_at` = UTC_TIMESTAMP(6) - INTERVAL %s SECOND WHERE `job_id` = %s",
            (int(days * 86400), job_id),
        )
        conn.commit()


def test_retention_removes_only_old_rows_of_jobs_that_have_ended(
    registry: Registry, admin_db: DbEndpoint
) -> None:
    def started(job_id: str) -> str:
        registry.record_job(job_id, "wp_backup", {"clone_id": "qa-one"}, "alice", "qa-one")
        registry.mark_job_triggered(job_id)
        return job_id

    ended_run = started("backup-ended")
    running = started("backup-running")
    young = started("backup-young")
    refused = registry.record_job("backup-refused", "wp_backup", {}, "bob", None).job_id
    registry.mark_job_triggered(refused, error="the job could not be started: no such DAG.")
    waiting = registry.record_job("backup-waiting", "wp_backup", {}, "bob", None).job_id  # still to start
    holder = registry.accept(plan("qa-held"), "clone-holder", "wp_clone", {}, "alice").job_id  # holds a lock
    registry.mark_job_triggered(holder)
    for job_id in (ended_run, running, refused, waiting, holder):
        age(admin_db, registry, job_id, days=31)
    age(admin_db, registry, young, days=29)

    asked: list[str] = []

    def run_has_ended(job: JobRecord) -> bool:
        asked.append(job.job_id)
        return job.job_id != running

    purged = registry.purge_jobs(datetime.now(UTC) - timedelta(days=30), run_has_ended)
    assert sorted(purged) == [ended_run, refused]
    assert sorted(asked) == [ended_run, running]  # a refused job has ended; a lock holder has not
    for job_id in (running, young, waiting, holder):
        assert registry.get_job(job_id) is not None, job_id
    for job_id in purged:
        assert registry.get_job(job_id) is None, job_id
    assert registry.purge_jobs(datetime.now(UTC) - timedelta(days=30), run_has_ended) == []  # nothing left


def test_unstarted_jobs_are_listed_newest_first_with_their_filters(
    registry: Registry, admin_db: DbEndpoint
) -> None:
    waiting = registry.record_job("clone-waiting", "wp_clone", {}, "alice", "qa-one").job_id
    refused = registry.record_job("clone-refused", "wp_clone", {}, "bob", "qa-two").job_id
    registry.mark_job_triggered(refused, error="the job could not be started: no such DAG.")
    cancelled = registry.record_job("delete-cancelled", "wp_delete", {}, "bob", "qa-one").job_id
    registry.cancel_untriggered_job(cancelled, "cancelled by bob.")
    started = registry.record_job("clone-started", "wp_clone", {}, "alice", "qa-one").job_id
    registry.mark_job_triggered(started)  # its run exists: not listed here
    for days, job_id in ((3, waiting), (2, refused), (1, cancelled)):
        age(admin_db, registry, job_id, days)

    def ids(**filters: object) -> list[str]:
        dag_ids = filters.pop("dag_ids", ["wp_clone", "wp_delete"])
        return [job.job_id for job in registry.unstarted_jobs(dag_ids, **filters)]  # type: ignore[arg-type]

    assert ids() == [cancelled, refused, waiting]
    assert ids(ended=False) == [waiting]
    assert ids(ended=True, cancelled=False) == [refused]
    assert ids(ended=True, cancelled=True) == [cancelled]
    assert ids(dag_ids=["wp_clone"]) == [refused, waiting]
    assert ids(clone_id="qa-one") == [cancelled, waiting]
    assert ids(requested_by="bob") == [cancelled, refused]
    assert ids(since=datetime.now(UTC) - timedelta(days=2, hours=1)) == [cancelled, refused]
    assert ids(limit=2) == [cancelled, refused]
    refused_at = registry.get_job(refused)
    assert refused_at is not None
    assert ids(before=(refused_at.created_at, refused_at.job_id)) == [waiting]  # the next page
    assert ids(dag_ids=[]) == []
