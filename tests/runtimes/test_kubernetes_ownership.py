"""Never touch what is not ours, on Kubernetes: against kmock (the fixtures of test_kubernetes_lifecycle).

An object under one of a clone's names without our labels (``app.kubernetes.io/managed-by=wpclone`` and
``wpclone.io/clone-id=<id>``) is never overwritten, patched or deleted: the clone is refused with one
sentence naming it, early (``check_clone_names``, what the request validation calls) and again where the
runtime writes. Clone ids whose object names the configuration uses are refused before any API call.
A deleted clone's backups go with it (the content pod purges them on the backups claim), unless the
configuration keeps them; only our pods mount that claim.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kmock as km
import pytest
import yaml
from kubernetes.client import ApiClient

from tests.k8s.test_manifests import MU_PLUGIN, make_plan, make_source
from tests.k8s.test_pod import FakeTI, k8s_config_json
from tests.runtimes.test_kubernetes_lifecycle import (  # fixtures: pytest resolves them by name here
    CONN_ID,
    NAMESPACE,
    emulator,  # noqa: F401
    kubelet,
    live_objects,
    runtime,  # noqa: F401
)
from wpclone.airflow import builders
from wpclone.errors import CloneNameTaken, ForeignObject
from wpclone.k8s import manifests
from wpclone.k8s.pod import StepPodOperator
from wpclone.k8s.settings import KubernetesSettings
from wpclone.models import RuntimeKind, WpcloneConfig
from wpclone.runtimes.base import CLONE_ID_LABEL, MANAGED_BY_LABEL
from wpclone.runtimes.kubernetes import KubernetesRuntime, new_clone_secrets

CLONE = "shop-abc123"
OURS = {MANAGED_BY_LABEL: "wpclone", CLONE_ID_LABEL: CLONE}
WRITES = {"CREATE", "UPDATE", "DELETE"}  # kmock's actions for POST, PATCH/PUT, DELETE
REPO = Path(__file__).resolve().parents[2]

# (kmock resource, kind, name) of the clone's objects an outsider might already have.
FOREIGN = [
    ("v1/secrets", "Secret", f"wpclone-{CLONE}"),
    ("apps/v1/deployments", "Deployment", f"wpclone-{CLONE}"),
    ("v1/persistentvolumeclaims", "PersistentVolumeClaim", f"wpclone-{CLONE}-content"),
    ("v1/configmaps", "ConfigMap", f"wpclone-{CLONE}-site"),
    ("v1/services", "Service", f"wpclone-{CLONE}"),
    ("networking.k8s.io/v1/ingresses", "Ingress", f"wpclone-{CLONE}"),
    ("v1/configmaps", "ConfigMap", f"wpclone-{CLONE}-preview"),
    ("apps/v1/deployments", "Deployment", f"wpclone-{CLONE}-preview"),
    ("v1/services", "Service", f"wpclone-{CLONE}-preview"),
]


SPECS: dict[str, dict[str, Any]] = {  # just enough for the typed client to read each kind back
    "Deployment": {
        "spec": {
            "selector": {"matchLabels": {"app": "theirs"}},
            "template": {
                "metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "theirs", "image": "theirs"}]},
            },
        }
    },
    "Secret": {"data": {"password": "dGhlaXJz"}},
    "ConfigMap": {"data": {"theirs": "yes"}},
    "Service": {"spec": {"ports": [{"port": 80}]}},
    "PersistentVolumeClaim": {"spec": {"accessModes": ["ReadWriteOnce"]}},
    "Ingress": {"spec": {"rules": [{"host": "theirs.example.com"}]}},
}


def foreign_object(kind: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata = {"name": name, "namespace": NAMESPACE, "labels": labels or {"app": "theirs"}}
    return {"kind": kind, "metadata": metadata, **copy.deepcopy(SPECS[kind])}


def writes_to(api: km.KubernetesEmulator, name: str) -> list[str]:
    """Requests that wrote (or tried to write) the object ``name``."""
    return [
        f"{request.method.value} {request.resource.plural if request.resource else '?'}/{name}"
        for request in api
        if request.action is not None and request.action.name in WRITES and request.name == name
    ]


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.mark.asyncio
@pytest.mark.parametrize(("resource", "kind", "name"), FOREIGN)
@pytest.mark.parametrize("labels", [None, {MANAGED_BY_LABEL: "wpclone", CLONE_ID_LABEL: "shop-other1"}])
async def test_an_object_that_is_not_the_clones_is_refused_and_never_touched(
    emulator: km.KubernetesEmulator,  # noqa: F811
    runtime: KubernetesRuntime,  # noqa: F811
    resource: str,
    kind: str,
    name: str,
    labels: dict[str, str] | None,
) -> None:
    """Unlabelled, or another clone's: either way not this clone's."""
    emulator.objects[resource, NAMESPACE, name] = foreign_object(kind, name, labels)
    before = copy.deepcopy(dict(emulator.objects[resource, NAMESPACE, name]))
    sentence = (
        f"{kind}/{name} already exists in namespace {NAMESPACE} and is not clone {CLONE}'s (it lacks the "
        f"labels app.kubernetes.io/managed-by=wpclone and wpclone.io/clone-id={CLONE}); wpclone never "
        "overwrites or deletes it: choose another clone id."
    )

    # Early: what the request validation calls (reads only).
    with pytest.raises(CloneNameTaken) as early:
        await in_thread(runtime.check_clone_names, CLONE)
    assert str(early.value) == sentence
    # Where the runtime first creates objects: refused before anything is written.
    with pytest.raises(CloneNameTaken) as prepared:
        await in_thread(runtime.prepare_clone, make_plan(CLONE))
    assert str(prepared.value) == sentence
    assert live_objects(emulator, **OURS) == []

    # Every write path of the cluster client refuses it too (a clone made before the object appeared).
    plan = make_plan(CLONE)
    cluster = runtime.cluster
    [manifest] = [
        m
        for m in (
            manifests.secret_manifest(plan, runtime.settings, new_clone_secrets()),
            manifests.content_claim_manifest(plan, runtime.settings),
            *manifests.site_manifests(plan, runtime.settings, {}, MU_PLUGIN),
            *manifests.preview_manifests(
                plan,
                runtime.settings,
                {},
                MU_PLUGIN,
                manifests.preview_workload(plan, staged="", live="", node=None),
            ),
        )
        if (m["kind"], m["metadata"]["name"]) == (kind, name)
    ]
    for write in (cluster.apply, cluster.create):
        with pytest.raises(ForeignObject, match=f"^{kind}/{name} already exists"):
            await in_thread(write, manifest)
    with pytest.raises(ForeignObject):
        await in_thread(cluster.patch, kind, name, {"metadata": {"labels": OURS}}, clone_id=CLONE)
    with pytest.raises(ForeignObject):
        await in_thread(cluster.delete, kind, name, clone_id=CLONE)

    # Deleting the clone (its rollback, wp_delete, the orphan sweep) leaves it where it is.
    await in_thread(runtime.delete_clone_objects, CLONE)
    stored = emulator.objects[resource, NAMESPACE, name]
    assert not stored.deleted
    assert dict(stored) == before
    assert writes_to(emulator, name) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(("resource", "kind", "name"), FOREIGN[-3:])
async def test_a_restore_never_previews_over_an_object_that_is_not_the_clones(
    emulator: km.KubernetesEmulator,  # noqa: F811
    runtime: KubernetesRuntime,  # noqa: F811
    tmp_path: Path,
    resource: str,
    kind: str,
    name: str,
) -> None:
    """An object under the preview's names that appeared after the clone was made: the restore's preview is
    refused before anything runs; removing the preview (the switch, the rollback) leaves it and goes on."""
    plan = make_plan(CLONE)
    await in_thread(runtime.prepare_clone, plan)
    await in_thread(runtime.deploy_site, plan, {}, MU_PLUGIN)
    emulator.objects[resource, NAMESPACE, name] = foreign_object(kind, name)
    before = copy.deepcopy(dict(emulator.objects[resource, NAMESPACE, name]))
    async with kubelet(emulator, tmp_path / "claim") as ran:
        with pytest.raises(
            CloneNameTaken, match=f"^{kind}/{name} already exists in namespace {NAMESPACE} and is not"
        ):
            await in_thread(runtime.deploy_preview, plan, {}, MU_PLUGIN)
        assert await in_thread(runtime.remove_preview, CLONE) is False
    assert ran == []  # refused before the content pod
    assert [n for _, n in live_objects(emulator, **OURS) if n.endswith("-preview")] == []
    assert dict(emulator.objects[resource, NAMESPACE, name]) == before
    assert writes_to(emulator, name) == []


@pytest.mark.asyncio
async def test_a_clone_id_naming_another_clones_preview_is_refused(
    emulator: km.KubernetesEmulator,  # noqa: F811
    runtime: KubernetesRuntime,  # noqa: F811
) -> None:
    """Clone ``x-preview``'s site would be named like clone ``x``'s restore preview (both ours, but another
    clone's to each other): refused with a sentence before any call, whether or not x exists."""
    with pytest.raises(CloneNameTaken) as caught:
        await in_thread(runtime.check_clone_names, "shop-preview")
    assert str(caught.value) == (
        "clone id shop-preview would name the Deployment wpclone-shop-preview, which is where restores of "
        "clone shop are previewed; choose another clone id."
    )
    assert len(list(emulator)) == 0
    # "preview" alone is no other clone's preview; a suffix that only looks like it is fine.
    for clone_id in ("preview", "shop-previews", "shop-preview2"):
        await in_thread(runtime.check_clone_names, clone_id)


@pytest.mark.asyncio
async def test_a_source_password_secret_named_like_a_clone_is_refused_before_any_call(
    emulator: km.KubernetesEmulator,  # noqa: F811
) -> None:
    """docs/deploy.md's example: the source's password Secret ``wpclone-source-www``; ``clone_id: source-www``
    would have taken it over, and deleting that clone would have deleted the source's password."""
    source = make_source(
        name="www", db_password_secret="wpclone-source-www", content_claim="wpclone-www-files"
    )
    config = WpcloneConfig(
        runtime=RuntimeKind.KUBERNETES, sources=[source], clone_domain="clones.example.com"
    )
    settings = KubernetesSettings(namespace=NAMESPACE, conn_id=CONN_ID, backup_claim="wpclone-archive")
    k8s = KubernetesRuntime(config, settings)
    secret = {
        "metadata": {"name": "wpclone-source-www", "namespace": NAMESPACE},
        "data": {"password": "cHc="},
    }
    emulator.objects["v1/secrets", NAMESPACE, "wpclone-source-www"] = secret
    refused = {
        "source-www": "would name the Secret wpclone-source-www, which is the name of the database password "
        "Secret of source www",
        "www-files": "would name the Secret wpclone-www-files, which is the name of the wp-content claim of "
        "source www",
        "archive": "would name the Secret wpclone-archive, which is the name of the backups claim",
        "www": "is the name of a source site",
    }
    for clone_id, why in refused.items():
        with pytest.raises(CloneNameTaken) as caught:
            await in_thread(k8s.check_clone_names, clone_id)
        assert str(caught.value) == f"clone id {clone_id} {why}; choose another clone id."
        with pytest.raises(CloneNameTaken):
            await in_thread(k8s.prepare_clone, make_plan(clone_id))
    assert len(list(emulator)) == 0  # refused from the configuration alone: no API call at all
    assert not emulator.objects["v1/secrets", NAMESPACE, "wpclone-source-www"].deleted
    # A clone id naming nothing of anyone's passes (and reads its names once each).
    await in_thread(k8s.check_clone_names, "www-qa1")
    assert {request.name for request in emulator} == {name for _, name in manifests.clone_objects("www-qa1")}
    assert {request.action.name for request in emulator if request.action} == {"FETCH"}


@pytest.mark.asyncio
@pytest.mark.parametrize("keep_after_delete", [False, True])
async def test_a_deleted_clones_backups_go_with_it_unless_kept(
    emulator: km.KubernetesEmulator,  # noqa: F811
    tmp_path: Path,
    keep_after_delete: bool,
) -> None:
    config = WpcloneConfig(
        runtime=RuntimeKind.KUBERNETES,
        sources=[make_source()],
        clone_domain="clones.example.com",
        backups={"keep_after_delete": keep_after_delete},
    )
    k8s = KubernetesRuntime(config, KubernetesSettings(namespace=NAMESPACE, conn_id=CONN_ID))
    k8s.poll_seconds = 0.02
    plan = make_plan(CLONE)
    await in_thread(k8s.prepare_clone, plan)
    await in_thread(k8s.deploy_site, plan, {}, MU_PLUGIN)
    # The backups claim (helm-values/manifests/30-backups.yaml: not labelled, no clone owns it).
    emulator.objects["v1/persistentvolumeclaims", NAMESPACE, "wpclone-backups"] = {
        "metadata": {"name": "wpclone-backups", "namespace": NAMESPACE, "labels": {"app": "wpclone"}}
    }
    backups = tmp_path / "backups"
    for clone_id in (CLONE, "shop-other1"):
        (backups / clone_id).mkdir(parents=True)
        for stamp in ("20260101T000000Z", "20260102T000000Z"):
            (backups / clone_id / f"{clone_id}-{stamp}.tar.gz").write_bytes(b"archive")

    async with kubelet(emulator, tmp_path / "claim", backups) as ran:
        removed = await in_thread(k8s.delete_clone_objects, CLONE)
    assert live_objects(emulator, **OURS) == []
    assert not emulator.objects["v1/persistentvolumeclaims", NAMESPACE, "wpclone-backups"].deleted
    assert len(list((backups / "shop-other1").iterdir())) == 2  # another clone's backups are its own
    if keep_after_delete:
        assert ran == [] and len(list((backups / CLONE).iterdir())) == 2
        assert not [r for r in removed if r.startswith("backups")]
        return
    assert not (backups / CLONE).exists()
    assert removed[-1] == f"backups of {CLONE} (2 files)"
    [pod] = ran
    # The purge pod: ours, the backups claim only (read-write: it removes), on any node (ReadWriteMany).
    spec = pod["spec"]
    assert pod["metadata"]["labels"][CLONE_ID_LABEL] == CLONE
    assert spec["volumes"] == [{"name": "content", "persistentVolumeClaim": {"claimName": "wpclone-backups"}}]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "content", "mountPath": "/backups"}]
    assert spec["containers"][0]["command"][-2:] == ["purge", f"/backups/{CLONE}"]
    assert "affinity" not in spec
    assert emulator.objects["v1/pods", NAMESPACE, f"wpclone-{CLONE}-content"].deleted
    # Deleting again: nothing left to remove, and no error.
    async with kubelet(emulator, tmp_path / "claim", backups):
        assert await in_thread(k8s.delete_clone_objects, CLONE) == []


