"""Database administration on the shared MySQL server: one database and one least-privilege user per site.

Idempotent (``IF [NOT] EXISTS``, password reset on every create), names checked, SQL parameterised. Used by
the local seeder now and by the clone and delete steps.
"""

from __future__ import annotations

import logging

from wpclone.db import DbEndpoint, check_identifier, quote_identifier

log = logging.getLogger(__name__)


def create_database_and_user(
    admin: DbEndpoint, database: str, user: str, password: str, *, user_host: str = "%"
) -> None:
    """Create ``database`` and ``user``@``user_host``, who may touch that database and nothing else."""
    db = quote_identifier(check_identifier(database, "database name"))
    check_identifier(user, "database user")
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, user_host, password))
        cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, user_host, password))
        cur.execute(f"GRANT ALL PRIVILEGES ON {db}.* TO %s@%s", (user, user_host))
    log.info("database %s and user %s@%s ready", database, user, user_host)


def drop_database_and_user(admin: DbEndpoint, database: str, user: str, *, user_host: str = "%") -> None:
    """Remove ``database`` and ``user``@``user_host`` if they exist."""
    db = quote_identifier(check_identifier(database, "database name"))
    check_identifier(user, "database user")
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {db}")
        cur.execute("DROP USER IF EXISTS %s@%s", (user, user_host))
    log.info("database %s and user %s@%s dropped", database, user, user_host)
