"""The cluster tier's own infrastructure: a real Kubernetes 1.20 control plane (``wpclone.local.cluster``)
with RBAC, and the node agent (``tests/kube/node_agent.py``) that runs pods as local processes.

Each test asserts what a broken control plane or agent would get wrong; the runtime's own use of the cluster
(the DAGs with runtime=kubernetes) builds on these.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager
from kubernetes.client.exceptions import ApiException

from tests.kube.conftest import (
    TOOLBOX_IMAGE,
    apply_manifest,
    bound_claim,
    log_text,
    pod_phase,
    step_pod,
    wait_for,
    worker_client,
)
from wpclone.local.cluster import KUBE_VERSION, Cluster


def test_control_plane_answers_with_rbac_on(cluster: Cluster, core: kubernetes.client.CoreV1Api) -> None:
    version = json.loads(cluster.get("/version") or b"{}")
    assert version["gitVersion"] == f"v{KUBE_VERSION}"
    assert cluster.is_running()
    # The admin token is in system:masters; a wrong token is not anyone.
    assert any(ns.metadata.name == "kube-system" for ns in core.list_namespace().items)
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    wrong = urllib.request.Request(
        cluster.server + "/api/v1/namespaces", headers={"Authorization": "Bearer x"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, context=context, timeout=5)
    assert refused.value.code == 401
    # A user RBAC grants nothing is authenticated but refused: authorization is on, not AlwaysAllow.
    review = kubernetes.client.AuthorizationV1Api(core.api_client).create_subject_access_review(
        {
            "spec": {
                "user": "system:serviceaccount:default:default",
                "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"},
            }
        }
    )
    assert review.status.allowed is False
    # The controllers run under their own service accounts (the token controller made their tokens).
    accounts = {sa.metadata.name for sa in core.list_namespaced_service_account("kube-system").items}
    assert {"namespace-controller", "replicaset-controller", "persistent-volume-binder"} <= accounts


def test_step_pod_runs_the_toolbox_entry_point(core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    """A pod of the toolbox image runs this checkout's ``python -m wpclone.steps`` with the pod's env,
    Secret and ConfigMap references resolved through the API server, and Succeeds with its log readable."""
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "conf"}, "data": {"mode": "database"}})
    show_env = "import os; print('env', os.environ['FROM_SECRET'], os.environ['FROM_MAP'], os.environ['POD'])"
    pod = step_pod(
        "help",
        ["sh", "-c", 'python -m wpclone.steps --help && python -c "$0"', show_env],
        env=[
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "FROM_MAP", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "mode"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    )
    core.create_namespaced_pod(namespace, pod)
    done = wait_for("the step pod's end", lambda: pod_phase(core, namespace, "help", ("Succeeded", "Failed")))
    assert done.status.phase == "Succeeded"
    assert done.status.container_statuses[0].state.terminated.exit_code == 0
    text = log_text(core, namespace, "help")
    assert "copy-database" in text and "restore-backup" in text  # the steps CLI's own help
    assert "env s3cret database help" in text
    stamped = log_text(core, namespace, "help", timestamps=True, tail_lines=1)
    stamp, _, line = stamped.partition(" ")
    assert stamp.endswith("Z") and line == "env s3cret database help\n"


def test_failing_step_ends_failed_with_its_sentence(
    core: kubernetes.client.CoreV1Api, namespace: str
) -> None:
    """The real copy-database step without its database login: Failed, its exit code, and its one-sentence
    error as the last line of the termination message (FallbackToLogsOnError: the tail of its output)."""
    core.create_namespaced_pod(
        namespace,
        step_pod(
            "fails", ["python", "-m", "wpclone.steps", "copy-database", "http://a.test", "http://b.test"]
        ),
    )
    done = wait_for(
        "the failing pod's end", lambda: pod_phase(core, namespace, "fails", ("Succeeded", "Failed"))
    )
    assert done.status.phase == "Failed"
    terminated = done.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 2 and terminated.reason == "Error"
    assert terminated.message.strip().splitlines()[-1] == (
        "error: Neither SOURCE_DB_PASSWORD nor SOURCE_DB_PASSWORD_FILE is set."
    )


def test_missing_secret_and_unknown_image_keep_the_pod_pending(
    core: kubernetes.client.CoreV1Api, namespace: str
) -> None:
    """What a kubelet reports: a Secret that does not exist, an image that cannot be pulled."""
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    core.create_namespaced_pod(namespace, step_pod("no-secret", ["python", "-c", "pass"], env=env))
    unpullable = step_pod("no-image", ["python", "-c", "pass"])
    unpullable["spec"]["containers"][0]["image"] = "registry.invalid/nothing:1"
    core.create_namespaced_pod(namespace, unpullable)

    def waiting(name: str, reasons: tuple[str, ...]) -> Any:
        statuses = core.read_namespaced_pod(name, namespace).status.container_statuses or []
        state = statuses[0].state.waiting if statuses else None
        return state if state is not None and state.reason in reasons else None

    config = wait_for(
        "CreateContainerConfigError", lambda: waiting("no-secret", ("CreateContainerConfigError",))
    )
    assert config.message == 'secret "absent" not found'
    wait_for("ImagePullBackOff", lambda: waiting("no-image", ("ImagePullBackOff",)))
    assert core.read_namespaced_pod("no-image", namespace).status.phase == "Pending"
    # Once the Secret exists the pod runs, as it would once a kubelet retried.
    core.create_namespaced_secret(namespace, {"metadata": {"name": "absent"}, "stringData": {"k": "v"}})
    wait_for(
        "the pod's start once its Secret exists",
        lambda: pod_phase(core, namespace, "no-secret", ("Succeeded",)),
    )


def test_active_deadline_ends_the_pod(core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    """``activeDeadlineSeconds`` (the restore's content pod has one): the command stopped, the pod Failed."""
    pod = step_pod("slow", ["python", "-c", "import time; time.sleep(3602)"])
    pod["spec"]["activeDeadlineSeconds"] = 1
    core.create_namespaced_pod(namespace, pod)
    done = wait_for("the deadline", lambda: pod_phase(core, namespace, "slow", ("Succeeded", "Failed")))
    assert done.status.phase == "Failed" and done.status.reason == "DeadlineExceeded"
    assert done.status.container_statuses[0].state.terminated.exit_code == 143  # SIGTERM
    assert processes_named("import time; time.sleep(3602)") == []


def test_log_streams_while_the_step_runs(core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    """``KubernetesPodOperator``'s log follower (the provider's PodManager) reads the kubelet port through
    the API server: every line, in order, and it returns when the container ends."""

    script = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.5)"
    core.create_namespaced_pod(namespace, step_pod("talks", ["python", "-c", script]))
    pod = wait_for("the pod's start", lambda: pod_phase(core, namespace, "talks", ("Running", "Succeeded")))
    manager = PodManager(core)
    lines: list[str] = []
    manager._log_message = lambda message, *args: lines.append(message)  # type: ignore[method-assign]
    status = manager.fetch_container_logs(pod, "base", follow=True)
    # (the provider appends the stream's empty tail to the last message: its newline, as on any kubelet)
    assert [line.rstrip("\n") for line in lines] == ["line 0", "line 1", "line 2"]
    assert status.running is False
    assert manager.container_log_times  # the timestamps parsed: a reconnect resumes after them


def test_deployment_reaches_available_replicas_and_deletes(
    core: kubernetes.client.CoreV1Api, namespace: str, cluster: Cluster
) -> None:
    apps = kubernetes.client.AppsV1Api(core.api_client)
    labels = {"app": "sleeper"}
    container = {
        "name": "main",
        "image": TOOLBOX_IMAGE,
        "command": ["python", "-c", "import time; time.sleep(3600)"],
    }
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "sleeper"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    )
    wait_for(
        "the Deployment's available replica",
        lambda: apps.read_namespaced_deployment("sleeper", namespace).status.available_replicas == 1,
    )
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=sleeper").items
    assert pod.status.pod_ip == "127.0.0.1" and pod.spec.node_name == "wpclone-node"
    pid = processes_named("import time; time.sleep(3600)")
    assert len(pid) == 1
    apps.delete_namespaced_deployment("sleeper", namespace, propagation_policy="Foreground")
    wait_for("the pod's removal", lambda: not core.list_namespaced_pod(namespace).items)
    assert processes_named("import time; time.sleep(3600)") == []  # the graceful delete stopped it