@pytest.mark.asyncio
async def test_no_backups_claim_no_purge_pod(
    emulator: km.KubernetesEmulator,  # noqa: F811
    runtime: KubernetesRuntime,  # noqa: F811
) -> None:
    await in_thread(runtime.prepare_clone, make_plan(CLONE))
    assert await in_thread(runtime.delete_clone_objects, CLONE) == [
        f"PersistentVolumeClaim/wpclone-{CLONE}-content",
        f"Secret/wpclone-{CLONE}",
    ]
    assert not [key for key in emulator.objects if key[0] == "v1/pods"]


def claims_of(spec: dict[str, Any]) -> set[str]:
    return {
        str(volume["persistentVolumeClaim"]["claimName"])
        for volume in spec.get("volumes") or []
        if volume.get("persistentVolumeClaim")
    }


def test_only_our_short_lived_pods_mount_the_backups_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backups hold password hashes: the claim is mounted by the backup-clone and restore-backup step pods
    (wpclone.k8s.pod) and the purge pod, never by a site, a content pod or Airflow's own pods."""

    settings = KubernetesSettings()
    monkeypatch.setenv("WPCLONE_RUNTIME", "kubernetes")
    monkeypatch.delenv("WPCLONE_CONFIG", raising=False)
    monkeypatch.setenv("WPCLONE_CONFIG_JSON", k8s_config_json())
    dags = [builders.build_clone_dag(), builders.build_backup_dag(), builders.build_restore_dag()]
    mounting: set[str] = set()
    for dag in dags:
        for op in dag.tasks:
            if not isinstance(op, StepPodOperator):
                continue
            context: dict[str, Any] = {"ti": FakeTI(op.task_id, make_plan()), "run_id": "r", "dag": dag}
            context.update(task=op, params={"clone_id": CLONE, "source_backup_url": "https://b.example/x"})
            op.render_template_fields(context)  # type: ignore[arg-type]
            pod = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context, dry_run=True))  # type: ignore[arg-type]
            if settings.backup_claim in claims_of(pod["spec"]):
                mounting.add(op.step_name)
    assert mounting == {"backup-clone", "restore-backup"}

    plan = make_plan()
    site = manifests.site_manifests(plan, settings, {}, MU_PLUGIN)
    deployment = next(m for m in site if m["kind"] == "Deployment")
    assert settings.backup_claim not in claims_of(deployment["spec"]["template"]["spec"])
    for action in manifests.CONTENT_ACTIONS:
        pod = manifests.content_pod_manifest(CLONE, action, settings)
        assert claims_of(pod["spec"]) == {manifests.content_claim_name(CLONE)}
    purge = manifests.content_pod_manifest(CLONE, manifests.PURGE_ACTION, settings)
    assert claims_of(purge["spec"]) == {settings.backup_claim}

    # Airflow's pods (helm-values/airflow.yaml) mount no claim of the clones' namespace at all.
    values = yaml.safe_load((REPO / "helm-values" / "airflow.yaml").read_text())
    assert settings.backup_claim not in yaml.safe_dump([v for k, v in values.items() if k != "env"])
