"""Registering sources on the local runtime: ``python -m wpclone.local add-source|remove-source|sources``.

A source is any WordPress site whose database this machine can log in to (the local MariaDB or another
MySQL server) and whose ``wp-content`` it can read (:class:`wpclone.models.SourceConfig`). Before anything
is written, :func:`check_source` proves the registration right: the password file is the owner's alone,
the database answers with that login, the table prefix's ``options`` table is there, its ``home`` and
``siteurl`` are the source's URL or one of its aliases, and the content and link-root directories exist.
Anything wrong is a :class:`ConfigError` with one sentence, and nothing is written.

The database settings may be read from the site's ``wp-config.php`` (:func:`read_wp_config`): plain string
``define()`` s and ``$table_prefix`` only, found with PHP's own tokenizer; nothing in the file is run. Its
password is then kept in ``<state dir>/secrets/source-<name>-db`` (mode 0600). The entry goes into
``<state dir>/wpclone.json`` through :func:`wpclone.config.put_local_source`, which keeps every other
source and setting.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pymysql
from pydantic import ValidationError

from wpclone.config import LOCAL_SOURCES, local_sources, put_local_source, remove_local_source
from wpclone.db import DbEndpoint, quote_identifier
from wpclone.errors import ConfigError
from wpclone.local.settings import StackSettings
from wpclone.models import SourceConfig, normalize_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
# Reads string-literal define()s and $table_prefix from a PHP file without running it: token_get_all()
# parses, and each value is a T_CONSTANT_ENCAPSED_STRING (a literal with no interpolation), so evaluating
# it yields the string it spells and nothing else.
WP_CONFIG_PHP = r"""
$code = @file_get_contents($argv[1]);
if ($code === false) { fwrite(STDERR, "cannot be read"); exit(1); }
$lit = fn($t) => is_array($t) && $t[0] === T_CONSTANT_ENCAPSED_STRING;
$ts = array_values(array_filter(token_get_all($code),
    fn($t) => !is_array($t) || !in_array($t[0], [T_WHITESPACE, T_COMMENT, T_DOC_COMMENT], true)));
$out = ['define' => new stdClass(), 'table_prefix' => null];
for ($i = 0, $n = count($ts); $i + 3 < $n; $i++) {
    $t = $ts[$i];
    if (is_array($t) && in_array($t[0], [T_STRING, T_NAME_FULLY_QUALIFIED], true)
        && strtolower(ltrim($t[1], '\\')) === 'define' && $ts[$i + 1] === '(' && $lit($ts[$i + 2])
        && $i + 5 < $n && $ts[$i + 3] === ',' && $lit($ts[$i + 4]) && $ts[$i + 5] === ')') {
        $name = eval('return ' . $ts[$i + 2][1] . ';');
        $out['define']->$name ??= eval('return ' . $ts[$i + 4][1] . ';');
    } elseif (is_array($t) && $t[0] === T_VARIABLE && $t[1] === '$table_prefix' && $ts[$i + 1] === '='
        && $lit($ts[$i + 2]) && $ts[$i + 3] === ';') {
        $out['table_prefix'] ??= eval('return ' . $ts[$i + 2][1] . ';');
    }
}
echo json_encode($out);
"""


@dataclasses.dataclass(frozen=True)
class WpConfig:
    """What a wp-config.php sets as plain strings (``None``: not set that way)."""

    db_name: str | None
    db_user: str | None
    db_password: str | None
    db_host: str | None
    table_prefix: str | None
    content_dir: str | None
    url: str | None


def read_wp_config(path: Path) -> WpConfig:
    """The database settings, table prefix, content directory and URL a ``wp-config.php`` sets."""
    result = subprocess.run(
        ["php", "-r", WP_CONFIG_PHP, str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ConfigError(f"{path} {result.stderr.strip() or 'cannot be read as PHP'}.")
    found = json.loads(result.stdout)
    defines: dict[str, str] = found["define"]
    content = defines.get("WP_CONTENT_DIR")
    if content is None and (path.parent / "wp-content").is_dir():
        content = str(path.parent / "wp-content")
    return WpConfig(
        db_name=defines.get("DB_NAME"),
        db_user=defines.get("DB_USER"),
        db_password=defines.get("DB_PASSWORD"),
        db_host=defines.get("DB_HOST"),
        table_prefix=found["table_prefix"],
        content_dir=content,
        url=defines.get("WP_HOME"),
    )


def split_db_host(value: str) -> tuple[str, int | None]:
    """wp-config's ``DB_HOST`` (``host``, ``host:port``) as a TCP host and port; ``localhost`` is
    127.0.0.1, because the copy's clients connect over TCP where PHP would use the socket."""
    host, _, port = value.partition(":")
    if port.startswith("/") or (port and not port.isdigit()):
        raise ConfigError(
            f"DB_HOST {value!r} names a socket; the copy connects over TCP: pass --db-host and --db-port."
        )
    return ("127.0.0.1" if host == "localhost" else host), (int(port) if port else None)


