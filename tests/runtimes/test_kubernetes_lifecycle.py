"""A clone's site lifecycle against the kmock Kubernetes API emulator, through the provider's KubernetesHook.

kmock serves the Kubernetes API over HTTP in this process; the hook reaches it through an Airflow
connection (``AIRFLOW_CONN_<ID>`` with a kubeconfig path), exactly as it reaches a real cluster. The
runtime's blocking client calls run in a thread while the emulator runs on the event loop.

A restore's part is covered too, in the order of ``wp_restore``: the restore login added to the clone's
Secret (once), the load step's backup URL handed over through that Secret, the private preview of the
restored site (deployed on the site's node, rolled out, removed before the switch), the wp-content switch,
switch back and discard by the content pod, whose kubelet is simulated here by running its program
(:mod:`wpclone.k8s.content`) on a directory that stands for the clone's claim, and the site rolled when its
live tree changed.

Every API request the runtime makes is recorded (verb, group, resource) and written to
``.local/artifacts/k8s_api_requests.json``; the test holds them equal to
``wpclone.k8s.apply.API_PERMISSIONS``, the table the Airflow workers' RBAC Role is derived from.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kmock as km
import pytest

from tests.k8s.test_manifests import MU_PLUGIN, make_plan, make_source
from wpclone.errors import ContentError, KubernetesError
from wpclone.k8s import content, manifests
from wpclone.k8s.apply import API_PERMISSIONS
from wpclone.k8s.pod import StepPodOperator, step_pod_operator
from wpclone.k8s.settings import KubernetesSettings
from wpclone.models import RuntimeKind, WpcloneConfig
from wpclone.runtimes.base import CLONE_ID_LABEL, MANAGED_BY_LABEL, CloneSecrets
from wpclone.runtimes.kubernetes import KubernetesRuntime
from wpclone.runtimes.stepspec import ContentRole, DbRole, PlanValue, Step

NAMESPACE = "wpclone-test"
CONN_ID = "wpclone_kmock"
ARTIFACT = Path(__file__).resolve().parents[2] / ".local" / "artifacts" / "k8s_api_requests.json"
VERBS = {
    "LIST": "list",
    "FETCH": "get",
    "CREATE": "create",
    "UPDATE": "patch",
    "DELETE": "delete",
    "WATCH": "watch",
}
DEPLOYMENTS = "apps/v1/deployments"
PODS = "v1/pods"
READY = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
STAGING = {"WP_ENVIRONMENT_TYPE": "staging"}
PREVIEW = "wpclone-shop-abc123-preview"
BACKUP_URL = "https://backups.example.com/shop.tar.gz?X-Amz-Signature=t0ken-in-the-query"
LOAD_BACKUP = Step(
    task_id="load_backup",
    step="restore-backup",
    arguments=(PlanValue.CLONE_URL,),
    db_env={"TARGET_DB": DbRole.RESTORE},
    content={"TARGET_CONTENT_DIR": ContentRole.CLONE},
    param_env={"WPCLONE_BACKUP_URL": "source_backup_url"},
)


class Recorder:
    """Runs runtime calls in a thread and records the API requests each one made."""

    def __init__(self, emulator: km.KubernetesEmulator) -> None:
        self.emulator = emulator
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        before = len(list(self.emulator))
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        finally:
            for request in list(self.emulator)[before:]:
                resource = request.resource
                self.requests.append(
                    {
                        "call": getattr(fn, "__name__", str(fn)),
                        "method": str(request.method.value),
                        "verb": VERBS.get(request.action.name if request.action else "", "?"),
                        "group": resource.group if resource else None,
                        "resource": resource.plural if resource else None,
                        "namespace": request.namespace,
                        "name": request.name,
                    }
                )

    def rules(self) -> set[tuple[str, str, str]]:
        return {(r["group"], r["resource"], r["verb"]) for r in self.requests}


@pytest.fixture
def emulator(
    kmock: km.KubernetesEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> km.KubernetesEmulator:
    """kmock with the standard resources known, reachable as Airflow connection ``CONN_ID``."""
    kmock.resources.load_bundled()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "airflow", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "airflow"}}],
        "current-context": "kmock",
    }
    path = tmp_path / "kubeconfig.json"
    path.write_text(json.dumps(kubeconfig))
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(path)}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    return kmock


@pytest.fixture
def runtime(emulator: km.KubernetesEmulator) -> KubernetesRuntime:
    config = WpcloneConfig(
        runtime=RuntimeKind.KUBERNETES, sources=[make_source()], clone_domain="clones.example.com"
    )
    runtime = KubernetesRuntime(config, KubernetesSettings(namespace=NAMESPACE, conn_id=CONN_ID))
    runtime.poll_seconds = 0.02
    return runtime


@contextlib.asynccontextmanager
async def kubelet(
    emulator: km.KubernetesEmulator, claim: Path, backups: Path | None = None
) -> AsyncIterator[list[dict[str, Any]]]:
    """Runs each content pod the runtime creates: its program on ``claim`` (the clone's content claim) or,
    for a purge, under ``backups`` (the backups claim, mounted at ``/backups``), its answer as the
    container's termination message. Yields the pods it ran."""
    ran: list[dict[str, Any]] = []

    async def run() -> None:
        while True:
            for (resource, _ns, name), obj in list(emulator.objects.items()):
                if str(resource.plural) != "pods" or obj.deleted or obj.get("status"):
                    continue
                if not name.endswith("-content"):
                    continue
                container = obj["spec"]["containers"][0]
                _python, _m, _module, action, root = container["command"]
                if action == manifests.PURGE_ACTION:
                    assert backups is not None and root.startswith("/backups/")
                    local = backups / root.removeprefix("/backups/")
                else:
                    assert root == manifests.CONTENT_POD_ROOT
                    local = claim
                try:
                    code, message = 0, json.dumps(content.run(action, local))
                except ContentError as exc:
                    code, message = 1, f"error: {exc}"
                ran.append(dict(obj))
                terminated = {"exitCode": code, "message": message}
                obj.patch(
                    {
                        "status": {
                            "phase": "Succeeded" if code == 0 else "Failed",
                            "containerStatuses": [
                                {
                                    "name": "content",
                                    "image": container["image"],
                                    "imageID": "",
                                    "ready": False,
                                    "restartCount": 0,
                                    "state": {"terminated": terminated},
                                }
                            ],
                        }
                    }
                )
            await asyncio.sleep(0.01)

    task = asyncio.create_task(run())
    try:
        yield ran
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def claim_with_staged_restore(root: Path) -> Path:
    """The clone's claim after the restore step: the live tree and the staged one beside it."""
    (root / "wp-content" / "uploads").mkdir(parents=True)
    (root / "wp-content" / "uploads" / "a.txt").write_text("before")
    (root / "wp-content.restore-new" / "uploads").mkdir(parents=True)
    (root / "wp-content.restore-new" / "uploads" / "a.txt").write_text("restored")
    (root / ".restore-work").mkdir()
    return root


def load_backup_operator(runtime: KubernetesRuntime) -> StepPodOperator:
    op = step_pod_operator(LOAD_BACKUP, plan_xcom="validate_request", settings=runtime.settings)
    op.labels = {**op.labels, CLONE_ID_LABEL: "shop-abc123"}  # as rendered from the plan
    return op


def content_revision(emulator: km.KubernetesEmulator, name: str = "wpclone-shop-abc123") -> str | None:
    deployment = emulator.objects[DEPLOYMENTS, NAMESPACE, name]
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    value = annotations.get(manifests.CONTENT_REVISION_ANNOTATION)
    return None if value is None else str(value)


def site_objects(emulator: km.KubernetesEmulator) -> dict[str, Any]:
    """The live site's ConfigMap, Deployment, Service and Ingress as stored now."""
    site = "wpclone-shop-abc123"
    keys = [
        ("v1/configmaps", f"{site}-site"),
        (DEPLOYMENTS, site),
        ("v1/services", site),
        ("networking.k8s.io/v1/ingresses", site),
    ]
    return {
        resource: copy.deepcopy(dict(emulator.objects[resource, NAMESPACE, name])) for resource, name in keys
    }


def preview_objects(emulator: km.KubernetesEmulator) -> list[tuple[str, str]]:
    return [(kind, name) for kind, name in live_objects(emulator) if name.startswith(PREVIEW)]


async def restore_cycle(
    call: Recorder, emulator: km.KubernetesEmulator, runtime: KubernetesRuntime, claim: Path
) -> str:
    """A restore's runtime calls on clone shop-abc123 (deployed, its site pod on node-a), in wp_restore's
    order: the restore login (prepare_restore), the backup URL handed to the load step (load_backup), the
    preview deployed, retried and rolled out (deploy_preview, await_preview_ready), removed, then the switch
    (switch_restore), a retried switch, switch back (a rollback), discard with the preview removed again
    (the leftovers of finish_restore or the rollback). Returns the restore login's password."""
    plan = make_plan("shop-abc123")
    secret = emulator.objects["v1/secrets", NAMESPACE, "wpclone-shop-abc123"]
    password = await call(runtime.restore_db_password, "shop-abc123")
    assert await call(runtime.restore_db_password, "shop-abc123") == password  # generated once
    stored = secret["data"][manifests.RESTORE_PASSWORD_KEY]
    assert base64.b64decode(stored).decode() == password

    op = load_backup_operator(runtime)
    await call(op.publish_params, {"params": {"source_backup_url": BACKUP_URL}})
    key = manifests.param_secret_key("WPCLONE_BACKUP_URL")
    assert base64.b64decode(secret["data"][key]).decode() == BACKUP_URL

    claim_with_staged_restore(claim)
    site = site_objects(emulator)
    async with kubelet(emulator, claim) as ran:
        # The preview: the restore's database and staged tree, private, on the site's node.
        await call(runtime.deploy_preview, plan, STAGING, MU_PLUGIN)
        assert preview_objects(emulator) == [
            ("configmaps", PREVIEW),
            ("deployments", PREVIEW),
            ("services", PREVIEW),
        ]
        deployment = emulator.objects[DEPLOYMENTS, NAMESPACE, PREVIEW]
        template = deployment["spec"]["template"]
        mounts = {m["mountPath"]: m for m in template["spec"]["containers"][0]["volumeMounts"]}
        assert mounts[manifests.CONTENT_MOUNT]["subPath"] == "wp-content.restore-new"
        staged = str((claim / "wp-content.restore-new").stat().st_ino)
        assert content_revision(emulator, PREVIEW) == staged
        terms = template["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["node-a"]
        env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
        assert env["WORDPRESS_DB_NAME"]["value"] == "wpr_shop_abc123"
        assert (
            env["WORDPRESS_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == manifests.RESTORE_PASSWORD_KEY
        )
        # Ready once rolled out (the Deployment controller simulated), never before.
        assert await call(runtime.site_ready, plan, preview=True) is False
        deployment.patch({"status": READY})
        assert await call(runtime.site_ready, plan, preview=True) is True
        # A retried deploy converges: the same objects, the same tree.
        await call(runtime.deploy_preview, plan, STAGING, MU_PLUGIN)
        assert len(preview_objects(emulator)) == 3 and content_revision(emulator, PREVIEW) == staged
        assert site_objects(emulator) == site  # the live site never changed
        assert (claim / "wp-content/uploads/a.txt").read_text() == "before"
        # switch_restore: the preview goes first (its tree becomes the live one).
        assert await call(runtime.remove_preview, "shop-abc123") is True
        assert preview_objects(emulator) == []
        assert await call(runtime.site_ready, plan, preview=True) is False

        assert await call(runtime.switch_content, "shop-abc123", restored=True) is True
        assert (claim / "wp-content/uploads/a.txt").read_text() == "restored"
        assert (claim / "wp-content.restore-old/uploads/a.txt").read_text() == "before"
        switched = str((claim / "wp-content").stat().st_ino)
        assert content_revision(emulator) == switched  # the site's pod is rolled onto the new tree
        # A retried switch moves nothing and rolls nothing.
        assert await call(runtime.switch_content, "shop-abc123", restored=True) is False
        assert content_revision(emulator) == switched
        # A rollback puts the previous tree back and rolls the site onto it.
        assert await call(runtime.switch_content, "shop-abc123", restored=False) is True
        assert (claim / "wp-content/uploads/a.txt").read_text() == "before"
        assert content_revision(emulator) == str((claim / "wp-content").stat().st_ino) != switched
        assert await call(runtime.remove_preview, "shop-abc123") is False  # already gone: a no-op
        await call(runtime.discard_restore_content, "shop-abc123")
    assert sorted(p.name for p in claim.iterdir()) == ["wp-content"]
    assert [pod["spec"]["containers"][0]["command"][3] for pod in ran] == [
        "inspect",
        "inspect",
        "switch",
        "switch",
        "switch-back",
        "discard",
    ]
    for pod in ran:  # on the site's node: the claim is ReadWriteOnce
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["node-a"]
    assert not [
        k for k, o in emulator.objects.items() if k[0] == PODS and k[2].endswith("-content") and not o.deleted
    ]
    # The run's params are gone from the Secret; the restore login stays for the next restore.
    assert key not in secret["data"]
    assert secret["data"][manifests.RESTORE_PASSWORD_KEY] == stored
    return str(password)


def add_site_pod(emulator: km.KubernetesEmulator, clone_id: str = "shop-abc123") -> None:
    labels = {MANAGED_BY_LABEL: "wpclone", CLONE_ID_LABEL: clone_id, "app.kubernetes.io/component": "site"}
    emulator.objects[PODS, NAMESPACE, f"wpclone-{clone_id}-5d8f-x2"] = {
        "metadata": {"name": f"wpclone-{clone_id}-5d8f-x2", "labels": labels},
        "spec": {"nodeName": "node-a", "containers": [{"name": "wordpress", "image": "wordpress"}]},
        "status": {"phase": "Running"},
    }


def live_objects(emulator: km.KubernetesEmulator, **labels: str) -> list[tuple[str, str]]:
    """(resource, name) of every stored, not deleted object carrying ``labels``."""
    found: list[tuple[str, str]] = []
    for (resource, _namespace, name), obj in emulator.objects.items():
        if obj.deleted:
            continue
        have = (obj.get("metadata") or {}).get("labels") or {}
        if all(have.get(k) == v for k, v in labels.items()):
            found.append((str(resource.plural), name))
    return sorted(found)


def secret_values(secrets: CloneSecrets) -> list[str]:
    return [secrets.db_password, secrets.admin_password, *secrets.salts.values()]


@pytest.mark.asyncio
async def test_site_lifecycle(
    emulator: km.KubernetesEmulator,
    runtime: KubernetesRuntime,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG, logger="wpclone")
    caplog.set_level(logging.INFO)
    call = Recorder(emulator)
    plan = make_plan("shop-abc123")
    other = make_plan("shop-other1")
    managed = {MANAGED_BY_LABEL: "wpclone"}

    # Somebody else's object in the namespace, and the source's own Secret (not ours: no labels).
    emulator.objects["v1/configmaps", NAMESPACE, "unrelated"] = {"metadata": {"name": "unrelated"}}
    source_password = "s3cret-source-pw"
    emulator.objects["v1/secrets", NAMESPACE, "shop-db"] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-db", "namespace": NAMESPACE},
        "data": {"password": "czNjcmV0LXNvdXJjZS1wdw=="},
    }

    # prepare_clone: Secret + content claim; deploy_site: ConfigMap, Deployment, Service, Ingress.
    secrets = await call(runtime.prepare_clone, plan)
    await call(runtime.deploy_site, plan, STAGING, MU_PLUGIN)
    await call(runtime.prepare_clone, other)
    await call(runtime.deploy_site, other, {}, MU_PLUGIN)
    mine = {CLONE_ID_LABEL: "shop-abc123"}
    assert live_objects(emulator, **managed, **mine) == [
        ("configmaps", "wpclone-shop-abc123-site"),
        ("deployments", "wpclone-shop-abc123"),
        ("ingresses", "wpclone-shop-abc123"),
        ("persistentvolumeclaims", "wpclone-shop-abc123-content"),
        ("secrets", "wpclone-shop-abc123"),
        ("services", "wpclone-shop-abc123"),
    ]
    for (resource, _ns, name), obj in emulator.objects.items():
        if name.startswith("wpclone-shop-abc123"):
            annotations = obj["metadata"]["annotations"]
            assert annotations["wpclone.io/expires-at"] == "2030-01-02T03:04:05Z", resource
    deployment = emulator.objects[DEPLOYMENTS, NAMESPACE, "wpclone-shop-abc123"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "wordpress:6.1-php8.2-apache"

    # Retries converge: the same secrets come back, the site re-applies in place.
    again = await call(runtime.prepare_clone, plan)
    assert again == secrets
    assert dict(again.salts) == dict(secrets.salts)
    await call(runtime.deploy_site, plan, {"WP_ENVIRONMENT_TYPE": "staging"}, MU_PLUGIN)
    assert len(live_objects(emulator, **managed, **mine)) == 6

    # Not ready until the Deployment controller (simulated) reports a ready replica.
    assert await call(runtime.site_ready, plan) is False
    ready = READY
    deployment.patch({"status": ready})
    assert await call(runtime.site_ready, plan) is True

    # A restore (after its backup: a step pod, no call of the runtime's): login, URL, switch, back, discard.
    add_site_pod(emulator)
    restore_password = await restore_cycle(call, emulator, runtime, tmp_path / "claim")
    # While the site rolls onto another tree, the old pod (old wp-content) does not count as ready.
    deployment.patch({"status": {"replicas": 2, "updatedReplicas": 1, "readyReplicas": 1}})
    assert await call(runtime.site_ready, plan) is False
    deployment.patch({"status": ready})
    assert await call(runtime.site_ready, plan) is True

    assert await call(runtime.list_clone_ids) == {"shop-abc123", "shop-other1"}

    # A step pod left behind by a killed worker is the clone's too.
    emulator.objects["v1/pods", NAMESPACE, "wpclone-copy-content-x1"] = {
        "metadata": {"name": "wpclone-copy-content-x1", "labels": {**managed, **mine}}
    }

    removed = await call(runtime.delete_clone_objects, "shop-abc123")
    assert removed == [
        "Ingress/wpclone-shop-abc123",
        "Service/wpclone-shop-abc123",
        "Deployment/wpclone-shop-abc123",
        "Pod/wpclone-shop-abc123-5d8f-x2",
        "Pod/wpclone-copy-content-x1",
        "ConfigMap/wpclone-shop-abc123-site",
        "PersistentVolumeClaim/wpclone-shop-abc123-content",
        "Secret/wpclone-shop-abc123",
    ]
    assert live_objects(emulator, **managed, **mine) == []
    assert await call(runtime.site_ready, plan) is False
    assert await call(runtime.list_clone_ids) == {"shop-other1"}
    # The other clone and objects that are not ours are untouched.
    assert len(live_objects(emulator, **managed, **{CLONE_ID_LABEL: "shop-other1"})) == 6
    assert not emulator.objects["v1/configmaps", NAMESPACE, "unrelated"].deleted
    assert not emulator.objects["v1/secrets", NAMESPACE, "shop-db"].deleted
    # Deleting again is a no-op.
    assert await call(runtime.delete_clone_objects, "shop-abc123") == []
    # A content pod that stays Pending is explained by its events (a real scheduler's: tests/kube).
    assert await call(runtime.cluster.pod_events, "wpclone-shop-abc123-content") == []

    # No secret value in any log line (ours, the hook's, the emulator's access log), however logging is
    # routed (Airflow's structlog setup writes to the process's stdout/stderr).
    out, err = capfd.readouterr()
    logged = "\n".join([out, err, *(record.getMessage() for record in caplog.records)])
    assert "event=applied" in logged
    for value in [*secret_values(secrets), source_password, restore_password, BACKUP_URL, "t0ken"]:
        assert value not in logged

    # The API calls, for the workers' RBAC Role: exactly the declared table.
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(call.requests, indent=1) + "\n")
    declared = {(group, resource, verb) for group, resource, verbs in API_PERMISSIONS for verb in verbs}
    recorded = {(group or "", resource, verb) for group, resource, verb in call.rules()}
    assert recorded - declared == set(), "requests the RBAC table does not allow"
    assert declared - recorded == set(), "RBAC grants the runtime never used"


@pytest.mark.asyncio
async def test_api_errors_become_sentences_without_secret_values(
    emulator: km.KubernetesEmulator, runtime: KubernetesRuntime
) -> None:
    forbidden = {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "secrets is forbidden"}
    emulator[f"post /api/v1/namespaces/{NAMESPACE}/secrets"] << 403 << forbidden
    with pytest.raises(KubernetesError) as caught:
        await asyncio.to_thread(runtime.prepare_clone, make_plan("shop-abc123"))
    message = str(caught.value)
    assert message.startswith("Kubernetes refused to create Secret wpclone-test/wpclone-shop-abc123 (403")
    assert message.endswith(".")
    assert "forbidden" not in message  # a Secret's error body is never quoted


def test_runtime_basics() -> None:
    config = WpcloneConfig(
        runtime=RuntimeKind.KUBERNETES, clone_domain="clones.example.com", clone_scheme="https"
    )
    runtime = KubernetesRuntime(config, KubernetesSettings(namespace="clones"))
    assert runtime.kind is RuntimeKind.KUBERNETES
    assert runtime.db_user_host == "%"
    assert runtime.clone_url("shop-abc123") == "https://shop-abc123.clones.example.com"
    assert runtime.secret_location("shop-abc123", "admin-password") == (
        "secret/wpclone-shop-abc123 key admin-password in namespace clones"
    )
    with pytest.raises(ValueError, match="not valid"):
        runtime.clone_url("../x")
    with pytest.raises(ValueError, match="clone_domain is not configured"):
        KubernetesRuntime(WpcloneConfig(runtime=RuntimeKind.KUBERNETES), KubernetesSettings()).clone_url(
            "abc"
        )
    assert manifests.label_selector("shop-abc123").startswith("app.kubernetes.io/managed-by=wpclone")


@pytest.mark.asyncio
async def test_a_failed_content_pod_is_one_sentence_and_leftovers_are_replaced(
    emulator: km.KubernetesEmulator, runtime: KubernetesRuntime, tmp_path: Path
) -> None:
    plan = make_plan("shop-abc123")
    await asyncio.to_thread(runtime.prepare_clone, plan)
    await asyncio.to_thread(runtime.deploy_site, plan, {}, MU_PLUGIN)
    name = "wpclone-shop-abc123-content"
    # A finished pod of a killed worker's try is removed first; the new one runs.
    labels = {MANAGED_BY_LABEL: "wpclone", CLONE_ID_LABEL: "shop-abc123"}
    emulator.objects[PODS, NAMESPACE, name] = {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "content", "image": "toolbox"}]},
        "status": {"phase": "Succeeded"},
    }
    claim = claim_with_staged_restore(tmp_path / "claim")
    async with kubelet(emulator, claim) as ran:
        assert await asyncio.to_thread(runtime.switch_content, "shop-abc123", restored=True) is True
    assert len(ran) == 1
    # The claim is not there (the program says so): one sentence, the pod removed.
    async with kubelet(emulator, tmp_path / "not-mounted"):
        with pytest.raises(KubernetesError) as caught:
            await asyncio.to_thread(runtime.discard_restore_content, "shop-abc123")
    assert str(caught.value) == (
        f"The wp-content discard of clone shop-abc123 failed: the clone's claim is not mounted at "
        f"{tmp_path / 'not-mounted'}."
    )
    assert emulator.objects[PODS, NAMESPACE, name].deleted
    # Somebody else's pod of that name is never touched.
    emulator.objects[PODS, NAMESPACE, name] = {
        "metadata": {"name": name, "labels": {"app": "theirs"}},
        "spec": {"containers": [{"name": "x", "image": "x"}]},
    }
    with pytest.raises(KubernetesError, match="is not clone shop-abc123's"):
        await asyncio.to_thread(runtime.switch_content, "shop-abc123", restored=False)
    assert not emulator.objects[PODS, NAMESPACE, name].deleted


