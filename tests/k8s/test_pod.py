"""Step pods, as the operator itself builds them (``build_pod_request_obj(dry_run=True)``): no cluster.

The operator is built the way the DAG builders build it (at parse time, no I/O), its templates are rendered
against a task instance whose ``xcom_pull`` returns the ClonePlan JSON, and the pod is asserted field by
field and validated against the Kubernetes schema.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import kubernetes_validate
import pytest
import yaml
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, AirflowSkipException, AirflowTaskTimeout
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from tests.k8s.test_manifests import K8S_VERSIONS, make_plan, make_source
from wpclone.airflow import builders
from wpclone.config import load_config
from wpclone.k8s import manifests
from wpclone.k8s.pod import StepPodOperator, error_sentence, step_pod_operator
from wpclone.k8s.settings import KubernetesSettings
from wpclone.models import ClonePlan, RuntimeKind, WpcloneConfig, restore_db_name
from wpclone.runtimes import runtime_for
from wpclone.runtimes.kubernetes import KubernetesRuntime
from wpclone.runtimes.stepspec import ContentRole, DbRole, PlanValue, Step
from wpclone.steps.backup import fetch_policy_from_env
from wpclone.steps.content_tree import LINK_ROOTS_ENV, link_roots_from_env

PLAN_TASK = "validate_request"
COPY_DATABASE = Step(
    task_id="copy_database",
    step="copy-database",
    arguments=(PlanValue.SOURCE_URL, PlanValue.CLONE_URL),
    db_env={"SOURCE_DB": DbRole.SOURCE, "TARGET_DB": DbRole.CLONE},
)
COPY_CONTENT = Step(
    task_id="copy_content",
    step="copy-content",
    arguments=("--copy-mode", PlanValue.COPY_MODE),
    env={"COPY_WORKERS": "4"},
    content={"SOURCE_CONTENT_DIR": ContentRole.SOURCE, "TARGET_CONTENT_DIR": ContentRole.CLONE},
)


class FakeTI:
    """The task instance surface the operator and its templates use."""

    def __init__(self, task_id: str, plan: ClonePlan) -> None:
        self.dag_id = "wp_clone"
        self.task_id = task_id
        self.map_index = -1
        self.try_number = 1
        self.plan = plan
        self.pushed: dict[str, Any] = {}

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        assert task_ids == PLAN_TASK and key == "return_value"
        return self.plan.model_dump(mode="json")

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def runtime() -> KubernetesRuntime:
    config = WpcloneConfig(
        runtime=RuntimeKind.KUBERNETES, sources=[make_source()], clone_domain="clones.example.com"
    )
    return KubernetesRuntime(config, KubernetesSettings())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Building and rendering must not open a socket (parse time; dry run)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the operator tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


def build(
    runtime: KubernetesRuntime, step: Step, plan: ClonePlan | None = None, **kwargs: Any
) -> tuple[StepPodOperator, dict[str, Any], dict[str, Any]]:
    """The operator, its context, and its pod as the API would receive it (a dict), the configuration the
    worker reads when the task runs being ``runtime``'s."""
    with DAG("wp_clone", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)) as dag:
        op = step_pod_operator(step, plan_xcom=PLAN_TASK, settings=runtime.settings, **kwargs)
    ti = FakeTI(step.task_id, plan or make_plan())
    context: dict[str, Any] = {"ti": ti, "run_id": "manual__2026-01-01", "dag": dag, "task": op}
    with configured(runtime):
        op.render_template_fields(context)  # type: ignore[arg-type]
    op.check_rendered()
    pod = op.build_pod_request_obj(context, dry_run=True)  # type: ignore[arg-type]
    return op, context, ApiClient().sanitize_for_serialization(pod)


@contextlib.contextmanager
def configured(runtime: KubernetesRuntime) -> Iterator[None]:
    """The worker's configuration (``WPCLONE_CONFIG_JSON``) is ``runtime``'s meanwhile."""
    with mock.patch.dict(os.environ, {"WPCLONE_CONFIG_JSON": runtime.config.model_dump_json()}):
        os.environ.pop("WPCLONE_CONFIG", None)
        yield