def read_password_file(path: str | None) -> str:
    """The password in ``path``, which must be readable by its owner only."""
    if not path:
        raise ConfigError("the source has no database password file: pass --db-password-file.")
    try:
        mode = os.stat(path).st_mode
        password = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"the password file {path} cannot be read ({exc.strerror}).") from exc
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigError(f"the password file {path} is readable by others; chmod 600 {path} and retry.")
    if not password:
        raise ConfigError(f"the password file {path} is empty.")
    return password


def _site_urls(source: SourceConfig, password: str) -> dict[str, str]:
    """``home`` and ``siteurl`` from the source's options table, checking the login and the prefix."""
    where = f"database {source.db_name} on {source.db_host}:{source.db_port}"
    endpoint = DbEndpoint(source.db_host, source.db_port, source.db_user, password, source.db_name)
    try:
        conn = endpoint.connect(connect_timeout=CONNECT_TIMEOUT_S)
    except pymysql.MySQLError as exc:
        reason = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise ConfigError(
            f"cannot log in to {where} as {source.db_user} ({reason}); check the database host, port, "
            "name, user and password."
        ) from exc
    options = f"{source.table_prefix}options"
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name LIKE %s",
            (source.db_name, "%\\_options"),
        )
        tables = sorted(str(row[0]) for row in cur.fetchall())
        if options not in tables:
            prefixes = ", ".join(t[: -len("options")] for t in tables) or "none"
            raise ConfigError(
                f"{where} has no table {options}, so its table prefix is not {source.table_prefix} "
                f"(prefixes with an options table: {prefixes})."
            )
        cur.execute(
            f"SELECT option_name, option_value FROM {quote_identifier(options)} "
            "WHERE option_name IN ('home', 'siteurl')"
        )
        return {str(name): str(value) for name, value in cur.fetchall()}


def check_source(source: SourceConfig, password: str) -> None:
    """Raise ConfigError with one sentence unless ``source`` is a WordPress site this machine can copy."""
    urls = _site_urls(source, password)
    names = {source.url, *source.aliases}
    for option in ("home", "siteurl"):
        value = urls.get(option)
        if value is None:
            raise ConfigError(f"the {source.table_prefix}options table has no {option} option.")
        origin = normalize_url(value)
        # WordPress may live in a subdirectory of its home: siteurl https://site/wp is fine.
        if not (origin in names or (option == "siteurl" and any(origin.startswith(n + "/") for n in names))):
            raise ConfigError(
                f"the site's {option} is {value}, not {source.url} or an alias of it; register it with "
                f"--url {origin}, or add --alias {origin}."
            )
    if not source.content_dir:
        raise ConfigError("the source has no content directory: pass --content-dir (its wp-content).")
    content = Path(source.content_dir)
    if not (content / "themes").is_dir():
        raise ConfigError(f"{content} is not a wp-content directory (it has no themes/ directory).")
    for root in source.content_link_roots or ():
        if not Path(root).is_dir():
            raise ConfigError(f"the link root {root} is not a directory.")


