"""Chaos: kill -9 a process mid-job and show the job recovers, with nothing lost or orphaned.

Starts what it needs like bench/load.py (the stack of ``WPCLONE_STATE_DIR``, default ``.local``; the source
topped up to ``--posts`` posts so a copy lasts long enough to be killed mid-way; ``wp_ttl_cleanup`` paused
while it runs, since its orphan sweep would hide leftovers). Each scenario starts one clone job through the
jobs API, waits until ``copy_database`` runs its step (``python -m wpclone.steps copy-database``, a child of
the Airflow task runner, found in /proc by its command line and the clone's URL) and the clone's database
has its first tables, then kills with SIGKILL:

- ``step``: the step process itself. Its task try fails, Airflow retries it (WPCLONE_TASK_RETRIES, default
  2), the retry's copy starts over (it drops whatever the killed one loaded).
- ``runner``: the step's parent, the Airflow task runner (the forked child of the LocalExecutor worker
  that runs the PythonOperator). The supervisor sees it die and fails the try; the step process it started
  is watched: it must not outlive its runner (an orphan copy would race the retry's).
- ``exhaust``: every try's copy step, until the retries are spent: the job must fail and its rollback
  leave nothing (the registry says ``failed``, unlocked).
- ``scheduler``: ``airflow scheduler`` (a child of ``airflow standalone``, which does not restart it).
  The scheduler is started again by hand (``airflow scheduler`` with LocalAirflow.env(), its own session,
  log in <airflow home>/chaos-scheduler.log); at the end of the scenario it is stopped and the standalone
  restarted, so the stack is as before. Processes the dead scheduler leaves behind are reported.
- ``hang``: the step is frozen (SIGSTOP, not killed): it neither copies nor fails, like a stalled source or
  a wedged ``mariadb`` client. Its time limit must strike: the step (stopped) and its clients killed within
  the limit, the try failed with the sentence "copy_database timed out after N s (limit ...)" (read from
  the try's log), then the retry completes (or the job fails and rolls back) within the limit and a retry's
  time. The stack's Airflow needs small limits for this: the script sets
  ``WPCLONE_STEP_TIMEOUT_FLOOR_S`` and ``_CEILING_S`` to ``--hang-limit`` (default 60 s) unless they are set,
  and restarts a running Airflow once so it takes them (the other scenarios of the same invocation run
  under them too; a copy of the default source takes well under a minute). Airflow keeps them until it is
  restarted (``python -m wpclone.local down``, then ``up``).

Then each job must end ``completed`` (the clone answers over HTTP, its wp_posts rows equal the source's,
every source wp_options row is there (WordPress adds transients once the clone serves pages), the registry
says ready) or ``failed`` with a clean rollback (nothing left, registry
``failed``, unlocked). Then the clone is deleted through the API and nothing may be left: database, user,
site dir, content, secret files, a registry row not ``deleted``, or a process of the clone. Prints what it
killed, when (seconds into the job, which tasks were running) and the outcome; exits non-zero when a job
neither completed nor rolled back cleanly, or something is left behind.

    WPCLONE_STATE_DIR=$PWD/.local/h-bench .venv/bin/python bench/chaos.py \\
        [--scenario step runner exhaust scheduler hang] [--posts 30000] [--hang-limit 60]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    API,
    Api,
    JobTrace,
    Proc,
    Stack,
    alive,
    leftovers,
    option_names,
    poll_jobs,
    proc_tree,
    processes,
    row_counts,
    site_answers,
    start_stack,
)

from wpclone.local.airflow import LocalAirflow
from wpclone.local.procs import group_alive, kill_group
from wpclone.local.settings import StackSettings
from wpclone.models import clone_db_name
from wpclone.settings import STEP_TIMEOUT_CEILING, STEP_TIMEOUT_FLOOR, TimeLimits

SCENARIOS = ("step", "runner", "exhaust", "scheduler", "hang")
DEFAULT_POSTS = 30000
FIND_TIMEOUT_S = 300.0  # until the copy step runs (it may queue on the heavy pool)
JOB_TIMEOUT_S = 900.0  # a task whose runner vanished is failed by the heartbeat timeout (5 min default)
DEFAULT_HANG_LIMIT_S = 60
HANG_SLACK_S = 15.0  # beyond the step's limit: the runtime's kill, the try's end, the poll
AFTER_HANG_S = 240.0  # after the stopped step is gone: the retry's delay, a whole copy, the rest of the job
TIMED_OUT = re.compile(r"copy_database timed out after \d+ s \(limit for [^)]*\); the step was killed\.")


@dataclass
class Outcome:
    scenario: str
    clone_id: str
    job_id: str = ""
    killed: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    status: str = "not started"

    def event(self, t0: float, text: str) -> None:
        line = f"+{time.monotonic() - t0:6.1f} s  {text}"
        self.events.append(line)
        print(f"  {line}")


def running_tasks(api: Api, job_id: str) -> str:
    try:
        tis = api.task_instances("wp_clone", job_id)
    except Exception as exc:
        return f"(task instances unreadable: {exc})"
    running = [f"{t['task_id']} (try {t['try_number']})" for t in tis if t["state"] == "running"]
    return ", ".join(running) or "none running"


def step_processes(clone_url: str, step: str = "copy-database") -> list[Proc]:
    """The clone's step processes, whatever their session (an orphan keeps ours, but check all)."""
    return processes(lambda p: "wpclone.steps" in p.cmdline and step in p.cmdline and clone_url in p.cmdline)


