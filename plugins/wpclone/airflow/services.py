"""The one factory of what the services work with, from Airflow's connection and the configuration.

Each task builds :func:`services` once and passes it to the service it calls (wpclone.airflow.builders);
the jobs API builds one per request over its process's pooled registry. The MySQL admin access and the
registry both come from Airflow's connection ``wpclone_mysql`` (the shared MySQL server's admin login)
through ``MySqlHook``, so the connection's extra (``ssl``, ``ssl_mode``, ``charset``, ...) holds for every
statement of the control plane; the steps get its TLS settings in their environment (:func:`admin_tls`,
wpclone.runtimes.stepspec). This module is the one place that says how.

The registry is migrated at deploy time (``python -m wpclone.provision``); here its schema version is only
checked, once per process and schema (:meth:`wpclone.registry.Registry.check_schema`).
"""

from __future__ import annotations

import functools
import threading

from airflow.sdk import BaseHook

from wpclone.airflow.sources import catalog
from wpclone.config import load_config
from wpclone.db import ConnectionPool, DbTls
from wpclone.mysql_admin import MySqlAdmin
from wpclone.registry import Registry
from wpclone.runtimes import runtime_for
from wpclone.services.common import Services
from wpclone.settings import Settings, control_schema

MYSQL_CONN_ID = "wpclone_mysql"  # the shared MySQL server: admin login, also home of the registry

_checked: set[str] = set()  # control schemas found current in this process
_checked_lock = threading.Lock()


def admin_tls() -> DbTls | None:
    """The TLS settings of Airflow's connection ``wpclone_mysql`` (its extra's ``ssl`` and ``ssl_mode``),
    which the steps get for their logins on the shared server; None when it asks for no TLS."""
    return DbTls.from_extra(BaseHook.get_connection(MYSQL_CONN_ID).extra_dejson)


def mysql_admin() -> MySqlAdmin:
    """The control plane's MySQL admin access: ``MySqlHook`` connections of ``wpclone_mysql`` (its TLS,
    charset and other extras honoured), to a database through the hook's ``schema``; looked up when used."""
    from airflow.providers.mysql.hooks.mysql import MySqlHook  # noqa: PLC0415 (the MySQL provider: not at DAG parse time)

    @functools.cache
    def hook(database: str | None) -> MySqlHook:  # one per database: the connection is looked up once
        return MySqlHook(mysql_conn_id=MYSQL_CONN_ID, schema=database)

    return MySqlAdmin(lambda database: hook(database).get_conn())


def registry(*, pooled: bool = False, check: bool = True) -> Registry:
    """The clone registry on the shared server, through Airflow's MySQL connection (MySqlHook); with
    ``pooled``, over connections kept open between calls (a long-lived process: the API server). With
    ``check``, RegistryError naming the provision command when its schema is behind (once per process)."""
    from airflow.providers.mysql.hooks.mysql import MySqlHook  # noqa: PLC0415 (the MySQL provider: not at DAG parse time)

    hook = MySqlHook(mysql_conn_id=MYSQL_CONN_ID)
    reg = Registry(ConnectionPool(hook.get_conn) if pooled else hook.get_conn, control_schema())
    if check and reg.schema not in _checked:
        reg.check_schema()
        with _checked_lock:
            _checked.add(reg.schema)
    return reg


def services(reg: Registry | None = None, *, list_sources: bool = False) -> Services:
    """The dependencies of a task's service call: ``reg`` (default: a new :func:`registry`), the MySQL admin
    access, the runtime of the configuration as it is now, the settings, the sources (the configuration's
    and Airflow's connections: wpclone.airflow.sources; ``list_sources`` only in the API server)."""
    config = load_config()
    return Services(
        registry=reg or registry(),
        mysql=mysql_admin(),
        runtime=runtime_for(config),
        settings=Settings.from_env(),
        catalog=catalog(config, listing=list_sources),
    )