def processes_named(marker: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def test_claims_get_volumes_a_step_copies_between(core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    """Two claims get hostPath volumes; the real copy-content step, given the mount paths a step pod gets,
    copies one claim into a subdirectory of the other."""
    paths = {name: bound_claim(core, namespace, name) for name in ("source", "clone")}
    (paths["source"] / "uploads").mkdir()
    (paths["source"] / "uploads" / "a.txt").write_text("hello")
    pod = step_pod(
        "copy",
        ["python", "-m", "wpclone.steps", "copy-content"],
        env=[
            {"name": "SOURCE_CONTENT_DIR", "value": "/content/source"},
            {"name": "TARGET_CONTENT_DIR", "value": "/content/clone/wp-content"},
        ],
        volumeMounts=[
            {"name": "source", "mountPath": "/content/source", "readOnly": True},
            {"name": "clone", "mountPath": "/content/clone"},
        ],
    )
    pod["spec"]["volumes"] = [
        {"name": name, "persistentVolumeClaim": {"claimName": name}} for name in ("source", "clone")
    ]
    core.create_namespaced_pod(namespace, pod)
    done = wait_for("the copy's end", lambda: pod_phase(core, namespace, "copy", ("Succeeded", "Failed")))
    assert done.status.phase == "Succeeded", done.status.container_statuses[0].state.terminated.message
    assert (paths["clone"] / "wp-content" / "uploads" / "a.txt").read_text() == "hello"
    result = json.loads(log_text(core, namespace, "copy").strip().splitlines()[-1])
    assert result["files"] == 1


def test_namespace_deletion_collects_everything(core: kubernetes.client.CoreV1Api, node: str) -> None:
    """Deleting a namespace removes its pods (their processes stopped), claims and, through the agent,
    the volumes made for them and their directories."""
    name = "kt-doomed"
    core.create_namespace({"metadata": {"name": name}})
    directory = bound_claim(core, name, "data")
    volume = core.read_namespaced_persistent_volume_claim("data", name).spec.volume_name
    pod = step_pod(
        "holder",
        ["python", "-c", "import time; time.sleep(3601)"],
        volumeMounts=[{"name": "d", "mountPath": "/d"}],
    )
    pod["spec"]["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
    core.create_namespaced_pod(name, pod)
    wait_for("the holder's start", lambda: pod_phase(core, name, "holder", ("Running",)))
    assert directory.is_dir()
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for("the namespace's removal", gone, timeout=120)
    wait_for(
        "the volume's removal",
        lambda: not any(v.metadata.name == volume for v in core.list_persistent_volume().items),
    )
    assert not directory.exists()
    assert processes_named("import time; time.sleep(3601)") == []


# -- the shipped manifests and RBAC --------------------------------------------------------------------------


def test_shipped_manifests_apply(api: kubernetes.client.ApiClient, shipped: list[dict[str, Any]]) -> None:
    core = kubernetes.client.CoreV1Api(api)
    networking = kubernetes.client.NetworkingV1Api(api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    assert rbac.read_namespaced_role("wpclone-airflow-worker", "wpclone-clones").rules
    policies = {p.metadata.name for p in networking.list_namespaced_network_policy("wpclone-clones").items}
    assert policies == {m["metadata"]["name"] for m in shipped if m["kind"] == "NetworkPolicy"}
    # The backups claim (a class this cluster does not have) is bound by the agent's volume, as a
    # provisioner would; applying everything again changes nothing.
    wait_for(
        "the backups claim bound",
        lambda: (
            core.read_namespaced_persistent_volume_claim("wpclone-backups", "wpclone-clones").status.phase
            == "Bound"
        ),
    )
    before = core.read_namespaced_persistent_volume_claim(
        "wpclone-backups", "wpclone-clones"
    ).metadata.resource_version
    claim = next(m for m in shipped if m["kind"] == "PersistentVolumeClaim")
    apply_manifest(api, claim, dry_run=False)
    after = core.read_namespaced_persistent_volume_claim(
        "wpclone-backups", "wpclone-clones"
    ).metadata.resource_version
    assert after == before
    # An invalid object is refused by the server, not just by our validators.
    broken = json.loads(json.dumps(next(m for m in shipped if m["kind"] == "NetworkPolicy")))
    broken["spec"]["policyTypes"] = ["Sideways"]
    with pytest.raises(ApiException) as refused:
        apply_manifest(api, broken, dry_run=True)
    assert refused.value.status == 422


def test_shipped_role_allows_only_the_clones_namespace(
    worker_kubeconfig: Path, shipped: list[dict[str, Any]]
) -> None:
    """The workers' ServiceAccount named by the shipped RoleBinding, with its own token: the Role's verbs in
    wpclone-clones, 403 outside it."""
    binding = next(m for m in shipped if m["kind"] == "RoleBinding")
    as_worker = kubernetes.client.CoreV1Api(worker_client(worker_kubeconfig))
    as_worker.list_namespaced_pod("wpclone-clones")
    as_worker.create_namespaced_secret(
        "wpclone-clones", {"metadata": {"name": "wpclone-probe"}, "stringData": {"k": "v"}}, dry_run="All"
    )
    for call in (
        lambda: as_worker.list_namespaced_pod("default"),
        lambda: as_worker.list_namespaced_secret(binding["subjects"][0]["namespace"]),
        as_worker.list_namespace,
        lambda: as_worker.list_namespaced_service_account("wpclone-clones"),
    ):
        with pytest.raises(ApiException) as refused:
            call()
        assert refused.value.status == 403
