"""A clone's Kubernetes objects as plain dicts: pure functions, no I/O, no Kubernetes client.

Per clone ``<id>`` (all in the settings' namespace, all labelled ``app.kubernetes.io/managed-by=wpclone``
and ``wpclone.io/clone-id=<id>`` and annotated ``wpclone.io/expires-at=<ISO UTC>``):

- Secret ``wpclone-<id>``: ``db-password``, ``admin-password`` and the eight WordPress salts
  (``auth-key`` ... ``nonce-salt``), as base64 ``data`` (what a real API server returns on read); a restore
  adds ``restore-db-password`` (the login its fresh database is loaded with) and, while it runs,
  ``param-<env>`` keys (run params a step receives by reference: a backup URL may carry a token).
- PersistentVolumeClaim ``wpclone-<id>-content``: the clone's wp-content in its directory ``wp-content``;
  the site mounts only that (``subPath``) so a restore can stage ``wp-content.restore-new`` beside it and
  switch with renames (:mod:`wpclone.k8s.content`, run by the short content pod below).
- Pod ``wpclone-<id>-content``: the content pod of a restore (switch, switch back, discard) or of a delete
  (``purge``: the clone's backups, on the backups claim), while it runs.
- ConfigMap ``wpclone-<id>-site``: the must-use plugin (PHP from the caller) and two small Apache files.
- Deployment ``wpclone-<id>``: the official WordPress image, one replica, ``Recreate`` (the content claim
  is ReadWriteOnce), readiness probe ``GET /`` with the clone's ``Host`` header.
- Service ``wpclone-<id>`` (port 80 -> the container's ``http``) and Ingress ``wpclone-<id>`` (the clone's
  host, ``ingressClassName`` from the settings, optional TLS secret).
- ConfigMap, Deployment and Service ``wpclone-<id>-preview``, while a restore runs: the restored site as a
  private preview (no Ingress), checked before the switch. The same WordPress workload as the site
  (:class:`Workload` says what differs): the restore's database ``wpr_<id>`` with its own login (the Secret's
  ``restore-db-password``), the staged ``wp-content.restore-new`` of the content claim (the live tree when
  the backup brought none), its own ConfigMap (the live site's stays as it is), on the site's node (the claim
  is ReadWriteOnce), and component ``preview``, so the site's Service never selects its pod.

Security context of the site: the official ``*-apache`` image starts as root to bind :80 and then drops to
``www-data``; that needs CHOWN/SETUID/SETGID. Instead the site runs as ``www-data`` (uid 33) from the
start (``runAsNonRoot``, all capabilities dropped, no privilege escalation, seccomp ``RuntimeDefault``)
and Apache listens on 8080: ``ports.conf`` and the default virtual host are replaced from the ConfigMap.
The image supports this ("running as an arbitrary user": its run, lock and document-root directories are
world-writable and its entrypoint copies WordPress core with ``--no-overwrite-dir`` when not root). The
root filesystem stays writable because that entrypoint copies core into ``/var/www/html`` at start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from wpclone.k8s.settings import KubernetesSettings
from wpclone.models import WORDPRESS_SALT_NAMES, ClonePlan, check_clone_id, restore_db_name
from wpclone.runtimes.base import (
    CLONE_ID_LABEL,
    EXPIRES_AT_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    CloneSecrets,
)

Manifest = dict[str, Any]

NAME_PREFIX = "wpclone-"
# RFC 1035 label: what Service names need (and the strictest rule among the kinds we create).
NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
HOST_RE = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
)
CONSTANT_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
SECRET_KEY_RE = re.compile(r"[-._a-zA-Z0-9]{1,253}")

COMPONENT_LABEL = "app.kubernetes.io/component"
SITE_COMPONENT = "site"
PREVIEW_COMPONENT = "preview"  # a restore's private preview of the site
PREVIEW_SUFFIX = "preview"  # of the preview's object names: wpclone-<id>-preview
CONFIG_CHECKSUM_ANNOTATION = "wpclone.io/config-checksum"
# On the site's pod template: the live wp-content's identity; a restore's switch changes it (a rollout).
CONTENT_REVISION_ANNOTATION = "wpclone.io/content-revision"
CONTENT_COMPONENT = "content"

# Keys of the clone's Secret.
DB_PASSWORD_KEY = "db-password"
ADMIN_PASSWORD_KEY = "admin-password"
RESTORE_PASSWORD_KEY = "restore-db-password"  # the login a restore loads its fresh database with
PARAM_KEY_PREFIX = "param-"  # run params handed to a step by reference (wpclone.k8s.pod)
# The key a source's Secret keeps its database password under (SourceConfig.db_password_secret).
SOURCE_PASSWORD_KEY = "password"

# The site container.
SITE_CONTAINER = "wordpress"
HTTP_PORT = 8080
SERVICE_PORT = 80
DOCUMENT_ROOT = "/var/www/html"
CONTENT_MOUNT = f"{DOCUMENT_ROOT}/wp-content"
CONTENT_SUBPATH = "wp-content"  # the live tree inside the content claim (wpclone.k8s.content.LIVE)
RESTORE_SUBPATH = "wp-content.restore-new"  # a restore's staged tree beside it (wpclone.k8s.content.STAGED)
MU_PLUGIN_KEY = "wpclone-staging.php"
PORTS_CONF_KEY = "ports.conf"
VHOST_CONF_KEY = "000-default.conf"
PORTS_CONF = f"Listen {HTTP_PORT}\n"
VHOST_CONF = f"""<VirtualHost *:{HTTP_PORT}>
\tDocumentRoot {DOCUMENT_ROOT}
\tErrorLog ${{APACHE_LOG_DIR}}/error.log
\tCustomLog ${{APACHE_LOG_DIR}}/access.log combined
</VirtualHost>
"""


# -- names and labels ------------------------------------------------------------------------------------


def pod_security_context(settings: KubernetesSettings) -> dict[str, Any]:
    """Non-root as the WordPress image's user (www-data), the content claim's group, default seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.fs_group,
        "fsGroup": settings.fs_group,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def check_name(name: str, what: str = "object name") -> str:
    """Return ``name`` if it is a valid name for every kind we create (RFC 1035 label), else ValueError."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a valid Kubernetes name: use at most 63 lower-case letters, digits "
            "and '-', starting with a letter."
        )
    return name


def object_name(clone_id: str, suffix: str = "") -> str:
    """``wpclone-<clone_id>`` (+ ``-<suffix>``), validated."""
    name = NAME_PREFIX + check_clone_id(clone_id) + (f"-{suffix}" if suffix else "")
    return check_name(name)


def secret_name(clone_id: str) -> str:
    return object_name(clone_id)


def content_claim_name(clone_id: str) -> str:
    return object_name(clone_id, "content")


def config_map_name(clone_id: str) -> str:
    return object_name(clone_id, "site")


def site_name(clone_id: str) -> str:
    """Name of the clone's Deployment, Service and Ingress."""
    return object_name(clone_id)


