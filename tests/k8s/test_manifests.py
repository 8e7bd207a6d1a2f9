"""The clone's Kubernetes objects: names, labels, secrets, the site's spec, a restore's preview of it, and
schema validity.

Every manifest is validated against the Kubernetes JSON schemas of a pinned release (kubernetes-validate,
strict: unknown fields are errors).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import kubernetes_validate
import pytest

from wpclone.k8s import manifests
from wpclone.k8s.settings import KubernetesSettings
from wpclone.models import ClonePlan, CopyMode, SourceConfig
from wpclone.runtimes.base import CLONE_ID_LABEL, EXPIRES_AT_ANNOTATION, MANAGED_BY_LABEL, CloneSecrets
from wpclone.runtimes.kubernetes import new_clone_secrets

K8S_VERSIONS = ("1.33", "1.37")  # pinned: a recent supported release and the newest the validator ships
MU_PLUGIN = (
    "<?php\n// staging safety, from the integrator\nadd_filter('pre_option_blog_public', '__return_zero');\n"
)
CONSTANTS: dict[str, str | int | bool] = {
    "WP_ENVIRONMENT_TYPE": "staging",
    "DISABLE_WP_CRON": True,
    "WP_POST_REVISIONS": 3,
    "WPCLONE_NOTE": "it's a \\ clone",
}


def make_source(**overrides: Any) -> SourceConfig:
    values: dict[str, Any] = {
        "name": "shop",
        "url": "https://shop.example.com",
        "db_host": "mysql.databases.svc",
        "db_port": 3306,
        "db_name": "shop",
        "db_user": "shop",
        "db_password_secret": "shop-db",
        "content_claim": "shop-content",
        "table_prefix": "wp_",
    }
    return SourceConfig(**{**values, **overrides})


def make_plan(clone_id: str = "shop-abc123", **overrides: Any) -> ClonePlan:
    values: dict[str, Any] = {
        "clone_id": clone_id,
        "source": make_source(),
        "url": f"https://{clone_id}.clones.example.com",
        "db_name": "wpc_" + clone_id.replace("-", "_"),
        "ttl_minutes": 60,
        "copy_mode": CopyMode.EVERYTHING,
        "expires_at": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    return ClonePlan(**{**values, **overrides})


def all_manifests(plan: ClonePlan, settings: KubernetesSettings) -> list[dict[str, Any]]:
    return [
        manifests.secret_manifest(plan, settings, new_clone_secrets()),
        manifests.content_claim_manifest(plan, settings),
        *manifests.site_manifests(plan, settings, CONSTANTS, MU_PLUGIN),
    ]


def preview_of(plan: ClonePlan, settings: KubernetesSettings, **trees: Any) -> list[dict[str, Any]]:
    """The preview's manifests, of a staged tree (revision 41) on node-a unless ``trees`` say otherwise."""
    where: dict[str, Any] = {"staged": "41", "live": "7", "node": "node-a", **trees}
    workload = manifests.preview_workload(plan, **where)
    return manifests.preview_manifests(plan, settings, CONSTANTS, MU_PLUGIN, workload)


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item for item in container["env"]}


@pytest.fixture
def settings() -> KubernetesSettings:
    return KubernetesSettings()


# -- names and labels -------------------------------------------------------------------------------------


def test_names_follow_the_clone_id() -> None:
    assert manifests.secret_name("shop-abc123") == "wpclone-shop-abc123"
    assert manifests.content_claim_name("shop-abc123") == "wpclone-shop-abc123-content"
    assert manifests.config_map_name("shop-abc123") == "wpclone-shop-abc123-site"
    assert manifests.site_name("shop-abc123") == "wpclone-shop-abc123"
    assert manifests.preview_name("shop-abc123") == "wpclone-shop-abc123-preview"
    longest = "a" * 28
    assert len(manifests.content_claim_name(longest)) <= 63
    assert len(manifests.preview_name(longest)) <= 63
    # Everything a clone may have under its own names, the preview's too (what check_clone_names reads).
    assert manifests.clone_objects("shop-abc123")[-3:] == [
        ("Service", "wpclone-shop-abc123-preview"),
        ("Deployment", "wpclone-shop-abc123-preview"),
        ("ConfigMap", "wpclone-shop-abc123-preview"),
    ]


@pytest.mark.parametrize(
    "bad", ["", "Shop", "shop_1", "x", "a;rm -rf", "../etc", "shop-", "a" * 29, "shop\n"]
)
def test_bad_clone_ids_never_become_names(bad: str) -> None:
    with pytest.raises(ValueError, match="not valid"):
        manifests.object_name(bad)
    with pytest.raises(ValueError, match="not valid"):
        manifests.label_selector(bad)


