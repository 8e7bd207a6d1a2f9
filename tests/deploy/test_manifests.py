"""The Kubernetes objects outside the chart (helm-values/manifests/): valid, and consistent with our code.

Each manifest validates against the Kubernetes schemas (kubernetes-validate, strict, the versions
tests/k8s/test_manifests.py pins). The NetworkPolicy is checked against the pods our code builds (the site's
Deployment, a restore's preview of it and a step pod: their labels select them, the site's container port is
the only way in) and against the deployment's configuration (the MySQL port of every registered source).
The objects live in the namespace the Airflow values point the runtime at, and the RoleBinding names the
workers' ServiceAccount.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.k8s.test_manifests import K8S_VERSIONS, MU_PLUGIN, make_plan
from wpclone.config import parse_config
from wpclone.k8s import manifests
from wpclone.k8s.pod import step_pod_operator
from wpclone.k8s.settings import KubernetesSettings
from wpclone.runtimes.base import MANAGED_BY, MANAGED_BY_LABEL, Step

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "helm-values" / "manifests"
VALUES = REPO / "helm-values" / "airflow.yaml"


def load_all() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((str(path.relative_to(MANIFESTS)), doc))
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in load_all() if doc["kind"] == kind]


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return loaded


def values_env() -> dict[str, str]:
    return {item["name"]: item["value"] for item in values()["env"]}


def wpclone_config_json() -> str:
    data = yaml.safe_load(values()["extraConfigMaps"]["wpclone-config"]["data"])
    return str(data["wpclone.json"])


def test_there_are_the_objects_the_readme_applies() -> None:
    kinds = sorted((name, doc["kind"], doc["metadata"]["name"]) for name, doc in load_all())
    assert kinds == [
        ("00-namespace.yaml", "Namespace", "wpclone-clones"),
        ("10-role.yaml", "Role", "wpclone-airflow-worker"),
        ("11-rolebinding.yaml", "RoleBinding", "wpclone-airflow-worker"),
        ("20-networkpolicy.yaml", "NetworkPolicy", "wpclone-clones"),
        ("20-networkpolicy.yaml", "NetworkPolicy", "wpclone-default-deny"),
        ("21-networkpolicy-restore.yaml", "NetworkPolicy", "wpclone-restore-fetch"),
        ("30-backups.yaml", "PersistentVolumeClaim", "wpclone-backups"),
        ("40-gone-page.yaml", "ConfigMap", "wpclone-gone-page"),
        ("40-gone-page.yaml", "Deployment", "wpclone-gone-page"),
        ("40-gone-page.yaml", "Ingress", "wpclone-gone-page"),
        ("40-gone-page.yaml", "NetworkPolicy", "wpclone-gone-page"),
        ("40-gone-page.yaml", "Service", "wpclone-gone-page"),
        ("optional/basic-auth.yaml", "Secret", "wpclone-basic-auth"),
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(version: str) -> None:
    for name, doc in load_all():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_the_schema_check_catches_a_broken_policy() -> None:
    policy = copy.deepcopy(by_kind("NetworkPolicy")[1])
    policy["spec"]["egress"][0]["too"] = policy["spec"]["egress"][0].pop("to")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, K8S_VERSIONS[-1], strict=True)


def test_everything_is_in_the_namespace_the_runtime_uses() -> None:
    namespace = values_env()["WPCLONE_K8S_NAMESPACE"]
    assert namespace == KubernetesSettings().namespace == KubernetesSettings.from_env(values_env()).namespace
    assert by_kind("Namespace")[0]["metadata"]["name"] == namespace
    for name, doc in load_all():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, name


def test_the_rolebinding_binds_our_role_to_the_workers_and_triggerers_service_accounts() -> None:
    binding = by_kind("RoleBinding")[0]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": by_kind("Role")[0]["metadata"]["name"],
    }
    accounts = [values()[component]["serviceAccount"] for component in ("workers", "triggerer")]
    assert all(account["create"] is True for account in accounts)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": "airflow"} for account in accounts
    ]
    # The release namespace docs/deploy.md installs Airflow into.
    assert "--namespace airflow" in (REPO / "docs" / "deploy.md").read_text()


def _policies() -> tuple[dict[str, Any], dict[str, Any]]:
    policies = {p["metadata"]["name"]: p for p in by_kind("NetworkPolicy")}
    return policies["wpclone-default-deny"], policies["wpclone-clones"]


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return (
        all(labels.get(k) == v for k, v in wanted.items())
        and "matchExpressions" not in policy["spec"]["podSelector"]
    )


def test_everything_in_the_namespace_is_denied_unless_allowed() -> None:
    deny, _ = _policies()
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def preview_deployment(settings: KubernetesSettings) -> dict[str, Any]:
    plan = make_plan()
    workload = manifests.preview_workload(plan, staged="41", live="7", node="node-a")
    [deployment] = [
        m
        for m in manifests.preview_manifests(plan, settings, {}, MU_PLUGIN, workload)
        if m["kind"] == "Deployment"
    ]
    return deployment


def test_the_policy_selects_the_site_and_the_step_pods() -> None:
    _, policy = _policies()
    settings = KubernetesSettings()
    deployment = manifests.deployment_manifest(make_plan(), settings, {}, MU_PLUGIN)
    site_labels = deployment["spec"]["template"]["metadata"]["labels"]
    # A restore's preview: checked by the workers like the site (readiness over HTTP through its Service).
    preview_labels = preview_deployment(settings)["spec"]["template"]["metadata"]["labels"]
    assert _selects(policy, preview_labels)
    step = step_pod_operator(
        Step(task_id="copy_content", step="copy-content"), plan_xcom="p", settings=settings
    )
    assert policy["spec"]["podSelector"] == {"matchLabels": {MANAGED_BY_LABEL: MANAGED_BY}}
    assert _selects(policy, site_labels)
    assert _selects(policy, dict(step.labels))
    assert not _selects(policy, {"app": "something-else"})


def test_only_the_ingress_controller_and_the_workers_reach_the_site_port() -> None:
    _, policy = _policies()
    rule, workers = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    # The workers' readiness check (wpclone.readiness through the site's Service): only the worker pods of
    # the release namespace docs/deploy.md installs Airflow into, only the site port.
    assert workers == {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "airflow"}},
                "podSelector": {"matchLabels": {"component": "worker"}},
            }
        ],
        "ports": [{"protocol": "TCP", "port": manifests.HTTP_PORT}],
    }
    for deployment in (
        manifests.deployment_manifest(make_plan(), KubernetesSettings(), {}, MU_PLUGIN),
        preview_deployment(KubernetesSettings()),
    ):
        ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert [p["containerPort"] for p in ports] == [manifests.HTTP_PORT]
    assert rule["ports"] == [{"protocol": "TCP", "port": manifests.HTTP_PORT}]
    # The ingress class the runtime puts on each clone's Ingress is the controller allowed in.
    assert values_env()["WPCLONE_K8S_INGRESS_CLASS"] == "nginx"


def test_clone_pods_reach_only_dns_and_the_mysql_server() -> None:
    _, policy = _policies()
    dns, mysql = policy["spec"]["egress"]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert sorted(dns["ports"], key=json.dumps) == [
        {"port": 53, "protocol": "TCP"},
        {"port": 53, "protocol": "UDP"},
    ]
    [peer] = mysql["to"]
    assert set(peer) == {"ipBlock"} and "except" not in peer["ipBlock"]
    assert peer["ipBlock"]["cidr"].endswith("/32")  # one server, not a range
    config = parse_config(wpclone_config_json(), "helm-values/airflow.yaml")
    db_ports = {source.db_port for source in config.sources}
    settings = KubernetesSettings.from_env(values_env())
    if settings.clone_db_port:
        db_ports.add(settings.clone_db_port)
    assert mysql["ports"] == [{"protocol": "TCP", "port": port} for port in sorted(db_ports)]


def test_the_basic_auth_secret_is_a_template_without_a_secret() -> None:
    [secret] = by_kind("Secret")
    assert secret["type"] == "Opaque" and set(secret) == {
        "apiVersion",
        "kind",
        "metadata",
        "type",
        "stringData",
    }
    assert secret["stringData"] == {"auth": "REPLACE-WITH-ONE-htpasswd-LINE"}
    # Not applied by `kubectl apply -f helm-values/manifests/` (which does not recurse).
    assert not (MANIFESTS / "basic-auth.yaml").exists()


# -- the clone domain's default backend: a deleted or expired clone's host says so --------------------------


def _gone(kind: str) -> dict[str, Any]:
    [doc] = [d for d in by_kind(kind) if d["metadata"]["name"] == "wpclone-gone-page"]
    return doc


def test_the_gone_page_answers_every_host_of_the_clone_domain_a_clone_does_not_have() -> None:
    config = parse_config(wpclone_config_json(), "helm-values/airflow.yaml")
    ingress = _gone("Ingress")
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == f"*.{config.clone_domain}"
    assert ingress["spec"]["ingressClassName"] == values_env()["WPCLONE_K8S_INGRESS_CLASS"]
    # A clone's own Ingress names its exact host under that domain, which the controller prefers to the
    # wildcard: a live clone is never shadowed by the page.
    plan = make_plan().model_copy(update={"url": f"https://shop-abc123.{config.clone_domain}"})
    clone_ingress = manifests.ingress_manifest(plan, KubernetesSettings())
    [clone_rule] = clone_ingress["spec"]["rules"]
    assert clone_rule["host"] == f"shop-abc123.{config.clone_domain}"
    # The rule reaches the page's pods: Service by name and port name, pods by the Service's selector.
    [path] = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    service, deployment = _gone("Service"), _gone("Deployment")
    assert path["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [port] = container["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"] == "http"


def test_the_gone_page_is_no_clone_and_reaches_nothing() -> None:
    deployment = _gone("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    # Not labelled as wpclone's: the orphan sweep and the clone policy leave it alone.
    assert MANAGED_BY_LABEL not in pod_labels
    _, clones = _policies()
    assert not _selects(clones, pod_labels)
    policy = _gone("NetworkPolicy")
    assert _selects(policy, pod_labels)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["egress"] == []
    controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    assert policy["spec"]["ingress"] == [
        {
            "from": [controller],
            "ports": [{"protocol": "TCP", "port": container["ports"][0]["containerPort"]}],
        }
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/etc/nginx/conf.d"] == "config"
    [config_volume] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    assert config_volume["configMap"]["name"] == _gone("ConfigMap")["metadata"]["name"]


def test_the_gone_page_says_which_clone_is_gone_with_410() -> None:
    conf = _gone("ConfigMap")["data"]["default.conf"]
    port = _gone("Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert f"listen {port} default_server;" in conf
    page = re.search(r"return 410 '(?P<page>[^']*)';", conf)
    assert page is not None
    text = " ".join(page["page"].split())
    assert "This staging clone ($wpclone_clone_id) was deleted or has expired; ask for a new one." in text
    # The map's pattern takes the clone id from a clone's host (nginx's (?<id>) is Python's (?P<id>)).
    pattern = re.search(r"~(\^\S+) \$id;", conf)
    assert pattern is not None
    config = parse_config(wpclone_config_json(), "helm-values/airflow.yaml")
    match = re.match(pattern[1].replace("(?<", "(?P<"), f"shop-abc123.{config.clone_domain}")
    assert match is not None and match["id"] == "shop-abc123"
    assert re.match(pattern[1].replace("(?<", "(?P<"), "<script>.example.com") is None
