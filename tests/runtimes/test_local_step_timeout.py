"""A local step that hangs (SIGSTOP: it can neither work nor notice anything) is killed at its time limit,
with its clients, and its try fails with the sentence that says so; Airflow's own execution_timeout, striking
first, kills it too. Real processes: the copy-database step against the tests' stack."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowTaskTimeout
from airflow.sdk.execution_time.timeout import timeout

from tests.fixtures.services import remove
from wpclone.airflow.builders import COPY_DATABASE
from wpclone.local.sitehost import SiteConfig
from wpclone.models import ClonePlan
from wpclone.runtimes.limits import StepTimedOut
from wpclone.services import clone
from wpclone.services.common import Services
from wpclone.settings import TimeLimits

CLONE = "hang-step"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Freezer(threading.Thread):
    """SIGSTOPs the clone's copy-database step the moment it appears in /proc."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.pid: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.done.is_set() and time.monotonic() < deadline:
            for entry in os.listdir("/proc"):
                line = _cmdline(int(entry)) if entry.isdigit() else ""
                if "wpclone.steps" in line and "copy-database" in line and self.url in line:
                    os.kill(int(entry), signal.SIGSTOP)
                    self.pid = int(entry)
                    return
            time.sleep(0.01)


@pytest.fixture
def plan(svc: Services, source_site: SiteConfig) -> Iterator[ClonePlan]:
    remove(svc, CLONE)
    request, source, checked = clone.check_clone_request(
        svc, {"source_url": source_site.url, "clone_id": CLONE}
    )
    made = clone.clone_plan(svc, request, source, checked, datetime.now(UTC))
    clone.create_database(svc, made)
    yield made
    remove(svc, CLONE)


@pytest.fixture
def freezer(plan: ClonePlan) -> Iterator[Freezer]:
    watching = Freezer(plan.url)
    watching.start()
    yield watching
    watching.done.set()


def _killed(freezer: Freezer) -> None:
    """The stopped step is gone, and so is every client it started (its process group)."""
    assert freezer.pid is not None, "the step was never stopped"
    assert not Path(f"/proc/{freezer.pid}").exists(), "the stopped step outlived its limit"
    assert not _group_alive(freezer.pid), "a client of the stopped step (mariadb-dump, mariadb) still runs"


def test_a_stopped_step_is_killed_at_its_limit_and_says_so(
    svc: Services, plan: ClonePlan, freezer: Freezer
) -> None:
    limits = TimeLimits(step_floor_s=3, step_ceiling_s=60, step_mb_per_s=1000.0)  # the floor decides
    started = time.monotonic()
    with pytest.raises(StepTimedOut) as failed:
        svc.runtime.run_step(COPY_DATABASE, plan, params={}, limits=limits)  # type: ignore[attr-defined]
    assert time.monotonic() - started < 10
    said = str(failed.value)
    found = re.fullmatch(
        r"copy_database timed out after [34] s \(limit for a (\d+\.\d) MB source: 3 s, "
        r"WPCLONE_STEP_TIMEOUT_FLOOR_S\); the step was killed\.",
        said,
    )
    assert found, said
    assert float(found[1]) > 0  # the source, measured
    _killed(freezer)


def test_airflows_execution_timeout_kills_a_stopped_step_too(
    svc: Services, plan: ClonePlan, freezer: Freezer
) -> None:
    with pytest.raises(AirflowTaskTimeout), timeout(3):  # what the task runner wraps execute() in
        svc.runtime.run_step(COPY_DATABASE, plan, params={})  # type: ignore[attr-defined]
    _killed(freezer)


def test_a_step_within_its_limit_returns_its_result(svc: Services, plan: ClonePlan) -> None:
    limits = TimeLimits(step_floor_s=120, step_ceiling_s=120)
    result = svc.runtime.run_step(COPY_DATABASE, plan, params={}, limits=limits)  # type: ignore[attr-defined]
    assert result["tables"] > 0 and result["rows"] > 0, result