@pytest.mark.asyncio
async def test_a_preview_follows_the_staged_tree_and_goes_with_the_clone(
    emulator: km.KubernetesEmulator, runtime: KubernetesRuntime, tmp_path: Path
) -> None:
    """A database-only backup is previewed on the live tree (the switch keeps it); a preview left from an
    earlier try is rolled onto the tree staged now; a clone's delete removes a leftover preview, pod too."""
    plan = make_plan("shop-abc123")
    await asyncio.to_thread(runtime.prepare_clone, plan)
    await asyncio.to_thread(runtime.deploy_site, plan, STAGING, MU_PLUGIN)
    add_site_pod(emulator)
    claim = tmp_path / "claim"
    (claim / "wp-content").mkdir(parents=True)

    def served() -> str:
        template = emulator.objects[DEPLOYMENTS, NAMESPACE, PREVIEW]["spec"]["template"]
        mounts = template["spec"]["containers"][0]["volumeMounts"]
        return next(str(m["subPath"]) for m in mounts if m["mountPath"] == manifests.CONTENT_MOUNT)

    async with kubelet(emulator, claim):
        await asyncio.to_thread(runtime.deploy_preview, plan, STAGING, MU_PLUGIN)
        assert (
            served() == "wp-content"
        )  # nothing staged: the live tree, never an empty one made by the kubelet
        assert content_revision(emulator, PREVIEW) == str((claim / "wp-content").stat().st_ino)
        # The next try staged a tree: the same preview is rolled onto it.
        (claim / "wp-content.restore-new").mkdir()
        await asyncio.to_thread(runtime.deploy_preview, plan, STAGING, MU_PLUGIN)
        assert served() == "wp-content.restore-new"
        first = str((claim / "wp-content.restore-new").stat().st_ino)
        assert content_revision(emulator, PREVIEW) == first
        # And onto another one staged in its place (the mount of the old pod would hold the removed tree).
        (claim / "next").mkdir()
        (claim / "wp-content.restore-new").rmdir()
        (claim / "next").rename(claim / "wp-content.restore-new")
        await asyncio.to_thread(runtime.deploy_preview, plan, STAGING, MU_PLUGIN)
        assert content_revision(emulator, PREVIEW) not in (first, None)

    # The preview's pod, as its ReplicaSet would have made it: the clone's, component preview.
    labels = manifests.site_selector("shop-abc123", manifests.PREVIEW_COMPONENT)
    pod = f"{PREVIEW}-7c9d-x1"
    emulator.objects[PODS, NAMESPACE, pod] = {
        "metadata": {"name": pod, "labels": labels},
        "spec": {"nodeName": "node-a", "containers": [{"name": "wordpress", "image": "wordpress"}]},
        "status": {"phase": "Running"},
    }
    assert await asyncio.to_thread(runtime.list_clone_ids) == {"shop-abc123"}
    removed = await asyncio.to_thread(runtime.delete_clone_objects, "shop-abc123")
    for gone in (f"Service/{PREVIEW}", f"Deployment/{PREVIEW}", f"Pod/{pod}", f"ConfigMap/{PREVIEW}"):
        assert gone in removed
    assert live_objects(emulator, **{CLONE_ID_LABEL: "shop-abc123"}) == []
    assert await asyncio.to_thread(runtime.remove_preview, "shop-abc123") is False