def table_count(stack: Stack, database: str) -> int:
    with stack.admin.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s", (database,))
        return int(cur.fetchone()[0])


def wait_for_copy(stack: Stack, outcome: Outcome, clone_url: str, t0: float) -> Proc | None:
    """The copy step once its process runs and the clone's database has its first tables (mid-copy)."""
    deadline = time.monotonic() + FIND_TIMEOUT_S
    database = clone_db_name(outcome.clone_id)
    seen_at: float | None = None
    while time.monotonic() < deadline:
        found = step_processes(clone_url)
        if found:
            if seen_at is None:
                seen_at = time.monotonic()
                outcome.event(t0, f"copy-database step process appeared: {found[0]}")
            # Mid-copy: some tables loaded; or, should the copy be quick, 2 s after the step started.
            if table_count(stack, database) > 0 or time.monotonic() - seen_at > 2.0:
                return found[0]
        elif seen_at is not None:
            outcome.problems.append("the copy step finished before it could be killed; use more --posts")
            return None
        time.sleep(0.05)
    outcome.problems.append(f"the copy step did not start within {FIND_TIMEOUT_S:.0f} s")
    return None


def kill(
    outcome: Outcome,
    t0: float,
    proc: Proc,
    what: str,
    *,
    api: Api,
    stack: Stack,
    sig: signal.Signals = signal.SIGKILL,
) -> None:
    tables = table_count(stack, clone_db_name(outcome.clone_id))
    running = running_tasks(api, outcome.job_id)  # just before the kill
    os.kill(proc.pid, sig)
    text = f"kill -{sig.name[3:]} {what}: {proc} -- {tables} table(s) in the clone's database; "
    text += f"Airflow: {running}"
    outcome.killed.append(f"+{time.monotonic() - t0:.1f} s {what} pid {proc.pid} ({running})")
    outcome.event(t0, text)


# -- scenarios ---------------------------------------------------------------------------------------------