def container_env(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def test_building_the_operator_does_no_io(runtime: KubernetesRuntime, no_network: None) -> None:
    op, _, pod = build(runtime, COPY_DATABASE, pool="wpclone_heavy")
    assert "hook" not in op.__dict__ and "client" not in op.__dict__  # no API client was made
    assert op.pool == "wpclone_heavy"
    assert pod["metadata"]["namespace"] == "wpclone-clones"


def test_image_command_and_rendered_arguments(runtime: KubernetesRuntime) -> None:
    op, _, pod = build(runtime, COPY_DATABASE)
    container = pod["spec"]["containers"][0]
    assert container["image"] == "wpclone-toolbox:0.1.0"
    assert container["command"] == ["python", "-m", "wpclone.steps"]
    assert container["args"] == [
        "copy-database",
        "https://shop.example.com",
        "https://shop-abc123.clones.example.com",
    ]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["name"].startswith("wpclone-copy-database-")
    assert op.get_logs is True
    assert op.on_finish_action.value == "delete_pod"
    assert op.durable is True and op.reattach_on_restart is True
    assert op.kubernetes_conn_id == "kubernetes_default"
    assert op.deferrable is False


def test_database_logins_come_from_the_plan_and_passwords_from_secrets(runtime: KubernetesRuntime) -> None:
    _, _, pod = build(runtime, COPY_DATABASE)
    env = container_env(pod)
    values = {name: item.get("value") for name, item in env.items()}
    assert values["SOURCE_DB_HOST"] == "mysql.databases.svc"
    assert values["SOURCE_DB_PORT"] == "3306"
    assert values["SOURCE_DB_USER"] == "shop"
    assert values["SOURCE_DB_NAME"] == "shop"
    assert values["TARGET_DB_HOST"] == "mysql.databases.svc"
    assert values["TARGET_DB_PORT"] == "3306"
    assert values["TARGET_DB_USER"] == "wpc_shop_abc123"
    assert values["TARGET_DB_NAME"] == "wpc_shop_abc123"
    assert env["SOURCE_DB_PASSWORD"] == {
        "name": "SOURCE_DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}},
    }
    assert env["TARGET_DB_PASSWORD"] == {
        "name": "TARGET_DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "wpclone-shop-abc123", "key": "db-password"}},
    }


def test_no_password_value_anywhere_in_the_pod(runtime: KubernetesRuntime) -> None:
    for step in (COPY_DATABASE, COPY_CONTENT):
        _, _, pod = build(runtime, step)
        for item in pod["spec"]["containers"][0]["env"]:
            if "PASSWORD" in item["name"] or "SECRET" in item["name"]:
                assert "value" not in item, item
                assert item["valueFrom"]["secretKeyRef"]["name"]
        serialized = json.dumps(pod)
        assert 'envFrom": [{' not in serialized  # nothing pulled in wholesale
        assert "{{" not in serialized  # every template was rendered


def test_clone_db_host_setting_reaches_the_step(runtime: KubernetesRuntime) -> None:
    other = KubernetesRuntime(
        runtime.config, KubernetesSettings(clone_db_host="clones.db.svc", clone_db_port=3307)
    )
    _, _, pod = build(other, COPY_DATABASE)
    values = {name: item.get("value") for name, item in container_env(pod).items()}
    assert (values["TARGET_DB_HOST"], values["TARGET_DB_PORT"]) == ("clones.db.svc", "3307")
    assert values["SOURCE_DB_HOST"] == "mysql.databases.svc"


def test_content_mounts_and_dirs(runtime: KubernetesRuntime) -> None:
    _, _, pod = build(runtime, COPY_CONTENT)
    env = {name: item.get("value") for name, item in container_env(pod).items()}
    assert env["SOURCE_CONTENT_DIR"] == "/content/source"
    # The clone's whole claim is mounted; its live tree is the site's subPath (a restore stages beside it).
    assert env["TARGET_CONTENT_DIR"] == f"/content/clone/{manifests.CONTENT_SUBPATH}"
    assert env["COPY_WORKERS"] == "4"
    assert pod["spec"]["containers"][0]["args"] == ["copy-content", "--copy-mode", "everything"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["source-content"]["persistentVolumeClaim"] == {
        "claimName": "shop-content",
        "readOnly": True,
    }
    assert volumes["clone-content"]["persistentVolumeClaim"] == {
        "claimName": manifests.content_claim_name("shop-abc123"),
        "readOnly": False,
    }
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "1Gi"}
    mounts = {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/content/source"] == {
        "name": "source-content",
        "mountPath": "/content/source",
        "readOnly": True,
    }
    assert mounts["/content/clone"]["name"] == "clone-content"
    assert not mounts["/content/clone"]["readOnly"]
    assert mounts["/tmp"]["name"] == "tmp"
    # copy-database mounts no content at all.
    _, _, db_pod = build(runtime, COPY_DATABASE)
    assert [v["name"] for v in db_pod["spec"]["volumes"]] == ["tmp"]


def test_content_steps_get_the_sources_link_roots(
    runtime: KubernetesRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """None by default on Kubernetes; the source's content_link_roots when configured (as the step reads them,
    whatever the characters); nothing for a step without content."""

    def roots(plan: ClonePlan | None, step: Step = COPY_CONTENT) -> list[str] | None:
        env = {name: item.get("value") for name, item in container_env(build(runtime, step, plan)[2]).items()}
        if LINK_ROOTS_ENV not in env:
            return None
        monkeypatch.setenv(LINK_ROOTS_ENV, env[LINK_ROOTS_ENV])
        return link_roots_from_env()

    assert roots(None) == []
    configured = ["/usr/share/wordpress", '/srv/it\'s <shared> & "uploads"']
    assert roots(make_plan(source=make_source(content_link_roots=configured))) == configured
    assert roots(make_plan(source=make_source(content_link_roots=[]))) == []
    assert roots(None, COPY_DATABASE) is None


def test_labels_resources_and_security_context(runtime: KubernetesRuntime) -> None:
    _, _, pod = build(runtime, COPY_CONTENT)
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "wpclone"
    assert labels["wpclone.io/clone-id"] == "shop-abc123"
    assert labels["wpclone.io/step"] == "copy-content"
    assert labels["task_id"] == "copy_content" and labels["dag_id"] == "wp_clone"
    container = pod["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 33,
    }
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["fsGroup"] == 33
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_step_pods_validate_against_the_kubernetes_schema(runtime: KubernetesRuntime, version: str) -> None:
    for step in (COPY_DATABASE, COPY_CONTENT):
        _, _, pod = build(runtime, step)
        kubernetes_validate.validate(pod, version, strict=True)


def test_operator_kwargs_override_defaults(runtime: KubernetesRuntime) -> None:
    op, _, _ = build(runtime, COPY_DATABASE, retries=4, deferrable=True, startup_timeout_seconds=42)
    assert op.retries == 4
    assert op.deferrable is True
    assert op.startup_timeout_seconds == 42


@pytest.mark.parametrize(
    ("step", "match"),
    [
        (Step(task_id="t", step="copy database"), "not a step name"),
        (Step(task_id="t", step="copy-database", env={"bad-name": "x"}), "environment variable name"),
        (Step(task_id="t", step="copy-database", db_env={"SOURCE_DB": "elsewhere"}), "'clone' or 'restore'"),
        (Step(task_id="t", step="copy-content", content={"DIR": "neighbour"}), "'source' or 'clone'"),
        (Step(task_id="t", step="copy-content", content={"DIR": "restore"}), "'source' or 'clone'"),
        (Step(task_id="t", step="restore-backup", param_env={"URL": "a }}{{ b"}), "not a parameter name"),
        (Step(task_id="t", step="restore-backup", param_env={"bad-name": "url"}), "variable name"),
    ],
)
def test_bad_steps_fail_at_parse_time(runtime: KubernetesRuntime, step: Step, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        step_pod_operator(step, plan_xcom=PLAN_TASK, settings=runtime.settings)


def test_plan_xcom_must_be_a_task_id(runtime: KubernetesRuntime) -> None:
    with pytest.raises(ValueError, match="not a task id"):
        step_pod_operator(COPY_DATABASE, plan_xcom="x') }}{{ 7*7", settings=runtime.settings)


def test_a_plan_without_source_claim_or_secret_fails_before_any_pod(runtime: KubernetesRuntime) -> None:
    with DAG("wp_clone", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)) as dag:
        op = step_pod_operator(COPY_CONTENT, plan_xcom=PLAN_TASK, settings=runtime.settings)
    plan = make_plan(source=make_source(content_claim=None))
    context: dict[str, Any] = {"ti": FakeTI("copy_content", plan), "run_id": "r", "dag": dag, "task": op}
    with configured(runtime):
        op.render_template_fields(context)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does the source set content_claim"):
        op.execute(context)  # type: ignore[arg-type]
    assert "content_claim" in context["ti"].pushed["error"]

    with DAG("wp_clone2", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)) as dag:
        op = step_pod_operator(COPY_DATABASE, plan_xcom=PLAN_TASK, settings=runtime.settings)
    plan = make_plan(source=make_source(db_password_secret=None))
    context = {"ti": FakeTI("copy_database", plan), "run_id": "r", "dag": dag, "task": op}
    with configured(runtime):
        op.render_template_fields(context)  # type: ignore[arg-type]
    assert isinstance(op, StepPodOperator)
    with pytest.raises(ValueError, match="does the source set db_password_secret"):
        op.check_rendered()


# -- the step's error sentence ----------------------------------------------------------------------------


def failed_pod(message: str | None) -> k8s.V1Pod:
    terminated = k8s.V1ContainerStateTerminated(exit_code=1, message=message, reason="Error")
    status = k8s.V1ContainerStatus(
        name="base",
        image="toolbox",
        image_id="",
        ready=False,
        restart_count=0,
        state=k8s.V1ContainerState(terminated=terminated),
    )
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="wpclone-copy-database-x"),
        status=k8s.V1PodStatus(phase="Failed", container_statuses=[status]),
    )


