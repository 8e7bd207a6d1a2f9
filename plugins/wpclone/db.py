"""MySQL endpoints, identifiers and connections shared by the steps and the local stack.

Only PyMySQL and the MariaDB client tools are used here, so the steps CLI runs without Airflow.

A login may carry TLS settings (:class:`DbTls`): the steps read them from ``<prefix>_SSL_MODE``,
``_SSL_CA``, ``_SSL_CERT`` and ``_SSL_KEY`` (:meth:`DbEndpoint.from_env`), connect with PyMySQL's ``ssl``
and give the MariaDB clients ``--ssl``, ``--ssl-ca``, ``--ssl-cert``, ``--ssl-key`` and
``--ssl-verify-server-cert`` (paths only: no secret in argv). :meth:`DbTls.from_extra` maps an Airflow
MySQL connection's extra (what ``MySqlHook`` honours: ``ssl`` and ``ssl_mode``) to the same settings, so
the steps reach the shared server the way the control plane does (docs/database-tls.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymysql

from wpclone.errors import ConfigError

if TYPE_CHECKING:
    import pymysql

# Database, user and table names we create: lower-case, digits, underscore; MySQL's 64-char limit.
IDENTIFIER_RE = re.compile(r"[a-z0-9_]{1,64}")


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


class TlsMode(StrEnum):
    """How a login uses TLS: the ``ssl_mode`` values of MySQL clients that require it."""

    REQUIRED = "REQUIRED"  # encrypted; the server's certificate is not checked
    VERIFY_CA = "VERIFY_CA"  # and the certificate is signed by the CA
    VERIFY_IDENTITY = "VERIFY_IDENTITY"  # and it names the host connected to


# ssl_mode values that ask for no TLS requirement: a login with one of these connects as without settings.
NO_TLS_MODES = ("DISABLED", "PREFERRED")
TLS_FILES = ("ca", "cert", "key")


@dataclass(frozen=True)
class DbTls:
    """A login's TLS settings: the mode and the PEM files (CA, client certificate and key), as paths."""

    mode: TlsMode = TlsMode.REQUIRED
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> DbTls | None:
        """The settings an Airflow MySQL connection's extra asks for, as ``MySqlHook`` reads it: ``ssl``
        (a dict or its JSON: ``ca``, ``cert``, ``key``) and ``ssl_mode``. None when it asks for no TLS.
        With ``ssl`` and no ``ssl_mode`` the mode is REQUIRED, as for mysqlclient. With ``"client":
        "mysql-connector-python"`` the hook passes that driver's own keys (:meth:`_from_connector`)."""
        if extra.get("client") == "mysql-connector-python":
            return cls._from_connector(extra)
        value = extra.get("ssl") or {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ConfigError(f"the connection's extra 'ssl' is not a JSON object: {exc}.") from exc
        if value is True:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError("the connection's extra 'ssl' must be an object with 'ca', 'cert' or 'key'.")
        raw_mode = str(extra.get("ssl_mode") or "").upper().replace("-", "_")
        if raw_mode in NO_TLS_MODES or (not raw_mode and not extra.get("ssl")):
            return None
        try:
            mode = TlsMode(raw_mode) if raw_mode else TlsMode.REQUIRED
        except ValueError:
            modes = ", ".join([*NO_TLS_MODES, *TlsMode])
            raise ConfigError(f"the connection's ssl_mode {raw_mode!r} is not one of {modes}.") from None
        files = {name: str(value[name]) for name in TLS_FILES if value.get(name)}
        if mode is not TlsMode.REQUIRED and "ca" not in files:
            raise ConfigError(f"ssl_mode {mode} needs the CA: set 'ssl': {{'ca': '<path>'}} in the extra.")
        return cls(mode, **files)

    @classmethod
    def _from_connector(cls, extra: Mapping[str, Any]) -> DbTls | None:
        """mysql-connector-python's keys: ``ssl_ca``, ``ssl_cert``, ``ssl_key``, ``ssl_verify_cert``,
        ``ssl_verify_identity``, ``ssl_disabled``."""
        files = {name: str(extra[f"ssl_{name}"]) for name in TLS_FILES if extra.get(f"ssl_{name}")}
        if extra.get("ssl_disabled"):
            return None
        if extra.get("ssl_verify_identity"):
            mode = TlsMode.VERIFY_IDENTITY
        elif extra.get("ssl_verify_cert"):
            mode = TlsMode.VERIFY_CA
        elif files:
            mode = TlsMode.REQUIRED
        else:
            return None
        if mode is not TlsMode.REQUIRED and "ca" not in files:
            raise ConfigError(f"verifying the server ({mode}) needs the CA: set 'ssl_ca' in the extra.")
        return cls(mode, **files)

    @classmethod
    def from_env(cls, prefix: str, env: Mapping[str, str]) -> DbTls | None:
        """``{prefix}_SSL_MODE`` and ``_SSL_CA/_CERT/_KEY``; None when ``_SSL_MODE`` is unset or empty."""
        raw_mode = env.get(f"{prefix}_SSL_MODE") or ""
        if not raw_mode:
            return None
        try:
            mode = TlsMode(raw_mode)
        except ValueError:
            raise ConfigError(
                f"{prefix}_SSL_MODE must be one of {', '.join(TlsMode)}, not {raw_mode!r}."
            ) from None
        files = {name: env.get(f"{prefix}_SSL_{name.upper()}") or None for name in TLS_FILES}
        return cls(mode, **files)

    def to_env(self, prefix: str) -> dict[str, str]:
        env = {f"{prefix}_SSL_MODE": str(self.mode)}
        for name, path in self.files().items():
            env[f"{prefix}_SSL_{name.upper()}"] = path
        return env

    def files(self) -> dict[str, str]:
        """The files that are set, by name (``ca``, ``cert``, ``key``)."""
        return {name: path for name in TLS_FILES if (path := getattr(self, name))}

    def with_files(self, files: Mapping[str, str]) -> DbTls:
        """The same settings with the files at other paths (where a pod mounts them)."""
        given = self.files()
        return DbTls(self.mode, *(files[name] if name in given else None for name in TLS_FILES))

    def pymysql_ssl(self) -> dict[str, Any]:
        """PyMySQL's ``ssl`` argument."""
        verify = self.mode is not TlsMode.REQUIRED
        return {
            **self.files(),
            "verify_mode": ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
            "check_hostname": self.mode is TlsMode.VERIFY_IDENTITY,
        }

    def client_args(self) -> list[str]:
        """The MariaDB clients' options (10.11: ``mariadb --help``): paths and switches, no secret."""
        args = ["--ssl", *(f"--ssl-{name}={path}" for name, path in self.files().items())]
        if self.mode is not TlsMode.REQUIRED:
            args.append("--ssl-verify-server-cert")
        return args


@dataclass(frozen=True)
class DbEndpoint:
    """Where a database lives and how to log in. The password never appears in repr or argv."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str | None = None
    tls: DbTls | None = None

    @classmethod
    def from_env(cls, prefix: str, env: Mapping[str, str] | None = None) -> DbEndpoint:
        """Read ``{prefix}_HOST``, ``_PORT``, ``_USER``, ``_PASSWORD`` (or ``_PASSWORD_FILE``), ``_NAME`` and
        the TLS settings (:meth:`DbTls.from_env`)."""
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
        return cls(get("HOST"), int(port), get("USER"), password, name, DbTls.from_env(prefix, env))

    def to_env(self, prefix: str) -> dict[str, str]:
        env = {
            f"{prefix}_HOST": self.host,
            f"{prefix}_PORT": str(self.port),
            f"{prefix}_USER": self.user,
            f"{prefix}_PASSWORD": self.password,
        }
        if self.database:
            env[f"{prefix}_NAME"] = self.database
        if self.tls:
            env.update(self.tls.to_env(prefix))
        return env

    def with_database(self, database: str) -> DbEndpoint:
        return replace(self, database=database)

    def client_args(self) -> list[str]:
        """Connection options for mariadb/mysqldump; pair with :meth:`client_env` for the password."""
        tls = self.tls.client_args() if self.tls else []
        return [f"--host={self.host}", f"--port={self.port}", f"--user={self.user}", "--protocol=TCP", *tls]

    def client_env(self) -> dict[str, str]:
        """Environment for a client tool: the password travels in MYSQL_PWD, never in argv."""
        return {**os.environ, "MYSQL_PWD": self.password}

    def connect(self, **kwargs: object) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        if self.tls:
            kwargs.setdefault("ssl", self.tls.pymysql_ssl())
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


class ConnectionPool:
    """Reuse DB-API connections from ``connect`` across calls (a long-lived process: the API server).

    Calling the pool returns a connection whose ``close()`` hands it back instead of closing it; at most
    ``keep`` idle connections are kept. Pooled connections run in autocommit mode, so a statement costs one
    round trip (no COMMIT after it, no ROLLBACK when handing back) and nothing can leak to the next user;
    one that was switched out of autocommit is rolled back and switched back when handed back.

    A connection idle for ``ping_after_s`` or more is pinged when taken again, and replaced when the server
    has dropped it; one taken again sooner is not (a burst of requests pays no ping each). A user that
    hits an error calls ``discard()`` instead of ``close()``: a connection that failed is never reused.
    """

    def __init__(self, connect: Callable[[], Any], keep: int = 8, ping_after_s: float = 1.0) -> None:
        self._connect = connect
        self._keep = keep
        self._ping_after_s = ping_after_s
        self._idle: list[tuple[Any, float]] = []  # (connection, time.monotonic() when handed back)
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        while True:
            with self._lock:
                conn, since = self._idle.pop() if self._idle else (None, 0.0)
            if conn is None:
                conn = self._connect()
                conn.autocommit(True)
                return _Pooled(conn, self)
            if time.monotonic() - since < self._ping_after_s:
                return _Pooled(conn, self)
            try:
                conn.ping()
            except Exception:
                _discard(conn)
                continue
            return _Pooled(conn, self)

    def _give_back(self, conn: Any) -> None:
        try:
            if not conn.get_autocommit():
                conn.rollback()
                conn.autocommit(True)
        except Exception:
            _discard(conn)
            return
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()


def _discard(conn: Any) -> None:
    """Close a connection that is of no more use, whatever state it is in."""
    with contextlib.suppress(Exception):
        conn.close()


class _Pooled:
    """A pooled connection: everything is the connection's, but ``close()`` returns it to the pool."""

    def __init__(self, conn: Any, pool: ConnectionPool) -> None:
        self._conn = conn
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._give_back(conn)

    def discard(self) -> None:
        """Close it for good (after an error: it may be broken); ``close()`` then does nothing."""
        conn, self._conn = self._conn, None
        if conn is not None:
            _discard(conn)
