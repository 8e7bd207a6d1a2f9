"""A WordPress Deployment on the local cluster, served by the tests' PHP site host through the node agent: the
way the cluster tier shows a clone's site (the official image cannot run here).

The Deployment is shaped like the runtime's (``wpclone.k8s.manifests``): the image's ``WORDPRESS_*``
environment with the password from a Secret, wp-content from a claim (``subPath``), a must-use plugin from a
ConfigMap. Its database and content are the hand-made clone's (``tests/conftest.py``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tests.fixtures.stack import HandClone
from tests.kube.conftest import WORDPRESS_IMAGE, bound_claim, wait_for
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import content_dir, http_opener, site_dir

NAME = "wpclone-kube-site"
HOST_URL = "https://kube-site.example.test"  # the clone's URL in WP_HOME (the site host serves its own)
TITLE_RE = re.compile(r"<title>(.*?)</title>", re.S)
MU_PLUGIN = (
    "<?php add_action('wp_head', function () { echo '<meta name=\"kube-test\" content=\"mu-plugin\">'; });\n"
)


@pytest.fixture
def site_content(
    core: kubernetes.client.CoreV1Api, namespace: str, hand_clone: HandClone, stack: StackSettings
) -> Iterator[Path]:
    """A claim holding a copy of the hand clone's wp-content in ``wp-content``; its local directory."""
    root = bound_claim(core, namespace, "content")
    shutil.copytree(content_dir(stack, hand_clone.site.name), root / "wp-content", symlinks=True)
    yield root


def test_wordpress_deployment_is_served_by_the_site_host(
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    hand_clone: HandClone,
    site_content: Path,
    stack: StackSettings,
) -> None:
    site = hand_clone.site
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "site"}, "stringData": {"db-password": site.db_password()}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "site"}, "data": {"wpclone-staging.php": MU_PLUGIN}}
    )
    extra = "".join(
        f"define('{name}', {value});\n"
        for name, value in (
            ("WP_HOME", f"'{HOST_URL}'"),
            ("WP_SITEURL", f"'{HOST_URL}'"),
            ("DISABLE_WP_CRON", "true"),
        )
    )
    labels = {"app": "site"}
    container = {
        "name": "wordpress",
        "image": WORDPRESS_IMAGE,
        "env": [
            {"name": "WORDPRESS_DB_HOST", "value": f"{site.db_host}:{site.db_port}"},
            {"name": "WORDPRESS_DB_USER", "value": site.db_user},
            {"name": "WORDPRESS_DB_NAME", "value": site.db_name},
            {
                "name": "WORDPRESS_DB_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "site", "key": "db-password"}},
            },
            {"name": "WORDPRESS_TABLE_PREFIX", "value": site.table_prefix},
            {"name": "WORDPRESS_CONFIG_EXTRA", "value": extra},
        ],
        "volumeMounts": [
            {"name": "content", "mountPath": "/var/www/html/wp-content", "subPath": "wp-content"},
            {
                "name": "config",
                "mountPath": "/var/www/html/wp-content/mu-plugins/wpclone-staging.php",
                "subPath": "wpclone-staging.php",
                "readOnly": True,
            },
        ],
    }
    apps = kubernetes.client.AppsV1Api(core.api_client)
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": NAME},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [container],
                        "volumes": [
                            {"name": "content", "persistentVolumeClaim": {"claimName": "content"}},
                            {"name": "config", "configMap": {"name": "site"}},
                        ],
                    },
                },
            },
        },
    )
    wait_for(
        "the site's available replica",
        lambda: apps.read_namespaced_deployment(NAME, namespace).status.available_replicas == 1,
        timeout=90,
    )
    page = front_page(stack.site_url(NAME))
    assert '<meta name="kube-test" content="mu-plugin">' in page  # the ConfigMap's must-use plugin ran
    assert title(page) == title(front_page(site.url))  # the hand clone's database, through the pod's env
    assert (site_content / "wp-content" / "mu-plugins" / "wpclone-staging.php").read_text() == MU_PLUGIN

    apps.delete_namespaced_deployment(NAME, namespace, propagation_policy="Foreground")
    wait_for("the site's pod removal", lambda: not core.list_namespaced_pod(namespace).items)
    assert not site_dir(stack, NAME).exists()  # no longer served
    assert (site_content / "wp-content" / "themes").is_dir()  # the claim's content stays


def front_page(url: str) -> str:
    with http_opener().open(url + "/", timeout=30) as response:
        assert response.status == 200
        return str(response.read().decode())


def title(page: str) -> str:
    found = TITLE_RE.search(page)
    assert found, "the page has no title"
    return found[1].strip()
