"""What the dag.test() modules share: Airflow's environment for the local runtime and run helpers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.settings import Session

from tests.conftest import REPO
from wpclone.config import local_config
from wpclone.db import DbEndpoint
from wpclone.local.mariadb import LOCAL_USER_HOST
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig
from wpclone.models import clone_db_name
from wpclone.mysql_admin import MySqlAdmin
from wpclone.registry import Registry
from wpclone.runtimes.local import LocalRuntime

SCHEMA = "wpclone_control_test"
# Every clone id the modules create; leftovers of an interrupted run are removed before a module starts.
TEST_CLONE_IDS = (
    "e2e-clone",
    "ttl-expired",
    "ttl-live",
    "orphan-db",
    "orphan-files",
    "fail-source",
    "fail-ready",
    "mode-database",
    "mode-files",
    "rt-alpha",
    "rt-bravo",
    "fx7-clone",
    "tls-clone",
)


@pytest.fixture(scope="module")
def airflow_env(
    airflow_home: Any, admin_db: DbEndpoint, source_site: SiteConfig, stack: StackSettings
) -> Iterator[dict[str, str]]:
    """Airflow's MySQL connection, a throw-away registry schema (migrated here, as the deployment's
    provisioning does), no retries (failures show at once)."""
    env = {
        "AIRFLOW_CONN_WPCLONE_MYSQL": json.dumps(
            {
                "conn_type": "mysql",
                "host": admin_db.host,
                "port": admin_db.port,
                "login": admin_db.user,
                "password": admin_db.password,
            }
        ),
        "WPCLONE_CONTROL_SCHEMA": SCHEMA,
        "WPCLONE_TASK_RETRIES": "0",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCHEMA}")
    Registry.from_endpoint(admin_db, SCHEMA).migrate()

    runtime = LocalRuntime(local_config(stack), stack)
    for clone_id in TEST_CLONE_IDS:
        runtime.delete_clone_objects(clone_id)
        name = clone_db_name(clone_id)
        MySqlAdmin.from_endpoint(admin_db).drop_database_and_user(name, name, user_host=LOCAL_USER_HOST)
    MySqlAdmin.from_endpoint(admin_db).drop_database_and_user(
        "wpc_taken_one", "wpc_taken_one", user_host=LOCAL_USER_HOST
    )
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def dags(airflow_env: dict[str, str]) -> Any:

    bag = DagBag(str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def registry(admin_db: DbEndpoint, airflow_env: dict[str, str]) -> Registry:
    return Registry.from_endpoint(admin_db, SCHEMA)


def run(dags: Any, dag_id: str, conf: dict[str, Any]) -> Any:
    return dags.get_dag(dag_id).test(run_conf=conf)


def xcom(dagrun: Any, task_id: str, key: str = "return_value") -> Any:

    with Session() as session:
        rows = session.scalars(
            XComModel.get_many(run_id=dagrun.run_id, key=key, task_ids=task_id, dag_ids=dagrun.dag_id)
        ).all()
        return XComModel.deserialize_value(rows[0]) if rows else None


def states(dagrun: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}