def preview_name(clone_id: str) -> str:
    """Name of the ConfigMap, Deployment and Service that serve a restore's preview (no Ingress: private)."""
    return object_name(clone_id, PREVIEW_SUFFIX)


def content_pod_name(clone_id: str) -> str:
    return object_name(clone_id, "content")


def clone_objects(clone_id: str) -> list[tuple[str, str]]:
    """(kind, name) of every object a clone may have under its own names (step pods have generated ones)."""
    site = site_name(clone_id)
    return [
        ("Secret", secret_name(clone_id)),
        ("PersistentVolumeClaim", content_claim_name(clone_id)),
        ("ConfigMap", config_map_name(clone_id)),
        ("Deployment", site),
        ("Service", site),
        ("Ingress", site),
        ("Pod", content_pod_name(clone_id)),
        *preview_objects(clone_id),
    ]


def preview_objects(clone_id: str) -> list[tuple[str, str]]:
    """(kind, name) of a restore's preview, in delete order (traffic first)."""
    name = preview_name(clone_id)
    return [("Service", name), ("Deployment", name), ("ConfigMap", name)]


def param_secret_key(env_name: str) -> str:
    """The clone Secret's key of a run param a step gets as ``env_name``: ``param-wpclone-backup-url``."""
    key = PARAM_KEY_PREFIX + env_name.lower().replace("_", "-")
    if not SECRET_KEY_RE.fullmatch(key):
        raise ValueError(f"{env_name!r} cannot name a Secret key.")
    return key


