"""Staging safety: what every clone gets so it is safe as staging.

Three parts, applied by the runtime and the worker:

* wp-config constants (:data:`STAGING_CONSTANTS`): environment type ``staging``, WordPress cron not run by
  visitors, no automatic updates. The local site host takes them through ``SiteConfig`` (environment_type,
  disable_wp_cron, constants); Kubernetes through ``WORDPRESS_CONFIG_EXTRA`` (:func:`wp_config_php`).
* a must-use plugin (:func:`mu_plugin_php`, written to ``wp-content/mu-plugins/`` as
  :data:`MU_PLUGIN_FILENAME`): ``X-Robots-Tag: noindex, nofollow`` on every response, robots noindex in the
  HTML, outgoing mail blocked (logged instead), a request to ``wp-cron.php`` answered 403 before any
  scheduled event runs, no pings or automatic updates, a staging look no one can miss (a red admin bar,
  ``[STAGING]`` before every page title, the clone and its expiry in relative words), and the one-time
  login links of ``wpclone login`` (wpclone.login).
* statements on the clone's database (:func:`staging_sql`, run by :func:`apply_staging_sql`): search
  engines discouraged, a fresh admin password, the source's sessions and password-reset keys gone, and the
  expiry as the option :data:`EXPIRES_OPTION` (:func:`expiry_option_sql`), which the must-use plugin
  prefers to the expiry it was written with: extending a clone (wpclone.services.expiry) rewrites that
  option with :func:`set_expiry_option`, and the banner follows with no redeploy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from wpclone.db import check_identifier, quote_identifier
from wpclone.errors import ConfigError
from wpclone.php import phpass_hash

log = logging.getLogger(__name__)

MU_PLUGIN_FILENAME = "wpclone-staging.php"
MU_PLUGIN_TEMPLATE = Path(__file__).resolve().parent / "mu-plugin.php"
_CLONE_ID_TOKEN = "'__WPCLONE_CLONE_ID__'"
_EXPIRES_AT_TOKEN = "'__WPCLONE_EXPIRES_AT__'"
EXPIRES_OPTION = "wpclone_expires_at"  # the clone's expiry (ISO 8601, UTC) in its wp_options

ConstantValue = str | int | bool

# wp-config constants every clone runs with.
STAGING_CONSTANTS: Mapping[str, ConstantValue] = MappingProxyType(
    {
        "WP_ENVIRONMENT_TYPE": "staging",
        "DISABLE_WP_CRON": True,  # no cron spawned by visitors (a clone must not run the source's jobs)
        "AUTOMATIC_UPDATER_DISABLED": True,
        "WP_AUTO_UPDATE_CORE": False,
        "WP_DEBUG": False,
        "WP_DEBUG_DISPLAY": False,
    }
)

CONSTANT_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# WordPress accepts table prefixes of letters, digits and underscores; leave room for its table names.
TABLE_PREFIX_RE = re.compile(r"[A-Za-z0-9_]{1,40}")
PHPASS_PORTABLE_RE = re.compile(r"\$P\$[./0-9A-Za-z]{31}")
USER_LOGIN_MAX = 60  # wp_users.user_login is varchar(60)
# WordPress's login form checks the *slashed* password (wp_signon reads magic-quoted $_POST['pwd']), so a
# password with any of these characters would never be accepted there.
_SLASHED_CHARS = frozenset("'\"\\\0")
ADMIN_PASSWORD_MIN = 12


# -- wp-config constants ---


def php_string_literal(value: str) -> str:
    """A PHP single-quoted string literal for ``value`` (only ``\\`` and ``'`` are special there)."""
    if "\0" in value:
        raise ConfigError("a PHP string value must not contain a NUL character.")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _php_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return php_string_literal(value)
    raise ConfigError(f"constant {name} must be a string, integer or boolean, not {type(value).__name__}.")


def wp_config_php(constants: Mapping[str, ConstantValue]) -> str:
    """PHP code defining ``constants``, one line each, for the WordPress image's ``WORDPRESS_CONFIG_EXTRA``.

    The official image ``eval()``s that variable in its wp-config.php (so there is no ``<?php`` tag) after
    defining a few constants itself (``WP_DEBUG`` from ``WORDPRESS_DEBUG``): each line defines its constant
    only when it is not defined yet, so nothing warns about a redefinition.
    """
    lines = []
    for name, value in constants.items():
        if not isinstance(name, str) or not CONSTANT_NAME_RE.fullmatch(name):
            raise ConfigError(f"constant name {name!r} is not valid: use UPPER_SNAKE_CASE.")
        lines.append(f"defined('{name}') || define('{name}', {_php_value(name, value)});\n")
    return "".join(lines)


# -- the must-use plugin ---


def _expiry_text(expires_at: datetime) -> str:
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise ConfigError("expires_at must be a timezone-aware datetime.")
    return expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mu_plugin_php(clone_id: str, expires_at: datetime) -> str:
    """The must-use plugin of a clone (see ``mu-plugin.php`` next to this module), values filled in.

    The values go into PHP single-quoted string literals (escaped: any clone id is inert) and are
    HTML-escaped where the plugin prints them.
    """
    template = MU_PLUGIN_TEMPLATE.read_text()
    if template.count(_CLONE_ID_TOKEN) != 1 or template.count(_EXPIRES_AT_TOKEN) != 1:
        raise RuntimeError(f"{MU_PLUGIN_TEMPLATE} must name each placeholder exactly once.")
    return template.replace(_CLONE_ID_TOKEN, php_string_literal(clone_id)).replace(
        _EXPIRES_AT_TOKEN, php_string_literal(_expiry_text(expires_at))
    )


def write_mu_plugin(wp_content: Path, clone_id: str, expires_at: datetime) -> Path:
    """Write (or replace) the clone's must-use plugin under ``wp_content/mu-plugins/``, atomically."""
    directory = wp_content / "mu-plugins"
    directory.mkdir(mode=0o755, exist_ok=True)
    path = directory / MU_PLUGIN_FILENAME
    tmp = directory / f".{MU_PLUGIN_FILENAME}.tmp"
    tmp.write_text(mu_plugin_php(clone_id, expires_at))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    log.info("wrote the staging must-use plugin %s", path)
    return path


# -- the clone's database -----------------------------------------------------------------------------------


def check_table_prefix(prefix: str) -> str:
    if not TABLE_PREFIX_RE.fullmatch(prefix):
        raise ConfigError(f"table prefix {prefix!r} is not valid: use 1-40 letters, digits or underscores.")
    return prefix


def _check_admin_user(admin_user: str) -> str:
    if not admin_user or len(admin_user) > USER_LOGIN_MAX or admin_user != admin_user.strip():
        raise ConfigError(f"admin user {admin_user!r} is not a valid WordPress user login.")
    return admin_user


def staging_sql(
    table_prefix: str, admin_user: str, admin_password_hash: str, expires_at: datetime | None = None
) -> list[tuple[str, tuple[Any, ...]]]:
    """Parameterised statements (``%s`` paramstyle) that make a copied database safe as staging; idempotent.

    * ``blog_public`` = 0 ("Discourage search engines"; the must-use plugin enforces it too);
    * the admin user's password set to ``admin_password_hash`` (a phpass hash, see
      :func:`wpclone.php.phpass_hash`);
    * every user's password-reset key cleared (a reset link mailed by the source must not work here);
    * every login session deleted (``session_tokens``), so no session of the source carries over;
    * with ``expires_at``, the expiry the must-use plugin shows (:func:`expiry_option_sql`).

    ``admin_email`` and everything else are kept.
    """
    table = check_table_prefix(table_prefix)
    _check_admin_user(admin_user)
    if not PHPASS_PORTABLE_RE.fullmatch(admin_password_hash):
        raise ConfigError("the admin password hash is not a WordPress (phpass portable) hash.")
    options = quote_identifier(f"{table}options")
    users = quote_identifier(f"{table}users")
    usermeta = quote_identifier(f"{table}usermeta")
    return [
        (
            f"INSERT INTO {options} (option_name, option_value, autoload) VALUES (%s, %s, %s) "
            "ON DUPLICATE KEY UPDATE option_value = VALUES(option_value)",
            ("blog_public", "0", "yes"),
        ),
        (f"UPDATE {users} SET user_pass = %s WHERE user_login = %s", (admin_password_hash, admin_user)),
        (f"UPDATE {users} SET user_activation_key = %s WHERE user_activation_key <> %s", ("", "")),
        (f"DELETE FROM {usermeta} WHERE meta_key = %s", ("session_tokens",)),
        *([expiry_option_sql(table, expires_at)] if expires_at is not None else []),
    ]


def expiry_option_sql(table_prefix: str, expires_at: datetime) -> tuple[str, tuple[Any, ...]]:
    """The statement that sets the clone's :data:`EXPIRES_OPTION` to ``expires_at``; idempotent."""
    options = quote_identifier(f"{check_table_prefix(table_prefix)}options")
    return (
        f"INSERT INTO {options} (option_name, option_value, autoload) VALUES (%s, %s, %s) "
        "ON DUPLICATE KEY UPDATE option_value = VALUES(option_value)",
        (EXPIRES_OPTION, _expiry_text(expires_at), "yes"),
    )


def _run(
    conn_factory: Callable[[], Any],
    database: str,
    statements: list[tuple[str, tuple[Any, ...]]],
    first: Callable[[Any], Any] | None = None,
) -> Any:
    """``statements`` on ``database`` in one transaction over a new connection (rolled back on error);
    ``first(cursor)`` runs before them (it may raise to change nothing) and its value is returned."""
    conn = conn_factory()
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(f"USE {quote_identifier(database)}")
            found = first(cursor) if first else None
            for sql, args in statements:
                cursor.execute(sql, args)
        finally:
            cursor.close()
        conn.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    finally:
        conn.close()
    return found


def set_expiry_option(
    conn_factory: Callable[[], Any], database: str, prefix: str, expires_at: datetime
) -> None:
    """Write the clone's expiry where its staging notice reads it (:data:`EXPIRES_OPTION`)."""
    check_identifier(database, "database name")
    _run(conn_factory, database, [expiry_option_sql(prefix, expires_at)])
    log.info("the staging notice of database %s now says it expires %s", database, _expiry_text(expires_at))


def check_admin_password(password: str) -> str:
    """Return ``password`` if WordPress's login form can accept it and it is long enough, else raise."""
    if len(password) < ADMIN_PASSWORD_MIN:
        raise ConfigError(f"the admin password must be at least {ADMIN_PASSWORD_MIN} characters long.")
    if _SLASHED_CHARS.intersection(password):
        raise ConfigError(
            "the admin password must not contain quotes, backslashes or NUL: "
            "WordPress's login form would never accept it."
        )
    return password


def apply_staging_sql(
    conn_factory: Callable[[], Any],
    database: str,
    prefix: str,
    admin_user: str,
    password: str,
    *,
    expires_at: datetime | None = None,
) -> int:
    """Run :func:`staging_sql` on ``database`` over a new DB-API connection; returns the admin user's ID.

    ``conn_factory()`` returns a DB-API connection with ``%s`` paramstyle (PyMySQL, MySQLdb, a MySqlHook's
    ``get_conn``). The statements run in one transaction; running them again changes nothing more. Raises
    ConfigError (nothing changed) when the admin user does not exist. With ``expires_at``, the clone's
    :data:`EXPIRES_OPTION` is set too. The password and its hash are never logged.
    """
    check_identifier(database, "database name")
    check_table_prefix(prefix)
    _check_admin_user(admin_user)
    statements = staging_sql(prefix, admin_user, phpass_hash(check_admin_password(password)), expires_at)
    users = quote_identifier(f"{prefix}users")

    def admin_id(cursor: Any) -> int:
        cursor.execute(f"SELECT ID FROM {users} WHERE user_login = %s", (admin_user,))
        rows = cursor.fetchall()
        if not rows:
            raise ConfigError(f"the clone's database {database} has no user {admin_user!r} to make admin.")
        return int(rows[0][0])

    user_id: int = _run(conn_factory, database, statements, admin_id)
    log.info(
        "staging safety applied to database %s: blog_public=0, new password for %s (ID %s), "
        "sessions and reset keys cleared",
        database,
        admin_user,
        user_id,
    )
    return user_id
