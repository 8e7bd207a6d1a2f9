"""Issue 14's findings against the real API server: the kubernetes runtime's own code (``KubernetesRuntime``,
``ClusterClient``, ``StepPodOperator``) on the local control plane, through an Airflow connection to it, in
the test's namespace.

Each test shows what kmock could not: ownership as the server stores it, a forced apply's conflicts, the
garbage collector's owner chain, the scheduler's and the node's reasons for a pod that does not start.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.k8s.test_manifests import MU_PLUGIN, make_plan, make_source
from tests.k8s.test_pod import COPY_CONTENT, COPY_DATABASE, build
from tests.kube.conftest import wait_for
from tests.kube.node_agent import FOLLOW_CUT_ANNOTATION
from wpclone.errors import CloneNameTaken, ForeignObject, KubernetesError
from wpclone.k8s import manifests
from wpclone.k8s.apply import KINDS
from wpclone.k8s.settings import KubernetesSettings
from wpclone.local.cluster import Cluster
from wpclone.models import RuntimeKind, WpcloneConfig
from wpclone.runtimes.base import CLONE_ID_LABEL, MANAGED_BY_LABEL
from wpclone.runtimes.kubernetes import KubernetesRuntime, new_clone_secrets
from wpclone.runtimes.stepspec import Step

CONN_ID = "wpclone_kube"
CLONE = "shop-x1"
THEIRS = {"app": "theirs"}
APPLY = "application/apply-patch+yaml"


@pytest.fixture
def runtime(cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubernetesRuntime]:
    """The runtime on the local cluster, in the test's namespace, through Airflow connection ``CONN_ID``."""
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(cluster.kubeconfig)}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    config = WpcloneConfig(
        runtime=RuntimeKind.KUBERNETES, sources=[make_source()], clone_domain="clones.example.test"
    )
    settings = KubernetesSettings(namespace=namespace, conn_id=CONN_ID, startup_timeout_seconds=10)
    runtime = KubernetesRuntime(config, settings)
    runtime.poll_seconds = 0.2
    yield runtime


def clone_manifests(runtime: KubernetesRuntime, clone_id: str = CLONE) -> list[dict[str, Any]]:
    """Every object the runtime writes under the clone's names (site, preview, content pod)."""
    plan = make_plan(clone_id)
    settings = runtime.settings
    workload = manifests.preview_workload(plan, staged="", live="", node=None)
    return [
        manifests.secret_manifest(plan, settings, new_clone_secrets()),
        manifests.content_claim_manifest(plan, settings),
        *manifests.site_manifests(plan, settings, {}, MU_PLUGIN),
        *manifests.preview_manifests(plan, settings, {}, MU_PLUGIN, workload),
        manifests.content_pod_manifest(clone_id, "inspect", settings),
    ]


def foreign(manifest: dict[str, Any]) -> dict[str, Any]:
    """The object someone else made under the same name: no labels of ours, selecting none of our pods."""
    body = json.loads(json.dumps(manifest))
    body["metadata"] = {"name": manifest["metadata"]["name"], "labels": THEIRS}
    if body["kind"] == "Deployment":
        body["spec"]["replicas"] = 0
        body["spec"]["selector"] = {"matchLabels": THEIRS}
        body["spec"]["template"]["metadata"]["labels"] = THEIRS
    if body["kind"] == "Service":
        body["spec"]["selector"] = THEIRS
    if body["kind"] == "Pod":
        body["spec"]["containers"][0]["image"] = "theirs.invalid/app:1"  # never runs: stays as made
    return body


def admin_call(api: kubernetes.client.ApiClient, verb: str, kind: str) -> Any:
    spec = KINDS[kind]
    return getattr(getattr(kubernetes.client, spec.api)(api), f"{verb}_namespaced_{spec.method}")


def stored(api: kubernetes.client.ApiClient, namespace: str, kind: str, name: str) -> dict[str, Any]:
    """What an owner cares about (status aside, which the controllers and the node keep writing)."""
    obj = dict(api.sanitize_for_serialization(admin_call(api, "read", kind)(name, namespace)))
    metadata = obj["metadata"]
    spec = dict(obj.get("spec") or {})
    if kind == "PersistentVolumeClaim":  # bound by the node agent's provisioner whenever it gets to it
        spec.pop("volumeName", None)
    return {
        "uid": metadata["uid"],
        "labels": metadata.get("labels"),
        "deleting": metadata.get("deletionTimestamp"),
        "spec": spec or None,
        "data": obj.get("data"),
    }