def salt_key(salt: str) -> str:
    """The Secret key of a WordPress salt: ``AUTH_KEY`` -> ``auth-key``."""
    return salt.lower().replace("_", "-")


def clone_labels(clone_id: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, CLONE_ID_LABEL: check_clone_id(clone_id)}


def site_selector(clone_id: str, component: str = SITE_COMPONENT) -> dict[str, str]:
    """Selects the site's pods (or its preview's: ``component``), not the clone's other pods (step pods, the
    content pod, the other of site and preview), which carry the clone id too."""
    return {**clone_labels(clone_id), COMPONENT_LABEL: component}


def label_selector(clone_id: str | None = None) -> str:
    """``app.kubernetes.io/managed-by=wpclone`` (+ ``,wpclone.io/clone-id=<id>``)."""
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    if clone_id is not None:
        selector += f",{CLONE_ID_LABEL}={check_clone_id(clone_id)}"
    return selector


def expires_at_value(expires_at: datetime) -> str:
    """The expiry annotation: ISO 8601 in UTC with a ``Z``, seconds precision."""
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware.")
    return expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def metadata(
    name: str,
    plan: ClonePlan,
    settings: KubernetesSettings,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "name": check_name(name),
        "namespace": settings.namespace,
        "labels": {**(labels or {}), **clone_labels(plan.clone_id)},
        "annotations": {**(annotations or {}), EXPIRES_AT_ANNOTATION: expires_at_value(plan.expires_at)},
    }


def clone_host(plan: ClonePlan) -> str:
    """The host name the clone is served at (from ``plan.url``), validated."""
    parts = urlsplit(plan.url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or parts.port is not None or not HOST_RE.fullmatch(host):
        raise ValueError(
            f"clone URL {plan.url!r} must be http(s)://<host> with a DNS host name and no port on kubernetes."
        )
    return host


# -- the Secret ------------------------------------------------------------------------------------------


def secret_data(secrets: CloneSecrets) -> dict[str, str]:
    """The Secret's ``stringData`` view: key -> value (never logged)."""
    missing = [s for s in WORDPRESS_SALT_NAMES if s not in secrets.salts]
    if missing:
        raise ValueError(f"the clone secrets lack the salts {', '.join(missing)}.")
    data = {DB_PASSWORD_KEY: secrets.db_password, ADMIN_PASSWORD_KEY: secrets.admin_password}
    data.update({salt_key(s): secrets.salts[s] for s in WORDPRESS_SALT_NAMES})
    return data


def secrets_from_data(name: str, data: Mapping[str, str] | None) -> CloneSecrets:
    """Read back CloneSecrets from a Secret's base64 ``data``; ValueError naming the missing keys."""
    data = data or {}
    wanted = [DB_PASSWORD_KEY, ADMIN_PASSWORD_KEY, *(salt_key(s) for s in WORDPRESS_SALT_NAMES)]
    missing = [key for key in wanted if not data.get(key)]
    if missing:
        raise ValueError(
            f"Secret {name} exists but lacks the keys {', '.join(missing)}: delete it and retry the clone."
        )
    decoded = {key: base64.b64decode(data[key]).decode() for key in wanted}
    return CloneSecrets(
        db_password=decoded[DB_PASSWORD_KEY],
        admin_password=decoded[ADMIN_PASSWORD_KEY],
        salts={s: decoded[salt_key(s)] for s in WORDPRESS_SALT_NAMES},
    )


def secret_manifest(plan: ClonePlan, settings: KubernetesSettings, secrets: CloneSecrets) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(secret_name(plan.clone_id), plan, settings),
        "type": "Opaque",
        "data": {
            key: base64.b64encode(value.encode()).decode() for key, value in secret_data(secrets).items()
        },
    }


# -- storage ---------------------------------------------------------------------------------------------