class Scheduler:
    """The replacement ``airflow scheduler`` this script starts, in its own session; stopped at the end."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        airflow = self.stack.airflow
        log = (airflow.home / "chaos-scheduler.log").open("ab")
        with open(os.devnull, "rb") as devnull:
            self.process = subprocess.Popen(
                [str(airflow.bin / "airflow"), "scheduler"],
                env=airflow.env(),
                stdin=devnull,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.close()
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and group_alive(self.process.pid):
            kill_group(self.process.pid, 30)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        self.process = None


def exhaust_retries(stack: Stack, api: Api, outcome: Outcome, t0: float) -> None:
    """Kill every try's copy step, 0.5 s into it, until the job is final: its retries are spent."""
    clone_url = stack.settings.site_url(outcome.clone_id)
    killed: set[int] = set()
    deadline = time.monotonic() + FIND_TIMEOUT_S
    asked = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - asked > 1.0:
            asked = time.monotonic()
            if api.job(outcome.job_id)["status"] in ("completed", "failed", "cancelled"):
                return
        fresh = [p for p in step_processes(clone_url) if p.pid not in killed]
        if fresh:
            time.sleep(0.5)
            killed.add(fresh[0].pid)
            if alive(fresh[0].pid):
                kill(outcome, t0, fresh[0], f"copy step #{len(killed)}", api=api, stack=stack)
            deadline = time.monotonic() + FIND_TIMEOUT_S
        time.sleep(0.1)
    outcome.problems.append(f"no new copy step and no final job within {FIND_TIMEOUT_S:.0f} s")


def scenario_kill(
    stack: Stack, api: Api, outcome: Outcome, t0: float, *, sid: int, scheduler: Scheduler
) -> list[Proc]:
    """Kill what the scenario names once the copy runs; returns processes to watch afterwards."""
    if outcome.scenario == "exhaust":
        exhaust_retries(stack, api, outcome, t0)
        return []
    clone_url = stack.settings.site_url(outcome.clone_id)
    step = wait_for_copy(stack, outcome, clone_url, t0)
    if step is None:
        return []
    children = [p for p in proc_tree(sid) if p.ppid == step.pid]  # mariadb-dump (and a client loader)
    if children:
        outcome.event(t0, f"the step's children: {'; '.join(str(c) for c in children)}")
    if outcome.scenario == "step":
        kill(outcome, t0, step, "the copy-database step process", api=api, stack=stack)
        return children
    if outcome.scenario == "hang":
        kill(outcome, t0, step, "the copy-database step process", api=api, stack=stack, sig=signal.SIGSTOP)
        state = next((p.state for p in processes(lambda p: p.pid == step.pid)), "gone")
        outcome.event(t0, f"the step's state after SIGSTOP: {state} (T: stopped)")
        return [step, *children]
    if outcome.scenario == "runner":
        runner = next((p for p in proc_tree(sid) if p.pid == step.ppid), None)
        if runner is None:
            outcome.problems.append(f"the step's parent {step.ppid} is not a process of our Airflow")
            return []
        supervisor = next((p for p in proc_tree(sid) if p.pid == runner.ppid), None)
        outcome.event(t0, f"its task runner: {runner}; the runner's supervisor: {supervisor}")
        kill(outcome, t0, runner, "the Airflow task runner (the step's parent)", api=api, stack=stack)
        return [step, *children]
    # scheduler
    found = [p for p in proc_tree(sid) if p.ppid == sid and "airflow scheduler" in p.cmdline]
    if not found:
        outcome.problems.append("no `airflow scheduler` child of the standalone found")
        return []
    victim = found[0]
    children = [p for p in proc_tree(sid) if p.ppid == victim.pid]
    kill(outcome, t0, victim, "the scheduler", api=api, stack=stack)
    time.sleep(5)
    left = [p for p in children if alive(p.pid)]
    outcome.event(
        t0,
        f"5 s later: {len(left)} of the dead scheduler's {len(children)} children still run "
        f"(executor workers, log server): {', '.join(str(p.pid) for p in left) or 'none'}",
    )
    pid = scheduler.start()
    outcome.event(t0, f"started a new `airflow scheduler` (pid {pid}, own session)")
    return left


