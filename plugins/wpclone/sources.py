"""The registered sources, wherever they are registered: one lookup over the configuration and Airflow.

A source is registered in one of two places:

- the deployment configuration's ``sources`` (wpclone.config; the local runtime's ``add-source`` writes
  there);
- an Airflow connection ``wpclone_source_<name>`` (wpclone.airflow.sources turns one into a
  :class:`~wpclone.models.SourceConfig`), added from the Airflow UI, CLI, REST API or a secrets backend.

:class:`SourceCatalog` is the one lookup. It is built with what its process can do: every process can
fetch one connection *by id* (Airflow's ``BaseHook.get_connection``: tasks through the execution API,
secrets backends included), but only the API server can *list* connections (task code may not touch
Airflow's metadata database). Hence the rule: **a source is found by URL among the sources the process can
list, and by name anywhere**. The jobs API (which lists) resolves a request's URL to its source's name and
passes the name to the job as the ``source`` param; a task finds the source by that name, or, with no name,
by URL in the configuration. A job triggered from the Airflow UI or REST API for a connection's source
names it in ``source`` itself.

Names and URLs are unique across both places: a listing that finds one name or URL twice (in the
configuration and as a connection) is a :class:`~wpclone.errors.ConfigError` that names both places
(``GET /wpclone/api/v1/sources`` and ``wpclone sources`` show it; a connection's source not in the
configuration is not cloned by URL until one is removed); a lookup (by URL or name) tries the
configuration first. Airflow-free (the services use it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from wpclone.errors import BadRequest, ConfigError
from wpclone.models import SourceConfig, normalize_url

CONN_ID_PREFIX = "wpclone_source_"


def source_conn_id(name: str) -> str:
    """The Airflow connection id of the source ``name``."""
    return CONN_ID_PREFIX + name


def connection_body(source: SourceConfig, password: str) -> dict[str, Any]:
    """``source`` as the body of Airflow's ``POST /api/v2/connections`` (wpclone.airflow.sources reads it
    back); its wp-content a directory (the local runtime)."""
    extra: dict[str, Any] = {"url": source.url, "table_prefix": source.table_prefix}
    if source.aliases:
        extra["aliases"] = list(source.aliases)
    if source.content_dir or source.content_claim:
        extra["content"] = source.content_dir or source.content_claim
    if source.content_link_roots is not None:
        extra["content_link_roots"] = list(source.content_link_roots)
    return {
        "connection_id": source_conn_id(source.name),
        "conn_type": "mysql",
        "host": source.db_host,
        "port": source.db_port,
        "login": source.db_user,
        "password": password,
        "schema": source.db_name,
        "extra": json.dumps(extra),
    }


def origin(source: SourceConfig) -> str:
    """Where ``source`` is registered, as a user reads it."""
    return f"connection {source.db_conn_id}" if source.db_conn_id else "the configuration"


def check_unique(sources: Sequence[SourceConfig]) -> list[SourceConfig]:
    """``sources`` if no two share a name or URL, else ConfigError naming both places."""
    for attr in ("name", "url"):
        seen: dict[str, SourceConfig] = {}
        for source in sources:
            value = getattr(source, attr)
            if value in seen:
                raise ConfigError(
                    f"source {attr} {value} is registered twice, in {origin(seen[value])} and in "
                    f"{origin(source)}; remove one of them."
                )
            seen[value] = source
    return list(sources)


class SourceCatalog:
    """The configuration's sources, plus Airflow's connections: ``by_name`` fetches one (None when there
    is none), ``listed`` lists them (None: this process cannot list, e.g. a task)."""

    def __init__(
        self,
        configured: Sequence[SourceConfig],
        by_name: Callable[[str], SourceConfig | None] | None = None,
        listed: Callable[[], Sequence[SourceConfig]] | None = None,
    ) -> None:
        self.configured = list(configured)
        self._by_name = by_name
        self._listed = listed

    def all(self) -> list[SourceConfig]:
        """Every source this process can list (configuration first); ConfigError on a duplicate."""
        return check_unique([*self.configured, *(self._listed() if self._listed else ())])

    def named(self, name: str) -> SourceConfig | None:
        """The source ``name``: the configuration's, else the connection ``wpclone_source_<name>``."""
        for source in self.configured:
            if source.name == name:
                return source
        return self._by_name(name) if self._by_name else None

    def find(self, url: str, name: str | None = None) -> SourceConfig:
        """The registered source at ``url`` (by ``name`` when given); BadRequest with one sentence."""
        url = normalize_url(url)
        if name:
            source = self.named(name)
            if source is None:
                raise BadRequest(
                    f"no source is named {name}: register it in the configuration or as the Airflow "
                    f"connection {source_conn_id(name)}."
                )
            if source.url != url:
                raise BadRequest(f"source {name} ({origin(source)}) is {source.url}, not {url}.")
            return source
        for source in self.configured:
            if source.url == url:
                return source
        known = self.all() if self._listed else self.configured
        for source in known:
            if source.url == url:
                return source
        urls = ", ".join(s.url for s in known) or "none"
        hint = (
            ""
            if self._listed
            else "; a source registered as an Airflow connection is found by its name: set the job's "
            "source param to it"
        )
        raise BadRequest(f"{url} is not a registered source site (registered: {urls}){hint}.")
