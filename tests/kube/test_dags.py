"""The DAGs with runtime=kubernetes, end to end with ``dag.test()`` against the local control plane.

The DAGs are built for the kubernetes runtime (``WPCLONE_RUNTIME``) and call the cluster as the Airflow
workers do in production: through the ``kubernetes_default`` connection with the token of the ServiceAccount
the shipped RoleBinding names (``worker_kubeconfig``), so a permission the shipped Role lacks fails a run
here. The steps run as pods on the node agent, which runs their command as a local process against the
tests' MariaDB, each claim a local directory (the source's content claim is bound to a volume on the seeded
source's wp-content). The worker reaches a clone's Service through ``ServiceProxy``
(tests/kube/service_proxy.py).

``wp_clone`` must leave its objects, a database the copy pods filled and a site that answers; ``wp_delete``
must leave no object with the clone's labels, and no database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

from tests.conftest import REPO
from tests.fixtures.dagtest import control_plane_env, run, states, xcom
from tests.kube.conftest import wait_for
from tests.kube.service_proxy import ServiceProxy
from wpclone.db import DbEndpoint
from wpclone.k8s import manifests
from wpclone.k8s.apply import DELETE_ORDER, KINDS
from wpclone.k8s.settings import KubernetesSettings
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, content_dir
from wpclone.models import CloneStatus, clone_db_name
from wpclone.mysql_admin import MySqlAdmin
from wpclone.readiness import follow, http_fetcher
from wpclone.registry import Registry
from wpclone.runtimes.base import CLONE_ID_LABEL, MANAGED_BY, MANAGED_BY_LABEL

SCHEMA = "wpclone_control_kube"
NAMESPACE = KubernetesSettings().namespace  # the shipped manifests' namespace
CLONE_DOMAIN = "kube.test"
SOURCE_SECRET = "source-db"
SOURCE_CLAIM = "source-content"
SOURCE_VOLUME = "kt-source-content"
CLONE = "kd-clone"
TEST_CLONE_IDS = (CLONE, "kd-alpha", "kd-bravo", "kd-orphan", "kd-fail")


def api_list(api: kubernetes.client.ApiClient, kind: str, selector: str) -> list[Any]:
    """Objects of one of the runtime's kinds in the clones' namespace, by label selector (as admin)."""
    spec = KINDS[kind]
    client = getattr(kubernetes.client, spec.api)(api)
    return list(getattr(client, f"list_namespaced_{spec.method}")(NAMESPACE, label_selector=selector).items)


def labelled(api: kubernetes.client.ApiClient, clone_id: str | None = None) -> list[str]:
    """``Kind/name`` of every object in the namespace with our labels (of one clone, or any)."""
    selector = manifests.label_selector(clone_id)
    return [f"{kind}/{item.metadata.name}" for kind in KINDS for item in api_list(api, kind, selector)]


@pytest.fixture(scope="module")
def source_objects(core: kubernetes.client.CoreV1Api, source_site: SiteConfig, stack: StackSettings) -> None:
    """The source's Secret and content claim in the clones' namespace, the claim bound to a volume on the
    seeded source's wp-content (made before the claim, so the agent never provisions one)."""
    for delete in (
        lambda: core.delete_namespaced_persistent_volume_claim(SOURCE_CLAIM, NAMESPACE),
        lambda: core.delete_persistent_volume(SOURCE_VOLUME),
        lambda: core.delete_namespaced_secret(SOURCE_SECRET, NAMESPACE),
    ):
        try:
            delete()
        except kubernetes.client.exceptions.ApiException as exc:
            assert exc.status == 404
    wait_for(
        "the old source volume's removal", lambda: not _exists(core.read_persistent_volume, SOURCE_VOLUME)
    )
    core.create_namespaced_secret(
        NAMESPACE,
        {"metadata": {"name": SOURCE_SECRET}, "stringData": {"password": source_site.db_password()}},
    )
    spec = {"accessModes": ["ReadOnlyMany"], "storageClassName": ""}
    core.create_persistent_volume(
        {
            "metadata": {"name": SOURCE_VOLUME},
            "spec": {
                **spec,
                "capacity": {"storage": "1Gi"},
                "hostPath": {"path": str(content_dir(stack, source_site.name)), "type": "Directory"},
                "claimRef": {"namespace": NAMESPACE, "name": SOURCE_CLAIM},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        NAMESPACE,
        {
            "metadata": {"name": SOURCE_CLAIM},
            "spec": {**spec, "volumeName": SOURCE_VOLUME, "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    wait_for(
        "the source's claim bound",
        lambda: core.read_namespaced_persistent_volume_claim(SOURCE_CLAIM, NAMESPACE).status.phase == "Bound",
    )


def _exists(read: Any, *args: str) -> bool:
    try:
        read(*args)
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@pytest.fixture(scope="module")
def kube_env(
    airflow_home: Any,
    admin_db: DbEndpoint,
    source_site: SiteConfig,
    stack: StackSettings,
    worker_kubeconfig: Path,
    source_objects: None,
    api: kubernetes.client.ApiClient,
) -> Iterator[ServiceProxy]:
    """Airflow's environment for the kubernetes runtime: the configuration (the seeded source by its Secret
    and claim), the workers' connection, the registry schema, the Service proxy; leftovers removed."""
    proxy = ServiceProxy(stack).start()
    config = {
        "runtime": "kubernetes",
        "clone_domain": CLONE_DOMAIN,
        "clone_scheme": "http",
        "sources": [
            {
                "name": source_site.name,
                "url": source_site.url,
                "db_host": source_site.db_host,
                "db_port": source_site.db_port,
                "db_name": source_site.db_name,
                "db_user": source_site.db_user,
                "db_password_secret": SOURCE_SECRET,
                "table_prefix": source_site.table_prefix,
                "content_claim": SOURCE_CLAIM,
            }
        ],
    }
    env = {
        "WPCLONE_RUNTIME": "kubernetes",
        "WPCLONE_CONFIG_JSON": json.dumps(config),
        "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": str(worker_kubeconfig)}}
        ),
        **control_plane_env(admin_db, stack, SCHEMA),
        "WPCLONE_K8S_STARTUP_TIMEOUT_SECONDS": "60",
        "http_proxy": proxy.url,
        "no_proxy": "localhost,127.0.0.1,.localhost",
    }
    patch = pytest.MonkeyPatch()  # module-scoped: the function fixture cannot be used
    for key, value in env.items():
        patch.setenv(key, value)
    admin = MySqlAdmin.from_endpoint(admin_db)
    for clone_id in TEST_CLONE_IDS:
        for kind in DELETE_ORDER:  # leftovers of an interrupted run, as admin
            for item in api_list(api, kind, manifests.label_selector(clone_id)):
                spec = KINDS[kind]
                client = getattr(kubernetes.client, spec.api)(api)
                getattr(client, f"delete_namespaced_{spec.method}")(item.metadata.name, NAMESPACE)
        name = clone_db_name(clone_id)
        admin.drop_database_and_user(name, name, user_host="%")
    yield proxy
    proxy.stop()
    patch.undo()


@pytest.fixture(scope="module")
def dags(kube_env: ServiceProxy) -> Any:
    bag = DagBag(str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def registry(admin_db: DbEndpoint, kube_env: ServiceProxy) -> Registry:
    return Registry.from_endpoint(admin_db, SCHEMA)


def clone_url(clone_id: str) -> str:
    return f"http://{clone_id}.{CLONE_DOMAIN}"


def front_page(clone_id: str) -> bytes:
    """The clone's front page through its Service, with its Host, as the runtime's readiness check asks."""
    service = f"http://{manifests.site_name(clone_id)}.{NAMESPACE}.svc:{manifests.SERVICE_PORT}"
    fetch = http_fetcher(clone_url(clone_id), service, {"Host": f"{clone_id}.{CLONE_DOMAIN}"})
    page = fetch("/")
    assert page.status == 200, page
    return page.body


def claim_dir(core: kubernetes.client.CoreV1Api, claim: str) -> Path:
    volume = core.read_namespaced_persistent_volume_claim(claim, NAMESPACE).spec.volume_name
    return Path(core.read_persistent_volume(volume).spec.host_path.path)


def step_pods_scheduled(core: kubernetes.client.CoreV1Api, clone_id: str) -> set[str]:
    """The steps whose pods the scheduler placed for the clone (their events outlive the pods)."""
    steps = set()
    for event in core.list_namespaced_event(NAMESPACE).items:
        name = event.involved_object.name or ""
        if (
            event.reason == "Scheduled"
            and event.involved_object.kind == "Pod"
            and name.startswith("wpclone-")
        ):
            steps.add(name)
    return steps


def files_in(root: Path) -> int:
    """Regular files under ``root``, the site's own must-use plugin left out."""
    return sum(1 for p in root.rglob("*") if p.is_file() and "mu-plugins" not in p.parts)


def count_tables(admin_db: DbEndpoint, database: str) -> int:
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s", (database,))
        row = cur.fetchone()
    return int(row[0]) if row else 0


# -- wp_clone, then wp_delete -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloned(dags: Any, source_site: SiteConfig) -> dict[str, Any]:
    dagrun = run(dags, "wp_clone", {"source_url": source_site.url, "clone_id": CLONE, "ttl_minutes": 90})
    return {"run": dagrun, "result": xcom(dagrun, "finalize_clone")}


def test_clone_runs_its_steps_as_pods_and_serves_the_clone(
    cloned: dict[str, Any],
    core: kubernetes.client.CoreV1Api,
    api: kubernetes.client.ApiClient,
    admin_db: DbEndpoint,
    source_site: SiteConfig,
    stack: StackSettings,
    registry: Registry,
    kube_env: ServiceProxy,
) -> None:
    dagrun, result = cloned["run"], cloned["result"]
    assert str(dagrun.state) == "success", states(dagrun)
    assert states(dagrun)["rollback_clone"] == "skipped"
    assert result["url"] == f"{clone_url(CLONE)}/"
    assert result["admin_password"].startswith(f"secret/wpclone-{CLONE} key ")
    record = registry.get(CLONE)
    assert record is not None and record.status is CloneStatus.READY

    # The copy steps ran as pods (the scheduler placed them; the operator deleted them when they finished).
    scheduled = step_pods_scheduled(core, CLONE)
    for step in ("copy-database", "copy-content"):
        assert any(name.startswith(f"wpclone-{step}") for name in scheduled), scheduled
    assert not api_list(api, "Pod", f"{MANAGED_BY_LABEL}={MANAGED_BY},wpclone.io/step")
    # ... and really copied: the clone's database and its claim's wp-content.
    assert count_tables(admin_db, clone_db_name(CLONE)) == count_tables(admin_db, source_site.db_name) > 10
    wp_content = claim_dir(core, manifests.content_claim_name(CLONE)) / manifests.CONTENT_SUBPATH
    assert files_in(wp_content) == files_in(content_dir(stack, source_site.name)) > 10

    # Its objects exist, with its labels; the site answers at its Service with the clone's URL.
    objects = set(labelled(api, CLONE))
    own = manifests.clone_objects(CLONE)[:6]  # not the restore's content pod and preview
    assert objects >= {f"{kind}/{name}" for kind, name in own}
    page = front_page(CLONE)
    assert clone_url(CLONE).encode() in page
    assert source_site.url.encode() not in page
    assert any(CLONE in url for url in kube_env.requests)  # the runtime's readiness check came this way


def test_delete_leaves_nothing_with_the_clones_labels(
    cloned: dict[str, Any],
    dags: Any,
    api: kubernetes.client.ApiClient,
    admin_db: DbEndpoint,
    registry: Registry,
) -> None:
    assert str(cloned["run"].state) == "success"
    dagrun = run(dags, "wp_delete", {"clone_id": CLONE})
    assert str(dagrun.state) == "success", states(dagrun)
    wait_for("the clone's objects gone", lambda: not labelled(api, CLONE), timeout=60)
    assert count_tables(admin_db, clone_db_name(CLONE)) == 0
    assert not MySqlAdmin.from_endpoint(admin_db).users(clone_db_name(CLONE))
    record = registry.get(CLONE)
    assert record is not None and record.status is CloneStatus.DELETED


def test_the_dags_call_the_cluster_as_the_workers_service_account(kube_env: ServiceProxy) -> None:
    """What the runs above were allowed is the shipped Role's: the connection is not an admin."""
    hook = KubernetesHook(conn_id=KubernetesSettings().conn_id)
    core = kubernetes.client.CoreV1Api(hook.api_client)
    core.list_namespaced_pod(NAMESPACE)
    with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
        core.list_namespaced_pod("default")
    assert refused.value.status == 403
    assert "system:serviceaccount:airflow:airflow-worker" in str(refused.value.body)


# -- wp_backup and wp_restore --------------------------------------------------------------------------------

ALPHA, BRAVO = "kd-alpha", "kd-bravo"
TITLE = "Backed up on the cluster"
FILE, FILE_BODY = "uploads/kube-note.txt", b"written into clone alpha's claim\n"


def clone(dags: Any, source: SiteConfig, clone_id: str) -> None:
    dagrun = run(dags, "wp_clone", {"source_url": source.url, "clone_id": clone_id, "ttl_minutes": 60})
    assert str(dagrun.state) == "success", states(dagrun)


def service_get(clone_id: str, path: str) -> bytes:
    service = f"http://{manifests.site_name(clone_id)}.{NAMESPACE}.svc:{manifests.SERVICE_PORT}"
    fetch = http_fetcher(clone_url(clone_id), service, {"Host": f"{clone_id}.{CLONE_DOMAIN}"})
    page = follow(fetch, path, clone_url(clone_id))
    assert page.status == 200, page
    return page.body


@pytest.fixture(scope="module")
def backed_up(
    dags: Any, source_site: SiteConfig, admin_db: DbEndpoint, core: kubernetes.client.CoreV1Api
) -> dict[str, Any]:
    """Clone alpha, changed (its first post's title, a file in its claim), then backed up by wp_backup."""
    clone(dags, source_site, ALPHA)
    prefix = source_site.table_prefix
    with admin_db.with_database(clone_db_name(ALPHA)).connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT MIN(ID) FROM `{prefix}posts` WHERE post_type = 'post' AND post_status = 'publish'"
        )
        (post_id,) = cur.fetchone()
        cur.execute(f"UPDATE `{prefix}posts` SET post_title = %s WHERE ID = %s", (TITLE, post_id))
        conn.commit()
    note = claim_dir(core, manifests.content_claim_name(ALPHA)) / manifests.CONTENT_SUBPATH / FILE
    note.write_bytes(FILE_BODY)
    dagrun = run(dags, "wp_backup", {"clone_id": ALPHA})
    assert str(dagrun.state) == "success", states(dagrun)
    return {"result": xcom(dagrun, "release_clone"), "post_id": post_id}


def test_backup_lands_in_the_backups_claim(
    backed_up: dict[str, Any], core: kubernetes.client.CoreV1Api
) -> None:
    url = backed_up["result"]["backup_url"]
    settings = KubernetesSettings()
    assert url.startswith(f"file://{settings.backup_mount}/{ALPHA}/") and url.endswith(".tar.gz")
    archive = claim_dir(core, settings.backup_claim) / url.removeprefix(f"file://{settings.backup_mount}/")
    assert archive.stat().st_size == backed_up["result"]["size"] > 0


def test_restore_serves_the_backup_in_another_clone(
    backed_up: dict[str, Any],
    dags: Any,
    source_site: SiteConfig,
    api: kubernetes.client.ApiClient,
    admin_db: DbEndpoint,
    registry: Registry,
) -> None:
    clone(dags, source_site, BRAVO)
    dagrun = run(
        dags, "wp_restore", {"clone_id": BRAVO, "source_backup_url": backed_up["result"]["backup_url"]}
    )
    assert str(dagrun.state) == "success", states(dagrun)
    assert TITLE.encode() in service_get(BRAVO, f"/?p={backed_up['post_id']}")
    assert service_get(BRAVO, f"/wp-content/{FILE}") == FILE_BODY
    result = xcom(dagrun, "release_clone")
    assert result["safety_backup_url"].startswith(f"file://{KubernetesSettings().backup_mount}/{BRAVO}/")
    # The preview and the content pod are gone, and so are the restore's own database and login.
    left = set(labelled(api, BRAVO))
    assert not {f"{kind}/{name}" for kind, name in manifests.clone_objects(BRAVO)[6:]} & left, left
    assert count_tables(admin_db, f"wpr_{BRAVO.replace('-', '_')}") == 0
    record = registry.get(BRAVO)
    assert record is not None and record.status is CloneStatus.READY and record.lock_job_id is None


# -- wp_ttl_cleanup and its orphan sweep ---------------------------------------------------------------------


def test_ttl_cleanup_deletes_the_expired_clone_and_the_orphans_objects(
    backed_up: dict[str, Any],
    dags: Any,
    api: kubernetes.client.ApiClient,
    admin_db: DbEndpoint,
    registry: Registry,
    core: kubernetes.client.CoreV1Api,
) -> None:
    with admin_db.connect() as conn, conn.cursor() as cur:  # expire alpha
        cur.execute(
            f"UPDATE {SCHEMA}.clones SET expires_at = %s WHERE clone_id = %s",
            (datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1), ALPHA),
        )
    # An orphan: objects with our labels and a database, no registry row; and a look-alike that is not ours.
    orphan = "kd-orphan"
    labels = {MANAGED_BY_LABEL: MANAGED_BY, CLONE_ID_LABEL: orphan}
    core.create_namespaced_config_map(
        NAMESPACE, {"metadata": {"name": f"wpclone-{orphan}-site", "labels": labels}}
    )
    core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": f"wpclone-{orphan}", "labels": labels}})
    MySqlAdmin.from_endpoint(admin_db).create_database_and_user(
        clone_db_name(orphan), clone_db_name(orphan), "x" * 20, user_host="%"
    )
    foreign = {"metadata": {"name": "wpclone-kd-foreign", "labels": {CLONE_ID_LABEL: "kd-foreign"}}}
    core.create_namespaced_config_map(NAMESPACE, foreign)
    try:
        dagrun = run(dags, "wp_ttl_cleanup", {})
        assert str(dagrun.state) == "success", states(dagrun)
        report = xcom(dagrun, "report")
        assert report["expired_deleted"] == [ALPHA]
        assert orphan in report["orphans_removed"]
        wait_for(
            "the expired and orphan objects gone", lambda: not labelled(api, ALPHA) + labelled(api, orphan)
        )
        assert count_tables(admin_db, clone_db_name(ALPHA)) == 0
        assert not MySqlAdmin.from_endpoint(admin_db).users(clone_db_name(orphan))
        assert registry.get(ALPHA).status is CloneStatus.DELETED  # type: ignore[union-attr]
        assert registry.get(BRAVO).status is CloneStatus.READY  # type: ignore[union-attr]
        assert labelled(api, BRAVO)
        core.read_namespaced_config_map("wpclone-kd-foreign", NAMESPACE)  # not ours: left alone
    finally:
        core.delete_namespaced_config_map("wpclone-kd-foreign", NAMESPACE)
    assert str(run(dags, "wp_delete", {"clone_id": BRAVO}).state) == "success"
    wait_for("every object with our labels gone", lambda: not labelled(api), timeout=60)


