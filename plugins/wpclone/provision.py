"""Provision what the DAGs expect in an Airflow deployment: the registry's schema and the heavy-steps pool.

Run at deploy time, idempotent: ``python -m wpclone.provision`` (the Helm chart's migration job, right
after ``airflow db migrate``; the local stack before it starts Airflow). It migrates the clone registry
(wpclone.registry: the tasks only check its version) through Airflow's connection ``wpclone_mysql``
(from the environment or a secrets backend: ``AIRFLOW_CONN_WPCLONE_MYSQL``), and creates or resizes the
pool that bounds concurrent copy steps: a missing pool would leave the copy tasks silently ``scheduled``,
so it is created here rather than assumed.

Migrations run as the provisioning login (``wpclone_mysql``), the one that may create the control schema
and alter its tables; the registry login (``wpclone_registry``) that the API server and the tasks use may
only read and write rows, so it cannot run them (least privilege: wpclone.airflow.services). Provisioning
then checks that the registry login reaches the migrated schema, so a login without its grants fails the
deployment with one sentence rather than the first job; without that connection it says, in one warning,
that the provisioning login stands in for it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from airflow.models.pool import Pool

from wpclone.airflow.builders import HEAVY_POOL
from wpclone.airflow.services import MYSQL_CONN_ID, REGISTRY_CONN_ID, registry, registry_conn_id
from wpclone.errors import driver_error_sentence
from wpclone.mysql_admin import REGISTRY_PRIVILEGES
from wpclone.registry import SCHEMA_VERSION
from wpclone.settings import heavy_slots

log = logging.getLogger(__name__)


def ensure_pool(slots: int) -> None:
    """Create or resize the pool that bounds concurrent copy steps (needs Airflow's metadata database)."""
    if slots < 1:
        raise ValueError(f"the {HEAVY_POOL} pool needs at least 1 slot, not {slots}.")
    Pool.create_or_update_pool(
        HEAVY_POOL,
        slots,
        "wpclone: copy steps running against the shared MySQL server at once",
        include_deferred=True,  # a deferred copy (deferrable pods) still holds its slot
    )
    log.info("pool %s has %d slots", HEAVY_POOL, slots)


def migrate_registry() -> list[int]:
    """Create the registry's control schema, or bring it to this wpclone's version; the versions applied."""
    reg = registry(check=False, conn_id=MYSQL_CONN_ID)
    applied = reg.migrate()
    log.info("registry %s: %s", reg.schema, f"applied migrations {applied}" if applied else "already current")
    return applied


def check_registry_login() -> None:
    """The registry login reads the migrated schema (ValueError naming what to grant when it cannot); only
    a warning when the connection ``wpclone_registry`` is not defined (wpclone.airflow.services)."""
    if registry_conn_id() != REGISTRY_CONN_ID:
        return
    reg = registry(check=False, conn_id=REGISTRY_CONN_ID)
    grant = f"grant it {REGISTRY_PRIVILEGES} on {reg.schema} and on the clones' databases (docs/deploy.md)."
    try:
        version = reg.schema_version()  # 0 when the login sees no schema_migrations table there
    except Exception as exc:
        said = driver_error_sentence(exc)
        if said is None:
            raise
        raise ValueError(
            f"the registry login ({REGISTRY_CONN_ID}) failed: {said.rstrip('.')}; {grant}"
        ) from exc
    if version < SCHEMA_VERSION:
        raise ValueError(
            f"the registry login ({REGISTRY_CONN_ID}) cannot read control schema {reg.schema}: {grant}"
        )
    log.info(
        "registry login %s (%s) reads control schema %s", reg.current_user(), REGISTRY_CONN_ID, reg.schema
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wpclone.provision", description=__doc__)
    # Concurrent copies against the shared MySQL: each is a dump + load stream (~1 core of server CPU).
    parser.add_argument("--heavy-slots", type=int, default=heavy_slots())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        migrate_registry()
        check_registry_login()
        ensure_pool(args.heavy_slots)
    except Exception as exc:  # ours (ValueError) and the database's are sentences; anything else is a bug
        said = str(exc) if isinstance(exc, ValueError) else driver_error_sentence(exc)
        if said is None:
            raise
        print(f"error: {said}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