def test_objects_that_are_not_the_clones_are_never_taken_over_or_deleted(
    api: kubernetes.client.ApiClient, namespace: str, runtime: KubernetesRuntime
) -> None:
    """Finding 1, every kind: a same-named object without our labels is refused with a sentence naming it,
    before anything is created and by every write, and deleting the clone leaves it as it was."""
    cluster = runtime.cluster
    for manifest in clone_manifests(runtime):
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        admin_call(api, "create", kind)(namespace, foreign(manifest))
        before = stored(api, namespace, kind, name)
        sentence = (
            f"{kind}/{name} already exists in namespace {namespace} and is not clone {CLONE}'s (it lacks the "
            f"labels {MANAGED_BY_LABEL}=wpclone and {CLONE_ID_LABEL}={CLONE}); wpclone never overwrites or "
            "deletes it: choose another clone id."
        )
        with pytest.raises(CloneNameTaken) as refused:
            runtime.prepare_clone(make_plan(CLONE))
        assert str(refused.value) == sentence
        assert not owned(api, namespace)  # refused before anything was created
        for write in (cluster.apply, cluster.create):
            with pytest.raises(ForeignObject) as taken:
                write(manifest)
            assert str(taken.value) == sentence
        with pytest.raises(ForeignObject):
            cluster.patch(kind, name, {"metadata": {"labels": {CLONE_ID_LABEL: CLONE}}}, clone_id=CLONE)
        with pytest.raises(ForeignObject):
            cluster.delete(kind, name, clone_id=CLONE)
        assert runtime.delete_clone_objects(CLONE) == []
        assert stored(api, namespace, kind, name) == before, f"{kind}/{name} was changed"
        admin_call(api, "delete", kind)(name, namespace, grace_period_seconds=0)
        wait_for(f"{kind}/{name} gone", lambda k=kind, n=name: gone(api, namespace, k, n))


def test_a_foreign_service_made_after_prepare_survives_deploy_and_delete(
    api: kubernetes.client.ApiClient, namespace: str, runtime: KubernetesRuntime
) -> None:
    """The issue's reproduction: ``kubectl create service clusterip wpclone-shop-x1 --tcp=443:8443`` after the
    clone was prepared; deploying refuses it (no selector or port merged in), deleting the clone keeps it."""
    plan = make_plan(CLONE)
    runtime.prepare_clone(plan)
    service = {
        "metadata": {"name": manifests.site_name(CLONE), "labels": {"app": manifests.site_name(CLONE)}},
        "spec": {"type": "ClusterIP", "ports": [{"name": "443-8443", "port": 443, "targetPort": 8443}]},
    }
    kubernetes.client.CoreV1Api(api).create_namespaced_service(namespace, service)
    before = stored(api, namespace, "Service", manifests.site_name(CLONE))
    with pytest.raises(ForeignObject, match=f"^Service/wpclone-{CLONE} already exists"):
        runtime.deploy_site(plan, {}, MU_PLUGIN)
    removed = runtime.delete_clone_objects(CLONE)
    assert f"Service/wpclone-{CLONE}" not in removed
    assert {f"Secret/wpclone-{CLONE}", f"PersistentVolumeClaim/wpclone-{CLONE}-content"} <= set(removed)
    assert stored(api, namespace, "Service", manifests.site_name(CLONE)) == before


def owned(api: kubernetes.client.ApiClient, namespace: str) -> list[str]:
    """``Kind/name`` of every object in ``namespace`` with our managed-by label."""
    return [
        f"{kind}/{item.metadata.name}"
        for kind in KINDS
        for item in admin_call(api, "list", kind)(namespace, label_selector=manifests.label_selector()).items
    ]


def gone(api: kubernetes.client.ApiClient, namespace: str, kind: str, name: str) -> bool:
    try:
        admin_call(api, "read", kind)(name, namespace)
    except ApiException as exc:
        return exc.status == 404
    return False


def test_delete_takes_the_site_down_in_owner_order_and_leaves_nothing(
    api: kubernetes.client.ApiClient, namespace: str, runtime: KubernetesRuntime
) -> None:
    """Finding 4: deleting a clone whose site runs leaves no ReplicaSet to start a new pod that holds the
    claim; when the delete returns nothing of the clone's is left, and a second delete finds nothing."""
    plan = make_plan(CLONE)
    runtime.prepare_clone(plan)
    runtime.deploy_site(plan, {}, MU_PLUGIN)
    core = kubernetes.client.CoreV1Api(api)
    site = f"{manifests.label_selector(CLONE)},{manifests.COMPONENT_LABEL}={manifests.SITE_COMPONENT}"
    wait_for(
        "the site's pod running",
        lambda: [
            p
            for p in core.list_namespaced_pod(namespace, label_selector=site).items
            if p.status.phase == "Running"
        ],
    )

    removed = runtime.delete_clone_objects(CLONE)
    assert {
        f"Deployment/wpclone-{CLONE}",
        f"PersistentVolumeClaim/wpclone-{CLONE}-content",
        f"Secret/wpclone-{CLONE}",
    } <= set(removed)
    assert owned(api, namespace) == []  # no pod a ReplicaSet restarted, no claim held Terminating
    apps = kubernetes.client.AppsV1Api(api)
    assert apps.list_namespaced_replica_set(namespace).items == []
    assert runtime.delete_clone_objects(CLONE) == []