def check_outcome(stack: Stack, outcome: Outcome, trace: JobTrace) -> None:
    body = trace.last
    outcome.status = trace.status
    record = stack.registry.get(outcome.clone_id)
    if trace.status == "completed":
        url = (body.get("result") or {}).get("url") or stack.settings.site_url(outcome.clone_id)
        status = site_answers(url)
        database = clone_db_name(outcome.clone_id)
        counts = row_counts(stack.admin, database)
        source = stack.source_counts()
        # WordPress adds options (transients, cron) once the clone serves pages: every source option must
        # be there; the extra ones are listed.
        missing = option_names(stack.admin, stack.source.db_name) - option_names(stack.admin, database)
        extra = option_names(stack.admin, database) - option_names(stack.admin, stack.source.db_name)
        text = (
            f"clone answers HTTP {status}; rows {counts}, source {source}; "
            f"source options missing {sorted(missing) or 'none'}, added after the copy {sorted(extra)}"
        )
        outcome.events.append(text)
        print(f"  completed: {url} {text}")
        if status != 200:
            outcome.problems.append(f"the completed clone answers HTTP {status}")
        if counts["wp_posts"] != source["wp_posts"]:
            outcome.problems.append(
                f"wp_posts has {counts['wp_posts']} rows, the source {source['wp_posts']}"
            )
        if missing or counts["wp_options"] < source["wp_options"]:
            outcome.problems.append(f"wp_options: {counts['wp_options']} rows, missing {sorted(missing)}")
        if record is None or record.status != "ready" or record.lock_job_id:
            outcome.problems.append(f"registry after completion: {record}")
    elif trace.status == "failed":
        found = [f for f in leftovers(stack, outcome.clone_id) if not f.startswith("registry row failed")]
        print(f"  failed ({body.get('error')}); rolled back: {found or 'cleanly'}")
        if "level=info" in str(body.get("error")) or "event=" in str(body.get("error")):
            outcome.warnings.append(
                f"the job's error is a log line of the step, not a reason: {body['error']}"
            )
        if found:
            outcome.problems.append(f"the failed job's rollback left {', '.join(found)}")
        if record is None or record.status != "failed" or record.lock_job_id:
            outcome.problems.append(f"registry after the rollback: {record}")
    else:
        outcome.problems.append(f"the job ended {trace.status}: {body.get('status_message')}")


def tries_summary(api: Api, job_id: str) -> str:
    try:
        tries = api.tries("wp_clone", job_id, "copy_database")
    except Exception as exc:
        return f"(tries unreadable: {exc})"
    return ", ".join(f"try {t['try_number']} {t['state']}" for t in tries)


def delete_and_check(stack: Stack, api: Api, outcome: Outcome) -> None:
    if stack.registry.get(outcome.clone_id) is not None:
        deadline = time.monotonic() + 120
        while True:
            response = api.call("DELETE", f"{API}/clones/{outcome.clone_id}")
            if response.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(2)
        if response.status_code != 202:
            outcome.problems.append(f"DELETE answered {response.status_code}: {response.text[:200]}")
        else:
            trace = JobTrace(response.json()["job_id"], outcome.clone_id)
            poll_jobs(api, [trace], 600, interval=0.5)
            print(f"  delete job {trace.job_id}: {trace.status}")
            if trace.status != "completed":
                outcome.problems.append(f"the delete job ended {trace.status}: {trace.last.get('error')}")
    found = leftovers(stack, outcome.clone_id)
    print(f"  after delete: {'nothing left' if not found else ', '.join(found)}")
    outcome.problems += [f"left behind: {f}" for f in found]


