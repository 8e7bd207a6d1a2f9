"""MySQL endpoints, identifiers and connections shared by the steps and the local stack.

Only PyMySQL and the MariaDB client tools are used here, so the steps CLI runs without Airflow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pymysql

# Database, user and table names we create: lower-case, digits, underscore; MySQL's 64-char limit.
IDENTIFIER_RE = re.compile(r"[a-z0-9_]{1,64}")


class ConfigError(ValueError):
    """Configuration or input that a user must fix; its message is one sentence."""


def check_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a safe MySQL identifier, else raise ConfigError."""
    if not IDENTIFIER_RE.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} is not valid: use 1-64 lower-case letters, digits or underscores."
        )
    return name


def quote_identifier(name: str) -> str:
    """Backtick-quote an identifier that passed :func:`check_identifier` (or any table name we read)."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class DbEndpoint:
    """Where a database lives and how to log in. The password never appears in repr or argv."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str | None = None

    @classmethod
    def from_env(cls, prefix: str, env: Mapping[str, str] | None = None) -> DbEndpoint:
        """Read ``{prefix}_HOST``, ``_PORT``, ``_USER``, ``_PASSWORD`` (or ``_PASSWORD_FILE``), ``_NAME``."""
        env = os.environ if env is None else env

        def get(key: str, default: str | None = None) -> str:
            value = env.get(f"{prefix}_{key}", default)
            if value is None or value == "":
                raise ConfigError(f"{prefix}_{key} is not set in the environment.")
            return value

        password = env.get(f"{prefix}_PASSWORD")
        if password is None:
            password_file = env.get(f"{prefix}_PASSWORD_FILE")
            if not password_file:
                raise ConfigError(f"Neither {prefix}_PASSWORD nor {prefix}_PASSWORD_FILE is set.")
            password = Path(password_file).read_text().strip()
        port = get("PORT", "3306")
        if not port.isdigit():
            raise ConfigError(f"{prefix}_PORT must be a number, not {port!r}.")
        name = env.get(f"{prefix}_NAME") or None
        return cls(get("HOST"), int(port), get("USER"), password, name)

    def to_env(self, prefix: str) -> dict[str, str]:
        env = {
            f"{prefix}_HOST": self.host,
            f"{prefix}_PORT": str(self.port),
            f"{prefix}_USER": self.user,
            f"{prefix}_PASSWORD": self.password,
        }
        if self.database:
            env[f"{prefix}_NAME"] = self.database
        return env

    def with_database(self, database: str) -> DbEndpoint:
        return DbEndpoint(self.host, self.port, self.user, self.password, database)

    def client_args(self) -> list[str]:
        """Connection options for mariadb/mysqldump; pair with :meth:`client_env` for the password."""
        return [f"--host={self.host}", f"--port={self.port}", f"--user={self.user}", "--protocol=TCP"]

    def client_env(self) -> dict[str, str]:
        """Environment for a client tool: the password travels in MYSQL_PWD, never in argv."""
        return {**os.environ, "MYSQL_PWD": self.password}

    def connect(self, **kwargs: object) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        import pymysql

        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            charset="utf8mb4",
            autocommit=True,
            **kwargs,
        )
