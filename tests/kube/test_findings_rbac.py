"""Issue 14's findings 2 and 5 against the real API server's RBAC, with the shipped Role and RoleBinding.

Finding 2: deferrable mode (``WPCLONE_K8S_DEFERRABLE=true``) watches the step pods from the triggerer, as
the triggerer's ServiceAccount: the provider's trigger runs here with that account's own token.
Finding 5: server-side apply needs ``create`` (an apply that would create the object is authorized as
``create``), which a Role without it shows.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import secrets
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from kubernetes.client.exceptions import ApiException

from tests.deploy.test_manifests_rbac import trigger_rules
from tests.kube.conftest import MANIFESTS, account_token, pod_phase, step_pod
from wpclone.local.cluster import Cluster
from wpclone.settings import REPO_ROOT

NAMESPACE = "wpclone-clones"
CONN_ID = "wpclone_triggerer"
TRIGGERER = {"kind": "ServiceAccount", "name": "airflow-triggerer", "namespace": "airflow"}


def allowed(api: kubernetes.client.ApiClient, user: str, group: str, resource: str, verb: str) -> bool:
    resource, _, sub = resource.partition("/")
    attributes = {"namespace": NAMESPACE, "group": group, "resource": resource, "verb": verb}
    if sub:
        attributes["subresource"] = sub
    review = kubernetes.client.AuthorizationV1Api(api).create_subject_access_review(
        {"spec": {"user": user, "resourceAttributes": attributes}}
    )
    return bool(review.status.allowed)


def test_the_triggerer_may_make_every_call_of_a_deferred_step_pod(
    api: kubernetes.client.ApiClient,
    cluster: Cluster,
    shipped: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 2: the shipped RoleBinding names the triggerer's ServiceAccount (helm-values/airflow.yaml), and
    the Role grants every call of the provider's trigger, ``watch`` on events included; the trigger itself,
    with that account's token, follows a step pod to its end."""
    subject = TRIGGERER  # the chart's triggerer account of release "airflow", as the issue saw it refused
    user = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
    rules = trigger_rules()
    assert ("", "events", "watch") in rules
    refused = sorted(rule for rule in rules if not allowed(api, user, *rule))
    assert refused == [], f"the triggerer's calls RBAC refuses: {refused}"
    values = yaml.safe_load((REPO_ROOT / "helm-values" / "airflow.yaml").read_text())
    assert values["triggerer"]["serviceAccount"]["name"] == subject["name"]

    core = kubernetes.client.CoreV1Api(api)
    token = account_token(core, subject["namespace"], subject["name"])
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": cluster.server, "certificate-authority": str(cluster.ca_file)},
            }
        ],
        "users": [{"name": "triggerer", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "triggerer"}}],
        "current-context": "local",
    }
    path = tmp_path / "triggerer.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(path)}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))

    name = f"wpclone-deferred-{secrets.token_hex(3)}"
    core.create_namespaced_pod(NAMESPACE, step_pod(name, ["python", "-c", "print('deferred step')"]))
    try:
        trigger = KubernetesPodTrigger(
            pod_name=name,
            pod_namespace=NAMESPACE,
            trigger_start_time=datetime.datetime.now(tz=datetime.UTC),
            base_container_name="base",
            kubernetes_conn_id=CONN_ID,
            poll_interval=0.5,
            startup_check_interval=0.5,
            get_logs=False,
        )
        event = asyncio.run(asyncio.wait_for(first_event(trigger), timeout=60))
        assert event["status"] == "success", event
        assert pod_phase(core, NAMESPACE, name, ("Succeeded",))
    finally:
        core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)


async def first_event(trigger: KubernetesPodTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


def test_server_side_apply_of_an_object_not_there_yet_needs_create(
    api: kubernetes.client.ApiClient, cluster: Cluster, namespace: str
) -> None:
    """Finding 5: why the shipped Role keeps ``create`` on every kind it applies. A Role like it but without
    ``create`` is refused the first apply (the object does not exist), though ``patch`` is granted."""
    role = next(
        doc for doc in yaml.safe_load_all((MANIFESTS / "10-role.yaml").read_text()) if doc["kind"] == "Role"
    )
    rules = [
        {**rule, "verbs": [v for v in rule["verbs"] if v != "create"]}
        for rule in role["rules"]
        if "configmaps" in rule["resources"]
    ]
    assert rules and all("patch" in rule["verbs"] for rule in rules)
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    core = kubernetes.client.CoreV1Api(api)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "no-create"}, "rules": rules})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "applier"}})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "no-create"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "no-create"},
            "subjects": [{"kind": "ServiceAccount", "name": "applier", "namespace": namespace}],
        },
    )
    token = account_token(core, namespace, "applier")
    config = kubernetes.client.Configuration(
        host=cluster.server, api_key={"authorization": f"Bearer {token}"}
    )
    config.ssl_ca_cert = str(cluster.ca_file)
    as_applier = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}

    def apply() -> None:
        as_applier.patch_namespaced_config_map(
            "applied",
            namespace,
            body,
            field_manager="wpclone",
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    with pytest.raises(ApiException) as refused:
        apply()
    assert refused.value.status == 403
    assert json.loads(refused.value.body)["message"].startswith('configmaps "applied" is forbidden')
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "applied"}, "data": {"a": "0"}})
    apply()  # once it exists, patch is enough
    assert core.read_namespaced_config_map("applied", namespace).data == {"a": "1"}