# -- a failed step -------------------------------------------------------------------------------------------


def test_a_failed_step_pod_fails_the_job_with_its_sentence_and_rolls_back(
    dags: Any,
    source_site: SiteConfig,
    core: kubernetes.client.CoreV1Api,
    api: kubernetes.client.ApiClient,
    admin_db: DbEndpoint,
    registry: Registry,
) -> None:
    """The source's Secret holds a wrong password: copy-database's pod fails, its sentence is the job's."""
    core.patch_namespaced_secret(SOURCE_SECRET, NAMESPACE, {"stringData": {"password": "not-the-password"}})
    try:
        dagrun = run(dags, "wp_clone", {"source_url": source_site.url, "clone_id": "kd-fail"})
    finally:
        core.patch_namespaced_secret(
            SOURCE_SECRET, NAMESPACE, {"stringData": {"password": source_site.db_password()}}
        )
    assert str(dagrun.state) == "failed"
    assert states(dagrun)["copy_database"] == "failed"
    assert states(dagrun)["rollback_clone"] == "success"
    error = xcom(dagrun, "copy_database", "error")
    assert error and error.startswith("copy-database: ") and "access denied" in error.lower(), error
    record = registry.get("kd-fail")
    assert record is not None and record.status is CloneStatus.FAILED and record.lock_job_id is None
    assert record.last_error == error
    assert "not-the-password" not in record.last_error
    wait_for("the failed clone's objects gone", lambda: not labelled(api, "kd-fail"), timeout=60)
    assert count_tables(admin_db, clone_db_name("kd-fail")) == 0