def test_error_sentence_is_the_last_line_of_the_termination_message() -> None:
    tail = (
        "step=copy-database event=dump table=wp_posts\n"
        "step=copy-database event=failed\n"
        "error: The source database refused the login of user shop.\n\n"
    )
    assert error_sentence(tail) == "The source database refused the login of user shop."
    assert error_sentence("") is None
    assert error_sentence(None) is None
    assert error_sentence("\n  \n") is None


def test_a_failed_pod_pushes_the_steps_sentence_as_xcom_error(
    runtime: KubernetesRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    op, context, _ = build(runtime, COPY_DATABASE)

    def provider_execute(self: KubernetesPodOperator, context: Any) -> None:
        # What the provider does when the base container fails: it has the final pod, then raises.
        self.remote_pod = failed_pod("progress\nerror: Target database wpc_shop_abc123 already has tables.\n")
        raise AirflowException("Pod wpclone-copy-database-x returned a failure.")

    monkeypatch.setattr(KubernetesPodOperator, "execute", provider_execute)
    with pytest.raises(AirflowException, match="returned a failure"):
        op.execute(context)
    assert context["ti"].pushed == {
        "error": "copy-database: Target database wpc_shop_abc123 already has tables."
    }


def test_a_succeeded_pod_returns_the_steps_result_from_its_termination_message(
    runtime: KubernetesRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the local runtime's task returns the step's JSON result line, for the next tasks' XCom."""
    op, context, pod = build(runtime, COPY_DATABASE)
    env = {item["name"]: item.get("value") for item in pod["spec"]["containers"][0]["env"]}
    assert env["WPCLONE_TERMINATION_LOG"] == "/dev/termination-log"

    def provider_execute(self: KubernetesPodOperator, context: Any) -> None:
        self.remote_pod = failed_pod('{"rows": 1200, "tables": 12}\n')

    monkeypatch.setattr(KubernetesPodOperator, "execute", provider_execute)
    assert op.execute(context) == {"rows": 1200, "tables": 12}
    assert context["ti"].pushed == {"return_value": {"rows": 1200, "tables": 12}}


def test_a_pod_that_never_ran_still_pushes_one_sentence(
    runtime: KubernetesRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    op, context, _ = build(runtime, COPY_CONTENT)

    def provider_execute(self: KubernetesPodOperator, context: Any) -> None:
        raise AirflowException("Pod took too long to start.\nmore detail")

    monkeypatch.setattr(KubernetesPodOperator, "execute", provider_execute)
    with pytest.raises(AirflowException):
        op.execute(context)
    assert context["ti"].pushed == {"error": "The copy-content step failed: Pod took too long to start."}


def test_a_skip_is_not_an_error(runtime: KubernetesRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    op, context, _ = build(runtime, COPY_CONTENT)

    def provider_execute(self: KubernetesPodOperator, context: Any) -> None:
        raise AirflowSkipException("skip")

    monkeypatch.setattr(KubernetesPodOperator, "execute", provider_execute)
    with pytest.raises(AirflowSkipException):
        op.execute(context)
    assert context["ti"].pushed == {}


def test_deferred_reentry_failure_pushes_the_sentence(
    runtime: KubernetesRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    op, context, _ = build(runtime, COPY_DATABASE, deferrable=True)

    def provider_reentry(self: KubernetesPodOperator, context: Any, event: dict[str, Any]) -> None:
        self.pod = failed_pod("error: The source database is unreachable at mysql.databases.svc:3306.")
        raise AirflowException("Trigger emitted a failed event")

    monkeypatch.setattr(KubernetesPodOperator, "trigger_reentry", provider_reentry)
    with pytest.raises(AirflowException):
        op.trigger_reentry(context, {"status": "failed", "name": "p", "namespace": "n"})
    assert (
        context["ti"].pushed["error"]
        == "copy-database: The source database is unreachable at mysql.databases.svc:3306."
    )


# -- wp_backup and wp_restore: the operators the DAG builders make ---------------------------------------

BACKUP_URL = "https://backups.example.com/shop/shop-1.tar.gz?X-Amz-Credential=AKIA1&X-Amz-Signature=s3cr3t"


def k8s_config_json(**backups: Any) -> str:
    config = WpcloneConfig(
        runtime=RuntimeKind.KUBERNETES,
        sources=[make_source()],
        clone_domain="clones.example.com",
        backups={"allowed_hosts": ["backups.example.com"], **backups},
    )
    return config.model_dump_json()


@pytest.fixture
def k8s_dags(monkeypatch: pytest.MonkeyPatch) -> dict[str, DAG]:
    """wp_backup and wp_restore as the DAG files build them, for the kubernetes runtime."""

    monkeypatch.setenv("WPCLONE_RUNTIME", "kubernetes")
    monkeypatch.delenv("WPCLONE_CONFIG", raising=False)
    monkeypatch.setenv("WPCLONE_CONFIG_JSON", k8s_config_json())
    return {"wp_backup": builders.build_backup_dag(), "wp_restore": builders.build_restore_dag()}


def build_task(dag: DAG, task_id: str) -> tuple[StepPodOperator, dict[str, Any], dict[str, Any]]:
    """The DAG's own operator, rendered for clone shop-abc123 with the restore's params, and its pod."""
    op = dag.get_task(task_id)
    assert isinstance(op, StepPodOperator)
    ti = FakeTI(task_id, make_plan())
    params = {"clone_id": "shop-abc123", "source_backup_url": BACKUP_URL}
    context: dict[str, Any] = {"ti": ti, "run_id": "manual__2026-01-01", "dag": dag, "task": op}
    context["params"] = params
    op.render_template_fields(context)  # type: ignore[arg-type]
    op.check_rendered()
    pod = op.build_pod_request_obj(context, dry_run=True)  # type: ignore[arg-type]
    return op, context, ApiClient().sanitize_for_serialization(pod)


BACKUP_TASKS = (("wp_backup", "backup_clone"), ("wp_restore", "backup_clone"), ("wp_restore", "load_backup"))


@pytest.mark.parametrize(("dag_id", "task_id"), BACKUP_TASKS)
def test_backup_and_restore_steps_mount_the_backups_claim(
    k8s_dags: dict[str, DAG], dag_id: str, task_id: str
) -> None:
    _, _, pod = build_task(k8s_dags[dag_id], task_id)
    settings = KubernetesSettings()
    read_only = task_id == "load_backup"  # a restore only reads backups; only the backup step writes
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["backups"]["persistentVolumeClaim"] == {
        "claimName": settings.backup_claim,
        "readOnly": read_only,
    }
    mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["backups"]["mountPath"] == settings.backup_mount == "/backups"
    assert bool(mounts["backups"].get("readOnly")) is read_only
    env = {name: item.get("value") for name, item in container_env(pod).items()}
    assert env["WPCLONE_BACKUP_DIR"] == settings.backup_mount
    # The clone's whole claim, its live tree one level down (the restore stages beside it).
    assert mounts["clone-content"]["mountPath"] == "/content/clone"
    content_env = "TARGET_CONTENT_DIR" if task_id == "load_backup" else "SOURCE_CONTENT_DIR"
    assert env[content_env] == "/content/clone/wp-content"
    # On the site's node (the clone's claim is ReadWriteOnce): required, the clone is ready, its site runs.
    affinity = pod["spec"]["affinity"]["podAffinity"]
    assert set(affinity) == {"requiredDuringSchedulingIgnoredDuringExecution"}
    [term] = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["labelSelector"]["matchLabels"] == manifests.site_selector("shop-abc123")
    assert term["topologyKey"] == "kubernetes.io/hostname"
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


def test_copy_steps_do_not_mount_the_backups(runtime: KubernetesRuntime) -> None:
    # copy-content mounts the clone's claim before its site exists: the site's node only if it can.
    _, _, pod = build(runtime, COPY_CONTENT)
    affinity = pod["spec"]["affinity"]["podAffinity"]
    [preferred] = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity
    assert preferred["podAffinityTerm"]["labelSelector"]["matchLabels"] == manifests.site_selector(
        "shop-abc123"
    )
    _, _, pod = build(runtime, COPY_DATABASE)
    assert not pod["spec"].get("affinity")
    for step in (COPY_DATABASE, COPY_CONTENT):
        _, _, pod = build(runtime, step)
        assert "backups" not in {v["name"] for v in pod["spec"]["volumes"]}
        assert "WPCLONE_BACKUP_DIR" not in container_env(pod)
        assert "WPCLONE_FETCH_POLICY" not in container_env(pod)


def test_the_load_step_logs_in_to_the_fresh_database_with_the_restore_login(k8s_dags: dict[str, DAG]) -> None:

    _, _, pod = build_task(k8s_dags["wp_restore"], "load_backup")
    env = container_env(pod)
    assert env["TARGET_DB_USER"]["value"] == env["TARGET_DB_NAME"]["value"] == restore_db_name("shop-abc123")
    assert env["TARGET_DB_PASSWORD"] == {
        "name": "TARGET_DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "wpclone-shop-abc123", "key": manifests.RESTORE_PASSWORD_KEY}},
    }
    assert "SOURCE_DB_HOST" not in env  # nothing of the live source


def test_the_backup_url_reaches_the_pod_only_by_reference(k8s_dags: dict[str, DAG]) -> None:
    op, context, pod = build_task(k8s_dags["wp_restore"], "load_backup")
    env = container_env(pod)
    assert env["WPCLONE_BACKUP_URL"] == {
        "name": "WPCLONE_BACKUP_URL",
        "valueFrom": {
            "secretKeyRef": {
                "name": "wpclone-shop-abc123",
                "key": manifests.param_secret_key("WPCLONE_BACKUP_URL"),
            }
        },
    }
    # Neither the URL nor its query (a presigned URL's credentials) in the pod or the rendered fields.
    rendered = json.dumps(pod) + repr({field: getattr(op, field) for field in op.template_fields})
    for text in (BACKUP_URL, "s3cr3t", "X-Amz-Credential", "backups.example.com/shop"):
        assert text not in rendered
    for item in pod["spec"]["containers"][0]["env"]:
        if "PASSWORD" in item["name"] or item["name"] == "WPCLONE_BACKUP_URL":
            assert "value" not in item, item

    # When the task runs, the URL goes into the clone's Secret, and nowhere else.
    class Cluster:
        def __init__(self) -> None:
            self.patches: list[tuple[str, str, dict[str, Any], str]] = []

        def patch(self, kind: str, name: str, changes: dict[str, Any], *, clone_id: str) -> dict[str, Any]:
            self.patches.append((kind, name, changes, clone_id))
            return {}

    cluster = Cluster()
    op.publish_params(context, cluster)
    [(kind, name, changes, owner)] = cluster.patches
    assert (kind, name, owner) == ("Secret", "wpclone-shop-abc123", "shop-abc123")  # if that clone's
    key = manifests.param_secret_key("WPCLONE_BACKUP_URL")
    assert json.loads(json.dumps(changes)) == {"data": {key: base64.b64encode(BACKUP_URL.encode()).decode()}}


def test_the_fetch_policy_is_the_configuration_at_task_time(
    k8s_dags: dict[str, DAG], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Changed after the DAG was parsed: the pod gets the configuration the worker reads when it runs.
    monkeypatch.setenv("WPCLONE_CONFIG_JSON", k8s_config_json(schemes=["https"], max_bytes=12345))
    _, _, pod = build_task(k8s_dags["wp_restore"], "load_backup")
    policy = json.loads(container_env(pod)["WPCLONE_FETCH_POLICY"]["value"])
    assert policy["file_roots"] == ["/backups"]  # only the backups claim, inside the pod
    assert policy["allow_private"] is False  # never the cluster's own addresses (metadata, services)
    assert policy["schemes"] == ["https"] and policy["max_bytes"] == 12345
    assert policy["allowed_hosts"] == ["backups.example.com"]
    # The step reads it back as the same policy.
    monkeypatch.setenv("WPCLONE_FETCH_POLICY", container_env(pod)["WPCLONE_FETCH_POLICY"]["value"])

    assert fetch_policy_from_env() == runtime_for(load_config()).fetch_policy()
    # The backup step needs no fetch policy.
    _, _, backup = build_task(k8s_dags["wp_restore"], "backup_clone")
    assert "WPCLONE_FETCH_POLICY" not in container_env(backup)


def test_only_the_load_step_may_fetch_from_the_internet(k8s_dags: dict[str, DAG]) -> None:
    """helm-values/manifests/21-networkpolicy-restore.yaml opens HTTPS to public addresses for the pods of
    the restore step only (the step refuses private addresses itself; the policy holds the same line)."""

    path = Path(__file__).resolve().parents[2] / "helm-values" / "manifests" / "21-networkpolicy-restore.yaml"
    policy = yaml.safe_load(path.read_text())
    wanted = policy["spec"]["podSelector"]["matchLabels"]

    def selected(pod: dict[str, Any]) -> bool:
        labels = pod["metadata"]["labels"]
        return all(labels.get(k) == v for k, v in wanted.items())

    assert selected(build_task(k8s_dags["wp_restore"], "load_backup")[2])
    assert not selected(build_task(k8s_dags["wp_restore"], "backup_clone")[2])
    assert not selected(build_task(k8s_dags["wp_backup"], "backup_clone")[2])
    [rule] = policy["spec"]["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
    [peer] = rule["to"]
    assert {"10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8"} <= set(peer["ipBlock"]["except"])


def test_a_step_pod_has_its_time_limit_and_a_timed_out_one_says_so(
    runtime: KubernetesRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WPCLONE_STEP_TIMEOUT_CEILING_S", "900")
    op, context, pod = build(runtime, COPY_DATABASE)
    assert op.execution_timeout == timedelta(seconds=1020)  # the ceiling and the grace
    assert pod["spec"]["activeDeadlineSeconds"] == 1020  # Kubernetes' own, should the worker be gone

    def provider_execute(self: KubernetesPodOperator, context: Any) -> None:
        raise AirflowTaskTimeout("Timeout, PID: 4242")  # what the task runner's SIGALRM raises

    monkeypatch.setattr(KubernetesPodOperator, "execute", provider_execute)
    with pytest.raises(AirflowTaskTimeout):
        op.execute(context)
    assert context["ti"].pushed == {
        "error": "copy_database timed out after 1020 s (its task's limit: WPCLONE_STEP_TIMEOUT_CEILING_S "
        "and 120 s more); the step was killed."
    }