def test_check_name_refuses_what_a_service_cannot_be_named() -> None:
    assert manifests.check_name("wpclone-a1") == "wpclone-a1"
    for bad in ("1abc", "a" * 64, "a.b", "a-", "A"):
        with pytest.raises(ValueError, match="not a valid Kubernetes name"):
            manifests.check_name(bad)


def test_label_selector() -> None:
    assert manifests.label_selector() == "app.kubernetes.io/managed-by=wpclone"
    assert manifests.label_selector("shop-abc123") == (
        "app.kubernetes.io/managed-by=wpclone,wpclone.io/clone-id=shop-abc123"
    )


def test_every_object_is_labelled_annotated_and_namespaced(settings: KubernetesSettings) -> None:
    plan = make_plan()
    objects = all_manifests(plan, settings)
    assert [o["kind"] for o in objects] == [
        "Secret",
        "PersistentVolumeClaim",
        "ConfigMap",
        "Deployment",
        "Service",
        "Ingress",
    ]
    for obj in objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "wpclone-clones"
        assert meta["name"].startswith("wpclone-shop-abc123")
        assert meta["labels"][MANAGED_BY_LABEL] == "wpclone"
        assert meta["labels"][CLONE_ID_LABEL] == "shop-abc123"
        assert meta["annotations"][EXPIRES_AT_ANNOTATION] == "2030-01-02T03:04:05Z"


def test_expiry_annotation_is_utc() -> None:
    cest = timezone(timedelta(hours=2))
    assert manifests.expires_at_value(datetime(2030, 6, 1, 12, 0, 30, tzinfo=cest)) == "2030-06-01T10:00:30Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        manifests.expires_at_value(datetime(2030, 6, 1))


# -- the Secret -------------------------------------------------------------------------------------------


def test_secret_round_trips_through_base64_data(settings: KubernetesSettings) -> None:
    generated = new_clone_secrets()
    secret = manifests.secret_manifest(make_plan(), settings, generated)
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert set(secret["data"]) == {
        "db-password",
        "admin-password",
        "auth-key",
        "secure-auth-key",
        "logged-in-key",
        "nonce-key",
        "auth-salt",
        "secure-auth-salt",
        "logged-in-salt",
        "nonce-salt",
    }
    assert base64.b64decode(secret["data"]["db-password"]).decode() == generated.db_password
    back = manifests.secrets_from_data(secret["metadata"]["name"], secret["data"])
    assert back == generated
    assert dict(back.salts) == dict(generated.salts)


def test_secrets_are_random_and_hidden_from_repr() -> None:
    one, two = new_clone_secrets(), new_clone_secrets()
    assert one.db_password != two.db_password
    assert len(one.db_password) >= 24 and len(one.admin_password) >= 16
    assert set(one.salts) == set(manifests.WORDPRESS_SALT_NAMES)
    assert len(set(one.salts.values())) == len(manifests.WORDPRESS_SALT_NAMES)
    assert one.db_password not in repr(one) and one.admin_password not in repr(one)


def test_a_secret_missing_keys_is_reported_by_key_not_value() -> None:
    data = {"db-password": base64.b64encode(b"hunter2").decode()}
    with pytest.raises(ValueError, match="lacks the keys admin-password") as caught:
        manifests.secrets_from_data("wpclone-x", data)
    assert "hunter2" not in str(caught.value)


def test_incomplete_salts_are_refused(settings: KubernetesSettings) -> None:
    partial = CloneSecrets(db_password="a", admin_password="b", salts={"AUTH_KEY": "c"})
    with pytest.raises(ValueError, match="lack the salts"):
        manifests.secret_manifest(make_plan(), settings, partial)


# -- the site ---------------------------------------------------------------------------------------------