class Watcher:
    """Follows the job after the kill: its status messages, the processes left by the kill and, for the
    runner scenario, whether the retry's copy starts while the killed runner's step still copies."""

    def __init__(self, stack: Stack, outcome: Outcome, t0: float, watched: list[Proc]) -> None:
        self.outcome = outcome
        self.t0 = t0
        self.watched = watched
        self.clone_url = stack.settings.site_url(outcome.clone_id)
        self.killed_at = time.monotonic()
        self.message: str | None = None
        self.overlap = False
        self.gone_after: dict[int, float] = {}  # watched pid -> seconds after the kill it was seen gone

    def __call__(self, trace: JobTrace, body: dict[str, Any]) -> None:
        outcome, t0 = self.outcome, self.t0
        if body["status_message"] != self.message:
            self.message = body["status_message"]
            outcome.event(t0, f"job {body['status']} {body['progress']}%: {body['status_message']}")
        for proc in list(self.watched):
            if not alive(proc.pid):
                after = time.monotonic() - self.killed_at
                outcome.event(t0, f"watched process {proc.pid} is gone, {after:.1f} s after the kill")
                self.watched.remove(proc)
                self.gone_after[proc.pid] = after
                if outcome.scenario == "runner" and after > 1.0:
                    outcome.warnings.append(
                        f"process {proc.pid} outlived its killed task runner by ~{after:.0f} s "
                        "(re-parented to init, still copying into the clone's database)"
                    )
        if outcome.scenario == "runner" and self.watched and not self.overlap:
            orphans = {w.pid for w in self.watched}
            others = [p for p in step_processes(self.clone_url) if p.pid not in orphans]
            if others:
                self.overlap = True
                outcome.event(t0, f"OVERLAP: the retry's step {others[0].pid} runs beside the orphan")
                outcome.problems.append(
                    f"the killed runner's step {self.watched[0].pid} was still running when the retry's step "
                    f"{others[0].pid} started: two copies into one database"
                )

    def report_left(self) -> None:
        for proc in self.watched:
            if not alive(proc.pid):
                continue
            if self.outcome.scenario == "scheduler":
                self.outcome.warnings.append(f"left by the dead scheduler until Airflow restarts: {proc}")
                print(f"  LEFT BY THE DEAD SCHEDULER {proc}")
            else:
                self.outcome.problems.append(f"still running after the job ended: {proc}")
                print(f"  ORPHAN {proc}")


def check_hang(
    api: Api, outcome: Outcome, watcher: Watcher, trace: JobTrace, *, limit_s: float, stopped: int
) -> None:
    """The hang scenario's own checks: the stopped step killed within its limit, the try's sentence, the
    job final within a retry's time after that."""
    if not outcome.killed:
        return
    gone = watcher.gone_after.get(stopped)
    if gone is None:
        outcome.problems.append(f"the stopped step {stopped} was never seen gone")
    elif gone > limit_s + HANG_SLACK_S:
        outcome.problems.append(
            f"the stopped step lived {gone:.0f} s after its SIGSTOP, past its {limit_s:.0f} s limit"
        )
    final_at = trace.final_at
    if final_at is not None and gone is not None:
        after = final_at - (watcher.killed_at + gone)
        outcome.event(watcher.t0, f"the job was final {after:.0f} s after the stopped step was killed")
        if after > AFTER_HANG_S:
            outcome.problems.append(
                f"the job took {after:.0f} s after the timeout to end (> {AFTER_HANG_S:.0f} s)"
            )
    try:
        response = api.call(
            "GET", f"/api/v2/dags/wp_clone/dagRuns/{outcome.job_id}/taskInstances/copy_database/logs/1"
        )
        said = TIMED_OUT.search(response.text)
    except Exception as exc:
        outcome.problems.append(f"the first try's log is unreadable: {exc}")
        return
    if said:
        outcome.event(watcher.t0, f"the first try's log says: {said[0]}")
    else:
        outcome.problems.append(
            f"the first try's log (HTTP {response.status_code}) has no timed-out sentence"
        )


def hang_limits(limit_s: int) -> bool:
    """Small step limits in this environment (the stack's Airflow inherits it) unless set; whether a running
    Airflow must restart to take them."""
    set_here = False
    for name in (STEP_TIMEOUT_FLOOR, STEP_TIMEOUT_CEILING):
        if not os.environ.get(name):
            os.environ[name] = str(limit_s)
            set_here = True
    TimeLimits.from_env()  # refuses contradictory limits before anything starts
    return set_here and LocalAirflow(StackSettings.load()).pid() is not None


