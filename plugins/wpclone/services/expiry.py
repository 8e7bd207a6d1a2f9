"""A clone's expiry: the one place it is changed after the clone is made (``PATCH /clones/{id}``,
``wpclone extend``).

:func:`extend_clone` sets a ``ready`` clone's expiry to now plus a time to live held to the bounds every clone
has (wpclone.timewords.check_ttl: 10 minutes to 7 days, never clamped), in the registry (which the TTL
cleanup reads) and in the clone's database option its staging notice shows (wpclone.staging.EXPIRES_OPTION).
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime, timedelta

from wpclone.errors import CloneBusy, CloneNotFound
from wpclone.registry import CloneRecord
from wpclone.services.common import Services
from wpclone.staging import set_expiry_option
from wpclone.timewords import check_ttl, utc_text

log = logging.getLogger(__name__)


def extend_clone(svc: Services, clone_id: str, ttl_minutes: int, now: datetime | None = None) -> CloneRecord:
    """The clone expires ``ttl_minutes`` from ``now`` (default: the current time); returns its registry row.

    BadRequest when the time to live is out of bounds, CloneNotFound for a clone that never existed,
    CloneBusy for one that is not ``ready`` (being made, failed, being deleted, deleted), each one sentence
    and nothing changed. The registry is changed first (it decides when the clone is deleted); the notice's
    option after it, and a failure there is logged, not raised: the clone lives as long as the registry says.
    """
    check_ttl(ttl_minutes)
    expires_at = (now or datetime.now(UTC)) + timedelta(minutes=ttl_minutes)
    record = svc.registry.get(clone_id)
    if record is None:
        raise CloneNotFound(f"clone {clone_id} does not exist.")
    if record.status == "ready":
        record = svc.registry.set_expiry(clone_id, expires_at) or record
    if record.status != "ready" or record.expires_at != expires_at:
        when = f" at {utc_text(record.deleted_at)}" if record.deleted_at else ""
        raise CloneBusy(
            f"clone {clone_id} is {record.status}{when}; only a ready clone can be extended"
            + ("; ask for a new one." if record.status == "deleted" else ".")
        )
    log.info("clone %s now expires at %s", clone_id, expires_at.isoformat())
    try:
        prefix = svc.sources.find(record.source_url).table_prefix
        set_expiry_option(
            functools.partial(svc.mysql.connect, record.db_name), record.db_name, prefix, expires_at
        )
    except Exception as exc:  # an unregistered source, the driver's errors (PyMySQL, MySQLdb): no common base
        log.warning("clone %s: its staging notice still shows the old expiry: %s", clone_id, exc)
    return record
