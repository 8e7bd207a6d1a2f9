"""Apply, read, list and delete a clone's objects through the provider's ``KubernetesHook``.

**Never touch what is not ours.** An object is a clone's when it carries ``app.kubernetes.io/managed-by=
wpclone`` and ``wpclone.io/clone-id=<id>``. Every write names the clone it is for and first reads the
object under that name: one that exists without those labels (the source's password Secret, anybody's
Deployment) is never overwritten, patched or deleted; the write fails with :class:`ForeignObject`, one
sentence naming it (``Secret/wpclone-source-www``). The write then carries the read object's ``uid``
(``metadata.uid`` in a patch, a delete's precondition), so an object replaced between the read and the
write is not written either: the API server refuses the delete with 409 and the patch with 422 (the uid
is immutable), and the write reads the name again.

Apply semantics: a missing object is created (``POST``; a 409 means someone created it meanwhile, so it is
read and checked like any existing one); an existing one of ours gets a server-side apply ``PATCH``
(``application/apply-patch+yaml`` with the manifest as JSON, ``fieldManager=wpclone``, ``force=true``), so
a retried task converges. Secrets that hold generated passwords are never applied over:
:meth:`ClusterClient.create` creates them only when missing, and the caller reads back the existing ones.
Keys added to a Secret later (a restore's login) and the restore's content revision on the site's pod
template are JSON merge patches (:meth:`ClusterClient.patch`) under their own field manager, so the next
apply of the site leaves them be.

Delete: list by label selector, keep what carries our labels (checked again client-side), delete each by
name with ``propagationPolicy=Foreground``; 404 counts as already gone. Listing by selector and deleting by
name (rather than ``deletecollection``) works for every kind, including Services on older clusters, and
tells the caller exactly what was removed. :meth:`ClusterClient.delete_labelled` goes kind by kind
(:data:`DELETE_ORDER`) and waits until no object of a kind is left before the next: a Deployment is gone
only once the garbage collector has removed its ReplicaSet and their pods (foreground), so no ReplicaSet
starts a new pod that mounts the claim, and the claim (whose ``kubernetes.io/pvc-protection`` finalizer
holds it while a pod uses it) is gone before the delete returns: a second delete finds nothing.

Nothing here logs a Secret's values or an API error body that could echo them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from wpclone.errors import ForeignObject, KubernetesError
from wpclone.runtimes.base import CLONE_ID_LABEL, MANAGED_BY, MANAGED_BY_LABEL

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

FIELD_MANAGER = "wpclone"
PATCH_FIELD_MANAGER = "wpclone-restore"  # merge patches: fields a later apply of ours must not drop
MERGE_PATCH_CONTENT_TYPE = "application/merge-patch+json"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


@dataclass(frozen=True)
class Kind:
    """A kind we manage: its API group, resource name and the typed client's method suffix."""

    kind: str
    group: str  # "" for the core group
    resource: str  # plural, as RBAC names it
    method: str  # e.g. "secret" for create_namespaced_secret

    @property
    def api(self) -> str:
        return {"": "CoreV1Api", "apps": "AppsV1Api", "networking.k8s.io": "NetworkingV1Api"}[self.group]


KINDS: Mapping[str, Kind] = {
    k.kind: k
    for k in (
        Kind("Secret", "", "secrets", "secret"),
        Kind("PersistentVolumeClaim", "", "persistentvolumeclaims", "persistent_volume_claim"),
        Kind("ConfigMap", "", "configmaps", "config_map"),
        Kind("Deployment", "apps", "deployments", "deployment"),
        Kind("Service", "", "services", "service"),
        Kind("Ingress", "networking.k8s.io", "ingresses", "ingress"),
        Kind("Pod", "", "pods", "pod"),  # step pods left behind by a killed worker
    )
}
# Delete order: traffic first, then the workload, then what it mounts and reads.
DELETE_ORDER = ("Ingress", "Service", "Deployment", "Pod", "ConfigMap", "PersistentVolumeClaim", "Secret")

