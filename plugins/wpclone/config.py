"""Where the deployment configuration (:class:`wpclone.models.WpcloneConfig`) comes from.

:func:`load_config` reads, first match wins:

1. ``WPCLONE_CONFIG``: the path of a JSON file (production: a ConfigMap mounted into the Airflow workers);
2. ``WPCLONE_CONFIG_JSON``: the JSON itself (e.g. an Airflow Variable exported to the environment);
3. the local runtime's ``<state dir>/wpclone.json`` (the state dir is the one
   ``wpclone.local.settings.StackSettings.load()`` uses). Seeding the local stack writes the seeded site's
   entry there (:func:`write_local_config`); ``python -m wpclone.local add-source`` and ``remove-source``
   add and remove others (:func:`put_local_source`, :func:`remove_local_source`). Every change is a
   read-modify-write under a lock (:func:`edit_local_config`) that keeps whatever it does not change: other
   sources, and other settings (``backups``, ...) as the user wrote them. A file that is not a valid
   configuration is never overwritten.

Sources may also be Airflow connections ``wpclone_source_<name>`` (wpclone.airflow.sources); the one lookup
over both is wpclone.sources (docs/sources.md).

Empty variables count as unset (the variables are read through wpclone.settings). Anything wrong is a
:class:`ConfigError` with one sentence that says how to fix it. Nothing here touches the network or the local
stack unless asked to, so it is safe at DAG parse time."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wpclone.errors import ConfigError
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import content_dir, load_site
from wpclone.models import RuntimeKind, SourceConfig, WpcloneConfig
from wpclone.settings import CONFIG, CONFIG_JSON, config_file, config_json, state_dir

log = logging.getLogger(__name__)

LOCAL_CONFIG_NAME = "wpclone.json"
LOCAL_SOURCES = ("source",)  # the seeded source site (wpclone.local.seed.SOURCE)
# What the local stack knows of a site it registers as a source; an entry's other keys (aliases,
# content_link_roots) are the user's and survive a re-seed.
STACK_SOURCE_FIELDS = frozenset(
    [
        "name",
        "url",
        "db_host",
        "db_port",
        "db_name",
        "db_user",
        "db_password_file",
        "table_prefix",
        "content_dir",
    ]
)


@functools.lru_cache(maxsize=8)
def parse_config(text: str, origin: str) -> WpcloneConfig:
    """Validate configuration JSON; ``origin`` names where it came from in the error sentence. The result
    (frozen) is kept per text: a long-lived process reading an unchanged file validates it once."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"the wpclone configuration in {origin} is not valid JSON ({exc.msg} at line {exc.lineno})."
        ) from exc
    try:
        return WpcloneConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'top level'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"the wpclone configuration in {origin} is not valid ({problems}).") from exc


