"""The control plane's access to the shared MySQL server: every statement it runs there outside the registry.

One database and one least-privilege user per site (idempotent: ``IF [NOT] EXISTS``, the password reset on
every create), the reads of ``information_schema`` and ``mysql.user`` the orphan sweep and the restore's
checks need, the restore's atomic table swap, and the registry login's grants. Names are checked, values
parameterised.

A :class:`MySqlAdmin` runs them over connections from one factory, ``connect(database)``: which login is
reached, and how, is decided where it is built, once (``MySqlHook`` connections of an Airflow connection,
its TLS and other extras honoured: the provisioning login ``wpclone_mysql`` in the tasks, the registry
login ``wpclone_registry`` in the jobs API, which only reads and writes clones' data:
wpclone.airflow.services;
PyMySQL connections to the local stack's admin endpoint in the tests and the seeder,
:meth:`MySqlAdmin.from_endpoint`). A statement the login may not run is refused by the server.

The registry login (:meth:`MySqlAdmin.grant_registry_login`, :data:`REGISTRY_PRIVILEGES`) may read and write
rows of the control schema and of the clones' databases (``wpc_*``: a login link, a new expiry, whether a
clone's database exists) and nothing else: no CREATE, DROP, ALTER, GRANT or user management. DELETE is
needed on both: a login link deletes the expired links' records, and the registry's retention its old rows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from wpclone.db import DbEndpoint, check_identifier, quote_identifier
from wpclone.models import CLONE_DB_PREFIX

log = logging.getLogger(__name__)

# What the registry login may do, on the control schema and on the clones' databases: rows only.
REGISTRY_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"

# (database or None) -> a DB-API connection with the %s paramstyle (PyMySQL, MySQLdb), to that database.
Connect = Callable[[str | None], Any]


class MySqlAdmin:
    """The shared MySQL server's admin login, reached through ``connect``."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect

    @classmethod
    def from_endpoint(cls, endpoint: DbEndpoint) -> MySqlAdmin:
        """Over PyMySQL connections to ``endpoint`` (the local stack, the tests)."""
        return cls(lambda database: (endpoint.with_database(database) if database else endpoint).connect())

    def connect(self, database: str | None = None) -> Any:
        """A new connection of the admin login (to ``database``); the caller closes it."""
        return self._connect(database)

    @contextlib.contextmanager
    def cursor(self, database: str | None = None) -> Iterator[Any]:
        """A cursor on a connection of its own, committed (unless in autocommit) and closed after."""
        conn = self.connect(database)
        try:
            cur = conn.cursor()
            try:
                yield cur
            finally:
                cur.close()
            autocommit = getattr(conn, "get_autocommit", None)
            if autocommit is None or not autocommit():
                conn.commit()
        finally:
            conn.close()

    # -- databases and users -------------------------------------------------------------------------------

    def create_database_and_user(
        self, database: str, user: str, password: str, *, user_host: str = "%"
    ) -> None:
        """Create ``database`` and ``user``@``user_host``, who may touch that database and nothing else."""
        db = quote_identifier(check_identifier(database, "database name"))
        check_identifier(user, "database user")
        with self.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, user_host, password))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, user_host, password))
            cur.execute(f"GRANT ALL PRIVILEGES ON {db}.* TO %s@%s", (user, user_host))
        log.info("database %s and user %s@%s ready", database, user, user_host)

    def grant_table_reads(
        self, database: str, user: str, *, user_host: str = "%", skip: Sequence[str] = ()
    ) -> list[str]:
        """Let ``user`` SELECT each table of ``database`` but ``skip`` (the same-server copy's read,
        wpclone.steps.same_server); return the tables granted."""
        db = quote_identifier(check_identifier(database, "database name"))
        check_identifier(user, "database user")
        with self.cursor() as cur:
            tables = [t for t in _tables(cur, database) if t not in set(skip)]
            for table in tables:
                cur.execute(f"GRANT SELECT ON {db}.{quote_identifier(table)} TO %s@%s", (user, user_host))
        return tables

    def revoke_table_reads(self, database: str, user: str, *, user_host: str = "%") -> int:
        """Take back every table-level privilege ``user`` holds on ``database``; return how many tables."""
        check_identifier(database, "database name")
        check_identifier(user, "database user")
        with self.cursor() as cur:
            cur.execute(
                "SELECT Table_name FROM mysql.tables_priv WHERE Db = %s AND User = %s AND Host = %s",
                (database, user, user_host),
            )
            tables = [str(row[0]) for row in cur.fetchall()]
            for table in tables:
                cur.execute(
                    f"REVOKE ALL PRIVILEGES ON {quote_identifier(database)}.{quote_identifier(table)}"
                    " FROM %s@%s",
                    (user, user_host),
                )
        return len(tables)

    def drop_database_and_user(self, database: str, user: str, *, user_host: str = "%") -> None:
        """Remove ``database`` and ``user``@``user_host`` if they exist."""
        db = quote_identifier(check_identifier(database, "database name"))
        check_identifier(user, "database user")
        with self.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
            cur.execute("DROP USER IF EXISTS %s@%s", (user, user_host))
        log.info("database %s and user %s@%s dropped", database, user, user_host)

    def grant_registry_login(self, user: str, password: str, schema: str, *, user_host: str = "%") -> None:
        """Create (or reset the password of) ``user``@``user_host`` and let it read and write the rows of
        control schema ``schema`` and of the clones' databases, and nothing else (the module docstring)."""
        check_identifier(user, "registry login")
        control = quote_identifier(check_identifier(schema, "control schema name"))
        clones = quote_identifier(_like_prefix(CLONE_DB_PREFIX) + "%")  # GRANT's database names are patterns
        with self.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, user_host, password))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, user_host, password))
            for database in (control, clones):
                cur.execute(f"GRANT {REGISTRY_PRIVILEGES} ON {database}.* TO %s@%s", (user, user_host))
        log.info(
            "registry login %s@%s may read and write %s and the clones' databases", user, user_host, schema
        )

    def database_exists(self, name: str) -> bool:
        with self.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))
            return cur.fetchone() is not None

    def databases(self, prefixes: Sequence[str]) -> list[str]:
        """The databases whose names start with one of ``prefixes`` (literal, e.g. ``wpc_``), sorted."""
        if not prefixes:
            return []
        where = " OR ".join(["schema_name LIKE %s"] * len(prefixes))
        with self.cursor() as cur:
            cur.execute(
                f"SELECT schema_name FROM information_schema.schemata WHERE {where} ORDER BY schema_name",
                tuple(_like_prefix(p) for p in prefixes),
            )
            return [str(name) for (name,) in cur.fetchall()]

    def users(self, prefix: str) -> list[str]:
        """The database users (any host) whose names start with ``prefix``, sorted, each once."""
        with self.cursor() as cur:
            cur.execute(
                "SELECT DISTINCT user FROM mysql.user WHERE user LIKE %s ORDER BY user",
                (_like_prefix(prefix),),
            )
            return [str(name) for (name,) in cur.fetchall()]

    # -- tables ----------------------------------------------------------------------------------------------

    def tables(self, database: str) -> list[str]:
        """The tables of ``database``, sorted (none when it does not exist)."""
        with self.cursor() as cur:
            return _tables(cur, database)

    def swap_tables(self, live: str, out: str, into_live: str) -> bool:
        """In one atomic RENAME TABLE: every table of ``live`` to ``out`` and every table of ``into_live`` to
        ``live``. Returns False (and does nothing) when ``into_live`` has no tables."""
        q = quote_identifier
        with self.cursor() as cur:
            incoming = _tables(cur, into_live)
            if not incoming:
                return False
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS {q(check_identifier(out, 'database name'))} "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
            renames = [f"{q(live)}.{q(t)} TO {q(out)}.{q(t)}" for t in _tables(cur, live)]
            renames += [f"{q(into_live)}.{q(t)} TO {q(live)}.{q(t)}" for t in incoming]
            cur.execute("RENAME TABLE " + ", ".join(renames))
        return True

    # -- a WordPress site's database ----------------------------------------------------------------------

    def first_administrator(self, database: str, prefix: str) -> str | None:
        """The login of the site's first administrator (lowest ID), or None when it has none."""
        with self.cursor(database) as cur:
            cur.execute(
                f"SELECT u.user_login FROM `{prefix}users` u JOIN `{prefix}usermeta` m ON m.user_id = u.ID "
                f"WHERE m.meta_key = %s AND m.meta_value LIKE %s ORDER BY u.ID LIMIT 1",
                (f"{prefix}capabilities", '%"administrator"%'),
            )
            row = cur.fetchone()
        return str(row[0]) if row else None

    def site_urls(self, database: str, prefix: str) -> dict[str, str]:
        """The site's ``siteurl`` and ``home`` options that exist, without a trailing slash."""
        with self.cursor(database) as cur:
            cur.execute(
                f"SELECT option_name, option_value FROM `{prefix}options` "
                "WHERE option_name IN ('siteurl', 'home')"
            )
            return {str(name): str(value).rstrip("/") for name, value in cur.fetchall()}

    def count_rows(self, database: str, table: str) -> int:
        with self.cursor(database) as cur:
            cur.execute(f"SELECT COUNT(*) FROM {quote_identifier(table)}")
            return int(cur.fetchone()[0])


def _tables(cur: Any, database: str) -> list[str]:
    cur.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY table_name",
        (database,),
    )
    return [str(row[0]) for row in cur.fetchall()]


def _like_prefix(prefix: str) -> str:
    """``prefix`` as a LIKE pattern matching names that start with it (``_`` and ``%`` taken literally)."""
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
