"""Provision what the DAGs expect in an Airflow deployment: the pool for heavy steps.

Run by our setup (``python -m wpclone.provision``), idempotent. A missing pool would leave the copy tasks
silently ``scheduled``, so the pool is created here rather than assumed. (The MySQL connection
``wpclone_mysql`` comes from the environment or a secrets backend: ``AIRFLOW_CONN_WPCLONE_MYSQL``.)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from wpclone.settings import heavy_slots
from wpclone.tasks import HEAVY_POOL

log = logging.getLogger(__name__)


def ensure_pool(slots: int) -> None:
    """Create or resize the pool that bounds concurrent copy steps (needs Airflow's metadata database)."""
    from airflow.models.pool import Pool

    if slots < 1:
        raise ValueError(f"the {HEAVY_POOL} pool needs at least 1 slot, not {slots}.")
    Pool.create_or_update_pool(
        HEAVY_POOL,
        slots,
        "wpclone: copy steps running against the shared MySQL server at once",
        include_deferred=True,  # a deferred copy (deferrable pods) still holds its slot
    )
    log.info("pool %s has %d slots", HEAVY_POOL, slots)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wpclone.provision", description=__doc__)
    # Concurrent copies against the shared MySQL: each is a dump + load stream (~1 core of server CPU).
    parser.add_argument("--heavy-slots", type=int, default=heavy_slots())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ensure_pool(args.heavy_slots)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