def local_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``<state dir>/wpclone.json``, computed like ``StackSettings.load()`` but creating nothing."""
    return state_dir(env) / LOCAL_CONFIG_NAME


def load_config(env: Mapping[str, str] | None = None) -> WpcloneConfig:
    """The deployment configuration, from the first of the places in the module docstring."""
    path = config_file(env)
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(
                f"{CONFIG} names {path}, which cannot be read ({exc.strerror or exc}); "
                "point it at the wpclone configuration JSON file."
            ) from exc
        return parse_config(text, f"{path} ({CONFIG})")
    inline = config_json(env)
    if inline:
        return parse_config(inline, CONFIG_JSON)
    local = local_config_path(env)
    if local.is_file():
        return parse_config(local.read_text(), str(local))
    raise ConfigError(
        f"wpclone is not configured: set {CONFIG} to the path of a JSON configuration file or "
        f"{CONFIG_JSON} to the JSON itself, or, for the local runtime, create {local} with "
        "wpclone.config.write_local_config after seeding the local stack."
    )


def local_config(settings: StackSettings, sources: Sequence[str] = LOCAL_SOURCES) -> WpcloneConfig:
    """The local runtime's configuration: the named sites of the local site host as sources.

    Sources are listed by name (default: the seeded ``source``), never discovered: clones are sites of the
    same site host too, and only sites deliberately registered may be cloned.
    """
    configs = []
    for name in sources:
        site = load_site(settings, name)  # ConfigError when it is not registered
        try:
            configs.append(
                SourceConfig.model_validate(
                    {
                        "name": site.name,
                        "url": site.url,
                        "db_host": site.db_host,
                        "db_port": site.db_port,
                        "db_name": site.db_name,
                        "db_user": site.db_user,
                        "db_password_file": str(site.db_password_file),
                        "table_prefix": site.table_prefix,
                        "content_dir": str(content_dir(settings, site.name)),
                    }
                )
            )
        except ValidationError as exc:
            raise ConfigError(f"local site {name} cannot be a source: {exc.errors()[0]['msg']}.") from exc
    return WpcloneConfig.model_validate(
        {"runtime": RuntimeKind.LOCAL, "sources": configs, "clone_scheme": "http"}
    )


def local_config_file(settings: StackSettings) -> Path:
    return settings.state_dir / LOCAL_CONFIG_NAME


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` (seeding and add-source may run at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def edit_local_config(settings: StackSettings, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Change ``<state dir>/wpclone.json`` with ``edit`` (which changes the parsed JSON in place).

    A missing file starts as the local runtime's defaults. The file as found must be a valid
    configuration and so must the edited one, else :class:`ConfigError` and nothing is written; unchanged,
    the file is left alone; otherwise it is replaced atomically. Keys ``edit`` leaves alone keep their
    values.
    """
    path = local_config_file(settings)
    with _locked(path):
        old: str | None = None
        if path.is_file():
            old = path.read_text()
            try:
                parse_config(old, str(path))
            except ConfigError as exc:
                raise ConfigError(f"{str(exc).rstrip('.')}; fix it or move it away, then try again.") from exc
            data: dict[str, Any] = json.loads(old)
        else:
            data = {"runtime": RuntimeKind.LOCAL.value, "clone_scheme": "http", "sources": []}
        edit(data)
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        parse_config(text, f"{path} after this change")
        if text == old:
            return path
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    log.info("updated the local runtime's configuration %s", path)
    return path


def _put_source(data: dict[str, Any], entry: dict[str, Any], keep_other_keys: bool) -> None:
    sources: list[dict[str, Any]] = data.setdefault("sources", [])
    for i, found in enumerate(sources):
        if found.get("name") == entry["name"]:
            sources[i] = {**found, **entry} if keep_other_keys else entry
            return
    sources.append(entry)


def write_local_config(settings: StackSettings, sources: Sequence[str] = LOCAL_SOURCES) -> Path:
    """Write the named local sites' entries into ``<state dir>/wpclone.json`` from the local stack.

    Only what the stack knows of them (:data:`STACK_SOURCE_FIELDS`) is written: their other keys, every
    other source and every other setting stay as they are.
    """
    managed = local_config(settings, sources).sources

    def edit(data: dict[str, Any]) -> None:
        for source in managed:
            _put_source(data, source.model_dump(mode="json", include=set(STACK_SOURCE_FIELDS)), True)

    return edit_local_config(settings, edit)


def local_sources(settings: StackSettings) -> list[SourceConfig]:
    """The sources registered in ``<state dir>/wpclone.json`` (none when there is no file yet)."""
    path = local_config_file(settings)
    return list(parse_config(path.read_text(), str(path)).sources) if path.is_file() else []


def put_local_source(settings: StackSettings, source: SourceConfig) -> Path:
    """Add ``source`` to ``<state dir>/wpclone.json``, or replace the source of that name."""
    entry = source.model_dump(mode="json", exclude_defaults=True)
    return edit_local_config(settings, lambda data: _put_source(data, entry, False))


def remove_local_source(settings: StackSettings, name: str) -> Path:
    """Remove the source ``name`` from ``<state dir>/wpclone.json``; ConfigError when there is none."""

    def edit(data: dict[str, Any]) -> None:
        sources: list[dict[str, Any]] = data.get("sources", [])
        kept = [entry for entry in sources if entry.get("name") != name]
        if len(kept) == len(sources):
            known = ", ".join(str(entry.get("name")) for entry in sources) or "none"
            raise ConfigError(f"no source is named {name} (registered: {known}).")
        data["sources"] = kept

    return edit_local_config(settings, edit)