def _write_password(path: Path, password: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    os.replace(tmp, path)


def add_source(
    settings: StackSettings,
    name: str,
    *,
    url: str | None = None,
    wp_config: Path | None = None,
    db_host: str | None = None,
    db_port: int | None = None,
    db_name: str | None = None,
    db_user: str | None = None,
    db_password_file: str | None = None,
    table_prefix: str | None = None,
    content_dir: str | None = None,
    aliases: tuple[str, ...] = (),
    link_roots: tuple[str, ...] | None = None,
) -> SourceConfig:
    """Check and register (or update) the source ``name``; explicit values win over ``wp_config``'s.

    Without ``url`` the site's ``home`` option is its URL. Returns what was registered.
    """
    if name in LOCAL_SOURCES:
        raise ConfigError(f"{name} is the name of the seeded demo site; choose another name.")
    found = read_wp_config(wp_config) if wp_config else WpConfig(None, None, None, None, None, None, None)
    wp_host, wp_port = split_db_host(found.db_host) if found.db_host else (None, None)
    password_file = db_password_file
    password = None
    content = content_dir or found.content_dir
    if password_file is None and found.db_password is not None:
        password = found.db_password
        password_file = str(settings.secrets_dir / f"source-{name}-db")
    fields = {
        "name": name,
        "url": url or found.url,
        "db_host": db_host or wp_host or "127.0.0.1",
        "db_port": db_port or wp_port or 3306,
        "db_name": db_name or found.db_name,
        "db_user": db_user or found.db_user,
        "db_password_file": password_file,
        "table_prefix": table_prefix or found.table_prefix or "wp_",
        "content_dir": str(Path(content).resolve()) if content else None,
        "aliases": list(aliases),
        "content_link_roots": None if link_roots is None else [str(Path(r).resolve()) for r in link_roots],
    }
    for key, flag in (("db_name", "--db-name"), ("db_user", "--db-user")):
        if not fields[key]:
            what = key.replace("_", " ")
            raise ConfigError(f"the source's {what} is not known: pass {flag} or --wp-config.")
    if password is None:
        password = read_password_file(password_file)
    if fields["url"] is None:  # the site's own idea of its URL
        probe = _validated({**fields, "url": "http://unknown.invalid"})
        fields["url"] = normalize_url(_site_urls(probe, password).get("home") or "")
    source = _validated(fields)
    return register_source(settings, source, password, keep_password=db_password_file is None)


def register_source(
    settings: StackSettings, source: SourceConfig, password: str | None = None, *, keep_password: bool = False
) -> SourceConfig:
    """Check ``source`` (:func:`check_source`) and add it to ``<state dir>/wpclone.json`` or replace the
    source of its name. ``password``: the login's, when its file is not written yet (``keep_password``:
    write it there, mode 0600, once the checks pass); by default it is read from the file."""
    if source.name in LOCAL_SOURCES:
        raise ConfigError(f"{source.name} is the name of the seeded demo site; choose another name.")
    if password is None:
        password = read_password_file(source.db_password_file)
    others = {s.url: s.name for s in local_sources(settings) if s.name != source.name}
    if source.url in others:
        raise ConfigError(f"{source.url} is already registered as source {others[source.url]}.")
    check_source(source, password)
    if keep_password and source.db_password_file:
        _write_password(Path(source.db_password_file), password)
    put_local_source(settings, source)
    log.info(
        "registered source %s: %s (database %s on %s:%s as %s, tables %s*, content %s)",
        source.name,
        source.url,
        source.db_name,
        source.db_host,
        source.db_port,
        source.db_user,
        source.table_prefix,
        source.content_dir,
    )
    return source


def _validated(fields: Mapping[str, object]) -> SourceConfig:
    try:
        return SourceConfig.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "configuration"
        raise ConfigError(f"the source's {key} {fields.get(key)!r} is not valid: {err['msg']}.") from exc


def remove_source(settings: StackSettings, name: str) -> None:
    """Unregister the source ``name`` (its site, database and files are not touched)."""
    remove_local_source(settings, name)
    secret = settings.secrets_dir / f"source-{name}-db"  # kept by add-source from a wp-config.php
    secret.unlink(missing_ok=True)
    log.info("removed source %s", name)
