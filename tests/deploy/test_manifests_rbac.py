"""The Airflow workers' Role in the clones' namespace is exactly what our Kubernetes calls need.

Two sources, neither a hand-kept copy:

- the runtime's own calls, recorded from a whole clone lifecycle against the kmock API emulator (the
  fixtures and recorder of ``tests/runtimes/test_kubernetes_lifecycle.py``): prepare, deploy, readiness,
  the orphan listing, the
  source's password, a restore in wp_restore's order (its login in the clone's Secret, the backup URL
  handed to the load step, the content pod's inspect, the preview deployed, checked and removed, the
  content pod's switch, switch back and discard, the site rolled), delete (with a step pod left behind);
- the step pods' calls, read from the installed ``KubernetesPodOperator`` source (``operators/pod.py`` and
  ``utils/pod_manager.py``): every ``<verb>_namespaced_<resource>`` client call on the synchronous path, minus
  the ones our operator settings rule out (exec: only for ``do_xcom_push`` and an Istio sidecar);
- deferrable mode's calls, made by the provider's trigger in the triggerer: the pod, log and event calls of
  ``AsyncKubernetesHook`` (``hooks/kubernetes.py``), and ``watch`` on what it streams
  (``watch.stream(v1_api.list_namespaced_<resource>)``).

The Role in ``helm-values/manifests/10-role.yaml`` must equal their union in both directions.
"""

from __future__ import annotations

import re
from pathlib import Path

import airflow.providers.cncf.kubernetes as kpo_provider
import kmock as km
import pytest
import yaml

from tests.k8s.test_manifests import MU_PLUGIN, make_plan
from tests.runtimes.test_kubernetes_lifecycle import (  # fixtures: pytest resolves them by name here
    NAMESPACE,
    Recorder,
    add_site_pod,
    emulator,  # noqa: F401
    restore_cycle,
    runtime,  # noqa: F401
)
from wpclone.k8s.apply import KINDS
from wpclone.k8s.pod import step_pod_operator
from wpclone.k8s.settings import KubernetesSettings
from wpclone.runtimes.base import CLONE_ID_LABEL, MANAGED_BY_LABEL, Step
from wpclone.runtimes.kubernetes import KubernetesRuntime

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "helm-values" / "manifests" / "10-role.yaml"
PROVIDER = Path(kpo_provider.__file__).parent
KPO_SOURCES = (PROVIDER / "operators" / "pod.py", PROVIDER / "utils" / "pod_manager.py")
CLIENT_CALL = re.compile(
    r"\.(create|read|list|delete|patch|replace|connect_get)_namespaced_([a-z_]+?)(_log|_exec)?\b"
)
ASYNC_HOOK = PROVIDER / "hooks" / "kubernetes.py"
WATCH_CALL = re.compile(r"\.stream\(\s*v1_api\.list_namespaced_([a-z_]+)")
# CoreV1Api method suffix -> RBAC resource.
RESOURCES = {"pod": "pods", "event": "events"}
# connect_get_*_exec is a websocket upgrade: RBAC checks "create" (and "get" on older servers) on pods/exec.
VERBS = {"create": "create", "read": "get", "list": "list", "delete": "delete", "patch": "patch"}
Rule = tuple[str, str, str]


def role_rules() -> set[Rule]:
    role = yaml.safe_load(ROLE.read_text())
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == KubernetesSettings().namespace
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def kpo_calls() -> set[tuple[str, str]]:
    """(method verb, method resource+subresource) of every namespaced client call in the KPO source."""
    found: set[tuple[str, str]] = set()
    for path in KPO_SOURCES:
        for verb, resource, sub in CLIENT_CALL.findall(path.read_text()):
            found.add((verb, resource + (sub or "")))
    return found


def kpo_rules(calls: set[tuple[str, str]], *, exec_needed: bool) -> set[Rule]:
    rules: set[Rule] = set()
    for verb, method in calls:
        if method.endswith("_exec"):
            if exec_needed:
                rules |= {("", "pods/exec", "create"), ("", "pods/exec", "get")}
            continue
        if method.endswith("_log"):
            rules.add(("", RESOURCES[method.removesuffix("_log")] + "/log", "get"))
            continue
        rules.add(("", RESOURCES[method], VERBS[verb]))
    return rules


def trigger_calls() -> tuple[set[tuple[str, str]], set[str]]:
    """The async hook's (method verb, method resource) calls and the resources it watches."""
    text = ASYNC_HOOK.read_text().split("class AsyncKubernetesHook", 1)[1]
    calls = {(verb, resource + (sub or "")) for verb, resource, sub in CLIENT_CALL.findall(text)}
    return calls, set(WATCH_CALL.findall(text))


def trigger_rules() -> set[Rule]:
    """What the triggerer's ServiceAccount needs for a deferred step pod (its job calls are not ours)."""
    calls, watched = trigger_calls()
    ours = {(verb, method) for verb, method in calls if method.removesuffix("_log") in RESOURCES}
    return kpo_rules(ours, exec_needed=False) | {("", RESOURCES[r], "watch") for r in watched}


