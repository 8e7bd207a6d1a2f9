"""Every manifest wpclone generates, dry-run on the server as the Airflow workers' ServiceAccount.

The shipped manifests are dry-run and applied by the ``shipped`` fixture (tests/kube/conftest.py); here
the generated ones: a clone's Secret, claim, ConfigMap, Deployment, Service and Ingress, a restore's
preview, the content pod of each action and the pod of each step, as the operator builds it. Each is
created with ``dryRun=All`` in the clones' namespace with the token of the ServiceAccount the shipped
RoleBinding names: the server validates the object (its 1.20 schema and admission) and RBAC allows the
create (a Role without it would fail here as it would in production).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.k8s.test_manifests import all_manifests, make_plan, make_source, preview_of
from tests.k8s.test_pod import build
from tests.kube.conftest import worker_client
from wpclone.airflow import builders
from wpclone.k8s import manifests
from wpclone.k8s.settings import KubernetesSettings
from wpclone.models import RuntimeKind, WpcloneConfig
from wpclone.runtimes.kubernetes import KubernetesRuntime

SETTINGS = KubernetesSettings()
STEPS = (builders.COPY_DATABASE, builders.COPY_CONTENT, builders.BACKUP_CLONE, builders.LOAD_BACKUP)


def generated() -> list[dict[str, Any]]:
    plan = make_plan("kr-dryrun")
    runtime = KubernetesRuntime(
        WpcloneConfig(
            runtime=RuntimeKind.KUBERNETES, sources=[make_source()], clone_domain="clones.example.com"
        ),
        SETTINGS,
    )
    actions = (*manifests.CONTENT_ACTIONS, manifests.PURGE_ACTION)
    return [
        *all_manifests(plan, SETTINGS),
        *preview_of(plan, SETTINGS),
        *(manifests.content_pod_manifest(plan.clone_id, action, SETTINGS) for action in actions),
        *({"apiVersion": "v1", "kind": "Pod", **build(runtime, step, plan)[2]} for step in STEPS),
    ]


def test_every_generated_manifest_passes_a_server_side_dry_run_as_the_workers(
    worker_kubeconfig: Path,
) -> None:
    dynamic = kubernetes.dynamic.DynamicClient(worker_client(worker_kubeconfig))
    made = generated()
    kinds = {m["kind"] for m in made}
    assert kinds == {
        "Secret",
        "PersistentVolumeClaim",
        "ConfigMap",
        "Deployment",
        "Service",
        "Ingress",
        "Pod",
    }
    for manifest in made:
        resource = dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        answer = resource.create(body=manifest, namespace=SETTINGS.namespace, dry_run="All")
        assert answer.metadata.name == manifest["metadata"]["name"] or manifest["metadata"].get(
            "generateName"
        )
    # The server refuses what is wrong: the same Deployment with an invalid label value.
    broken = next(m for m in made if m["kind"] == "Deployment")
    broken = {**broken, "metadata": {**broken["metadata"], "labels": {"wpclone.io/clone-id": "-bad-"}}}
    resource = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
        resource.create(body=broken, namespace=SETTINGS.namespace, dry_run="All")
    assert refused.value.status == 422
