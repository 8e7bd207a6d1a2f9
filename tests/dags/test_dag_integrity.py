"""The DAG files load cleanly, do no work at parse time, explain themselves, and have the designed shape."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.models.pool import Pool
from airflow.sdk.definitions.param import ParamsDict

from tests.conftest import REPO
from wpclone.provision import ensure_pool

DAG_IDS = {"wp_clone", "wp_delete", "wp_ttl_cleanup", "wp_backup", "wp_restore"}


@pytest.fixture(scope="module")
def dagbag(monkeypatch_module: pytest.MonkeyPatch, airflow_home: Any) -> Any:
    """The DagBag of dags/, loaded with every network connection refused (no I/O at parse time)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a DAG file opened a connection at parse time: {args}")

    monkeypatch_module.setattr(socket.socket, "connect", refuse)
    bag = DagBag(str(REPO / "dags"))
    monkeypatch_module.undo()
    return bag


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_no_import_errors_and_all_dags_present(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_policy(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.get_dag(dag_id)
    assert dag.doc_md and dag.doc_md.strip().startswith(f"### {dag_id}")
    assert "wpclone" in dag.tags
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.task_id.replace(".", "_").islower(), task.task_id
        if not task.task_id.endswith("record_delete_failure"):  # it only records: nothing to retry
            assert task.retries >= 1, f"{task.task_id} has no retries"
            assert task.retry_exponential_backoff, task.task_id


def test_clone_graph_shape(dagbag: Any) -> None:
    dag = dagbag.get_dag("wp_clone")
    order = [t.task_id for t in dag.topological_sort()]
    # Few hops on the critical path: validating reserves too; finalizing applies the staging safety, serves
    # the site and waits for it before it marks the clone ready.
    chain = ["validate_request", "create_database", "finalize_clone", "rollback_clone"]
    assert [t for t in order if t in chain] == chain
    assert set(order) == {*chain, "copy_database", "copy_content"}
    up = {t.task_id: t.upstream_task_ids for t in dag.tasks}
    assert up["create_database"] == {"validate_request"}
    assert up["copy_database"] == up["copy_content"] == {"create_database"}
    assert up["finalize_clone"] == {"copy_database", "copy_content", "validate_request"}
    # The rollback waits for every task; its setup is the task whose success means "reserved".
    assert up["rollback_clone"] == set(order) - {"rollback_clone"}
    rollback = dag.get_task("rollback_clone")
    assert rollback.is_teardown and rollback.trigger_rule == "all_done_setup_success"
    assert [t.task_id for t in dag.tasks if t.is_setup] == ["validate_request"]
    assert dag.get_task("copy_database").pool == dag.get_task("copy_content").pool == "wpclone_heavy"


def test_restore_switches_only_after_a_verified_preview_and_a_safety_backup(dagbag: Any) -> None:
    dag = dagbag.get_dag("wp_restore")
    order = [t.task_id for t in dag.topological_sort()]
    assert order == [
        "validate_request",
        "lock_clone",
        "prepare_restore",
        "load_backup",
        "verify_restore",  # a complete WordPress site, before anything of it is served
        "apply_staging_safety",  # onto the restored database, before its preview
        "deploy_preview",
        "await_preview_ready",  # the restored site is right while the old one still serves
        "backup_clone",  # only for an archive that was fetched, loaded and proven
        "switch_site",
        "await_site_ready",
        "finish_restore",
        "release_clone",
    ]
    release = dag.get_task("release_clone")
    assert release.is_teardown and dag.get_task("lock_clone").is_setup
    assert release.upstream_task_ids == {"lock_clone", "finish_restore"}  # a linear chain: runs last
    assert dag.get_task("load_backup").pool == dag.get_task("backup_clone").pool == "wpclone_heavy"
    # The URL reaches the step from the run's params when it runs, never through a rendered template.
    step = dag.get_task("load_backup").op_kwargs["step"]
    assert step.param_env == {"WPCLONE_BACKUP_URL": "source_backup_url"}
    assert "source_backup_url" not in str(step.arguments)
    backup = dagbag.get_dag("wp_backup")
    assert [t.task_id for t in backup.topological_sort()] == [
        "validate_request",
        "lock_clone",
        "backup_clone",
        "release_clone",
    ]


def test_delete_and_cleanup_share_the_delete_group(dagbag: Any) -> None:
    group = [
        "delete_clone.begin_delete",
        "delete_clone.delete_site",
        "delete_clone.drop_database",
        "delete_clone.mark_deleted",
    ]
    for dag_id in ("wp_delete", "wp_ttl_cleanup"):
        dag = dagbag.get_dag(dag_id)
        order = [t.task_id for t in dag.topological_sort()]
        assert [t for t in order if t in group] == group
        assert all(dag.get_task(t).get_closest_mapped_task_group() is not None for t in group), dag_id
        assert dag.get_task("record_delete_failure").trigger_rule == "one_failed"
    cleanup = dagbag.get_dag("wp_ttl_cleanup")
    assert cleanup.max_active_runs == 1
    assert cleanup.timetable.expression == "*/5 * * * *"
    assert cleanup.get_task("sweep_orphans").upstream_task_ids == {"delete_clone.mark_deleted"}


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"source_url": "http://x.test", "ttl_minutes": 5}, "ttl_minutes"),
        ({"source_url": "http://x.test", "ttl_minutes": 10081}, "ttl_minutes"),
        ({"source_url": "file:///etc/passwd"}, "source_url"),
        ({"source_url": "http://x.test", "clone_id": "a;drop database x"}, "clone_id"),
        ({"source_url": "http://x.test", "clone_id": "../../etc"}, "clone_id"),
        ({"source_url": "http://x.test", "clone_id": "$(id)"}, "clone_id"),
        ({"source_url": "http://x.test", "copy_mode": "partial"}, "copy_mode"),
    ],
)
def test_clone_params_refuse_bad_values_at_trigger_time(
    dagbag: Any, params: dict[str, Any], problem: str
) -> None:

    resolved = ParamsDict(dagbag.get_dag("wp_clone").params)
    with pytest.raises(Exception, match=problem):
        resolved.update(params)
        resolved.validate()


def test_clone_params_accept_a_good_request(dagbag: Any) -> None:

    resolved = ParamsDict(dagbag.get_dag("wp_clone").params)
    resolved.update({"source_url": "https://www.example.com", "ttl_minutes": 90, "clone_id": "qa-1"})
    assert resolved.validate()["clone_id"] == "qa-1"


def test_provisioning_creates_the_pool_the_copy_steps_use(dagbag: Any) -> None:

    pool = dagbag.get_dag("wp_clone").get_task("copy_database").pool
    ensure_pool(3)
    ensure_pool(3)  # idempotent
    created = Pool.get_pool(pool)
    assert created is not None and created.slots == 3
    assert created.include_deferred  # a deferred copy (deferrable pods) still holds its slot
    with pytest.raises(ValueError, match="at least 1 slot"):
        ensure_pool(0)