def test_the_trigger_source_still_makes_the_calls_we_derive_from() -> None:
    calls, watched = trigger_calls()
    assert {("read", "pod"), ("delete", "pod"), ("read", "pod_log"), ("list", "event")} <= calls
    assert {resource for _, resource in calls} <= {"pod", "pod_log", "event", "job_status"}, calls
    assert watched == {"event"}
    assert ("", "events", "watch") in trigger_rules()


def test_the_operator_source_still_makes_the_calls_we_derive_from() -> None:
    """The scan finds the step pod's life: a changed provider shows up here, not as a 403 on a cluster."""
    calls = kpo_calls()
    assert {("create", "pod"), ("read", "pod"), ("list", "pod"), ("delete", "pod"), ("patch", "pod")} <= calls
    assert ("read", "pod_log") in calls and ("list", "event") in calls
    assert ("connect_get", "pod_exec") in calls  # ruled out below by our operator's settings
    assert {resource for _, resource in calls} <= {"pod", "pod_log", "pod_exec", "event"}, calls


def test_our_step_operator_needs_no_exec_and_is_not_deferrable_by_default() -> None:
    """What rules out pods/exec (xcom sidecar, Istio kill); deferrable mode is a setting (trigger_rules)."""
    settings = KubernetesSettings()
    op = step_pod_operator(
        Step(task_id="copy_content", step="copy-content"), plan_xcom="plan", settings=settings
    )
    assert op.do_xcom_push is False
    assert op.deferrable is False  # WPCLONE_K8S_DEFERRABLE=true: the trigger's calls, in the triggerer
    assert settings.deferrable is False


@pytest.mark.asyncio
async def test_the_role_is_exactly_what_our_calls_need(
    emulator: km.KubernetesEmulator,  # noqa: F811
    runtime: KubernetesRuntime,  # noqa: F811
    tmp_path: Path,
) -> None:
    call = Recorder(emulator)
    plan = make_plan("shop-abc123")
    emulator.objects["v1/secrets", NAMESPACE, "shop-db"] = {
        "metadata": {"name": "shop-db", "namespace": NAMESPACE},
        "data": {"password": "cHc="},
    }
    await call(runtime.prepare_clone, plan)
    await call(runtime.prepare_clone, plan)  # a retry reads the Secret back
    await call(runtime.deploy_site, plan, {"WP_ENVIRONMENT_TYPE": "staging"}, MU_PLUGIN)
    await call(runtime.deploy_site, plan, {"WP_ENVIRONMENT_TYPE": "staging"}, MU_PLUGIN)  # a retry applies
    await call(runtime.site_ready, plan)
    await call(runtime.list_clone_ids)
    add_site_pod(emulator)
    await restore_cycle(call, emulator, runtime, tmp_path / "claim")
    labels = {MANAGED_BY_LABEL: "wpclone", CLONE_ID_LABEL: "shop-abc123"}
    emulator.objects["v1/pods", NAMESPACE, "wpclone-copy-content-x1"] = {
        "metadata": {"name": "wpclone-copy-content-x1", "labels": labels}
    }
    await call(runtime.delete_clone_objects, "shop-abc123")

    runtime_rules = {(group or "", resource, verb) for group, resource, verb in call.rules()}
    assert "?" not in {verb for _, _, verb in runtime_rules}, call.requests
    needed = runtime_rules | kpo_rules(kpo_calls(), exec_needed=False) | trigger_rules()
    granted = role_rules()
    assert needed - granted == set(), "calls the Role does not allow (they would fail with 403)"
    assert granted - needed == set(), "grants no call of ours needs (least privilege)"


def test_every_kind_we_apply_keeps_create() -> None:
    """Server-side apply needs ``create``: the API server authorizes an apply of an object that does not exist
    as ``create`` (tests/kube/test_findings_rbac.py shows the 403 without it), so it is not a leftover of our
    create-when-missing path that a pure-apply client could trim."""
    granted = role_rules()
    for kind in KINDS.values():
        assert (kind.group, kind.resource, "create") in granted, kind.kind
        assert (kind.group, kind.resource, "patch") in granted, kind.kind


def test_a_missing_or_extra_grant_is_caught() -> None:
    needed = kpo_rules(kpo_calls(), exec_needed=False)
    assert ("", "pods/exec", "create") not in needed
    assert ("", "pods/exec", "create") in kpo_rules(kpo_calls(), exec_needed=True)
    granted = role_rules()
    assert ("", "secrets", "update") not in granted and ("", "pods/exec", "create") not in granted
    assert ("", "secrets", "patch") in granted  # a restore's login and params, by merge patch
    assert ("", "pods/log", "get") in granted and ("apps", "deployments", "patch") in granted
