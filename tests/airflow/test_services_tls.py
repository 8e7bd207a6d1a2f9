"""The control plane over TLS: ``wpclone_mysql`` and ``wpclone_registry`` pointed at logins the server
accepts only over TLS.

The logins are made ``REQUIRE SSL`` on the local stack's MariaDB (its certificates made at stack setup): the
provisioning one with admin rights, the registry one with the registry login's grants; the connections'
extras carry the stack's CA and ``ssl_mode`` VERIFY_IDENTITY, as on a managed server
(docs/database-tls.md). A clone, a backup, a restore of that backup and a delete all pass through it, the
steps getting the TLS settings in their environment; the same login without the extra is refused.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import MySQLdb
import pytest

from tests.fixtures.dagtest import run, states, xcom
from tests.fixtures.stack import leftovers
from tests.test_db_tls_integration import require_tls_login
from wpclone.airflow.services import MYSQL_CONN_ID, REGISTRY_CONN_ID, admin_tls, mysql_admin, registry
from wpclone.db import DbEndpoint, DbTls
from wpclone.local.mariadb import LocalMariaDB
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig
from wpclone.models import CloneStatus
from wpclone.mysql_admin import REGISTRY_PRIVILEGES
from wpclone.settings import control_schema

CLONE = "tls-clone"
LOGIN = "wpclone_tls_admin"
REGISTRY_LOGIN = "wpclone_tls_registry"
CONN_ENV = f"AIRFLOW_CONN_{MYSQL_CONN_ID.upper()}"
REGISTRY_CONN_ENV = f"AIRFLOW_CONN_{REGISTRY_CONN_ID.upper()}"


def connection(login: DbEndpoint, extra: dict[str, Any] | None) -> str:
    conn = {"conn_type": "mysql", "host": login.host, "port": login.port, "login": login.user}
    conn["password"] = login.password
    return json.dumps({**conn, "extra": extra} if extra else conn)


@pytest.fixture(scope="module")
def tls_login(admin_db: DbEndpoint, airflow_env: dict[str, str]) -> Iterator[DbEndpoint]:
    """The control-plane provisioning login, admin rights, accepted only over TLS."""
    password = secrets.token_hex(12)
    require_tls_login(admin_db, LOGIN, password, "ALL PRIVILEGES ON *.*", grant_option=True)
    yield DbEndpoint(admin_db.host, admin_db.port, LOGIN, password)
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{LOGIN}'@'127.0.0.1'")


@pytest.fixture(scope="module")
def tls_registry_login(admin_db: DbEndpoint, airflow_env: dict[str, str]) -> Iterator[DbEndpoint]:
    """The registry login (rows of the control schema and of the clones' databases), only over TLS."""
    password = secrets.token_hex(12)
    databases = (f"`{control_schema()}`", "`wpc\\_%`")
    require_tls_login(
        admin_db, REGISTRY_LOGIN, password, *(f"{REGISTRY_PRIVILEGES} ON {d}.*" for d in databases)
    )
    yield DbEndpoint(admin_db.host, admin_db.port, REGISTRY_LOGIN, password)
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{REGISTRY_LOGIN}'@'127.0.0.1'")


@pytest.fixture(scope="module")
def over_tls(tls_login: DbEndpoint, tls_registry_login: DbEndpoint, stack: StackSettings) -> Iterator[DbTls]:
    """``wpclone_mysql`` and ``wpclone_registry`` are the TLS logins with the stack's CA in their extras,
    meanwhile."""
    tls = LocalMariaDB(stack).tls
    extra = {"ssl": {"ca": tls.ca}, "ssl_mode": "VERIFY_IDENTITY"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CONN_ENV, connection(tls_login, extra))
        patch.setenv(REGISTRY_CONN_ENV, connection(tls_registry_login, extra))
        yield tls


def test_without_tls_the_control_plane_logins_are_refused(
    tls_login: DbEndpoint, tls_registry_login: DbEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONN_ENV, connection(tls_login, None))
    monkeypatch.setenv(REGISTRY_CONN_ENV, connection(tls_registry_login, None))
    assert admin_tls() is None
    with pytest.raises(MySQLdb.OperationalError) as refused:
        mysql_admin().database_exists("mysql")
    assert refused.value.args[0] == 1045  # access denied: the login requires TLS
    with pytest.raises(MySQLdb.OperationalError):
        registry(check=False).get(CLONE)


def test_the_control_plane_connects_over_tls(over_tls: DbTls) -> None:
    assert admin_tls() == over_tls
    with mysql_admin().cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cur.fetchone()[1]
    with mysql_admin().cursor("mysql") as cur:  # a database switch through the hook
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone()[0] == "mysql"
    assert registry(check=False).current_user() == f"{REGISTRY_LOGIN}@127.0.0.1"  # its login requires TLS


def test_clone_backup_restore_and_delete_pass_over_tls(
    dags: Any, over_tls: DbTls, source_site: SiteConfig, admin_db: DbEndpoint, stack: StackSettings
) -> None:
    cloned = run(dags, "wp_clone", {"source_url": source_site.url, "clone_id": CLONE, "ttl_minutes": 30})
    assert str(cloned.state) == "success", states(cloned)
    backup = run(dags, "wp_backup", {"clone_id": CLONE})
    assert str(backup.state) == "success", states(backup)
    url = xcom(backup, "release_clone")["backup_url"]
    restored = run(dags, "wp_restore", {"clone_id": CLONE, "source_backup_url": url})
    assert str(restored.state) == "success", states(restored)
    record = registry().get(CLONE)
    assert record is not None and record.status is CloneStatus.READY
    deleted = run(dags, "wp_delete", {"clone_id": CLONE})
    assert str(deleted.state) == "success", states(deleted)
    assert leftovers(admin_db, stack, CLONE) == []
