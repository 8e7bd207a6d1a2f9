"""Least privilege on the shared server: the registry login that the API server and the tasks' registry use
(Airflow's connection ``wpclone_registry``) reads and writes the registry and the clones' data, and the
server refuses it every statement that creates or drops a database or a user, or grants; the provisioning
login (``wpclone_mysql``) is what the tasks' MySQL access uses. Real MariaDB (the local stack's), the
logins made as the local stack makes them (wpclone.local.mariadb, MySqlAdmin.grant_registry_login).
"""

from __future__ import annotations

import logging

import MySQLdb
import pytest

from tests.fixtures.stack import PRIVS_CLONE_DB as CLONE_DB
from tests.fixtures.stack import PRIVS_NEW_DB as NEW_DB
from tests.fixtures.stack import PRIVS_SCHEMA as SCHEMA
from wpclone.airflow import services as airflow_services
from wpclone.airflow.services import (
    MYSQL_CONN_ID,
    REGISTRY_CONN_ID,
    mysql_admin,
    registry,
    registry_conn_id,
)
from wpclone.db import DbEndpoint
from wpclone.local.airflow import mysql_connection
from wpclone.local.mariadb import LOCAL_USER_HOST

# MySQL's refusals: no privilege on a database (CREATE, DROP, GRANT), no global privilege (CREATE USER).
ER_DBACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED = 1044, 1227


def refused(code: int, sql: str) -> None:
    with pytest.raises(MySQLdb.OperationalError) as caught, mysql_admin(REGISTRY_CONN_ID).cursor() as cur:
        cur.execute(sql)
    assert caught.value.args[0] == code, caught.value


def test_the_registry_reads_and_writes_through_the_registry_login(split_connections: DbEndpoint) -> None:
    assert registry_conn_id() == REGISTRY_CONN_ID
    reg = registry()  # its schema checked, as in a task or the API server
    assert reg.current_user() == f"{split_connections.user}@{LOCAL_USER_HOST}"
    reg.record_job("privs-job-1", "wp_delete", {"clone_id": "privs-x"}, "tester", "privs-x")
    job = reg.get_job("privs-job-1")
    assert job is not None and job.dag_id == "wp_delete"
    with mysql_admin(REGISTRY_CONN_ID).cursor() as cur:  # retention deletes rows
        cur.execute(f"DELETE FROM {SCHEMA}.jobs WHERE job_id = %s", ("privs-job-1",))
        assert cur.rowcount == 1
    assert reg.get_job("privs-job-1") is None


def test_the_registry_login_writes_a_clones_data_and_sees_its_database(split_connections: DbEndpoint) -> None:
    clone_data = mysql_admin(REGISTRY_CONN_ID)
    with clone_data.cursor(CLONE_DB) as cur:  # what a login link and a new expiry do
        cur.execute("REPLACE INTO wp_options VALUES ('wpclone_probe', 'x')")
        cur.execute("DELETE FROM wp_options WHERE option_name = 'wpclone_probe'")
        assert cur.rowcount == 1
    assert registry().get_with_database("privs-probe", CLONE_DB) == (None, True)  # the clone id check


def test_the_registry_login_may_create_drop_or_grant_nothing(split_connections: DbEndpoint) -> None:
    refused(ER_DBACCESS_DENIED, f"CREATE DATABASE {NEW_DB}")
    refused(ER_DBACCESS_DENIED, "CREATE DATABASE wpclone_privs_other")
    refused(ER_DBACCESS_DENIED, f"DROP DATABASE {CLONE_DB}")
    refused(ER_DBACCESS_DENIED, f"DROP DATABASE {SCHEMA}")
    refused(ER_SPECIFIC_ACCESS_DENIED, "CREATE USER 'wpc_privs_user'@'%' IDENTIFIED BY 'pw-123456'")
    refused(ER_SPECIFIC_ACCESS_DENIED, f"DROP USER '{CLONE_DB}'@'{LOCAL_USER_HOST}'")
    refused(ER_DBACCESS_DENIED, f"GRANT SELECT ON {CLONE_DB}.* TO '{CLONE_DB}'@'{LOCAL_USER_HOST}'")
    with pytest.raises(MySQLdb.OperationalError) as caught:  # a whole clone's creation, as a task runs it
        mysql_admin(REGISTRY_CONN_ID).create_database_and_user(NEW_DB, NEW_DB, "pw-123456", user_host="%")
    assert caught.value.args[0] == ER_DBACCESS_DENIED
    assert not mysql_admin().database_exists(NEW_DB)
    assert mysql_admin().database_exists(CLONE_DB)  # the clone's database survived the refused DROP


def test_the_tasks_mysql_access_is_the_provisioning_login(
    split_connections: DbEndpoint, admin_db: DbEndpoint
) -> None:
    with mysql_admin().cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchone()[0] == f"{admin_db.user}@{LOCAL_USER_HOST}"


def test_without_the_registry_connection_the_fallback_says_so_once(
    airflow_home: object,
    split_logins: tuple[DbEndpoint, DbEndpoint],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin_db, _ = split_logins
    monkeypatch.setenv(f"AIRFLOW_CONN_{MYSQL_CONN_ID.upper()}", mysql_connection(admin_db))
    monkeypatch.delenv(f"AIRFLOW_CONN_{REGISTRY_CONN_ID.upper()}", raising=False)
    monkeypatch.setenv("WPCLONE_CONTROL_SCHEMA", SCHEMA)
    monkeypatch.setattr(airflow_services, "_warned", [])
    with caplog.at_level(logging.WARNING, logger=airflow_services.__name__):
        assert registry_conn_id() == MYSQL_CONN_ID
        assert registry().current_user() == f"{admin_db.user}@{LOCAL_USER_HOST}"
    said = [r.getMessage() for r in caplog.records if r.name == airflow_services.__name__]
    assert said == [airflow_services.NO_REGISTRY_CONNECTION]
