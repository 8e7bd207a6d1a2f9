"""Sources registered as Airflow connections: ``wpclone_source_<name>``, type ``mysql``.

The connection's fields are the source's database login: ``host``, ``port`` (default 3306), ``login``,
``password`` and ``schema`` (the database). Its ``extra`` (JSON) says the rest::

    {"url": "https://www.example.com",              required: the site's origin
     "aliases": ["example.com"],                    other names it answers to (SourceConfig.aliases)
     "table_prefix": "wp_",                         default wp_
     "content": "/srv/www/example/wp-content",      the wp-content: a directory (local runtime) or the
                                                    name of its PersistentVolumeClaim (kubernetes)
     "db_password_secret": "example-db",            kubernetes: the Secret (key "password") the step pods
                                                    read the password from (the pods never see Airflow's)
     "content_link_roots": ["/usr/share/wordpress"]} directories a link in wp-content may point into

The MySQL provider's own extras (``charset``, ``ssl``, ...) may be there too; any other key is refused, so
a typo is a sentence and not a silently ignored setting. :func:`source_from_connection` turns a connection
into a :class:`~wpclone.models.SourceConfig` (``db_conn_id`` set; no password in it: the plan that carries
it goes through XCom) or raises :class:`~wpclone.errors.ConfigError` naming the connection and the field.

:func:`connection_source` fetches one by name through ``BaseHook.get_connection`` (tasks: the execution
API; secrets backends included). :func:`listed_connection_sources` lists them, which only the API server
may do (it reads Airflow's metadata database, plus ``AIRFLOW_CONN_WPCLONE_SOURCE_*`` variables); secrets
backends cannot be listed, so a source kept only there is found by name (wpclone.sources).
:func:`with_password_file` hands a connection source's password to a local step as a file only the owner
can read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from pydantic import ValidationError

from wpclone.errors import ConfigError
from wpclone.models import SOURCE_NAME_PATTERN, SourceConfig, WpcloneConfig
from wpclone.sources import CONN_ID_PREFIX, SourceCatalog, source_conn_id

CONN_TYPE = "mysql"
EXTRA_FIELDS = frozenset(
    {"url", "aliases", "table_prefix", "content", "db_password_secret", "content_link_roots"}
)
# The MySQL provider's own extras (MySqlHook), allowed beside ours.
MYSQL_EXTRAS = frozenset(
    {
        "charset",
        "cursor",
        "ssl",
        "ssl_mode",
        "unix_socket",
        "client",
        "local_infile",
        "init_command",
        "iam",
        "aws_conn_id",
    }
)
# SourceConfig field -> where it comes from in the connection (for the error sentence).
FIELD_ORIGIN = {
    "name": "connection id",
    "db_host": "host",
    "db_port": "port",
    "db_user": "login",
    "db_name": "schema",
    "db_conn_id": "connection id",
    "content_dir": "extra field content",
    "content_claim": "extra field content",
}


class ConnectionLike(Protocol):
    """What we read of an Airflow connection (the Task SDK's and the metadata database's alike)."""

    conn_id: str
    conn_type: str | None
    host: str | None
    port: int | None
    login: str | None
    schema: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


def source_name(conn_id: str) -> str | None:
    """The source name of ``wpclone_source_<name>``; None when ``conn_id`` is not a source's."""
    return conn_id[len(CONN_ID_PREFIX) :] if conn_id.startswith(CONN_ID_PREFIX) else None


def _extra(conn: ConnectionLike) -> dict[str, Any]:
    try:
        extra = conn.extra_dejson
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"connection {conn.conn_id}: its extra is not a JSON object.") from exc
    if not isinstance(extra, dict) or not extra:
        raise ConfigError(
            f"connection {conn.conn_id}: its extra must be a JSON object with at least the site's url, "
            'e.g. {"url": "https://www.example.com"}.'
        )
    unknown = sorted(set(extra) - EXTRA_FIELDS - MYSQL_EXTRAS)
    if unknown:
        raise ConfigError(
            f"connection {conn.conn_id}: extra field {unknown[0]} is not known; a source's extra may hold "
            f"{', '.join(sorted(EXTRA_FIELDS))}."
        )
    return extra


