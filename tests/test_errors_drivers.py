"""Database errors reach users as sentences: real errors from the real MariaDB, through both drivers
(PyMySQL: our own connections, the registry; MySQLdb: what Airflow's MySqlHook connects with), described
by ``wpclone.errors.describe``, the one place a task's failure becomes the job's sentence."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import MySQLdb
import pymysql
import pytest

from wpclone.db import DbEndpoint
from wpclone.errors import describe
from wpclone.local.mariadb import LOCAL_USER_HOST
from wpclone.mysql_admin import MySqlAdmin
from wpclone.registry import Registry

PROBE = "wpc_err_probe"  # a restored database with only wp_options, as in the issue
LOGIN_PASSWORD = "probe-pw-0c1d"


@pytest.fixture
def probe(admin_db: DbEndpoint) -> Iterator[DbEndpoint]:
    """A database holding only ``wp_options``, with a login that may touch only it."""
    MySqlAdmin.from_endpoint(admin_db).create_database_and_user(
        PROBE, PROBE, LOGIN_PASSWORD, user_host=LOCAL_USER_HOST
    )
    with admin_db.with_database(PROBE).connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS wp_options (option_id INT PRIMARY KEY)")
    yield DbEndpoint(admin_db.host, admin_db.port, PROBE, LOGIN_PASSWORD, PROBE)
    MySqlAdmin.from_endpoint(admin_db).drop_database_and_user(PROBE, PROBE, user_host=LOCAL_USER_HOST)


def mysqldb_connect(endpoint: DbEndpoint) -> Any:
    kwargs: dict[str, Any] = {"host": endpoint.host, "port": endpoint.port, "user": endpoint.user}
    kwargs["password"] = endpoint.password
    if endpoint.database:
        kwargs["database"] = endpoint.database
    return MySQLdb.connect(**kwargs)


def raised(fn: Callable[[], object]) -> BaseException:
    with pytest.raises((pymysql.err.MySQLError, MySQLdb.MySQLError)) as caught:
        fn()
    return caught.value


def no_table(connect: Callable[[DbEndpoint], Any], endpoint: DbEndpoint) -> None:
    conn = connect(endpoint)
    try:
        conn.cursor().execute("SELECT user_login FROM wp_users")
    finally:
        conn.close()


def test_a_missing_table_the_issues_apply_staging_safety_failure(
    probe: DbEndpoint, admin_db: DbEndpoint
) -> None:
    """The reproduction: apply_staging_safety's first query on a restored database without wp_users."""
    sentence = f"the database {PROBE} has no table wp_users."
    exc = raised(lambda: MySqlAdmin.from_endpoint(admin_db).first_administrator(PROBE, "wp_"))
    assert exc.args[0] == 1146 and describe(exc) == sentence
    for connect in (DbEndpoint.connect, mysqldb_connect):
        exc = raised(lambda connect=connect: no_table(connect, probe))
        assert exc.args[0] == 1146 and describe(exc) == sentence


def test_a_refused_login_and_an_unknown_database(probe: DbEndpoint, admin_db: DbEndpoint) -> None:
    wrong = DbEndpoint(probe.host, probe.port, PROBE, "not-the-password", PROBE)
    gone = DbEndpoint(admin_db.host, admin_db.port, admin_db.user, admin_db.password, "wpc_no_such_db")
    for connect in (DbEndpoint.connect, mysqldb_connect):
        exc = raised(lambda connect=connect: connect(wrong))
        assert exc.args[0] == 1045
        assert describe(exc) == (
            f"the database server refused the login of user {PROBE}: wrong password, or the user does not "
            "exist or may not connect from here."
        )
        exc = raised(lambda connect=connect: connect(gone))
        assert exc.args[0] == 1049
        assert describe(exc) == "the database wpc_no_such_db does not exist on the database server."
    # The registry and the database administration let the same errors through: the same sentences.
    exc = raised(Registry.from_endpoint(wrong, "wpclone_control").migrate)
    assert describe(exc).startswith(f"the database server refused the login of user {PROBE}:")
    exc = raised(
        lambda: MySqlAdmin.from_endpoint(probe).create_database_and_user("wpc_other", "wpc_other", "pw")
    )
    assert exc.args[0] == 1044
    assert describe(exc) == f"the database user {PROBE} may not use the database wpc_other."
