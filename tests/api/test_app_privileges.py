"""The jobs API's services, built as the API server builds them (wpclone.api.app), use the registry login
for the registry and for their MySQL access both, so the server refuses the API's process ``CREATE
DATABASE``. Real MariaDB (the local stack's)."""

from __future__ import annotations

from collections.abc import Iterator

import MySQLdb
import pytest

from tests.airflow.test_services_privileges import ER_DBACCESS_DENIED
from tests.fixtures.stack import PRIVS_NEW_DB as NEW_DB
from wpclone.api import app
from wpclone.db import DbEndpoint
from wpclone.local.mariadb import LOCAL_USER_HOST
from wpclone.local.sitehost import SiteConfig
from wpclone.services.common import Services


@pytest.fixture
def api_services(split_connections: DbEndpoint, source_site: SiteConfig) -> Iterator[Services]:
    """What a request's handler works with, built by the app's own functions (the stack configured)."""
    app._registry.cache_clear()  # the process's pooled registry and MySQL access, built afresh
    app._clone_data.cache_clear()
    yield app._services()
    app._registry.cache_clear()
    app._clone_data.cache_clear()


def test_the_api_server_uses_the_registry_login(
    api_services: Services, split_connections: DbEndpoint
) -> None:
    login = f"{split_connections.user}@{LOCAL_USER_HOST}"
    assert api_services.registry.current_user() == login
    with api_services.mysql.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchone()[0] == login


def test_the_api_servers_login_is_refused_create_database(api_services: Services) -> None:
    with pytest.raises(MySQLdb.OperationalError) as refused, api_services.mysql.cursor() as cur:
        cur.execute(f"CREATE DATABASE {NEW_DB}")
    assert refused.value.args[0] == ER_DBACCESS_DENIED
    with pytest.raises(MySQLdb.OperationalError) as refused:
        api_services.mysql.create_database_and_user(NEW_DB, NEW_DB, "pw-123456")
    assert refused.value.args[0] == ER_DBACCESS_DENIED
    assert not api_services.registry.get_with_database("privs-new", NEW_DB)[1]