def test_deployment_runs_wordpress_with_secrets_only_by_reference(settings: KubernetesSettings) -> None:
    plan = make_plan()
    deployment = manifests.deployment_manifest(plan, settings, CONSTANTS, MU_PLUGIN)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "wordpress:6.1-php8.2-apache"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = env_of(deployment)
    assert env["WORDPRESS_DB_HOST"]["value"] == "mysql.databases.svc:3306"
    assert env["WORDPRESS_DB_USER"]["value"] == "wpc_shop_abc123"
    assert env["WORDPRESS_DB_NAME"]["value"] == "wpc_shop_abc123"
    assert env["WORDPRESS_TABLE_PREFIX"]["value"] == "wp_"
    assert env["WORDPRESS_DB_PASSWORD"] == {
        "name": "WORDPRESS_DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "wpclone-shop-abc123", "key": "db-password"}},
    }
    for salt in manifests.WORDPRESS_SALT_NAMES:
        ref = env[f"WORDPRESS_{salt}"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "wpclone-shop-abc123", "key": manifests.salt_key(salt)}
        assert "value" not in env[f"WORDPRESS_{salt}"]
    assert "value" not in env["WORDPRESS_DB_PASSWORD"]


def test_config_extra_defines_home_siteurl_and_constants(settings: KubernetesSettings) -> None:
    deployment = manifests.deployment_manifest(make_plan(), settings, CONSTANTS, MU_PLUGIN)
    extra = env_of(deployment)["WORDPRESS_CONFIG_EXTRA"]["value"]
    assert extra.splitlines() == [
        "define('WP_HOME', 'https://shop-abc123.clones.example.com');",
        "define('WP_SITEURL', 'https://shop-abc123.clones.example.com');",
        "define('WP_ENVIRONMENT_TYPE', 'staging');",
        "define('DISABLE_WP_CRON', true);",
        "define('WP_POST_REVISIONS', 3);",
        "define('WPCLONE_NOTE', 'it\\'s a \\\\ clone');",
    ]


@pytest.mark.parametrize("name", ["wp_home", "A-B", "1X", "X');system('id"])
def test_bad_constant_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="constant name"):
        manifests.config_extra(make_plan(), {name: "x"})


def test_clone_db_host_setting_overrides_the_source_server() -> None:
    settings = KubernetesSettings(clone_db_host="clones-mysql.db.svc", clone_db_port=3307)
    deployment = manifests.deployment_manifest(make_plan(), settings, {}, MU_PLUGIN)
    assert env_of(deployment)["WORDPRESS_DB_HOST"]["value"] == "clones-mysql.db.svc:3307"


def test_volumes_content_claim_and_mu_plugin(settings: KubernetesSettings) -> None:
    deployment = manifests.deployment_manifest(make_plan(), settings, {}, MU_PLUGIN)
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["content"]["persistentVolumeClaim"] == {"claimName": "wpclone-shop-abc123-content"}
    assert volumes["site-config"]["configMap"] == {"name": "wpclone-shop-abc123-site"}
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    # Only the claim's live tree: a restore stages beside it and switches by renames (wpclone.k8s.content).
    assert mounts["/var/www/html/wp-content"] == {
        "name": "content",
        "mountPath": "/var/www/html/wp-content",
        "subPath": "wp-content",
    }
    mu = mounts["/var/www/html/wp-content/mu-plugins/wpclone-staging.php"]
    assert mu == {
        "name": "site-config",
        "mountPath": "/var/www/html/wp-content/mu-plugins/wpclone-staging.php",
        "subPath": "wpclone-staging.php",
        "readOnly": True,
    }
    config_map = manifests.config_map_manifest(make_plan(), settings, MU_PLUGIN)
    assert config_map["data"]["wpclone-staging.php"] == MU_PLUGIN
    # Apache listens where the container port says.
    assert config_map["data"]["ports.conf"] == "Listen 8080\n"
    assert "<VirtualHost *:8080>" in config_map["data"]["000-default.conf"]
    assert pod["containers"][0]["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_a_changed_mu_plugin_rolls_the_pod(settings: KubernetesSettings) -> None:
    def checksum(php: str) -> str:
        deployment = manifests.deployment_manifest(make_plan(), settings, {}, php)
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["wpclone.io/config-checksum"])

    assert checksum(MU_PLUGIN) == checksum(MU_PLUGIN)
    assert checksum(MU_PLUGIN) != checksum(MU_PLUGIN + "// v2\n")


def test_readiness_probe_sends_the_clone_host(settings: KubernetesSettings) -> None:
    deployment = manifests.deployment_manifest(make_plan(), settings, {}, MU_PLUGIN)
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/"
    assert probe["port"] == "http"
    assert {"name": "Host", "value": "shop-abc123.clones.example.com"} in probe["httpHeaders"]


