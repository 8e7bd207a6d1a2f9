"""A data-plane step's time limit, sized to its source, and the sentence a step that overran it fails with.

A step's limit is the time its source takes at ``WPCLONE_STEP_MIN_MB_PER_S`` (the slowest copy rate that
is still healthy), kept between ``WPCLONE_STEP_TIMEOUT_FLOOR_S`` and ``WPCLONE_STEP_TIMEOUT_CEILING_S``
(:class:`wpclone.settings.TimeLimits`); with no size known it is the ceiling (:func:`step_limit`). The
source is what the step reads: the database of its ``SOURCE_DB`` login (``information_schema`` data
lengths) and the tree of its ``SOURCE_CONTENT_DIR`` (:func:`source_bytes`), measured when the task runs, as
the runtime hands them to the step. The runtime's wait for the step enforces the limit
(:meth:`wpclone.runtimes.local.LocalRuntime.run_step`); Airflow's ``execution_timeout`` of the task, the
ceiling and :data:`STEP_GRACE_S` more, is set when the DAG is parsed and catches the rest
(wpclone.airflow.steps). docs/operations.md "A stuck job" tells the operator's side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from wpclone.db import DbEndpoint
from wpclone.errors import StepFailed
from wpclone.settings import STEP_MIN_MB_PER_S, STEP_TIMEOUT_CEILING, STEP_TIMEOUT_FLOOR, TimeLimits

log = logging.getLogger(__name__)

SOURCE_DB_PREFIX = "SOURCE_DB"  # the login a step reads its source database with
SOURCE_CONTENT_ENV = "SOURCE_CONTENT_DIR"  # the tree a step reads its source wp-content from
STEP_GRACE_S = 120.0  # beyond a step's ceiling: measuring the source, killing the step, saying so
MEASURE_TIMEOUT_S = 10  # connecting to and querying the source for its size


class StepTimedOut(StepFailed):
    """A step ran past its time limit and was killed; the message is the sentence that says so."""


@dataclass(frozen=True)
class StepLimit:
    """A step's time limit: its seconds, the source size it was sized for, and the setting that decided it."""

    seconds: float
    source_bytes: int | None
    setting: str

    def timed_out(self, task_id: str, elapsed: float) -> str:
        """The sentence a step that overran this limit fails with."""
        size = (
            f"a {self.source_bytes / 1e6:.1f} MB source"
            if self.source_bytes is not None
            else "a source of unknown size"
        )
        limit = f"limit for {size}: {self.seconds:.0f} s, {self.setting}"
        return f"{task_id} timed out after {elapsed:.0f} s ({limit}); the step was killed."


def step_execution_timeout(limits: TimeLimits | None = None) -> timedelta:
    """Airflow's limit of a step's task: the step's ceiling (WPCLONE_STEP_TIMEOUT_CEILING_S) and a grace."""
    limits = TimeLimits.from_env() if limits is None else limits
    return timedelta(seconds=limits.step_ceiling_s + STEP_GRACE_S)


def task_timed_out(task_id: str, limit: timedelta | None) -> str:
    """The sentence of a step task that Airflow's ``execution_timeout`` (``limit``) ended."""
    seconds = limit.total_seconds() if limit else 0.0
    return (
        f"{task_id} timed out after {seconds:.0f} s (its task's limit: {STEP_TIMEOUT_CEILING} and "
        f"{STEP_GRACE_S:.0f} s more); the step was killed."
    )


def step_limit(source_bytes: int | None, limits: TimeLimits) -> StepLimit:
    """The time limit of a step whose source holds ``source_bytes`` (None: unknown, the ceiling)."""
    if source_bytes is None:
        return StepLimit(limits.step_ceiling_s, None, STEP_TIMEOUT_CEILING)
    sized = source_bytes / 1e6 / limits.step_mb_per_s
    if sized <= limits.step_floor_s:
        return StepLimit(limits.step_floor_s, source_bytes, STEP_TIMEOUT_FLOOR)
    if sized >= limits.step_ceiling_s:
        return StepLimit(limits.step_ceiling_s, source_bytes, STEP_TIMEOUT_CEILING)
    return StepLimit(sized, source_bytes, STEP_MIN_MB_PER_S)


def source_bytes(env: Mapping[str, str]) -> int | None:
    """The size of what a step with environment ``env`` reads: its ``SOURCE_DB`` database's data and its
    ``SOURCE_CONTENT_DIR`` tree; None when it reads neither or either could not be measured (logged)."""
    total, measured = 0, False
    try:
        if f"{SOURCE_DB_PREFIX}_HOST" in env:
            total += database_bytes(DbEndpoint.from_env(SOURCE_DB_PREFIX, env))
            measured = True
        if env.get(SOURCE_CONTENT_ENV):
            total += tree_bytes(Path(env[SOURCE_CONTENT_ENV]))
            measured = True
    except Exception as exc:  # a stalled source is what the limit is for: its ceiling applies
        log.warning("could not measure the step's source (%s): its time limit is the ceiling", exc)
        return None
    return total if measured else None


def database_bytes(endpoint: DbEndpoint) -> int:
    """The data length of ``endpoint``'s database, as ``information_schema`` estimates it."""
    with (
        endpoint.connect(connect_timeout=MEASURE_TIMEOUT_S, read_timeout=MEASURE_TIMEOUT_S) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(
            "SELECT COALESCE(SUM(DATA_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (endpoint.database,),
        )
        row = cur.fetchone()
    return int(row[0]) if row else 0


def tree_bytes(root: Path) -> int:
    """The bytes of the files under ``root`` (links not followed)."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue
    return total
