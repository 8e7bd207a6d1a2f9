"""The cluster tier's fixtures: the local control plane (``wpclone.local.cluster``) and the node agent
(``tests/kube/node_agent.py``), started once per session, and a fresh namespace per test.

A session that finds the tests' cluster stopped starts it from empty (etcd's data wiped) and stops it at
the end; one that finds it running (``make cluster-up`` with the tests' state dir) uses it and leaves it.
The node agent is always the session's own. Without the built binaries the tier fails, it does not skip:
``make test`` builds them (``make kube-build``), so their absence is a broken setup, not a missing external.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from tests.kube.node_agent import NODE_NAME
from wpclone.local.cluster import Cluster, kubeconfig_text, missing_binaries
from wpclone.local.procs import kill_group, pid_from_file
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import _write_private as write_private
from wpclone.settings import REPO_ROOT

TOOLBOX_IMAGE = "wpclone-toolbox:0.1.0"
WORDPRESS_IMAGE = "wordpress:6.1-php8.2-apache"
AGENT_START_TIMEOUT_S = 30.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s", pytrace=False)
        time.sleep(interval)


@pytest.fixture(scope="session")
def cluster(settings: StackSettings) -> Iterator[Cluster]:
    missing = missing_binaries()
    if missing:
        pytest.fail(
            f"the cluster tier needs {', '.join(missing)}: run make kube-build (once per machine, 7-8 "
            "minutes); make test does it.",
            pytrace=False,
        )
    cluster = Cluster(settings)
    ours = not cluster.is_running()
    if ours:
        cluster.reset()
        shutil.rmtree(cluster.base / "node", ignore_errors=True)
    cluster.start()
    yield cluster
    if ours:
        cluster.stop()


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> kubernetes.client.ApiClient:
    """An admin client of the cluster."""
    return kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def core(api: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api)


@pytest.fixture(scope="session")
def node(cluster: Cluster, core: kubernetes.client.CoreV1Api, settings: StackSettings) -> Iterator[str]:
    """The node agent, running and registered (its name); the tests' site host serves WordPress pods."""
    pidfile = cluster.base / "node.pid"
    old = pid_from_file(pidfile, str(cluster.base).encode())
    if old is not None:
        kill_group(old, 20)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)])}
    argv = [
        sys.executable,
        "-m",
        "tests.kube.node_agent",
        f"--kubeconfig={cluster.kubeconfig}",
        f"--toolbox-image={TOOLBOX_IMAGE}",
        f"--wordpress-image={WORDPRESS_IMAGE}",
        f"--stack-state-dir={settings.state_dir}",
    ]
    logfile = cluster.base / "node.log"
    with open(os.devnull, "rb") as devnull, logfile.open("ab") as log:
        agent = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pidfile.write_text(f"{agent.pid}\n")
    started = time.time()
    leases = kubernetes.client.CoordinationV1Api(core.api_client)

    def registered() -> bool:
        """This agent renewed the node's Lease (not a previous session's)."""
        if agent.poll() is not None:
            pytest.fail(f"the node agent exited with {agent.returncode}; see {logfile}", pytrace=False)
        try:
            lease = leases.read_namespaced_lease(NODE_NAME, "kube-node-lease")
        except ApiException:
            return False
        return bool(lease.spec.renew_time.timestamp() >= started - 1)

    wait_for("the node agent's registration", registered, AGENT_START_TIMEOUT_S)
    yield NODE_NAME
    kill_group(agent.pid, 20)
    pidfile.unlink(missing_ok=True)


@pytest.fixture
def namespace(core: kubernetes.client.CoreV1Api, node: str) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (not waited for)."""
    name = f"kt-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def pod_phase(core: kubernetes.client.CoreV1Api, namespace: str, name: str, phases: tuple[str, ...]) -> Any:
    """The pod once its phase is one of ``phases`` (else None): for :func:`wait_for`."""
    pod = core.read_namespaced_pod(name, namespace)
    return pod if pod.status.phase in phases else None


def step_pod(name: str, command: list[str], **container: Any) -> dict[str, Any]:
    """A pod of the toolbox image that runs ``command`` once, as the runtime's step pods do."""
    return {
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "base",
                    "image": TOOLBOX_IMAGE,
                    "command": command,
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    **container,
                }
            ],
        },
    }