def test_site_security_context_is_non_root_and_capability_free(settings: KubernetesSettings) -> None:
    deployment = manifests.deployment_manifest(make_plan(), settings, {}, MU_PLUGIN)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 33
    assert pod["securityContext"]["fsGroup"] == 33
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    resources = pod["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert resources["limits"] == {"cpu": "1", "memory": "512Mi"}


def test_service_selects_only_the_site_pods(settings: KubernetesSettings) -> None:
    plan = make_plan()
    service = manifests.service_manifest(plan, settings)
    deployment = manifests.deployment_manifest(plan, settings, {}, MU_PLUGIN)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "site"
    assert deployment["spec"]["template"]["metadata"]["labels"] == service["spec"]["selector"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_ingress_routes_the_clone_host() -> None:
    settings = KubernetesSettings(
        ingress_class="traefik",
        tls_secret="clones-wildcard-tls",
        ingress_annotations={"cert-manager.io/cluster-issuer": "letsencrypt"},
    )
    ingress = manifests.ingress_manifest(make_plan(), settings)
    assert ingress["spec"]["ingressClassName"] == "traefik"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "shop-abc123.clones.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "wpclone-shop-abc123",
        "port": {"name": "http"},
    }
    assert ingress["spec"]["tls"] == [
        {"hosts": ["shop-abc123.clones.example.com"], "secretName": "clones-wildcard-tls"}
    ]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"


@pytest.mark.parametrize(
    "url", ["https://shop-abc123.localhost:8080", "ftp://x.example.com", "https://Bad_Host"]
)
def test_clone_urls_that_cannot_be_an_ingress_host_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="DNS host name"):
        manifests.clone_host(make_plan(url=url))


