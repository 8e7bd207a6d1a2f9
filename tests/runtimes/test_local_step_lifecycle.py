"""A local step's life is bound to its task's: it dies with it, and its failure reads as one sentence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from wpclone.local.procs import is_zombie
from wpclone.runtimes.local import step_failure
from wpclone.steps.common import PARENT_PID_ENV

# A "task" that starts a "step" the way run_local_step does, prints the step's pid, then waits forever.
TASK = f"""
import os, subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", "from wpclone.steps.common import die_with_parent; import time; "
     "die_with_parent(); print('armed', flush=True); time.sleep(120)"],
    env={{**os.environ, "{PARENT_PID_ENV}": str(os.getpid())}}, stdin=subprocess.DEVNULL,
    stdout=subprocess.PIPE, text=True,
)
assert child.stdout.readline().strip() == "armed"
print(child.pid, flush=True)
child.wait()
"""


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or is_zombie(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_step_dies_when_its_task_is_killed() -> None:
    task = subprocess.Popen([sys.executable, "-c", TASK], stdout=subprocess.PIPE, text=True)
    assert task.stdout is not None
    step_pid = int(task.stdout.readline())
    assert not _gone(step_pid, timeout=0.5)  # alive while its task lives
    os.kill(task.pid, signal.SIGKILL)
    task.wait()
    assert _gone(step_pid), "the step outlived its killed task"


def test_a_step_started_by_a_task_already_gone_exits_at_once() -> None:
    env = {**os.environ, PARENT_PID_ENV: "1"}  # not our parent: the task that meant to start us is gone
    code = "from wpclone.steps.common import die_with_parent; die_with_parent(); print('ran')"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert (done.returncode, done.stdout) == (1, "")


def test_failure_sentence_prefers_the_steps_error_line_then_how_it_ended() -> None:
    log_line = "ts=2026-11-28T21:43:15.000Z level=info job_id=j clone_id=c step=copy-database event=start"
    said = [log_line, "error: the load failed: Unknown database 'x'.", log_line]
    assert step_failure("copy-database", 1, said) == "the load failed: Unknown database 'x'."
    assert step_failure("copy-database", -9, [log_line]) == (
        "the step was killed by SIGKILL before it finished."
    )
    assert step_failure("copy-database", 1, ["Traceback ...", "ValueError: bad", ""]) == "ValueError: bad"
    assert step_failure("copy-database", 3, []) == "the step exited with status 3 without saying why."
