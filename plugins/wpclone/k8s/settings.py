"""Where and how the kubernetes runtime deploys clones: one typed settings object read from the environment.

Every field reads ``WPCLONE_K8S_<FIELD>`` (upper case), except the two images, which read
``WPCLONE_TOOLBOX_IMAGE`` and ``WPCLONE_WORDPRESS_IMAGE`` (the names are wpclone.settings'), and
``ingress_annotations`` is a JSON object. Reading them is pure (no I/O beyond ``os.environ``), so it is safe
at DAG parse time.

Choices worth knowing:

- Everything a clone owns lives in one namespace (``namespace``) that the Airflow workers' Role is limited
  to. A source's Secret (``db_password_secret``, key ``password``) and its content claim (``content_claim``,
  a read-only-many claim bound to the source's storage) must therefore exist in that namespace too.
- The clone's database lives on the shared MySQL server: by default the source's host and port, or
  ``clone_db_host`` / ``clone_db_port`` when the clones' databases live elsewhere.
- When Airflow's connection ``wpclone_mysql`` asks for TLS with files (its extra's ``ssl``: ``ca``,
  ``cert``, ``key``), the steps' pods mount the Secret ``db_tls_secret`` (keys ``ca.crt``, ``tls.crt``,
  ``tls.key``) read-only and get its paths in ``<prefix>_SSL_CA/_CERT/_KEY`` (docs/database-tls.md).
- Backups (``wp_backup``, and the safety backup of ``wp_restore``) go to the claim ``backup_claim``, created
  with helm-values/manifests/ (ReadWriteMany: several clones back up at once, from any node). Only our pods
  mount it (the backup and restore steps, and the pod that purges a deleted clone's backups), never
  Airflow's own: a restore's ``file://`` URL is checked for its form in the worker and resolved in the
  step's pod, where it may read only under ``backup_mount``.
- ``deferrable``: the step pods are then watched by the provider's trigger in the triggerer, as the
  triggerer's ServiceAccount, which the shipped RoleBinding names next to the workers' (``airflow-
  triggerer``, set in helm-values/airflow.yaml); on the synchronous path a pod that cannot start fails
  with its cause within seconds (:mod:`wpclone.k8s.startup`), a deferred one at the provider's timeouts.
- ``startup_timeout_seconds`` bounds how long a step pod or the content pod may stay ``Pending`` for a
  reason that may still resolve (no node fits it yet) before it fails with that reason.
- ``run_as_user`` / ``fs_group`` default to 33, ``www-data`` in the official WordPress image. The site runs
  as that user and the steps write the clone's wp-content as that user: copy-content keeps modes but not
  ownership, so a step running as any other uid would leave uploads the site cannot write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wpclone.errors import ConfigError
from wpclone.settings import kubernetes_env, kubernetes_env_name

# A Kubernetes quantity such as 250m, 1.5, 512Mi or 5Gi.
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")]
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
DnsName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
Image = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$", max_length=512)]

# Where a step's pod mounts the Secret ``db_tls_secret``, and its key for each TLS file (wpclone.db.DbTls).
DB_TLS_MOUNT = "/etc/wpclone/db-tls"
DB_TLS_KEYS = {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key"}


class KubernetesSettings(BaseModel):
    """Deployment settings of the kubernetes runtime (see the module docstring for the environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: DnsLabel = "wpclone-clones"
    conn_id: str = Field(default="kubernetes_default", pattern=r"^[A-Za-z0-9_.-]{1,250}$")
    toolbox_image: Image = "wpclone-toolbox:0.1.0"
    wordpress_image: Image = "wordpress:6.1-php8.2-apache"
    image_pull_policy: str = Field(default="IfNotPresent", pattern=r"^(Always|IfNotPresent|Never)$")

    # wp-content storage of each clone.
    storage_class: DnsName | None = None  # None: the cluster's default class
    content_size: Quantity = "5Gi"

    # Backups: a shared claim, mounted into the backup and restore step pods (module docstring).
    backup_claim: DnsName = "wpclone-backups"
    backup_mount: str = Field(default="/backups", pattern=r"^(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$")
    content_pod_timeout_seconds: int = Field(default=600, ge=30)  # the restore's wp-content switch pod

    # How clones are exposed.
    ingress_class: DnsName | None = "nginx"
    tls_secret: DnsName | None = None  # e.g. a wildcard certificate for *.<clone_domain>
    ingress_annotations: dict[str, str] = Field(default_factory=dict)

    # Where the clones' databases live (default: the source's database server).
    clone_db_host: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.:-]{1,255}$")
    clone_db_port: int | None = Field(default=None, ge=1, le=65535)
    # The Secret holding the TLS files the wpclone_mysql connection names (keys ca.crt, tls.crt, tls.key),
    # mounted into the steps' pods (docs/database-tls.md).
    db_tls_secret: DnsName | None = None

    # Who the site and the steps run as (www-data in the official image, see the module docstring).
    run_as_user: int = Field(default=33, ge=1)
    fs_group: int = Field(default=33, ge=1)

    # The site's container.
    site_cpu_request: Quantity = "100m"
    site_memory_request: Quantity = "256Mi"
    site_cpu_limit: Quantity = "1"
    site_memory_limit: Quantity = "512Mi"

    # The steps' pods.
    step_cpu_request: Quantity = "250m"
    step_memory_request: Quantity = "256Mi"
    step_cpu_limit: Quantity = "2"
    step_memory_limit: Quantity = "1Gi"
    step_service_account: DnsName | None = None  # steps need no API access; the token is not mounted
    startup_timeout_seconds: int = Field(default=300, ge=10)
    deferrable: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KubernetesSettings:
        """Settings from ``WPCLONE_K8S_*`` (and the two image variables); ValueError with one sentence."""
        values: dict[str, object] = dict(kubernetes_env(cls.model_fields, env))
        if "ingress_annotations" in values:
            try:
                values["ingress_annotations"] = json.loads(str(values["ingress_annotations"]))
            except ValueError:
                key = kubernetes_env_name("ingress_annotations")
                raise ConfigError(f"{key} must be a JSON object of strings.") from None
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            raise ConfigError(f"{kubernetes_env_name(field)} is not valid: {first['msg']}.") from None