def bound_claim(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> Path:
    """A new claim, once the agent's volume is bound to it: the volume's local directory."""
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    core.create_namespaced_persistent_volume_claim(namespace, {"metadata": {"name": name}, "spec": spec})
    volume = wait_for(
        f"claim {name} bound",
        lambda: core.read_namespaced_persistent_volume_claim(name, namespace).spec.volume_name,
    )
    return Path(core.read_persistent_volume(volume).spec.host_path.path)


def log_text(core: kubernetes.client.CoreV1Api, namespace: str, pod: str, **kwargs: Any) -> str:
    """The pod's log through the API server (the client's own decoding garbles non-JSON bodies)."""
    response = core.read_namespaced_pod_log(pod, namespace, _preload_content=False, **kwargs)
    return bytes(response.data).decode()


MANIFESTS = Path(__file__).resolve().parents[2] / "helm-values" / "manifests"


# -- the shipped manifests and the workers' ServiceAccount ---------------------------------------------------


def apply_manifest(api: kubernetes.client.ApiClient, manifest: dict[str, Any], *, dry_run: bool) -> Any:
    """Server-side apply, as the runtime writes (forced, its field manager)."""
    resource = kubernetes.dynamic.DynamicClient(api).resources.get(
        api_version=manifest["apiVersion"], kind=manifest["kind"]
    )
    return resource.patch(
        body=manifest,
        name=manifest["metadata"]["name"],
        namespace=manifest["metadata"].get("namespace"),
        content_type="application/apply-patch+yaml",
        field_manager="wpclone-tests",
        force=True,
        dry_run="All" if dry_run else None,
    )


@pytest.fixture(scope="session")
def shipped(api: kubernetes.client.ApiClient, node: str) -> list[dict[str, Any]]:
    """Every manifest of helm-values/manifests/ (and optional/), applied after a server-side dry run."""
    manifests = [
        doc
        for path in sorted(MANIFESTS.rglob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    assert {m["kind"] for m in manifests} >= {
        "Namespace",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "PersistentVolumeClaim",
    }
    for manifest in manifests:
        if manifest["kind"] == "Namespace":  # what the others are dry-run in must exist
            apply_manifest(api, manifest, dry_run=False)
    for manifest in manifests:
        apply_manifest(api, manifest, dry_run=True)
    for manifest in manifests:
        apply_manifest(api, manifest, dry_run=False)
    return manifests


def account_token(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> str:
    """The ServiceAccount's token, the account (and its namespace) made first if need be."""
    for create, args in (
        (core.create_namespace, ({"metadata": {"name": namespace}},)),
        (core.create_namespaced_service_account, (namespace, {"metadata": {"name": name}})),
    ):
        try:
            create(*args)
        except ApiException as exc:
            assert exc.status == 409  # made by an earlier test or session on this cluster
    return str(wait_for(f"{name}'s token", lambda: service_account_token(core, namespace, name)))


def service_account_token(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> str | None:
    """The token the token controller made for the account (Kubernetes 1.20 still makes one per account)."""
    account = core.read_namespaced_service_account(name, namespace)
    for ref in account.secrets or []:
        secret = core.read_namespaced_secret(ref.name, namespace)
        if secret.type == "kubernetes.io/service-account-token" and (secret.data or {}).get("token"):
            return base64.b64decode(secret.data["token"]).decode()
    return None


@pytest.fixture(scope="session")
def worker_kubeconfig(
    core: kubernetes.client.CoreV1Api, cluster: Cluster, shipped: list[dict[str, Any]]
) -> Path:
    """A kubeconfig with the token of the ServiceAccount the shipped RoleBinding names (made here): what the
    Airflow workers' calls run as in production, so a permission the Role lacks is a 403 here too."""
    binding = next(m for m in shipped if m["kind"] == "RoleBinding")
    subject = next(s for s in binding["subjects"] if s["name"] == "airflow-worker")
    token = account_token(core, subject["namespace"], subject["name"])
    path = cluster.base / "worker.kubeconfig"
    user = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
    write_private(path, kubeconfig_text(cluster.server, cluster.ca_file.read_bytes(), user, token))
    return path


def worker_client(worker_kubeconfig: Path) -> kubernetes.client.ApiClient:
    """A client of the cluster as the workers' ServiceAccount."""
    return kubernetes.config.new_client_from_config(config_file=str(worker_kubeconfig))
