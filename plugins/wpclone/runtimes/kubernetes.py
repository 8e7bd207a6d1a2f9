"""The kubernetes runtime: steps run in pods on the toolbox image, clones are served by the cluster.

A clone ``<id>`` is, in the settings' namespace: Secret ``wpclone-<id>`` (its passwords and salts), claim
``wpclone-<id>-content`` (its wp-content), ConfigMap ``wpclone-<id>-site`` (must-use plugin and Apache
port), Deployment, Service and Ingress ``wpclone-<id>`` at ``<clone_scheme>://<id>.<clone_domain>``; all
labelled and annotated as :mod:`wpclone.runtimes.base` says (see :mod:`wpclone.k8s.manifests`).

Those names are the clone's only while the objects carry its labels: :meth:`check_clone_names` (the
request validation, and ``prepare_clone`` before it creates anything) refuses a clone id whose names the
configuration uses or an object without our labels already has, and every write of
:class:`~wpclone.k8s.apply.ClusterClient` refuses such an object again (never overwritten or deleted).
A clone's delete (:meth:`delete_clone_objects`) removes its objects kind by kind in foreground order and
returns once they are gone (:meth:`~wpclone.k8s.apply.ClusterClient.delete_labelled`), then its backups
from the backups claim (the content pod's ``purge``) unless ``backups.keep_after_delete``. A content pod
that cannot start fails with the scheduler's or the node's reason (:mod:`wpclone.k8s.startup`).

Backup and restore: backups go to the shared claim ``settings.backup_claim`` (mounted by the backup and
restore step pods at ``settings.backup_mount``, :mod:`wpclone.k8s.pod`); a restore's fresh database has its
own login, whose password is generated once into the clone's Secret (key ``restore-db-password``). The
restore step stages wp-content beside the live tree in the clone's claim. Before anything is switched,
:meth:`deploy_preview` serves the restored database and staged tree as a private preview: ConfigMap,
Deployment and Service ``wpclone-<id>-preview`` (no Ingress), the site's workload with the restore's login
and tree, on the site's node (the claim is ReadWriteOnce), its pod labelled component ``preview`` so the
site's Service never selects it; ``site_ready``/``page_fetcher`` (``preview=True``) check it through that
Service, and :meth:`remove_preview` deletes it. :meth:`switch_content` and :meth:`discard_restore_content`
run the short content pod (:mod:`wpclone.k8s.content`) on the claim and roll the site when its live tree
changed (its ``subPath`` mount keeps the tree it started with).

Importing this module is cheap: the provider and the Kubernetes client are imported when first used.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wpclone.db import DbTls
from wpclone.errors import CloneNameTaken, ConfigError, ForeignObject, KubernetesError
from wpclone.k8s import manifests
from wpclone.k8s.apply import DELETE_ORDER, ClusterClient, foreign_sentence, has_labels, owner_labels
from wpclone.k8s.settings import DB_TLS_KEYS, DB_TLS_MOUNT, KubernetesSettings
from wpclone.k8s.startup import start_problem, timeout_sentence
from wpclone.models import (
    WORDPRESS_SALT_NAMES,
    ClonePlan,
    RuntimeKind,
    WpcloneConfig,
    check_clone_id,
    is_clone_id,
)
from wpclone.readiness import Fetch, http_fetcher
from wpclone.runtimes.base import CLONE_ID_LABEL, CloneSecrets, Runtime
from wpclone.settings import kubernetes_env_name
from wpclone.steps.common import sentence

log = logging.getLogger(__name__)


def new_clone_secrets() -> CloneSecrets:
    """Fresh random secrets: URL-safe, so they need no quoting in SQL, PHP or an env var."""
    return CloneSecrets(
        db_password=secrets.token_urlsafe(24),
        admin_password=secrets.token_urlsafe(18),
        salts={name: secrets.token_urlsafe(48) for name in WORDPRESS_SALT_NAMES},
    )


class KubernetesRuntime(Runtime):
    """Runtime on a Kubernetes cluster, through the provider's ``KubernetesHook`` and pod operator.

    ``settings`` default to :meth:`KubernetesSettings.from_env`; ``cluster`` replaces the API access.
    """

    kind = RuntimeKind.KUBERNETES
    db_user_host = "%"
    poll_seconds = 2.0  # how often the content pod's state is read

    def __init__(
        self,
        config: WpcloneConfig,
        settings: KubernetesSettings | None = None,
        *,
        cluster: ClusterClient | None = None,
    ) -> None:
        super().__init__(config)
        self.settings = settings or KubernetesSettings.from_env()
        self._cluster = cluster

    @property
    def cluster(self) -> ClusterClient:
        if self._cluster is None:
            self._cluster = ClusterClient(self.settings.namespace, self.settings.conn_id)
        return self._cluster

    # -- task time -------------------------------------------------------------------------------------

    def clone_db_server(self, plan: ClonePlan) -> tuple[str, int]:
        """The source's database server, unless the settings name another for the clones."""
        return (
            self.settings.clone_db_host or plan.source.db_host,
            self.settings.clone_db_port or plan.source.db_port,
        )

    def step_tls(self, tls: DbTls) -> DbTls:
        """``tls`` with its files where the step's pod mounts them: the Secret ``settings.db_tls_secret``
        at DB_TLS_MOUNT (wpclone.k8s.pod); ConfigError when files are named and no Secret is set."""
        if tls.files() and not self.settings.db_tls_secret:
            raise ConfigError(
                f"the wpclone_mysql connection names TLS files ({', '.join(tls.files().values())}): set "
                f"{kubernetes_env_name('db_tls_secret')} to the Secret that holds them "
                f"(keys {', '.join(DB_TLS_KEYS.values())}) so the steps' pods can mount it."
            )
        return tls.with_files({name: f"{DB_TLS_MOUNT}/{key}" for name, key in DB_TLS_KEYS.items()})

    def clone_url(self, clone_id: str) -> str:
        check_clone_id(clone_id)
        if not self.config.clone_domain:
            raise ValueError(
                "clone_domain is not configured: the kubernetes runtime serves each clone at "
                "<clone_scheme>://<clone_id>.<clone_domain>."
            )
        return f"{self.config.clone_scheme}://{clone_id}.{self.config.clone_domain}"

    def check_clone_names(self, clone_id: str) -> None:
        """Also refuse a clone id whose object names the configuration uses (a source's Secret or claim,
        the backups claim, ...), another clone's restore preview would have, or an object without our labels
        already has (one read per name)."""
        super().check_clone_names(clone_id)
        previewed = clone_id.removesuffix(f"-{manifests.PREVIEW_SUFFIX}")
        if previewed != clone_id and is_clone_id(previewed):
            raise CloneNameTaken(
                f"clone id {clone_id} would name the Deployment {manifests.site_name(clone_id)}, which is "
                f"where restores of clone {previewed} are previewed; choose another clone id."
            )
        used = self._configured_names()
        objects = manifests.clone_objects(clone_id)
        for kind, name in objects:
            if name in used:
                raise CloneNameTaken(
                    f"clone id {clone_id} would name the {kind} {name}, which is the name of {used[name]}; "
                    "choose another clone id."
                )
        self._refuse_foreign(clone_id, objects)

    def _configured_names(self) -> dict[str, str]:
        """Kubernetes names the configuration uses -> what they are."""
        used = {
            self.settings.namespace: "the clones' namespace",
            self.settings.backup_claim: "the backups claim",
        }
        if self.settings.tls_secret:
            used[self.settings.tls_secret] = "the clones' TLS Secret"
        if self.settings.step_service_account:
            used[self.settings.step_service_account] = "the step pods' service account"
        for source in self.config.sources:
            if source.db_password_secret:
                used[source.db_password_secret] = f"the database password Secret of source {source.name}"
            if source.content_claim:
                used[source.content_claim] = f"the wp-content claim of source {source.name}"
        return used

    def _refuse_foreign(self, clone_id: str, objects: list[tuple[str, str]]) -> None:
        for kind, name in objects:
            obj = self.cluster.read(kind, name)
            if obj is not None and not has_labels(obj, owner_labels(clone_id)):
                raise CloneNameTaken(foreign_sentence(kind, name, self.settings.namespace, clone_id))

    def prepare_clone(self, plan: ClonePlan) -> CloneSecrets:
        """Create the Secret (or read it back on a retry: the passwords stay stable) and the content claim,
        after checking that no name of the clone's is taken by an object that is not its own."""
        self.check_clone_names(plan.clone_id)
        clone_secrets = self._ensure_secret(plan)
        self.cluster.apply(manifests.content_claim_manifest(plan, self.settings))
        return clone_secrets

    def _ensure_secret(self, plan: ClonePlan) -> CloneSecrets:
        name = manifests.secret_name(plan.clone_id)
        for _ in range(2):  # a second round only if the Secret vanished between our create and read
            generated = new_clone_secrets()
            if self.cluster.create(manifests.secret_manifest(plan, self.settings, generated)):
                return generated
            existing = self.cluster.read_owned("Secret", name, plan.clone_id)
            if existing is not None:
                log.info("k8s event=secret_reused clone_id=%s secret=%s", plan.clone_id, name)
                return manifests.secrets_from_data(name, existing.get("data"))
        raise KubernetesError(f"Secret {name} keeps appearing and disappearing; is another job deleting it?")

    def deploy_site(
        self, plan: ClonePlan, constants: Mapping[str, str | int | bool], mu_plugin_php: str
    ) -> None:
        """Apply the ConfigMap, Deployment, Service and Ingress (see :mod:`wpclone.k8s.manifests`)."""
        for manifest in manifests.site_manifests(plan, self.settings, constants, mu_plugin_php):
            self.cluster.apply(manifest)

    def site_ready(self, plan: ClonePlan, *, preview: bool = False) -> bool:
        """The Deployment has a ready replica for its current spec (the readiness probe sends the Host)."""
        name = manifests.preview_name(plan.clone_id) if preview else manifests.site_name(plan.clone_id)
        deployment = self.cluster.read("Deployment", name)
        if deployment is None:
            return False
        return deployment_ready(deployment)

    def deploy_preview(
        self, plan: ClonePlan, constants: Mapping[str, str | int | bool], mu_plugin_php: str
    ) -> None:
        """Apply the preview's ConfigMap, Deployment and Service (:func:`manifests.preview_manifests`).

        The content pod (``inspect``) tells which tree it serves: the staged one, or the live one when the
        backup brought no wp-content (the switch keeps it); that tree's revision on the pod template rolls a
        preview left from an earlier try, whose mount would hold a tree since replaced.
        """
        self._refuse_foreign(plan.clone_id, manifests.preview_objects(plan.clone_id))
        trees = self.run_content_pod(plan.clone_id, "inspect")
        workload = manifests.preview_workload(
            plan,
            staged=str(trees.get("staged") or ""),
            live=str(trees.get("revision") or ""),
            node=self._site_node(plan.clone_id),
        )
        for manifest in manifests.preview_manifests(plan, self.settings, constants, mu_plugin_php, workload):
            self.cluster.apply(manifest)
        log.info(
            "k8s event=preview_deployed clone_id=%s content=%s node=%s",
            plan.clone_id,
            workload.content_subpath,
            workload.node,
        )

    def remove_preview(self, clone_id: str) -> bool:
        """Delete the preview's Service, Deployment (its pod goes with it) and ConfigMap. An object under
        those names that is not the clone's is left alone (``deploy_preview`` refused it), so a rollback
        goes on."""
        existed = False
        for kind, name in manifests.preview_objects(clone_id):
            try:
                existed = self.cluster.delete(kind, name, clone_id=clone_id) or existed
            except ForeignObject:
                log.warning("k8s event=preview_not_ours clone_id=%s kind=%s name=%s", clone_id, kind, name)
        return existed

    def page_fetcher(self, plan: ClonePlan, *, preview: bool = False) -> Fetch:
        """Through the site's (or preview's) Service in the cluster, with the clone's Host header and scheme
        as the Ingress would forward them (the NetworkPolicy lets the Airflow workers reach the site port)."""
        name = manifests.preview_name(plan.clone_id) if preview else manifests.site_name(plan.clone_id)
        base = f"http://{name}.{self.settings.namespace}.svc:{manifests.SERVICE_PORT}"
        return http_fetcher(
            plan.url,
            base,
            {"Host": manifests.clone_host(plan), "X-Forwarded-Proto": urlsplit(plan.url).scheme},
        )

    def secret_location(self, clone_id: str, key: str) -> str:
        if not manifests.SECRET_KEY_RE.fullmatch(key):
            raise ValueError(f"secret key {key!r} is not valid.")
        name = manifests.secret_name(clone_id)
        return f"secret/{name} key {key} in namespace {self.settings.namespace}"

    def delete_clone_objects(self, clone_id: str) -> list[str]:
        """Every object labelled as the clone's, then (unless ``backups.keep_after_delete``) its backups."""
        removed = self.cluster.delete_labelled(manifests.label_selector(clone_id))
        if not self.config.backups.keep_after_delete:
            removed += self.purge_backups(clone_id)
        return removed

    def purge_backups(self, clone_id: str) -> list[str]:
        """Remove ``<backups claim>/<clone_id>/`` with the content pod (the claim is mounted only by pods);
        nothing to do when the backups claim does not exist."""
        if self.cluster.read("PersistentVolumeClaim", self.settings.backup_claim) is None:
            return []
        files = int(self.run_content_pod(clone_id, "purge").get("removed_files") or 0)
        return [f"backups of {clone_id} ({files} files)"] if files else []

    # -- backup and restore ----------------------------------------------------------------------------

    def restore_db_password(self, clone_id: str) -> str:
        """Generated once into the clone's Secret (key ``restore-db-password``), read back afterwards."""
        name = manifests.secret_name(clone_id)
        secret = self._clone_secret(clone_id)
        value = (secret.get("data") or {}).get(manifests.RESTORE_PASSWORD_KEY)
        if value:
            return base64.b64decode(value).decode()
        password = secrets.token_urlsafe(24)
        encoded = base64.b64encode(password.encode()).decode()
        changes = {"data": {manifests.RESTORE_PASSWORD_KEY: encoded}}
        if self.cluster.patch("Secret", name, changes, clone_id=clone_id) is None:
            raise KubernetesError(f"Secret {name} disappeared while the restore login was added to it.")
        log.info("k8s event=restore_password_created clone_id=%s secret=%s", clone_id, name)
        return password

    def _clone_secret(self, clone_id: str) -> dict[str, Any]:
        name = manifests.secret_name(clone_id)
        secret = self.cluster.read_owned("Secret", name, clone_id)
        if secret is None:
            raise KubernetesError(
                f"Secret {name} of clone {clone_id} does not exist in namespace {self.settings.namespace}; "
                "the clone is incomplete: delete it and clone again."
            )
        return secret

    def fetch_policy_overrides(self) -> tuple[tuple[Path, ...], bool]:
        # file:// only inside the step pod's backup mount; never private or loopback addresses.
        return (Path(self.settings.backup_mount),), False

    def switch_content(self, clone_id: str, *, restored: bool) -> bool:
        """Rename on the clone's claim (the content pod), then roll the site if its live tree changed."""
        result = self.run_content_pod(clone_id, "switch" if restored else "switch-back")
        moved = bool(result.get("moved"))
        self._roll_site(clone_id, str(result.get("revision") or ""), force=restored or moved)
        return moved

    def _roll_site(self, clone_id: str, revision: str, *, force: bool) -> None:
        """Set the site's content revision to ``revision`` (a rollout) when it differs.

        Without a recorded revision the site's pod was never rolled by a restore and still mounts the tree it
        started with: a switch back that moved nothing leaves it alone (``force`` False).
        """
        name = manifests.site_name(clone_id)
        deployment = self.cluster.read("Deployment", name)
        if deployment is None or not revision:
            return
        template = (deployment.get("spec") or {}).get("template") or {}
        current = ((template.get("metadata") or {}).get("annotations") or {}).get(
            manifests.CONTENT_REVISION_ANNOTATION
        )
        if current == revision or (current is None and not force):
            return
        annotations = {manifests.CONTENT_REVISION_ANNOTATION: revision}
        changes = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        self.cluster.patch("Deployment", name, changes, clone_id=clone_id)
        log.info("k8s event=site_rolled clone_id=%s content_revision=%s", clone_id, revision)

    def discard_restore_content(self, clone_id: str) -> None:
        """Remove the staged and set-aside trees from the claim, and the run params from the Secret."""
        self.run_content_pod(clone_id, "discard")
        name = manifests.secret_name(clone_id)
        secret = self.cluster.read_owned("Secret", name, clone_id)
        if secret is None:
            return
        stale = [key for key in secret.get("data") or {} if key.startswith(manifests.PARAM_KEY_PREFIX)]
        if stale:
            self.cluster.patch("Secret", name, {"data": dict.fromkeys(stale)}, clone_id=clone_id)

    def run_content_pod(self, clone_id: str, action: str) -> dict[str, Any]:
        """Run :mod:`wpclone.k8s.content` ``action`` on the clone's claim in a pod; its JSON answer.

        A pod of a previous try is waited for and removed first (two never rename at once); the pod runs on
        the site's node (the claim is ReadWriteOnce) and is deleted when it has answered.
        """
        name = manifests.content_pod_name(clone_id)
        self._remove_content_pod(name, clone_id)
        node = self._site_node(clone_id) if action in manifests.CONTENT_ACTIONS else None
        manifest = manifests.content_pod_manifest(clone_id, action, self.settings, node=node)
        if not self.cluster.create(manifest):
            raise KubernetesError(
                f"Pod {name} was created by someone else meanwhile; is another job running?"
            )
        try:
            pod = self._wait_for_pod(name, finished=True)
        finally:
            self.cluster.delete("Pod", name, clone_id=clone_id)
        return content_pod_result(pod, clone_id, action)

    def _site_node(self, clone_id: str) -> str | None:
        selector = (
            f"{manifests.label_selector(clone_id)},{manifests.COMPONENT_LABEL}={manifests.SITE_COMPONENT}"
        )
        for pod in self.cluster.list_objects("Pod", selector):
            node = (pod.get("spec") or {}).get("nodeName")
            if node and (pod.get("status") or {}).get("phase") in ("Pending", "Running"):
                return str(node)
        return None

    def _remove_content_pod(self, name: str, clone_id: str) -> None:
        pod = self.cluster.read_owned("Pod", name, clone_id)
        if pod is None:
            return
        if (pod.get("status") or {}).get("phase") == "Running":  # a killed worker's pod, renaming now
            self._wait_for_pod(name, finished=True, pod=pod)
        # Finished, or not started (each action converges if cut short).
        self.cluster.delete("Pod", name, clone_id=clone_id)
        self._wait_for_pod(name, finished=False)

    def _wait_for_pod(
        self, name: str, *, finished: bool, pod: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Until the pod has finished (``finished``) or is gone; KubernetesError after the pod's deadline,
        or with its cause when it cannot start (at once when waiting cannot help, else after
        ``settings.startup_timeout_seconds`` Pending: :mod:`wpclone.k8s.startup`)."""
        started = time.monotonic()
        deadline = started + self.settings.content_pod_timeout_seconds + 60
        while True:
            pod = pod or self.cluster.read("Pod", name)
            if pod is None:
                if finished:
                    raise KubernetesError(f"Pod {name} disappeared before it finished.")
                return {}
            phase = (pod.get("status") or {}).get("phase")
            if finished and phase in ("Succeeded", "Failed"):
                return pod
            if finished and phase == "Pending":
                self._check_start(name, pod, time.monotonic() - started)
            if time.monotonic() > deadline:
                state = "finish" if finished else "go away"
                raise KubernetesError(f"Pod {name} did not {state} in time; see its events.")
            time.sleep(self.poll_seconds)
            pod = None

    def _check_start(self, name: str, pod: dict[str, Any], pending: float) -> None:
        """KubernetesError with why the pending pod cannot start, when it cannot or has waited too long."""
        problem = start_problem(pod)
        timeout = self.settings.startup_timeout_seconds
        if problem is not None and problem.final:
            raise KubernetesError(problem.sentence(name))
        if pending >= timeout:
            problem = problem or start_problem(pod, self.cluster.pod_events(name))
            raise KubernetesError(timeout_sentence(name, timeout, problem))

    def list_clone_ids(self) -> set[str]:
        ids: set[str] = set()
        for kind in DELETE_ORDER:
            for item in self.cluster.list_objects(kind, manifests.label_selector()):
                value = ((item.get("metadata") or {}).get("labels") or {}).get(CLONE_ID_LABEL)
                if isinstance(value, str) and is_clone_id(value):
                    ids.add(value)
        return ids


def deployment_ready(deployment: Mapping[str, Any]) -> bool:
    """A ready replica of the current spec: the status observed the current generation, and no pod of an
    older spec is left (after a restore's switch the old pod still answers, with the old wp-content)."""
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False
    replicas = int(status.get("replicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    return int(status.get("readyReplicas") or 0) >= 1 and updated >= 1 and updated >= replicas


def content_pod_result(pod: Mapping[str, Any], clone_id: str, action: str) -> dict[str, Any]:
    """The content pod's JSON answer from its termination message, or KubernetesError with its sentence."""
    status = pod.get("status") or {}
    message = ""
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        message = str(terminated.get("message") or "")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if status.get("phase") == "Succeeded":
        try:
            result = json.loads(last)
        except ValueError:
            result = None
        if isinstance(result, dict):
            return result
        raise KubernetesError(f"The content pod of clone {clone_id} ({action}) gave no answer.")
    why = last.removeprefix("error:").strip() or str(status.get("reason") or "it failed without a message")
    raise KubernetesError(sentence(f"The wp-content {action} of clone {clone_id} failed: {why}"))
