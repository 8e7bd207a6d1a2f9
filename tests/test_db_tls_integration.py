"""TLS to the shared server, on the local stack's MariaDB (its certificates made at stack setup, openssl).

A login created ``REQUIRE SSL`` is refused without TLS and accepted with the stack's CA verified, through
each way we connect: PyMySQL (the steps, the tests), mysqlclient (what ``MySqlHook`` uses) and the MariaDB
clients the copy step runs. The copy step given such logins and their ``<prefix>_SSL_*`` environment copies
a database; given the same logins without it, it fails with one sentence.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import MySQLdb
import pymysql
import pytest

from tests.steps.test_copy_database import (
    PAIRS,
    _exec,
    assert_one_sentence_failure,
    build_source,
    run_step,
)
from wpclone.db import DbEndpoint, DbTls, quote_identifier
from wpclone.local.mariadb import LOCAL_USER_HOST, LocalMariaDB
from wpclone.local.settings import StackSettings

LOGIN = "wpc_tls_probe"


def require_tls_login(
    admin: DbEndpoint, user: str, password: str, *grants: str, grant_option: bool = False
) -> None:
    """``user``@127.0.0.1 that may log in only over TLS, with ``grants`` (e.g. ``ALL ON db.*``)."""
    option = " WITH GRANT OPTION" if grant_option else ""
    _exec(
        admin,
        f"DROP USER IF EXISTS '{user}'@'{LOCAL_USER_HOST}'",
        f"CREATE USER '{user}'@'{LOCAL_USER_HOST}' IDENTIFIED BY '{password}' REQUIRE SSL",
        *(f"GRANT {grant} TO '{user}'@'{LOCAL_USER_HOST}'{option}" for grant in grants),
    )


@pytest.fixture(scope="module")
def tls(stack: StackSettings) -> DbTls:
    return LocalMariaDB(stack).tls


@pytest.fixture(scope="module")
def databases(admin_db: DbEndpoint) -> Iterator[tuple[DbEndpoint, DbEndpoint]]:
    """A WordPress-shaped source database and an empty target, both reachable only by a TLS login."""
    source, target = f"{LOGIN}_src", f"{LOGIN}_dst"
    password = secrets.token_hex(12)
    for name in (source, target):
        _exec(admin_db, f"DROP DATABASE IF EXISTS {quote_identifier(name)}", f"CREATE DATABASE {name}")
    build_source(admin_db.with_database(source), posts=50)
    require_tls_login(admin_db, LOGIN, password, f"ALL ON {source}.*", f"ALL ON {target}.*")
    login = DbEndpoint(admin_db.host, admin_db.port, LOGIN, password)
    yield login.with_database(source), login.with_database(target)
    _exec(admin_db, f"DROP USER IF EXISTS '{LOGIN}'@'{LOCAL_USER_HOST}'")
    for name in (source, target):
        _exec(admin_db, f"DROP DATABASE IF EXISTS {quote_identifier(name)}")


def with_tls(endpoint: DbEndpoint, tls: DbTls | None) -> DbEndpoint:
    return DbEndpoint(endpoint.host, endpoint.port, endpoint.user, endpoint.password, endpoint.database, tls)


def cipher(conn: object) -> str:
    cur = conn.cursor()  # type: ignore[attr-defined]
    cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
    return str(cur.fetchone()[1])


def test_the_login_is_refused_without_tls_and_accepted_with_it(
    databases: tuple[DbEndpoint, DbEndpoint], tls: DbTls
) -> None:
    source, _ = databases
    with pytest.raises(pymysql.err.OperationalError) as refused:
        source.connect()
    assert refused.value.args[0] == 1045  # access denied: REQUIRE SSL
    conn = with_tls(source, tls).connect()
    try:
        assert cipher(conn)  # a TLS session
    finally:
        conn.close()


def test_mysqlclient_connects_as_mysqlhook_does_with_the_extra(
    databases: tuple[DbEndpoint, DbEndpoint], tls: DbTls
) -> None:
    """The extra's ``ssl`` and ``ssl_mode`` as MySqlHook passes them to MySQLdb.connect."""
    source, _ = databases
    plain = {"host": source.host, "port": source.port, "user": source.user, "password": source.password}
    with pytest.raises(MySQLdb.OperationalError) as refused:
        MySQLdb.connect(**plain)
    assert refused.value.args[0] == 1045
    conn = MySQLdb.connect(**plain, ssl={"ca": tls.ca}, ssl_mode="VERIFY_IDENTITY")
    try:
        assert cipher(conn)
    finally:
        conn.close()


def test_a_wrong_ca_is_refused(databases: tuple[DbEndpoint, DbEndpoint], tmp_path: Path) -> None:
    """Verification is real: a CA that did not sign the server's certificate fails the connection."""
    source, _ = databases
    other = LocalMariaDB(StackSettings(tmp_path, db_port=1, http_port=1))
    other.ensure_certificates()
    with pytest.raises(pymysql.err.OperationalError):
        with_tls(source, other.tls).connect()


def test_copy_database_runs_over_tls_with_the_env_and_fails_without(
    databases: tuple[DbEndpoint, DbEndpoint], tls: DbTls
) -> None:
    source, target = databases
    without = run_step(source, target, *PAIRS)
    last = assert_one_sentence_failure(without, source.password)
    assert LOGIN in last
    proc = run_step(with_tls(source, tls), with_tls(target, tls), *PAIRS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    conn = with_tls(target, tls).connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM wp_posts")
        assert cur.fetchone()[0] > 0
    finally:
        conn.close()