def content_claim_manifest(plan: ClonePlan, settings: KubernetesSettings) -> Manifest:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.content_size}},
    }
    if settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(content_claim_name(plan.clone_id), plan, settings),
        "spec": spec,
    }


# -- the site --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What one WordPress workload of a clone is made of: its live site, or a restore's preview of it."""

    name: str  # its Deployment and Service
    config_map: str  # must-use plugin and Apache files
    component: str  # its pods' component label, what its Service selects
    db_name: str  # its database, and the login of the same name
    db_password_key: str  # that login's password in the clone's Secret
    content_subpath: str  # the wp-content tree it serves, inside the clone's content claim
    content_revision: str | None = None  # that tree's identity on the pod template: another one rolls the pod
    node: str | None = None  # the node it must run on (the claim is ReadWriteOnce)


def site_workload(plan: ClonePlan) -> Workload:
    """The clone's live site: its own database and login, the claim's live tree."""
    return Workload(
        name=site_name(plan.clone_id),
        config_map=config_map_name(plan.clone_id),
        component=SITE_COMPONENT,
        db_name=plan.db_name,
        db_password_key=DB_PASSWORD_KEY,
        content_subpath=CONTENT_SUBPATH,
    )


def preview_workload(plan: ClonePlan, *, staged: str, live: str, node: str | None) -> Workload:
    """A restore's preview: the restore's database and login, and the staged tree (revision ``staged``) or,
    when the backup brought no wp-content (``staged`` empty), the live tree (revision ``live``) that the
    switch keeps; on ``node``, the site's."""
    name = preview_name(plan.clone_id)
    return Workload(
        name=name,
        config_map=name,
        component=PREVIEW_COMPONENT,
        db_name=restore_db_name(plan.clone_id),
        db_password_key=RESTORE_PASSWORD_KEY,
        content_subpath=RESTORE_SUBPATH if staged else CONTENT_SUBPATH,
        content_revision=staged or live,
        node=node,
    )


