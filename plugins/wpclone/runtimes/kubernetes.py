"""The kubernetes runtime: steps run in pods on the toolbox image, clones are served by the cluster (§5).

A clone ``<id>`` is, in the settings' namespace: Secret ``wpclone-<id>`` (its passwords and salts), claim
``wpclone-<id>-content`` (its wp-content), ConfigMap ``wpclone-<id>-site`` (must-use plugin and Apache
port), Deployment, Service and Ingress ``wpclone-<id>`` at ``<clone_scheme>://<id>.<clone_domain>``; all
labelled and annotated as :mod:`wpclone.runtimes.base` says (see :mod:`wpclone.k8s.manifests`).

Importing this module is cheap: the provider and the Kubernetes client are imported when first used.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wpclone.k8s import manifests
from wpclone.k8s.apply import ClusterClient, KubernetesError
from wpclone.k8s.settings import KubernetesSettings
from wpclone.models import (
    CLONE_ID_RE,
    WORDPRESS_SALT_NAMES,
    ClonePlan,
    RuntimeKind,
    SourceConfig,
    WpcloneConfig,
    check_clone_id,
)
from wpclone.runtimes.base import CLONE_ID_LABEL, CloneSecrets, Runtime, Step

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

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

    # -- parse time ------------------------------------------------------------------------------------

    def step_operator(self, step: Step, *, plan_xcom: str, **operator_kwargs: object) -> BaseOperator:
        from wpclone.k8s.pod import step_pod_operator

        return step_pod_operator(step, plan_xcom=plan_xcom, settings=self.settings, **operator_kwargs)

    # -- task time -------------------------------------------------------------------------------------

    def clone_url(self, clone_id: str) -> str:
        check_clone_id(clone_id)
        if not self.config.clone_domain:
            raise ValueError(
                "clone_domain is not configured: the kubernetes runtime serves each clone at "
                "<clone_scheme>://<clone_id>.<clone_domain>."
            )
        return f"{self.config.clone_scheme}://{clone_id}.{self.config.clone_domain}"

    def prepare_clone(self, plan: ClonePlan) -> CloneSecrets:
        """Create the Secret (or read it back on a retry: the passwords stay stable) and the content claim."""
        clone_secrets = self._ensure_secret(plan)
        self.cluster.apply(manifests.content_claim_manifest(plan, self.settings))
        return clone_secrets

    def _ensure_secret(self, plan: ClonePlan) -> CloneSecrets:
        name = manifests.secret_name(plan.clone_id)
        for _ in range(2):  # a second round only if the Secret vanished between our create and read
            generated = new_clone_secrets()
            if self.cluster.create(manifests.secret_manifest(plan, self.settings, generated)):
                return generated
            existing = self.cluster.read("Secret", name)
            if existing is not None:
                self._check_ours(existing, plan.clone_id)
                log.info("k8s event=secret_reused clone_id=%s secret=%s", plan.clone_id, name)
                return manifests.secrets_from_data(name, existing.get("data"))
        raise KubernetesError(f"Secret {name} keeps appearing and disappearing; is another job deleting it?")

    @staticmethod
    def _check_ours(obj: Mapping[str, Any], clone_id: str) -> None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(CLONE_ID_LABEL) != clone_id:
            name = (obj.get("metadata") or {}).get("name")
            raise KubernetesError(
                f"{obj.get('kind') or 'Object'} {name} exists but does not belong to clone {clone_id}; "
                "wpclone will not take it over."
            )

    def source_db_password(self, source: SourceConfig) -> str:
        if not source.db_password_secret:
            raise ValueError(
                f"source {source.name} has no db_password_secret: the kubernetes runtime reads the source's "
                f"database password from a Secret (key {manifests.SOURCE_PASSWORD_KEY!r})."
            )
        secret = self.cluster.read("Secret", source.db_password_secret)
        if secret is None:
            raise KubernetesError(
                f"Secret {source.db_password_secret} does not exist in namespace {self.settings.namespace} "
                f"(the database password of source {source.name})."
            )
        value = (secret.get("data") or {}).get(manifests.SOURCE_PASSWORD_KEY)
        if not value:
            raise KubernetesError(
                f"Secret {source.db_password_secret} in namespace {self.settings.namespace} has no key "
                f"{manifests.SOURCE_PASSWORD_KEY!r} (the password of source {source.name})."
            )
        return base64.b64decode(value).decode()

    def deploy_site(
        self, plan: ClonePlan, constants: Mapping[str, str | int | bool], mu_plugin_php: str
    ) -> None:
        """Apply the ConfigMap, Deployment, Service and Ingress (see :mod:`wpclone.k8s.manifests`)."""
        for manifest in manifests.site_manifests(plan, self.settings, constants, mu_plugin_php):
            self.cluster.apply(manifest)

    def site_ready(self, plan: ClonePlan) -> bool:
        """The Deployment has a ready replica for its current spec (the readiness probe sends the Host)."""
        deployment = self.cluster.read("Deployment", manifests.site_name(plan.clone_id))
        if deployment is None:
            return False
        return deployment_ready(deployment)

    def secret_location(self, clone_id: str, key: str) -> str:
        if not manifests.SECRET_KEY_RE.fullmatch(key):
            raise ValueError(f"secret key {key!r} is not valid.")
        name = manifests.secret_name(clone_id)
        return f"secret/{name} key {key} in namespace {self.settings.namespace}"

    def delete_clone_objects(self, clone_id: str) -> list[str]:
        return self.cluster.delete_labelled(manifests.label_selector(clone_id))

    def list_clone_ids(self) -> set[str]:
        from wpclone.k8s.apply import DELETE_ORDER

        ids: set[str] = set()
        for kind in DELETE_ORDER:
            for item in self.cluster.list_objects(kind, manifests.label_selector()):
                value = ((item.get("metadata") or {}).get("labels") or {}).get(CLONE_ID_LABEL)
                if isinstance(value, str) and CLONE_ID_RE.fullmatch(value):
                    ids.add(value)
        return ids


def deployment_ready(deployment: Mapping[str, Any]) -> bool:
    """A ready replica, observed for the current generation (a stale status of an older spec is not)."""
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False
    return int(status.get("readyReplicas") or 0) >= 1