def settled(runtime: KubernetesRuntime, **settings: Any) -> KubernetesRuntime:
    """``runtime`` with other settings (same connection and namespace)."""
    changed = KubernetesRuntime(runtime.config, runtime.settings.model_copy(update=settings))
    changed.poll_seconds = runtime.poll_seconds
    return changed


def run_step(runtime: KubernetesRuntime, step: Any, **operator: Any) -> tuple[str, str, float]:
    """Run ``step``'s StepPodOperator for the clone against the cluster, expecting it to fail: the task's
    error, the job's error (XCom ``error``) and the seconds it took."""
    op, context, _ = build(runtime, step, make_plan(CLONE), **operator)
    started = time.monotonic()
    with pytest.raises(Exception) as failed:
        op.execute(context)
    return str(failed.value), context["ti"].pushed["error"], time.monotonic() - started


def no_pods(api: kubernetes.client.ApiClient, namespace: str) -> bool:
    return not kubernetes.client.CoreV1Api(api).list_namespaced_pod(namespace).items


def test_a_step_pod_whose_claim_is_missing_fails_within_seconds_with_the_cause(
    api: kubernetes.client.ApiClient, namespace: str, runtime: KubernetesRuntime
) -> None:
    """Finding 3: the scheduler's reason (the claim does not exist) is final: the step fails at once with it
    in the job's error, not after the start-up timeout with ``Pod … returned a failure.``"""
    runtime = settled(runtime, startup_timeout_seconds=120)
    task_error, job_error, seconds = run_step(runtime, COPY_CONTENT)
    assert seconds < 20
    assert job_error.startswith("copy-content: Pod wpclone-copy-content-")
    assert "cannot start: it cannot be scheduled (" in job_error
    assert 'persistentvolumeclaim "' in job_error and "not found" in job_error
    assert task_error == job_error.removeprefix("copy-content: ")
    wait_for("the step pod's removal", lambda: no_pods(api, namespace))


def test_an_image_that_cannot_be_pulled_fails_within_seconds_with_the_nodes_message(
    api: kubernetes.client.ApiClient, namespace: str, runtime: KubernetesRuntime
) -> None:
    """Build item 5: the node cannot pull the image (the node agent knows only its two images)."""
    runtime = settled(runtime, startup_timeout_seconds=120, toolbox_image="registry.invalid/toolbox:9")
    _, job_error, seconds = run_step(runtime, COPY_DATABASE)
    assert seconds < 20
    # the node says ErrImagePull, then ImagePullBackOff: either may be the state the operator reads first
    pulled = re.search(r"its image cannot be pulled \((ErrImagePull|ImagePullBackOff): ", job_error)
    assert pulled, job_error
    assert 'cannot pull image "registry.invalid/toolbox:9"' in job_error
    wait_for("the step pod's removal", lambda: no_pods(api, namespace))


def test_a_pod_that_never_schedules_fails_at_the_timeout_with_the_schedulers_reason(
    api: kubernetes.client.ApiClient, namespace: str, runtime: KubernetesRuntime
) -> None:
    """Build item 5: no node matches (which a new node could change): waited for, then the timeout's
    sentence says why."""
    _, job_error, seconds = run_step(runtime, COPY_DATABASE, node_selector={"wpclone.test/none": "x"})
    assert 10 <= seconds < 30  # the settings' 10 s start-up timeout
    assert "did not start within 10 s: it cannot be scheduled (0/1 nodes are available: " in job_error
    assert "node affinity" in job_error  # 1.20 words a nodeSelector so
    wait_for("the step pod's removal", lambda: no_pods(api, namespace))


def test_the_content_pod_without_its_claim_fails_within_seconds_with_the_cause(
    api: kubernetes.client.ApiClient, namespace: str, runtime: KubernetesRuntime
) -> None:
    """Finding 3, the restore's content pod: it waited 660 s for a claim that does not exist."""
    runtime = settled(runtime, startup_timeout_seconds=120)
    started = time.monotonic()
    with pytest.raises(KubernetesError) as failed:
        runtime.run_content_pod(CLONE, "inspect")
    assert time.monotonic() - started < 20
    assert str(failed.value).startswith(f"Pod wpclone-{CLONE}-content")
    assert "cannot start: it cannot be scheduled (" in str(failed.value)
    assert f'persistentvolumeclaim "wpclone-{CLONE}-content" not found' in str(failed.value)
    wait_for("the content pod's removal", lambda: no_pods(api, namespace))