def php_literal(value: str | int | bool) -> str:
    """A PHP literal for a wp-config constant: ``true``/``false``, an integer or a single-quoted string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"a wp-config constant must be a string, integer or boolean, not {type(value).__name__}.")


def config_extra(plan: ClonePlan, constants: Mapping[str, str | int | bool]) -> str:
    """PHP for the image's ``WORDPRESS_CONFIG_EXTRA``: WP_HOME/WP_SITEURL and the caller's constants."""
    merged: dict[str, str | int | bool] = {"WP_HOME": plan.url, "WP_SITEURL": plan.url, **constants}
    lines = []
    for name, value in merged.items():
        if not CONSTANT_RE.fullmatch(name):
            raise ValueError(f"wp-config constant name {name!r} is not valid: use A-Z, 0-9 and '_'.")
        lines.append(f"define('{name}', {php_literal(value)});")
    return "\n".join(lines) + "\n"


def config_map_data(mu_plugin_php: str) -> dict[str, str]:
    return {MU_PLUGIN_KEY: mu_plugin_php, PORTS_CONF_KEY: PORTS_CONF, VHOST_CONF_KEY: VHOST_CONF}


def config_map_manifest(
    plan: ClonePlan, settings: KubernetesSettings, mu_plugin_php: str, workload: Workload | None = None
) -> Manifest:
    workload = workload or site_workload(plan)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            workload.config_map, plan, settings, labels={COMPONENT_LABEL: workload.component}
        ),
        "data": config_map_data(mu_plugin_php),
    }


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _site_env(
    plan: ClonePlan,
    settings: KubernetesSettings,
    constants: Mapping[str, str | int | bool],
    workload: Workload,
) -> list[dict[str, Any]]:
    db_host = settings.clone_db_host or plan.source.db_host
    db_port = settings.clone_db_port or plan.source.db_port
    secret = secret_name(plan.clone_id)
    env: list[dict[str, Any]] = [
        {"name": "WORDPRESS_DB_HOST", "value": f"{db_host}:{db_port}"},
        {"name": "WORDPRESS_DB_USER", "value": workload.db_name},
        {"name": "WORDPRESS_DB_NAME", "value": workload.db_name},
        _secret_env("WORDPRESS_DB_PASSWORD", secret, workload.db_password_key),
        {"name": "WORDPRESS_TABLE_PREFIX", "value": plan.source.table_prefix},
    ]
    env += [_secret_env(f"WORDPRESS_{s}", secret, salt_key(s)) for s in WORDPRESS_SALT_NAMES]
    env.append({"name": "WORDPRESS_CONFIG_EXTRA", "value": config_extra(plan, constants)})
    return env


def _site_mounts(workload: Workload) -> list[dict[str, Any]]:
    return [
        {"name": "content", "mountPath": CONTENT_MOUNT, "subPath": workload.content_subpath},
        {
            "name": "site-config",
            "mountPath": f"/etc/apache2/{PORTS_CONF_KEY}",
            "subPath": PORTS_CONF_KEY,
            "readOnly": True,
        },
        {
            "name": "site-config",
            "mountPath": f"/etc/apache2/sites-available/{VHOST_CONF_KEY}",
            "subPath": VHOST_CONF_KEY,
            "readOnly": True,
        },
        {
            "name": "site-config",
            "mountPath": f"{CONTENT_MOUNT}/mu-plugins/{MU_PLUGIN_KEY}",
            "subPath": MU_PLUGIN_KEY,
            "readOnly": True,
        },
    ]


def deployment_manifest(
    plan: ClonePlan,
    settings: KubernetesSettings,
    constants: Mapping[str, str | int | bool],
    mu_plugin_php: str,
    workload: Workload | None = None,
) -> Manifest:
    """The site's Deployment (or ``workload``'s: a restore's preview)."""
    workload = workload or site_workload(plan)
    host = clone_host(plan)
    scheme = urlsplit(plan.url).scheme
    selector = site_selector(plan.clone_id, workload.component)
    # subPath mounts never see ConfigMap updates: a changed checksum rolls the pod instead.
    checksum = hashlib.sha256(json.dumps(config_map_data(mu_plugin_php), sort_keys=True).encode()).hexdigest()
    annotations = {
        EXPIRES_AT_ANNOTATION: expires_at_value(plan.expires_at),
        CONFIG_CHECKSUM_ANNOTATION: checksum,
    }
    if workload.content_revision is not None:
        annotations[CONTENT_REVISION_ANNOTATION] = workload.content_revision
    container = {
        "name": SITE_CONTAINER,
        "image": settings.wordpress_image,
        "imagePullPolicy": settings.image_pull_policy,
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": _site_env(plan, settings, constants, workload),
        "volumeMounts": _site_mounts(workload),
        "readinessProbe": {
            "httpGet": {
                "path": "/",
                "port": "http",
                "httpHeaders": [
                    {"name": "Host", "value": host},
                    {"name": "X-Forwarded-Proto", "value": scheme},
                ],
            },
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "tcpSocket": {"port": "http"},
            "initialDelaySeconds": 60,
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": settings.site_cpu_request, "memory": settings.site_memory_request},
            "limits": {"cpu": settings.site_cpu_limit, "memory": settings.site_memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.fs_group,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": False,  # the image's entrypoint copies core into /var/www/html
        },
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(settings),
        "containers": [container],
        "volumes": [
            {"name": "content", "persistentVolumeClaim": {"claimName": content_claim_name(plan.clone_id)}},
            {"name": "site-config", "configMap": {"name": workload.config_map}},
        ],
    }
    if workload.node:
        pod["affinity"] = node_affinity(workload.node)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(workload.name, plan, settings, labels={COMPONENT_LABEL: workload.component}),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 1,
            "strategy": {"type": "Recreate"},  # the content claim is ReadWriteOnce
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": selector, "annotations": annotations}, "spec": pod},
        },
    }