# The API calls this module makes, as RBAC rules for the Airflow workers' Role in the clones' namespace
# (the step pods' operator adds its own: pods create/get/list/watch/delete/patch, pods/log get, events list).
# tests/runtimes/test_kubernetes_lifecycle.py checks every request the runtime makes against this table.
# Every write reads first (the ownership check), hence "get" on every kind. "create" stays on every kind we
# apply, for server-side apply itself: the API server authorizes an apply PATCH of an object that does not
# exist (yet, or any more: deleted between our read and our apply) as "create", so without it a clone's first
# apply gets 403 whatever the client does (tests/kube/test_findings_rbac.py); our own POST of a missing
# object (``ClusterClient.create``: generated Secrets are never applied over) is authorized the same way.
API_PERMISSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "secrets", ("create", "get", "patch", "list", "delete")),
    ("", "persistentvolumeclaims", ("create", "get", "patch", "list", "delete")),
    ("", "configmaps", ("create", "get", "patch", "list", "delete")),
    ("apps", "deployments", ("create", "get", "patch", "list", "delete")),
    ("", "services", ("create", "get", "patch", "list", "delete")),
    ("networking.k8s.io", "ingresses", ("create", "get", "patch", "list", "delete")),
    ("", "pods", ("create", "get", "list", "delete")),  # the content pod; leftover step pods
    ("", "events", ("list",)),  # why the content pod does not start (wpclone.k8s.startup)
)


DELETE_TIMEOUT_SECONDS = 300.0  # a claim waits for its pods' graceful stop (30 s) and the volume's release
DELETE_POLL_SECONDS = 0.5
WRITE_ATTEMPTS = 3  # an object deleted or replaced between our read and our write is looked at again


def owner_labels(clone_id: str) -> dict[str, str]:
    """The labels that make an object clone ``clone_id``'s."""
    return {MANAGED_BY_LABEL: MANAGED_BY, CLONE_ID_LABEL: clone_id}


def foreign_sentence(kind: str, name: str, namespace: str, clone_id: str) -> str:
    return (
        f"{kind}/{name} already exists in namespace {namespace} and is not clone {clone_id}'s (it lacks the "
        f"labels {MANAGED_BY_LABEL}={MANAGED_BY} and {CLONE_ID_LABEL}={clone_id}); wpclone never overwrites "
        "or deletes it: choose another clone id."
    )


def api_error_sentence(exc: ApiException, action: str, kind: str, name: str, namespace: str) -> str:
    """``Kubernetes refused to <action> <Kind> <ns>/<name> (409 Conflict): <message>.``

    The server's message is left out for Secrets: an error about a Secret could quote its data.
    """
    detail = ""
    if kind != "Secret" and exc.body:
        try:
            detail = str(json.loads(exc.body).get("message") or "")
        except (ValueError, AttributeError):
            detail = ""
    where = f"{kind} {namespace}/{name}" if name else f"{kind} in {namespace}"
    text = f"Kubernetes refused to {action} {where} ({exc.status} {exc.reason})"
    return f"{text}: {detail.rstrip('.')}." if detail else f"{text}."


def has_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(key) == value for key, value in labels.items())


def parse_selector(selector: str) -> dict[str, str]:
    """``a=b,c=d`` -> ``{"a": "b", "c": "d"}`` (equality selectors only, which is all we use)."""
    pairs = (part.split("=", 1) for part in selector.split(",") if part)
    return {key: value for key, value in pairs}