def source_from_connection(conn: ConnectionLike) -> SourceConfig:
    """The source the connection ``wpclone_source_<name>`` registers; ConfigError naming the connection
    and the field when it cannot be one. Never reads the password."""
    name = source_name(conn.conn_id)
    if name is None:
        raise ConfigError(
            f"connection {conn.conn_id} is not a source: its id must be {CONN_ID_PREFIX}<name>."
        )
    if conn.conn_type and conn.conn_type != CONN_TYPE:
        raise ConfigError(
            f"connection {conn.conn_id} is of type {conn.conn_type}; a source's connection is of type mysql."
        )
    extra = _extra(conn)
    if "url" not in extra:
        raise ConfigError(f"connection {conn.conn_id}: extra field url (the site's origin) is missing.")
    content = extra.get("content")
    local = isinstance(content, str) and content.startswith("/")
    data = {
        "name": name,
        "url": extra["url"],
        "db_host": conn.host or "",
        "db_port": conn.port or 3306,
        "db_user": conn.login or "",
        "db_name": conn.schema or "",
        "db_conn_id": conn.conn_id,
        "table_prefix": extra.get("table_prefix", "wp_"),
        "aliases": extra.get("aliases", []),
        "content_dir": content if local else None,
        "content_claim": None if local else content,
        "db_password_secret": extra.get("db_password_secret"),
        "content_link_roots": extra.get("content_link_roots"),
    }
    try:
        return SourceConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "extra"
        where = FIELD_ORIGIN.get(field, f"extra field {field}")
        if field == "name":
            where = f"connection id (the name after {CONN_ID_PREFIX} must match {SOURCE_NAME_PATTERN})"
        raise ConfigError(f"connection {conn.conn_id}: {where} is not valid ({err['msg']}).") from exc


def connection_source(name: str) -> SourceConfig | None:
    """The source registered as the connection ``wpclone_source_<name>`` (None when there is none);
    ConfigError when that connection cannot be a source."""
    try:
        conn = BaseHook.get_connection(source_conn_id(name))
    except AirflowNotFoundException:
        return None
    return source_from_connection(conn)


def _env_conn_ids(environ: Mapping[str, str]) -> list[str]:
    prefix = "AIRFLOW_CONN_" + CONN_ID_PREFIX.upper()
    return [key[len("AIRFLOW_CONN_") :].lower() for key in environ if key.startswith(prefix)]


def connection_source_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names of the sources registered as ``AIRFLOW_CONN_WPCLONE_SOURCE_<NAME>`` variables: the only
    source connections a DAG file may know of at parse time (it cannot list the metadata database's)."""
    ids = _env_conn_ids(os.environ if environ is None else environ)
    return [name for conn_id in sorted(ids) if (name := source_name(conn_id))]


def listed_connection_sources(environ: Mapping[str, str] | None = None) -> list[SourceConfig]:
    """Every source connection this API server can list: ``AIRFLOW_CONN_WPCLONE_SOURCE_*`` variables and
    the metadata database's ``wpclone_source_%`` connections, each then fetched as Airflow looks it up
    (:func:`connection_source`). Not in task code: it reads the metadata database."""
    from airflow.models.connection import Connection  # noqa: PLC0415 (the ORM model: API server only)
    from airflow.utils.session import create_session  # noqa: PLC0415 (with the ORM model above)
    from sqlalchemy import select  # noqa: PLC0415 (with the ORM model above)

    environ = os.environ if environ is None else environ
    ids = dict.fromkeys(_env_conn_ids(environ))
    with create_session(scoped=False) as session:
        query = select(Connection.conn_id).where(Connection.conn_id.like(f"{CONN_ID_PREFIX}%"))
        ids.update(dict.fromkeys(session.scalars(query)))
    sources = [connection_source(name) for conn_id in sorted(ids) if (name := source_name(conn_id))]
    return [source for source in sources if source is not None]


def catalog(config: WpcloneConfig, *, listing: bool = False) -> SourceCatalog:
    """The sources of ``config`` and Airflow's connections; with ``listing`` (the API server only),
    connections are listed too (wpclone.sources)."""
    return SourceCatalog(config.sources, connection_source, listed_connection_sources if listing else None)


def with_password_file(source: SourceConfig, secrets_dir: Path) -> SourceConfig:
    """``source`` with ``db_password_file`` set: for a connection's source, its password written (again,
    atomically) to ``<secrets_dir>/source-<name>-db``, readable only by the owner (local steps)."""
    if not source.db_conn_id:
        return source
    password = BaseHook.get_connection(source.db_conn_id).password or ""
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = secrets_dir / f"source-{source.name}-db"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password)
    os.replace(tmp, path)
    return source.model_copy(update={"db_password_file": str(path)})
