"""The one factory of what the services work with, from Airflow's connections and the configuration.

Each task builds :func:`services` once and passes it to the service it calls (wpclone.airflow.builders);
the jobs API builds one per request over its process's pooled registry. Every statement of the control plane
goes through ``MySqlHook``, so a connection's extra (``ssl``, ``ssl_mode``, ``charset``, ...) holds for it;
the steps get the TLS settings of ``wpclone_mysql`` in their environment (:func:`admin_tls`,
wpclone.runtimes.stepspec). This module is the one place that says which login does what (least privilege,
docs/architecture.md):

* ``wpclone_registry`` (:data:`REGISTRY_CONN_ID`), the everyday login: SELECT, INSERT, UPDATE, DELETE on the
  control schema and on the clones' databases (``wpc_*``, data only: the jobs API writes a login link or a
  new expiry there, and sees whether a clone's database exists), nothing else
  (:meth:`wpclone.mysql_admin.MySqlAdmin.grant_registry_login`). The registry of every task and of the API
  server uses it, and so does the API server's MySQL access: the server refuses it ``CREATE DATABASE``,
  ``CREATE USER``, ``DROP`` and ``GRANT``.
* ``wpclone_mysql`` (:data:`MYSQL_CONN_ID`), the provisioning login: creates and drops the clones' databases
  and users, swaps a restore's tables, sweeps orphans, and migrates the registry (``python -m
  wpclone.provision``). Only the tasks' MySQL access (:func:`mysql_admin`) uses it, looked up when a task
  first runs a statement there: the tasks that only read or write the registry never connect with it.

Without a ``wpclone_registry`` connection (a deployment older than the split), the registry falls back to
``wpclone_mysql``, saying so once per process in a warning (and at provision time): nothing breaks on an
upgrade, and the log says what to add.

The registry is migrated at deploy time (``python -m wpclone.provision``); here its schema version is only
checked, once per process and schema (:meth:`wpclone.registry.Registry.check_schema`).
"""

from __future__ import annotations

import functools
import logging
import threading

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from wpclone.airflow.sources import catalog
from wpclone.config import load_config
from wpclone.db import ConnectionPool, DbTls
from wpclone.mysql_admin import MySqlAdmin
from wpclone.registry import Registry
from wpclone.runtimes import runtime_for
from wpclone.services.common import Services
from wpclone.settings import Settings, control_schema

log = logging.getLogger(__name__)

MYSQL_CONN_ID = "wpclone_mysql"  # the shared MySQL server's provisioning login (databases, users, migrations)
REGISTRY_CONN_ID = "wpclone_registry"  # its everyday login: the registry, the clones' data; no DDL, no users
NO_REGISTRY_CONNECTION = (
    f"Airflow's connection {REGISTRY_CONN_ID} is not defined, so the registry and the jobs API use the "
    f"provisioning login {MYSQL_CONN_ID}: define it with a login limited to the control schema "
    "(docs/deploy.md)."
)

_checked: set[str] = set()  # control schemas found current in this process
_checked_lock = threading.Lock()
_warned: list[bool] = []  # NO_REGISTRY_CONNECTION logged in this process


def registry_conn_id() -> str:
    """:data:`REGISTRY_CONN_ID` when Airflow has it, else :data:`MYSQL_CONN_ID` (logged once per process)."""
    try:
        BaseHook.get_connection(REGISTRY_CONN_ID)
    except AirflowNotFoundException:
        if not _warned:
            _warned.append(True)
            log.warning(NO_REGISTRY_CONNECTION)
        return MYSQL_CONN_ID
    return REGISTRY_CONN_ID


def admin_tls() -> DbTls | None:
    """The TLS settings of Airflow's connection ``wpclone_mysql`` (its extra's ``ssl`` and ``ssl_mode``),
    which the steps get for their logins on the shared server; None when it asks for no TLS."""
    return DbTls.from_extra(BaseHook.get_connection(MYSQL_CONN_ID).extra_dejson)


def mysql_admin(conn_id: str = MYSQL_CONN_ID) -> MySqlAdmin:
    """The control plane's MySQL access: ``MySqlHook`` connections of ``conn_id`` (default: the provisioning
    login; its TLS, charset and other extras honoured), to a database through the hook's ``schema``; the
    connection is looked up when first used."""
    from airflow.providers.mysql.hooks.mysql import MySqlHook  # noqa: PLC0415 (the MySQL provider: not at DAG parse time)

    @functools.cache
    def hook(database: str | None) -> MySqlHook:  # one per database: the connection is looked up once
        return MySqlHook(mysql_conn_id=conn_id, schema=database)

    return MySqlAdmin(lambda database: hook(database).get_conn())


def registry(*, pooled: bool = False, check: bool = True, conn_id: str | None = None) -> Registry:
    """The clone registry on the shared server, through Airflow's connection ``conn_id`` (default:
    :func:`registry_conn_id`) and MySqlHook; with ``pooled``, over connections kept open between calls (a
    long-lived process: the API server). With ``check``, RegistryError naming the provision command when
    its schema is behind (once per process)."""
    from airflow.providers.mysql.hooks.mysql import MySqlHook  # noqa: PLC0415 (the MySQL provider: not at DAG parse time)

    hook = MySqlHook(mysql_conn_id=conn_id or registry_conn_id())
    reg = Registry(ConnectionPool(hook.get_conn) if pooled else hook.get_conn, control_schema())
    if check and reg.schema not in _checked:
        reg.check_schema()
        with _checked_lock:
            _checked.add(reg.schema)
    return reg


def services(
    reg: Registry | None = None, *, list_sources: bool = False, mysql: MySqlAdmin | None = None
) -> Services:
    """The dependencies of a task's service call: ``reg`` (default: a new :func:`registry`), the MySQL access
    ``mysql`` (default: the provisioning login's, :func:`mysql_admin`; the API server passes the registry
    login's), the runtime of the configuration as it is now, the settings, the sources (the configuration's
    and Airflow's connections: wpclone.airflow.sources; ``list_sources`` only in the API server)."""
    config = load_config()
    return Services(
        registry=reg or registry(),
        mysql=mysql or mysql_admin(),
        runtime=runtime_for(config),
        settings=Settings.from_env(),
        catalog=catalog(config, listing=list_sources),
    )