def service_manifest(
    plan: ClonePlan, settings: KubernetesSettings, workload: Workload | None = None
) -> Manifest:
    workload = workload or site_workload(plan)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(workload.name, plan, settings, labels={COMPONENT_LABEL: workload.component}),
        "spec": {
            "type": "ClusterIP",
            "selector": site_selector(plan.clone_id, workload.component),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def ingress_manifest(plan: ClonePlan, settings: KubernetesSettings) -> Manifest:
    host = clone_host(plan)
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {"name": site_name(plan.clone_id), "port": {"name": "http"}}
                            },
                        }
                    ]
                },
            }
        ]
    }
    if settings.ingress_class:
        spec["ingressClassName"] = settings.ingress_class
    if settings.tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": settings.tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(
            site_name(plan.clone_id), plan, settings, annotations=settings.ingress_annotations
        ),
        "spec": spec,
    }


def site_manifests(
    plan: ClonePlan,
    settings: KubernetesSettings,
    constants: Mapping[str, str | int | bool],
    mu_plugin_php: str,
) -> list[Manifest]:
    """What ``deploy_site`` applies, in order: ConfigMap, Deployment, Service, Ingress."""
    return [
        config_map_manifest(plan, settings, mu_plugin_php),
        deployment_manifest(plan, settings, constants, mu_plugin_php),
        service_manifest(plan, settings),
        ingress_manifest(plan, settings),
    ]


def preview_manifests(
    plan: ClonePlan,
    settings: KubernetesSettings,
    constants: Mapping[str, str | int | bool],
    mu_plugin_php: str,
    workload: Workload,
) -> list[Manifest]:
    """What ``deploy_preview`` applies, in order: ConfigMap, Deployment, Service (no Ingress: private)."""
    return [
        config_map_manifest(plan, settings, mu_plugin_php, workload),
        deployment_manifest(plan, settings, constants, mu_plugin_php, workload),
        service_manifest(plan, settings, workload),
    ]


# -- the restore's content pod ---------------------------------------------------------------------------

CONTENT_ACTIONS = ("switch", "switch-back", "discard", "inspect")  # on the clone's content claim
PURGE_ACTION = "purge"  # on the backups claim: remove the clone's backups (wpclone.k8s.content.ACTIONS)
CONTENT_POD_ROOT = "/content/clone"  # where the content pod mounts the whole claim


def content_pod_manifest(
    clone_id: str, action: str, settings: KubernetesSettings, *, node: str | None = None
) -> Manifest:
    """A pod that runs ``python -m wpclone.k8s.content <action>``: a content action on the clone's whole
    content claim, or ``purge`` of ``<backup_mount>/<clone_id>`` on the backups claim.

    ``node``: where the site's pod runs. The content claim is ReadWriteOnce, so the pod must run there too
    (it is required, not preferred; without a running site any node will do).
    """
    if action == PURGE_ACTION:
        claim, mount = settings.backup_claim, settings.backup_mount
        root = f"{mount}/{check_clone_id(clone_id)}"
    elif action in CONTENT_ACTIONS:
        claim, mount, root = content_claim_name(clone_id), CONTENT_POD_ROOT, CONTENT_POD_ROOT
    else:
        actions = ", ".join((*CONTENT_ACTIONS, PURGE_ACTION))
        raise ValueError(f"content action {action!r} is not one of {actions}.")
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": settings.content_pod_timeout_seconds,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(settings),
        "containers": [
            {
                "name": "content",
                "image": settings.toolbox_image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["python", "-m", "wpclone.k8s.content", action, root],
                "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                "volumeMounts": [{"name": "content", "mountPath": mount}],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"cpu": "1", "memory": "256Mi"},
                },
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": settings.run_as_user,
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "volumes": [{"name": "content", "persistentVolumeClaim": {"claimName": claim}}],
    }
    if node:
        spec["affinity"] = node_affinity(node)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": content_pod_name(clone_id),
            "namespace": settings.namespace,
            "labels": {**clone_labels(clone_id), COMPONENT_LABEL: CONTENT_COMPONENT},
        },
        "spec": spec,
    }


def node_affinity(node: str) -> dict[str, Any]:
    """Only on ``node`` (required): where the site's pod runs, for a pod that mounts the clone's claim."""
    check_subdomain(node, "node name")
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def check_subdomain(value: str, what: str) -> str:
    if not HOST_RE.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a valid DNS subdomain.")
    return value