class ClusterClient:
    """Our objects in one namespace, through ``KubernetesHook(conn_id)`` (built lazily, on first use)."""

    def __init__(self, namespace: str, conn_id: str, hook: KubernetesHook | None = None) -> None:
        self.namespace = namespace
        self.conn_id = conn_id
        self._hook = hook

    @cached_property
    def hook(self) -> KubernetesHook:
        if self._hook is not None:
            return self._hook
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook  # noqa: PLC0415 (the kubernetes provider: at the first API call)

        return KubernetesHook(conn_id=self.conn_id)

    @cached_property
    def _apis(self) -> dict[str, Any]:
        from kubernetes import client  # noqa: PLC0415 (the kubernetes client: at the first API call)

        api_client = self.hook.api_client
        return {
            "CoreV1Api": client.CoreV1Api(api_client),
            "AppsV1Api": client.AppsV1Api(api_client),
            "NetworkingV1Api": client.NetworkingV1Api(api_client),
        }

    def _call(self, verb: str, kind: str) -> Any:
        spec = KINDS[kind]
        return getattr(self._apis[spec.api], f"{verb}_namespaced_{spec.method}")

    def _to_dict(self, obj: object) -> dict[str, Any]:
        data = self.hook.api_client.sanitize_for_serialization(obj)
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _ident(manifest: Mapping[str, Any]) -> tuple[str, str]:
        kind = str(manifest["kind"])
        if kind not in KINDS:
            raise ValueError(f"wpclone does not manage objects of kind {kind}.")
        return kind, str(manifest["metadata"]["name"])

    # -- writes ------------------------------------------------------------------------------------------

    def apply(self, manifest: Mapping[str, Any]) -> None:
        """Create ``manifest``'s object, or server-side apply it over the one of ours under its name;
        :class:`ForeignObject` when that name is taken by an object that is not ours."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 (the kubernetes client: at the first API call)

        kind, name = self._ident(manifest)
        clone_id = self._clone_of(manifest)
        for _ in range(WRITE_ATTEMPTS):
            existing = self.read_owned(kind, name, clone_id)
            if existing is None:
                if self.create(manifest):
                    return
                continue  # created by someone else meanwhile: read and check it
            try:
                self._call("patch", kind)(
                    name,
                    self.namespace,
                    _pinned(dict(manifest), existing),
                    field_manager=FIELD_MANAGER,
                    force=True,
                    _content_type=APPLY_CONTENT_TYPE,
                )
            except ApiException as exc:
                if exc.status == 404 or _replaced(exc):  # deleted or replaced since we read it: look again
                    continue
                raise KubernetesError(api_error_sentence(exc, "apply", kind, name, self.namespace)) from None
            log.info("k8s event=applied kind=%s name=%s namespace=%s", kind, name, self.namespace)
            return
        raise _keeps_changing(kind, name)

    def create(self, manifest: Mapping[str, Any]) -> bool:
        """Create ``manifest``; False when an object of ours already has that name, :class:`ForeignObject`
        when one that is not ours has."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 (the kubernetes client: at the first API call)

        kind, name = self._ident(manifest)
        clone_id = self._clone_of(manifest)
        try:
            self._call("create", kind)(self.namespace, dict(manifest), field_manager=FIELD_MANAGER)
        except ApiException as exc:
            if exc.status == 409:
                self.read_owned(kind, name, clone_id)
                return False
            raise KubernetesError(api_error_sentence(exc, "create", kind, name, self.namespace)) from None
        log.info("k8s event=created kind=%s name=%s namespace=%s", kind, name, self.namespace)
        return True

    def patch(
        self, kind: str, name: str, changes: Mapping[str, Any], *, clone_id: str
    ) -> dict[str, Any] | None:
        """JSON merge patch (``None`` removes a key) of clone ``clone_id``'s object; the object after it, or
        None when it does not exist; :class:`ForeignObject` when it is not that clone's."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 (the kubernetes client: at the first API call)

        self._ident({"kind": kind, "metadata": {"name": name}})
        for _ in range(WRITE_ATTEMPTS):
            existing = self.read_owned(kind, name, clone_id)
            if existing is None:
                return None
            try:
                obj = self._call("patch", kind)(
                    name,
                    self.namespace,
                    _pinned(dict(changes), existing),
                    field_manager=PATCH_FIELD_MANAGER,
                    _content_type=MERGE_PATCH_CONTENT_TYPE,
                )
            except ApiException as exc:
                if exc.status == 404 or _replaced(exc):
                    continue
                raise KubernetesError(api_error_sentence(exc, "patch", kind, name, self.namespace)) from None
            log.info("k8s event=patched kind=%s name=%s namespace=%s", kind, name, self.namespace)
            return self._to_dict(obj)
        raise _keeps_changing(kind, name)

    def delete(self, kind: str, name: str, *, clone_id: str) -> bool:
        """Delete clone ``clone_id``'s object (foreground propagation, not waited for); False when it was
        already gone,
        :class:`ForeignObject` when it is not that clone's."""
        existing = self.read_owned(kind, name, clone_id)
        return existing is not None and self._delete(kind, existing)

    def _delete(self, kind: str, obj: Mapping[str, Any]) -> bool:
        """Delete ``obj`` (read or listed, ours), only while it is still that object (its uid)."""
        from kubernetes.client import V1DeleteOptions, V1Preconditions  # noqa: PLC0415 (the kubernetes client: at the first API call)
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 (the kubernetes client: at the first API call)

        metadata = obj.get("metadata") or {}
        name, uid = str(metadata["name"]), metadata.get("uid")
        options = V1DeleteOptions(
            propagation_policy="Foreground", preconditions=V1Preconditions(uid=uid) if uid else None
        )
        try:
            self._call("delete", kind)(name, self.namespace, body=options)
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 409:  # replaced since it was read: that one is not the object we checked
                log.warning("k8s event=delete_skipped kind=%s name=%s reason=replaced", kind, name)
                return False
            raise KubernetesError(api_error_sentence(exc, "delete", kind, name, self.namespace)) from None
        log.info("k8s event=deleted kind=%s name=%s namespace=%s", kind, name, self.namespace)
        return True

    @staticmethod
    def _clone_of(manifest: Mapping[str, Any]) -> str:
        """The clone whose labels ``manifest`` carries; ValueError if it does not carry ours."""
        labels = (manifest.get("metadata") or {}).get("labels") or {}
        clone_id = labels.get(CLONE_ID_LABEL)
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or not clone_id:
            raise ValueError("wpclone writes only objects that carry its managed-by and clone-id labels.")
        return str(clone_id)

    # -- reads -------------------------------------------------------------------------------------------

    def read(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object as a dict (API field names), or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 (the kubernetes client: at the first API call)

        try:
            obj = self._call("read", kind)(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubernetesError(api_error_sentence(exc, "read", kind, name, self.namespace)) from None
        return self._to_dict(obj)

    def read_owned(self, kind: str, name: str, clone_id: str) -> dict[str, Any] | None:
        """Like :meth:`read`, but :class:`ForeignObject` when the object is not clone ``clone_id``'s."""
        obj = self.read(kind, name)
        if obj is not None and not has_labels(obj, owner_labels(clone_id)):
            raise ForeignObject(foreign_sentence(kind, name, self.namespace, clone_id))
        return obj

    def list_objects(self, kind: str, selector: str) -> list[dict[str, Any]]:
        """Objects of ``kind`` matching the equality ``selector`` (re-checked here, whatever the server)."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 (the kubernetes client: at the first API call)

        try:
            result = self._call("list", kind)(self.namespace, label_selector=selector)
        except ApiException as exc:
            raise KubernetesError(api_error_sentence(exc, "list", kind, "", self.namespace)) from None
        wanted = parse_selector(selector)
        items = [self._to_dict(item) for item in (result.items or [])]
        return [item for item in items if has_labels(item, wanted)]

    def pod_events(self, name: str) -> list[dict[str, Any]]:
        """The events about pod ``name`` (the scheduler's and the node's), oldest first as listed."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 (the kubernetes client: at the first API call)

        selector = f"involvedObject.kind=Pod,involvedObject.name={name}"
        try:
            result = self._apis["CoreV1Api"].list_namespaced_event(self.namespace, field_selector=selector)
        except ApiException as exc:
            raise KubernetesError(api_error_sentence(exc, "list", "Event", "", self.namespace)) from None
        return [self._to_dict(item) for item in (result.items or [])]

    def delete_labelled(self, selector: str, *, timeout: float = DELETE_TIMEOUT_SECONDS) -> list[str]:
        """Delete every object of every kind we manage that matches ``selector``, kind by kind, each kind
        gone before the next (module docstring); ``Kind/name`` removed. KubernetesError naming what is left
        when that takes longer than ``timeout`` seconds."""
        if f"{MANAGED_BY_LABEL}={MANAGED_BY}" not in selector.split(","):
            raise ValueError("refusing to delete by a selector that does not require our managed-by label.")
        removed: list[str] = []
        deadline = time.monotonic() + timeout
        for kind in DELETE_ORDER:
            for item in self.list_objects(kind, selector):
                if not item["metadata"].get("deletionTimestamp") and self._delete(kind, item):
                    removed.append(f"{kind}/{item['metadata']['name']}")
            self._wait_gone(kind, selector, deadline, timeout)
        return removed

    def _wait_gone(self, kind: str, selector: str, deadline: float, timeout: float) -> None:
        while left := self.list_objects(kind, selector):
            if time.monotonic() > deadline:
                names = ", ".join(f"{kind}/{item['metadata']['name']}" for item in left)
                holds = sorted({f for item in left for f in item["metadata"].get("finalizers") or ()})
                why = f" (finalizers: {', '.join(holds)})" if holds else ""
                raise KubernetesError(
                    f"{names} in namespace {self.namespace} is still there {timeout:.0f} s after its delete"
                    f"{why}; see its events, then delete the clone again."
                )
            time.sleep(DELETE_POLL_SECONDS)


def _keeps_changing(kind: str, name: str) -> KubernetesError:
    return KubernetesError(f"{kind} {name} keeps changing while wpclone writes it; is another job at work?")


def _replaced(exc: ApiException) -> bool:
    """The write's uid is not the object's any more: 409, or, for a patch, the API server's 422 on
    ``metadata.uid`` (a uid in a patch body is checked as an immutable field, not as a precondition)."""
    if exc.status == 409:
        return True
    if exc.status != 422 or not exc.body:
        return False
    try:
        causes = (json.loads(exc.body).get("details") or {}).get("causes") or []
    except (ValueError, AttributeError):
        return False
    return any(isinstance(c, dict) and c.get("field") == "metadata.uid" for c in causes)


def _pinned(body: dict[str, Any], existing: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with the uid of the object we read and checked: the server refuses the write if the object
    under that name is another one by now."""
    uid = (existing.get("metadata") or {}).get("uid")
    if uid:
        body["metadata"] = {**(body.get("metadata") or {}), "uid": uid}
    return body