def test_storage_class_and_size() -> None:
    default = manifests.content_claim_manifest(make_plan(), KubernetesSettings())
    assert "storageClassName" not in default["spec"]
    assert default["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert default["spec"]["resources"]["requests"]["storage"] == "5Gi"
    custom = manifests.content_claim_manifest(
        make_plan(), KubernetesSettings(storage_class="fast-ssd", content_size="20Gi")
    )
    assert custom["spec"]["storageClassName"] == "fast-ssd"
    assert custom["spec"]["resources"]["requests"]["storage"] == "20Gi"


# -- a restore's preview ---------------------------------------------------------------------------------


def test_the_preview_is_a_private_copy_of_the_site_under_its_own_name(settings: KubernetesSettings) -> None:
    plan = make_plan()
    config_map, deployment, service = preview_of(plan, settings)
    assert [(m["kind"], m["metadata"]["name"]) for m in (config_map, deployment, service)] == [
        ("ConfigMap", "wpclone-shop-abc123-preview"),
        ("Deployment", "wpclone-shop-abc123-preview"),
        ("Service", "wpclone-shop-abc123-preview"),
    ]  # no Ingress: reachable only through its Service, inside the cluster
    for obj in (config_map, deployment, service):
        labels = obj["metadata"]["labels"]
        assert labels[MANAGED_BY_LABEL] == "wpclone" and labels[CLONE_ID_LABEL] == "shop-abc123"
        assert labels["app.kubernetes.io/component"] == "preview"
        assert obj["metadata"]["annotations"][EXPIRES_AT_ANNOTATION] == "2030-01-02T03:04:05Z"
    # The same must-use plugin and Apache files, in a ConfigMap of its own: the site's stays as it is.
    site_config_map = manifests.config_map_manifest(plan, settings, MU_PLUGIN)
    assert config_map["data"] == site_config_map["data"]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["site-config"]["configMap"] == {"name": "wpclone-shop-abc123-preview"}
    # The same WordPress, URL, constants, salts and probe as the site (what will be switched in).
    site = manifests.deployment_manifest(plan, settings, CONSTANTS, MU_PLUGIN)
    site_pod = site["spec"]["template"]["spec"]
    container, site_container = pod["containers"][0], site_pod["containers"][0]
    for field in ("image", "ports", "readinessProbe", "securityContext", "resources"):
        assert container[field] == site_container[field], field
    assert pod["securityContext"] == site_pod["securityContext"]
    env, site_env = env_of(deployment), env_of(site)
    assert env["WORDPRESS_CONFIG_EXTRA"] == site_env["WORDPRESS_CONFIG_EXTRA"]
    assert (
        "define('WP_HOME', 'https://shop-abc123.clones.example.com');"
        in (env["WORDPRESS_CONFIG_EXTRA"]["value"])
    )
    for salt in manifests.WORDPRESS_SALT_NAMES:
        assert env[f"WORDPRESS_{salt}"] == site_env[f"WORDPRESS_{salt}"]


def test_the_preview_serves_the_restores_database_and_staged_content(settings: KubernetesSettings) -> None:
    _, deployment, _ = preview_of(make_plan(), settings)
    env = env_of(deployment)
    # The restore's fresh database, with the login that may touch only it; its password only by reference.
    assert env["WORDPRESS_DB_NAME"]["value"] == "wpr_shop_abc123"
    assert env["WORDPRESS_DB_USER"]["value"] == "wpr_shop_abc123"
    assert env["WORDPRESS_DB_HOST"]["value"] == "mysql.databases.svc:3306"
    assert env["WORDPRESS_DB_PASSWORD"] == {
        "name": "WORDPRESS_DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "wpclone-shop-abc123", "key": "restore-db-password"}},
    }
    # The clone's claim, but the tree the restore step staged beside the live one.
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["content"]["persistentVolumeClaim"] == {"claimName": "wpclone-shop-abc123-content"}
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/var/www/html/wp-content"]["subPath"] == "wp-content.restore-new"
    assert (
        mounts["/var/www/html/wp-content/mu-plugins/wpclone-staging.php"]["subPath"] == "wpclone-staging.php"
    )
    # That tree's revision: a preview left from an earlier try, on a tree since replaced, is rolled.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[manifests.CONTENT_REVISION_ANNOTATION] == "41"
    again = preview_of(make_plan(), settings, staged="42")[1]
    assert again["spec"]["template"]["metadata"]["annotations"][manifests.CONTENT_REVISION_ANNOTATION] == "42"


def test_a_database_only_restore_is_previewed_with_the_live_content(settings: KubernetesSettings) -> None:
    """A backup without wp-content stages none and the switch keeps the live tree: the preview shows that."""
    _, deployment, _ = preview_of(make_plan(), settings, staged="")
    template = deployment["spec"]["template"]
    mounts = {m["mountPath"]: m for m in template["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/var/www/html/wp-content"]["subPath"] == "wp-content"
    assert template["metadata"]["annotations"][manifests.CONTENT_REVISION_ANNOTATION] == "7"
    assert env_of(deployment)["WORDPRESS_DB_NAME"]["value"] == "wpr_shop_abc123"


def test_the_preview_runs_on_the_sites_node(settings: KubernetesSettings) -> None:
    """The content claim is ReadWriteOnce: the same affinity as the content pod's."""
    _, deployment, _ = preview_of(make_plan(), settings)
    affinity = deployment["spec"]["template"]["spec"]["affinity"]
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]
    content_pod = manifests.content_pod_manifest("shop-abc123", "inspect", settings, node="node-a")
    assert content_pod["spec"]["affinity"] == affinity
    # No site pod running (so the claim is attached nowhere): any node.
    anywhere = preview_of(make_plan(), settings, node=None)[1]
    assert "affinity" not in anywhere["spec"]["template"]["spec"]
    with pytest.raises(ValueError, match="node name"):
        preview_of(make_plan(), settings, node="Node A")
    # The site itself is not pinned: it goes where its claim can be attached.
    site = manifests.deployment_manifest(make_plan(), settings, {}, MU_PLUGIN)
    assert "affinity" not in site["spec"]["template"]["spec"]


def test_the_sites_service_never_selects_the_preview_pod(settings: KubernetesSettings) -> None:
    def selects(service: dict[str, Any], deployment: dict[str, Any]) -> bool:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        return all(labels.get(k) == v for k, v in service["spec"]["selector"].items())

    plan = make_plan()
    _, preview, preview_service = preview_of(plan, settings)
    site = manifests.deployment_manifest(plan, settings, {}, MU_PLUGIN)
    site_service = manifests.service_manifest(plan, settings)
    assert selects(site_service, site) and not selects(site_service, preview)
    assert selects(preview_service, preview) and not selects(preview_service, site)
    assert preview["spec"]["selector"]["matchLabels"] == preview_service["spec"]["selector"]
    assert preview_service["spec"]["ports"] == site_service["spec"]["ports"]
    assert preview_service["spec"]["type"] == "ClusterIP"


# -- settings ---------------------------------------------------------------------------------------------


def test_settings_from_env() -> None:
    settings = KubernetesSettings.from_env(
        {
            "WPCLONE_K8S_NAMESPACE": "clones",
            "WPCLONE_TOOLBOX_IMAGE": "registry.example.com/wpclone/toolbox:1.2.3",
            "WPCLONE_WORDPRESS_IMAGE": "wordpress:6.5-php8.3-apache",
            "WPCLONE_K8S_CONN_ID": "k8s_clones",
            "WPCLONE_K8S_STORAGE_CLASS": "gp3",
            "WPCLONE_K8S_INGRESS_CLASS": "alb",
            "WPCLONE_K8S_DEFERRABLE": "true",
            "WPCLONE_K8S_INGRESS_ANNOTATIONS": json.dumps({"a.example.com/x": "1"}),
            "WPCLONE_K8S_STEP_MEMORY_LIMIT": "2Gi",
        }
    )
    assert settings.namespace == "clones"
    assert settings.toolbox_image == "registry.example.com/wpclone/toolbox:1.2.3"
    assert settings.wordpress_image == "wordpress:6.5-php8.3-apache"
    assert settings.conn_id == "k8s_clones"
    assert settings.storage_class == "gp3"
    assert settings.ingress_class == "alb"
    assert settings.deferrable is True
    assert settings.ingress_annotations == {"a.example.com/x": "1"}
    assert settings.step_memory_limit == "2Gi"
    defaults = KubernetesSettings.from_env({})
    assert defaults.namespace == "wpclone-clones"
    assert defaults.wordpress_image == "wordpress:6.1-php8.2-apache"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("WPCLONE_K8S_NAMESPACE", "Bad_Namespace"),
        ("WPCLONE_K8S_STEP_CPU_LIMIT", "two"),
        ("WPCLONE_TOOLBOX_IMAGE", "image; rm -rf /"),
        ("WPCLONE_K8S_INGRESS_ANNOTATIONS", "{not json"),
    ],
)
def test_bad_settings_name_the_variable(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key):
        KubernetesSettings.from_env({key: value})