def test_a_log_watch_that_breaks_mid_job_is_picked_up_again(
    api: kubernetes.client.ApiClient,
    namespace: str,
    runtime: KubernetesRuntime,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Build item 5: the node closes the step's log stream every second while the step runs (as a broken
    watch or a restarted API server would); the operator follows it again, sees the step's last line and
    its success, and removes the pod."""
    script = "import time\nfor i in range(5):\n    print(f'line {i}', flush=True)\n    time.sleep(0.7)\n"
    caplog.set_level("INFO")
    op, context, _ = build(
        runtime,
        Step(task_id="noisy", step="noisy"),
        make_plan(CLONE),
        cmds=["python", "-c", script],
        annotations={FOLLOW_CUT_ANNOTATION: "1"},
    )
    op.execute(context)
    out, err = capfd.readouterr()
    logged = "\n".join([out, err, caplog.text])  # however Airflow routes the task's log
    assert all(f"line {i}" in logged for i in range(5)), logged
    assert "error" not in context["ti"].pushed
    wait_for("the step pod's removal", lambda: no_pods(api, namespace))


def test_conflicting_writes_are_refused_by_the_server_and_looked_at_again(
    api: kubernetes.client.ApiClient,
    namespace: str,
    runtime: KubernetesRuntime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Build item 5: every write carries the uid it checked; the server refuses it when the object under that
    name is another one by now (422 on ``metadata.uid`` for an apply, 409 for a delete) and the client reads
    again: a replacement that is not ours is refused (and survives a delete), one of ours (another try made
    it again) gets the apply. A field another manager took is a 409 conflict without ``force``; our apply
    forces it back."""
    core = kubernetes.client.CoreV1Api(api)
    config_map = next(m for m in clone_manifests(runtime) if m["kind"] == "ConfigMap")
    name = config_map["metadata"]["name"]
    cluster = runtime.cluster
    cluster.apply(config_map)
    checked = stored(api, namespace, "ConfigMap", name)

    def replace(body: dict[str, Any]) -> None:
        core.delete_namespaced_config_map(name, namespace)
        core.create_namespaced_config_map(namespace, body)

    # The server's side: an apply pinned to the uid read before the replacement.
    replace(foreign(config_map))
    stale = {**config_map, "metadata": {**config_map["metadata"], "uid": checked["uid"]}}
    with pytest.raises(ApiException) as conflict:
        core.patch_namespaced_config_map(
            name,
            namespace,
            stale,
            field_manager="wpclone",
            force=True,
            _content_type=APPLY,
        )
    assert conflict.value.status == 422
    assert "metadata.uid" in json.loads(conflict.value.body)["message"]
    replace(config_map)

    # Another field manager changed a key of ours: a conflict without force, ours again with it.
    def apply_as(manager: str, data: dict[str, str], *, force: bool) -> None:
        body = {**config_map, "data": data}
        core.patch_namespaced_config_map(
            name, namespace, body, field_manager=manager, force=force, _content_type=APPLY
        )

    key = next(iter(config_map["data"]))
    apply_as("someone", {key: "theirs"}, force=True)
    with pytest.raises(ApiException) as conflict:
        apply_as("wpclone", config_map["data"], force=False)
    assert conflict.value.status == 409 and "conflict" in json.loads(conflict.value.body)["message"]
    cluster.apply(config_map)
    assert core.read_namespaced_config_map(name, namespace).data == config_map["data"]

    # The client's side: the replacement happens right after the client's ownership read.
    read_owned = cluster.read_owned
    pending: list[dict[str, Any]] = []

    def racing_read(kind: str, name_: str, clone_id: str) -> dict[str, Any] | None:
        obj = read_owned(kind, name_, clone_id)
        if pending:
            replace(pending.pop())
        return obj

    monkeypatch.setattr(cluster, "read_owned", racing_read)
    pending.append(foreign(config_map))
    with pytest.raises(ForeignObject):  # read again after the server's refusal: not ours
        cluster.apply(config_map)
    assert stored(api, namespace, "ConfigMap", name)["labels"] == THEIRS  # not taken over
    replace(config_map)
    pending.append(foreign(config_map))
    assert cluster.delete("ConfigMap", name, clone_id=CLONE) is False  # the 409: skipped, not deleted
    assert stored(api, namespace, "ConfigMap", name)["labels"] == THEIRS
    replace(config_map)
    again = json.loads(json.dumps(config_map))
    pending.append(again)
    config_map["data"] = {**config_map["data"], "changed": "yes"}
    cluster.apply(config_map)
    assert core.read_namespaced_config_map(name, namespace).data["changed"] == "yes"
