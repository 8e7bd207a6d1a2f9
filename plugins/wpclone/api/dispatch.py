"""Accept a job at once, start its DAG run just after: how ``POST /clones`` answers in a few milliseconds.

Creating a DAG run costs ~20 ms of the API server's time (the DAG is loaded, the run and its task
instances inserted), and 20 simultaneous requests queue behind each other on two workers. So the jobs API
checks the request, records the job in the registry (``jobs`` table, on the shared MySQL) and answers 202;
a :class:`Dispatcher` thread in the same process then triggers the run, with the job id as its run id.

Accepting comes first: the dispatcher holds back while this process is answering accept requests (and
for QUIET_S after the last one, at most MAX_HOLD_S), so a burst of 20 requests is answered before the CPU
goes to starting their runs.

Nothing accepted is lost: a job whose process died before triggering it stays in the registry untriggered,
and any API server process triggers it later (its sweep, or the first status request for it). Triggering
twice is harmless: the second finds the run exists. A job whose run cannot be created (say the DAG was
removed) is marked with the reason, and its status reads ``failed`` with that sentence.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.exceptions import DagRunAlreadyExists
from airflow.utils.session import create_session

from wpclone.airflow import runparams
from wpclone.api.runs import trigger
from wpclone.errors import describe
from wpclone.registry import JobRecord, Registry

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 10.0  # how often a dispatcher looks for jobs another process accepted and never started
STALE_AFTER_S = 10.0  # an accepted job this old with no run was dropped by its process: start it here
ATTEMPTS = 3
RETRY_BACKOFF_S = 0.5
QUIET_S = 0.05  # start runs once no accept request has been in flight for this long (a burst of concurrent
# requests is in flight together; a lone request waits no longer than this)...
MAX_HOLD_S = 3.0  # ...or once a job has waited this long for that

# (job) -> None: creates the job's DAG run; raises RunExists if it already exists.
TriggerFn = Callable[[JobRecord], None]


class RunExists(Exception):
    """The job's DAG run exists already (another process started it)."""


class Dispatcher:
    """Triggers accepted jobs' DAG runs on one background thread of this process."""

    def __init__(self, registry: Callable[[], Registry], trigger: TriggerFn) -> None:
        self._registry = registry
        self._trigger = trigger
        self._queue: queue.Queue[JobRecord | None] = queue.Queue()  # None: stop
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._warm_up: Callable[[], object] | None = None
        self._activity = threading.Lock()
        self._accepting = 0
        self._last_accept = 0.0

    @contextmanager
    def accepting(self) -> Iterator[None]:
        """Mark an accept request in flight: runs are not started while it is (see :meth:`_hold`). Only
        counts: waking the dispatcher thread on every request would take the GIL from the requests."""
        with self._activity:
            self._accepting += 1
        try:
            yield
        finally:
            with self._activity:
                self._accepting -= 1
                self._last_accept = time.monotonic()

    def _hold(self) -> None:
        """Wait until no accept request has been in flight for QUIET_S, or MAX_HOLD_S at most (it looks
        again after each wait: the accept path does not wake it)."""
        deadline = time.monotonic() + MAX_HOLD_S
        while True:
            with self._activity:
                busy, last = self._accepting, self._last_accept
            now = time.monotonic()
            quiet_for = now - last
            if now >= deadline or (busy == 0 and quiet_for >= QUIET_S):
                return
            wait = QUIET_S - quiet_for if busy == 0 else QUIET_S
            time.sleep(min(max(wait, 0.001), deadline - now))

    def submit(self, job: JobRecord) -> None:
        """Trigger ``job``'s run soon (in order of submission)."""
        self._ensure_thread()
        self._queue.put(job)

    def start(self, warm_up: Callable[[], object] | None = None) -> None:
        """Start the thread (if it is not running): it runs ``warm_up``, sweeps once, then serves."""
        self._warm_up = warm_up
        self._ensure_thread()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (its worker shuts down): jobs still queued stay accepted in the registry, and any
        API server process's sweep starts them."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="wpclone-dispatcher", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        warm_up, self._warm_up = self._warm_up, None
        if warm_up is not None:
            try:
                warm_up()
            except Exception:
                log.exception("warming up the jobs API failed; its first request will try again")
        self.sweep()
        while True:
            try:
                job = self._queue.get(timeout=SWEEP_INTERVAL_S)
            except queue.Empty:
                self.sweep()
                continue
            if job is None:
                return
            self._hold()
            self.dispatch(job)

    def dispatch(self, job: JobRecord) -> str | None:
        """Create ``job``'s run and record that; returns the error sentence if it cannot be created."""

        current = self._registry().get_job(job.job_id)
        if current is not None and (current.error or current.triggered_at):  # cancelled, or started
            log.info("job %s: not starting it (%s)", job.job_id, current.error or "already started")
            return current.error
        error: str | None = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self._trigger(job)
            except RunExists:
                pass
            except Exception as exc:
                error = f"the job could not be started: {describe(exc)}"
                log.warning("job %s: trigger attempt %s of %s failed: %s", job.job_id, attempt, ATTEMPTS, exc)
                if attempt < ATTEMPTS:
                    time.sleep(RETRY_BACKOFF_S * attempt)
                continue
            error = None
            log.info(
                "job %s: %s of clone %s by %s started", job.job_id, job.dag_id, job.clone_id, job.requested_by
            )
            break
        try:
            self._registry().mark_job_triggered(job.job_id, error)
            if error and job.clone_id:  # give back the clone id accepted for it (only if this job holds it)
                self._registry().mark_failed(job.clone_id, job.job_id, error)
            if error:  # the run will never resolve (nor forget) a secret param kept out of its conf
                runparams.drop(job.conf or {}, "source_backup_url")
        except Exception:  # the run exists (or not) whatever the registry says; the sweep re-checks
            log.exception("job %s: could not record that its run was triggered", job.job_id)
        return error

    def sweep(self, now: datetime | None = None) -> int:
        """Start accepted jobs older than STALE_AFTER_S that nobody started; returns how many."""
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=STALE_AFTER_S)
        try:
            stale = self._registry().untriggered_jobs(cutoff)
        except Exception:
            log.exception("could not read the accepted jobs from the registry")
            return 0
        for job in stale:
            log.info("job %s was accepted at %s, never started: starting it now", job.job_id, job.created_at)
            self.dispatch(job)
        return len(stale)


def is_stale(job: JobRecord, now: datetime | None = None) -> bool:
    """Accepted long enough ago that the process which accepted it must have dropped it."""
    age = (now or datetime.now(UTC)) - job.created_at
    return job.triggered_at is None and job.error is None and age.total_seconds() > STALE_AFTER_S


def airflow_trigger(job: JobRecord) -> None:
    """Create ``job``'s DAG run in Airflow's metadata database (API server only)."""

    conf: dict[str, Any] = job.conf or {}
    try:
        with create_session(scoped=False) as session:
            trigger(job.dag_id, job.job_id, conf, job.requested_by, session)
    except DagRunAlreadyExists as exc:
        raise RunExists(job.job_id) from exc
