"""The services against the real MariaDB and site host of the tests' stack, without Airflow: each test
builds the services' dependencies as a task would (tests.conftest.local_services), in a registry schema
of its own, migrated as provisioning migrates it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.conftest import leftovers, local_services
from wpclone.db import DbEndpoint
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig
from wpclone.models import ClonePlan, clone_db_name, old_db_name, restore_db_name
from wpclone.services import clone
from wpclone.services.common import Services, deploy_site

SCHEMA = "wpclone_control_services"
JOB = "manual__services-test"


@pytest.fixture(scope="session")
def svc(stack: StackSettings, source_site: SiteConfig, admin_db: DbEndpoint) -> Services:
    """The services' dependencies on the local stack, their registry schema fresh and migrated."""
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCHEMA}")
    services = local_services(admin_db, stack, SCHEMA, site_ready_timeout=60.0, delete_wait=5.0)
    services.registry.migrate()
    return services


def remove(svc: Services, clone_id: str) -> None:
    """Everything of ``clone_id`` gone: objects, databases (its own and a restore's), users, registry row."""
    runtime, mysql = svc.runtime, svc.mysql
    with mysql.cursor() as cur:
        cur.execute(f"DELETE FROM `{SCHEMA}`.`clones` WHERE `clone_id` = %s", (clone_id,))
    runtime.remove_preview(clone_id)
    runtime.delete_clone_objects(clone_id)
    for name in (clone_db_name(clone_id), restore_db_name(clone_id), old_db_name(clone_id)):
        for host in {runtime.db_user_host, "%"}:
            mysql.drop_database_and_user(name, name, user_host=host)


def copy_tables(admin_db: DbEndpoint, source: str, target: str, url: str) -> None:
    """``source``'s tables and rows into ``target`` (which exists), its site URL made ``url``."""
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (source,))
        for (table,) in cur.fetchall():
            cur.execute(f"CREATE TABLE `{target}`.`{table}` LIKE `{source}`.`{table}`")
            cur.execute(f"INSERT INTO `{target}`.`{table}` SELECT * FROM `{source}`.`{table}`")
        cur.execute(
            f"UPDATE `{target}`.`wp_options` SET option_value = %s WHERE option_name IN ('siteurl', 'home')",
            (url,),
        )


def ready_clone(svc: Services, source_site: SiteConfig, admin_db: DbEndpoint, clone_id: str) -> ClonePlan:
    """A ready clone of the source made by the services (its rows copied in SQL, not by the steps)."""
    request, source, checked = clone.check_clone_request(
        svc, {"source_url": source_site.url, "clone_id": clone_id}
    )
    plan = clone.clone_plan(svc, request, source, checked, datetime.now(UTC))
    svc.registry.reserve(plan, JOB)
    clone.create_database(svc, plan)
    copy_tables(admin_db, source_site.db_name, plan.db_name, plan.url)
    deploy_site(svc, plan)
    svc.registry.mark_ready(clone_id, JOB)
    return plan


@pytest.fixture
def made(
    svc: Services, source_site: SiteConfig, admin_db: DbEndpoint, stack: StackSettings
) -> Iterator[ClonePlan]:
    """A ready clone ``svc-made``, removed afterwards whatever the test did."""
    remove(svc, "svc-made")
    yield ready_clone(svc, source_site, admin_db, "svc-made")
    remove(svc, "svc-made")
    assert leftovers(admin_db, stack, "svc-made") == []