def restart_airflow(stack: Stack, api: Api, outcome: Outcome, scheduler: Scheduler, left: list[Proc]) -> None:
    """After the scheduler scenario: our scheduler stopped, the standalone restarted (as before)."""
    scheduler.stop()
    print("  restarting Airflow standalone (stop, start) to get the stack back to normal")
    started = time.monotonic()
    stack.airflow.stop()
    print(f"  Airflow stopped in {time.monotonic() - started:.0f} s")
    outcome.problems += [f"survived the restart of Airflow: {p}" for p in left if alive(p.pid)]
    stack.airflow.start()
    stack.pause_cleanup()
    api.token = Api(stack.airflow).token


def run_scenario(stack: Stack, api: Api, scenario: str, tag: str) -> Outcome:
    outcome = Outcome(scenario, f"chaos-{scenario}-{tag}")
    print(f"\n== scenario {scenario}: clone {outcome.clone_id}")
    sid = stack.airflow.pid()
    if sid is None:
        outcome.problems.append("Airflow is not running")
        return outcome
    scheduler = Scheduler(stack)
    watched: list[Proc] = []
    try:
        response = api.clone(stack.source.url, outcome.clone_id, 30)
        t0 = time.monotonic()
        if response.status_code != 202:
            outcome.problems.append(f"POST /clones answered {response.status_code}: {response.text[:200]}")
            return outcome
        outcome.job_id = response.json()["job_id"]
        outcome.event(t0, f"job {outcome.job_id} accepted")
        watched = scenario_kill(stack, api, outcome, t0, sid=sid, scheduler=scheduler)
        watcher = Watcher(stack, outcome, t0, list(watched))
        trace = JobTrace(outcome.job_id, outcome.clone_id)
        poll_jobs(api, [trace], JOB_TIMEOUT_S, interval=0.5, on_poll=watcher)
        outcome.event(t0, f"job {trace.status}; copy_database: {tries_summary(api, outcome.job_id)}")
        check_outcome(stack, outcome, trace)
        if scenario == "hang":
            limit = TimeLimits.from_env().step_ceiling_s
            check_hang(api, outcome, watcher, trace, limit_s=limit, stopped=watched[0].pid if watched else 0)
        watcher.report_left()
    finally:
        if scenario == "scheduler":
            restart_airflow(stack, api, outcome, scheduler, watched)
    delete_and_check(stack, api, outcome)
    clone_url = stack.settings.site_url(outcome.clone_id)
    for proc in processes(lambda p: clone_url in p.cmdline or outcome.clone_id in p.cmdline):
        outcome.problems.append(f"process of the clone still running: {proc}")
        print(f"  ORPHAN {proc}")
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument(
        "--posts", type=int, default=DEFAULT_POSTS, help=f"source posts (default {DEFAULT_POSTS})"
    )
    parser.add_argument(
        "--hang-limit",
        type=int,
        default=DEFAULT_HANG_LIMIT_S,
        help=f"the hang scenario's step time limit, seconds (default {DEFAULT_HANG_LIMIT_S})",
    )
    args = parser.parse_args()

    restart = "hang" in args.scenario and hang_limits(args.hang_limit)
    stack = start_stack(posts=args.posts)
    if restart:
        print("  restarting Airflow so it takes the hang scenario's step time limits")
        stack.restart_airflow()
    print(f"source: {stack.source.url}, rows {stack.source_counts()}")
    api = Api(stack.airflow)
    tag = secrets.token_hex(2)
    outcomes = []
    try:
        for scenario in args.scenario:
            outcomes.append(run_scenario(stack, api, scenario, tag))
    finally:
        api.close()
        stack.restore_cleanup()

    print("\nsummary")
    for outcome in outcomes:
        verdict = "PASS" if not outcome.problems else "FAIL"
        print(f"  {outcome.scenario:9} {verdict}: job {outcome.status}; killed {'; '.join(outcome.killed)}")
        for problem in outcome.problems:
            print(f"      - {problem}")
        for warning in outcome.warnings:
            print(f"      ~ (warning) {warning}")
    ok = all(not o.problems for o in outcomes)
    print(f"  => {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
