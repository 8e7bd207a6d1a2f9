"""One-time wp-admin login links for a clone: ``wpclone login CLONE_ID``, ``POST /api/v1/clones/{id}/login``.

No kubectl and no password file: the API server writes the link's record into the clone's own database
through the control plane's registry login, which may read and write the clones' data but create nothing
(wpclone.airflow.services; the same on both runtimes), and the clone's staging must-use plugin
(wpclone/staging/mu-plugin.php) consumes it.

* The token is 256 random bits (URL-safe base64). The clone stores only its SHA-256, as the option
  ``wpclone_login_<sha256 hex>`` whose value is ``<expiry, Unix seconds>:<user login>`` (not autoloaded).
* The link is ``<clone URL>/wp-login.php?action=wpclone-login#<token>``: the token is in the fragment,
  which a browser never sends, so it reaches no access log (neither the site's nor a proxy's). The page
  there is a small form that posts the fragment to the same address (no-store, no referrer).
* On that POST the plugin hashes the token, reads the option and deletes it; only the request whose DELETE
  removed the row (affected rows = 1) goes on, so a link works once even when opened twice at the same
  moment. A link past its expiry, used before, or unknown gets a plain 403 page saying which; a valid one
  logs its administrator in (``wp_set_auth_cookie``) and redirects to wp-admin.
* The link is for the site's first administrator (the login the clone job reports), expires after
  :data:`LINK_TTL`; making a link also removes the expired records of earlier links. Neither the token
  nor the link is ever logged here.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel

from wpclone.db import check_identifier, quote_identifier
from wpclone.errors import BadRequest, CloneBusy, CloneNotFound, StepFailed
from wpclone.mysql_admin import MySqlAdmin
from wpclone.staging import check_table_prefix

if TYPE_CHECKING:  # the services' dependencies: not needed by the CLI, which reads LoginLink only
    from wpclone.services.common import Services

log = logging.getLogger(__name__)

LINK_TTL = timedelta(minutes=5)
OPTION_PREFIX = "wpclone_login_"
LOGIN_ACTION = "wpclone-login"  # wp-login.php?action=... that the must-use plugin answers
TOKEN_BYTES = 32


class LoginLink(BaseModel):
    """A one-time wp-admin link (the answer of ``POST /api/v1/clones/{clone_id}/login``)."""

    clone_id: str
    url: str
    user: str
    expires_at: datetime


def option_name(token: str) -> str:
    """The option that stands for ``token`` in the clone's database: its hash, never the token."""
    return OPTION_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def create_link(
    mysql: MySqlAdmin,
    clone_id: str,
    database: str,
    prefix: str,
    site_url: str,
    *,
    now: datetime | None = None,
    ttl: timedelta = LINK_TTL,
) -> LoginLink:
    """Record a new one-time link in ``database`` (tables ``prefix``) for its first administrator.

    ``now`` and ``ttl`` set the expiry (a link made with an expiry in the past is refused by the site:
    the tests use that). StepFailed when the site has no administrator.
    """
    check_identifier(database, "database name")
    options = quote_identifier(f"{check_table_prefix(prefix)}options")
    user = mysql.first_administrator(database, prefix)
    if user is None:
        raise StepFailed(f"clone {clone_id}'s database {database} has no administrator to log in as.")
    expires_at = (now or datetime.now(UTC)) + ttl
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with mysql.cursor(database) as cur:
        # Earlier links that expired: their records go (a used one is gone already).
        cur.execute(
            f"DELETE FROM {options} WHERE option_name LIKE %s "
            "AND CAST(SUBSTRING_INDEX(option_value, ':', 1) AS UNSIGNED) < UNIX_TIMESTAMP()",
            (OPTION_PREFIX.replace("_", "\\_") + "%",),
        )
        cur.execute(
            f"INSERT INTO {options} (option_name, option_value, autoload) VALUES (%s, %s, %s)",
            (option_name(token), f"{int(expires_at.timestamp())}:{user}", "no"),
        )
    log.info("made a one-time login link to clone %s for %s, valid until %s", clone_id, user, expires_at)
    return LoginLink(
        clone_id=clone_id,
        url=f"{site_url.rstrip('/')}/wp-login.php?action={LOGIN_ACTION}#{token}",
        user=user,
        expires_at=expires_at,
    )


def clone_login_link(svc: Services, clone_id: str) -> LoginLink:
    """A one-time link into the wp-admin of the ready clone ``clone_id``.

    CloneNotFound (no such clone, or deleted), CloneBusy (not ready: being made, failed), BadRequest (its
    source, which says its table prefix, is no longer registered).
    """
    record = svc.registry.get(clone_id)
    if record is None or record.status == "deleted":
        raise CloneNotFound(f"clone {clone_id} does not exist.")
    if record.status != "ready":
        raise CloneBusy(f"clone {clone_id} is {record.status}; only a ready clone can be logged in to.")
    try:
        source = svc.sources.find(record.source_url)
    except ValueError as exc:
        raise BadRequest(f"clone {clone_id}'s source is no longer registered: {exc}") from exc
    return create_link(svc.mysql, clone_id, record.db_name, source.table_prefix, record.url)
