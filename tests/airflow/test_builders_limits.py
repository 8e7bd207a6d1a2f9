"""Every task of every DAG has a time limit sized to its work, and every DAG a run limit (built, not run)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from wpclone.airflow import builders
from wpclone.errors import ConfigError

LIMITS = {
    "WPCLONE_TASK_TIMEOUT_S": "200",
    "WPCLONE_STEP_TIMEOUT_CEILING_S": "1000",
    "WPCLONE_STEP_TIMEOUT_FLOOR_S": "100",
    "WPCLONE_SITE_READY_TIMEOUT": "400",
    "WPCLONE_DELETE_WAIT": "50",
    "WPCLONE_RUN_TIMEOUT_MINUTES": "90",
}


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WPCLONE_RUNTIME", "local")
    for name, value in LIMITS.items():
        monkeypatch.setenv(name, value)


def seconds(dag: object, task_id: str) -> float:
    limit = dag.get_task(task_id).execution_timeout  # type: ignore[attr-defined]
    assert limit is not None, f"{task_id} has no execution_timeout"
    return float(limit.total_seconds())


def test_every_task_has_a_limit_and_every_dag_a_run_limit(limits: None) -> None:
    dags = [
        builders.build_clone_dag(),
        builders.build_delete_dag(),
        builders.build_ttl_cleanup_dag(),
        builders.build_backup_dag(),
        builders.build_restore_dag(),
    ]
    for dag in dags:
        assert dag.dagrun_timeout == timedelta(minutes=90), dag.dag_id
        for task in dag.tasks:
            assert task.execution_timeout is not None, f"{dag.dag_id}.{task.task_id}"
    clone, delete, _, backup, restore = dags
    assert seconds(clone, "validate_request") == 200  # WPCLONE_TASK_TIMEOUT_S
    assert seconds(clone, "rollback_clone") == 200
    assert seconds(clone, "copy_database") == seconds(clone, "copy_content") == 1000 + 120  # ceiling + grace
    assert seconds(backup, "backup_clone") == seconds(restore, "load_backup") == 1120
    assert seconds(clone, "finalize_clone") == 400 + 60  # its own wait for the site and a minute
    assert seconds(restore, "await_preview_ready") == seconds(restore, "await_site_ready") == 460
    assert seconds(delete, "validate_request") == 200  # its 50 s wait and a minute: less than every task's


def test_a_run_limit_below_a_task_limit_is_refused_when_the_dags_are_built(
    limits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WPCLONE_RUN_TIMEOUT_MINUTES", "10")  # 600 s < the 1000 s ceiling
    with pytest.raises(ConfigError, match="WPCLONE_RUN_TIMEOUT_MINUTES=10 is not above the limit of a task"):
        builders.build_clone_dag()