# -- schema validity --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(version: str) -> None:
    settings = KubernetesSettings(
        storage_class="standard", tls_secret="tls", ingress_annotations={"a/b": "c"}
    )
    for obj in all_manifests(make_plan(), settings):
        kubernetes_validate.validate(obj, version, strict=True)
    for trees in ({}, {"staged": "", "node": None}):
        for obj in preview_of(make_plan(), settings, **trees):
            kubernetes_validate.validate(obj, version, strict=True)
    for action in manifests.CONTENT_ACTIONS:
        for node in (None, "node-a.eu-west-1.compute.internal"):
            pod = manifests.content_pod_manifest("shop-abc123", action, settings, node=node)
            kubernetes_validate.validate(pod, version, strict=True)


def test_the_content_pod(settings: KubernetesSettings) -> None:
    pod = manifests.content_pod_manifest("shop-abc123", "switch", settings, node="node-a")
    assert pod["metadata"]["name"] == "wpclone-shop-abc123-content"
    assert pod["metadata"]["labels"] == {
        MANAGED_BY_LABEL: "wpclone",
        CLONE_ID_LABEL: "shop-abc123",  # delete_clone_objects removes one a killed worker left behind
        "app.kubernetes.io/component": "content",
    }
    spec = pod["spec"]
    [container] = spec["containers"]
    assert container["image"] == settings.toolbox_image
    assert container["command"] == ["python", "-m", "wpclone.k8s.content", "switch", "/content/clone"]
    assert spec["volumes"] == [
        {"name": "content", "persistentVolumeClaim": {"claimName": "wpclone-shop-abc123-content"}}
    ]
    assert container["volumeMounts"] == [{"name": "content", "mountPath": "/content/clone"}]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] > 0
    assert spec["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["securityContext"]["runAsUser"] == settings.run_as_user  # the owner of the site's files
    # On the site's node (the claim is ReadWriteOnce); anywhere when no site pod runs.
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}
    ]
    assert "affinity" not in manifests.content_pod_manifest("shop-abc123", "discard", settings)["spec"]
    with pytest.raises(ValueError, match="not one of"):
        manifests.content_pod_manifest("shop-abc123", "rm -rf", settings)
    with pytest.raises(ValueError, match="node name"):
        manifests.content_pod_manifest("shop-abc123", "switch", settings, node="Node A")


def test_param_secret_keys() -> None:
    assert manifests.param_secret_key("WPCLONE_BACKUP_URL") == "param-wpclone-backup-url"
    assert manifests.param_secret_key("X").startswith(manifests.PARAM_KEY_PREFIX)
    assert manifests.RESTORE_PASSWORD_KEY == "restore-db-password"


def test_the_schema_check_catches_a_broken_manifest(settings: KubernetesSettings) -> None:
    deployment = manifests.deployment_manifest(make_plan(), settings, {}, MU_PLUGIN)
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["hedaers"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)
