"""The SQL guard against the real client and server: real dumps pass untouched, and the second line of
defence (the clone user's privileges, the client's sandbox) holds when a hostile dump is loaded anyway."""

from __future__ import annotations

import io
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from wpclone.archive import read_site
from wpclone.db import DbEndpoint
from wpclone.errors import SqlRefused
from wpclone.local.mariadb import LOCAL_USER_HOST
from wpclone.local.sitehost import SiteConfig
from wpclone.mysql_admin import MySqlAdmin
from wpclone.sqlguard import guard
from wpclone.steps.copy_database import dump_command, load_command

CLONE = "wp_guard_clone"
OTHER = "wp_guard_other"
EVIL = "wp_guard_evil"


def _dump(endpoint: DbEndpoint) -> bytes:
    result = subprocess.run(
        dump_command(endpoint), env=endpoint.client_env(), capture_output=True, check=True
    )
    return result.stdout


def _load(target: DbEndpoint, sql: bytes) -> subprocess.CompletedProcess[bytes]:
    """Load as the restore does: the mariadb client in batch mode, sandboxed, as the clone's own user."""
    command = [*load_command(target), "--sandbox"]
    return subprocess.run(command, input=sql, env=target.client_env(), capture_output=True, check=False)


def _scalar(admin: DbEndpoint, sql: str, *args: object) -> object:
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return row[0] if row else None


@pytest.fixture
def clone_user(admin_db: DbEndpoint) -> Iterator[DbEndpoint]:
    """A clone-like database and user (privileges on its own database only), and another database."""
    password = secrets.token_urlsafe(16)
    MySqlAdmin.from_endpoint(admin_db).create_database_and_user(
        CLONE, CLONE, password, user_host=LOCAL_USER_HOST
    )
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {OTHER}")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {OTHER}.secrets (v varchar(20))")
        cur.execute(f"DELETE FROM {OTHER}.secrets")
        cur.execute(f"INSERT INTO {OTHER}.secrets VALUES ('untouched')")
        cur.execute(f"DROP DATABASE IF EXISTS {EVIL}")
    yield DbEndpoint(admin_db.host, admin_db.port, CLONE, password, CLONE)
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {OTHER}")
        cur.execute(f"DROP DATABASE IF EXISTS {EVIL}")
        cur.execute("DROP USER IF EXISTS 'wp_guard_evil'@'%'")
    MySqlAdmin.from_endpoint(admin_db).drop_database_and_user(CLONE, CLONE, user_host=LOCAL_USER_HOST)


def test_real_wordpress_dump_passes_byte_identical(source_site: SiteConfig, admin_db: DbEndpoint) -> None:
    dump = _dump(admin_db.with_database(source_site.db_name))
    assert dump.startswith(b"/*M!999999\\- enable the sandbox mode */")
    for size in (1 << 20, 4096, 97):
        assert b"".join(guard(dump[i : i + size] for i in range(0, len(dump), size))) == dump
    assert read_site(io.BytesIO(dump)) == (source_site.url, "wp_")


def test_guarded_dump_loads_into_the_clone(source_site: SiteConfig, admin_db: DbEndpoint, clone_user) -> None:  # type: ignore[no-untyped-def]
    dump = _dump(admin_db.with_database(source_site.db_name))
    result = _load(clone_user, b"".join(guard([dump])))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    posts = _scalar(admin_db, f"SELECT COUNT(*) FROM {CLONE}.wp_posts")
    assert posts == _scalar(admin_db, f"SELECT COUNT(*) FROM {source_site.db_name}.wp_posts")


HOSTILE = [
    b"CREATE DATABASE wp_guard_evil;\n",
    b"USE wp_guard_other;\nDROP TABLE secrets;\n",
    b"GRANT ALL PRIVILEGES ON *.* TO wp_guard_clone@'%';\n",
    b"GRANT ALL PRIVILEGES ON wp_guard_other.* TO wp_guard_clone@'%';\n",
    b"INSERT INTO wp_guard_other.secrets VALUES ('changed');\n",
    b"DELETE FROM `wp_guard_other`.`secrets`;\n",
    b"DROP DATABASE wp_guard_other;\n",
    b"CREATE USER wp_guard_evil@'%' IDENTIFIED BY 'x';\n",
    b"SET GLOBAL max_connections = 2;\n",
    b"SELECT 'x' INTO OUTFILE '/tmp/wpclone-guard-outfile';\n",
    b"\\! touch /tmp/wpclone-guard-marker\n",
    b"system touch /tmp/wpclone-guard-marker\n",
]


@pytest.mark.parametrize("sql", HOSTILE, ids=[h.split(b"\n")[0][:40].decode() for h in HOSTILE])
def test_hostile_dump_is_refused_and_confined_when_loaded_anyway(
    sql: bytes,
    admin_db: DbEndpoint,
    clone_user: DbEndpoint,
) -> None:
    # First line of defence: the guard refuses it.
    with pytest.raises(SqlRefused):
        b"".join(guard([b"SET NAMES utf8mb4;\n", sql]))
    # Second line: loaded without the guard, the clone user's privileges and the client's sandbox stop it.
    max_connections = _scalar(admin_db, "SELECT @@GLOBAL.max_connections")
    grants_before = _grants(admin_db)
    result = _load(clone_user, b"CREATE TABLE mine (a int);\n" + sql)
    assert result.returncode != 0, "the load should have failed"
    assert _scalar(admin_db, f"SELECT v FROM {OTHER}.secrets") == "untouched"
    assert (
        _scalar(admin_db, "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = %s", EVIL)
        == 0
    )
    assert _scalar(admin_db, "SELECT COUNT(*) FROM mysql.user WHERE user = %s", EVIL) == 0
    assert _grants(admin_db) == grants_before
    assert _scalar(admin_db, "SELECT @@GLOBAL.max_connections") == max_connections
    assert not Path("/tmp/wpclone-guard-marker").exists()
    assert not Path("/tmp/wpclone-guard-outfile").exists()
    # What ran before the hostile statement stayed inside the clone's own database.
    assert _scalar(admin_db, "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'mine'") == 1
    assert (
        _scalar(admin_db, "SELECT table_schema FROM information_schema.tables WHERE table_name = 'mine'")
        == CLONE
    )


def _grants(admin: DbEndpoint) -> list[str]:
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW GRANTS FOR %s@%s", (CLONE, LOCAL_USER_HOST))
        return sorted(str(row[0]) for row in cur.fetchall())
