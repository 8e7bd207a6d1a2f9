"""What every step shares: log set-up, secret scrubbing and the result line (failures: wpclone.errors)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

# Set by the local runtime to the task process's pid: the step must not outlive it (see die_with_parent).
PARENT_PID_ENV = "WPCLONE_STEP_PARENT_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """End this step when the task that started it dies (local runtime; a pod dies with its container).

    A step that outlived a killed task would go on loading into the clone's database while the task's
    retry starts over in it. Linux delivers SIGKILL to us when the parent exits; if it already has, exit now.
    """
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):
        os._exit(1)


# Set by both runtimes for every step (local: the step's environment; kubernetes: the pod's env): the job
# (the DAG run id) and the clone it works on. Every log line carries them, so Loki and Tempo correlate by job.
JOB_ID_ENV = "WPCLONE_JOB_ID"
CLONE_ID_ENV = "WPCLONE_CLONE_ID"
_LOGFMT_BARE = re.compile(r"[^\s\"=\\]+")


def logfmt_value(value: object) -> str:
    """``value`` as a logfmt value: bare when it can be, else double-quoted with ``\\`` and ``"`` escaped."""
    text = " ".join(str(value).split())
    if _LOGFMT_BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LogfmtFormatter(logging.Formatter):
    """One logfmt line per record: ``ts=... level=... job_id=... clone_id=... <message>``.

    The message is already ``step=... event=... k=v`` pairs, so the whole line parses with Loki's
    ``| logfmt`` (``{k8s_namespace_name="wpclone-clones"} | logfmt | job_id="clone-..."``). ``job_id`` and
    ``clone_id`` are ``-`` when the runtime did not set them (a step run by hand).
    """

    def __init__(self, job_id: str | None = None, clone_id: str | None = None) -> None:
        super().__init__()
        self.context = f"job_id={logfmt_value(job_id or '-')} clone_id={logfmt_value(clone_id or '-')}"

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        message = record.getMessage()
        if isinstance(record.args, tuple) and record.args:
            # ``k=%s`` with a value such as a path with spaces stays one logfmt value: quote string args.
            args = tuple(logfmt_value(a) if isinstance(a, str) else a for a in record.args)
            with contextlib.suppress(TypeError, ValueError):  # the plain message is still right
                message = str(record.msg) % args
        line = (
            f"ts={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} {self.context} "
            + " ".join(message.split())
        )
        if record.exc_info:
            line += " exc=" + logfmt_value(self.formatException(record.exc_info))
        return line


def setup_logging(level: int = logging.INFO, env: Mapping[str, str] | None = None) -> None:
    """One logfmt line per event on stderr with the job and clone ids (see :class:`LogfmtFormatter`)."""
    env = os.environ if env is None else env
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(env.get(JOB_ID_ENV), env.get(CLONE_ID_ENV)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in ``text`` with ``***`` and fold it to one line."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


def sentence(text: str) -> str:
    """End ``text`` with exactly one full stop so messages read as one sentence."""
    text = text.strip().rstrip(".")
    return text + "."


TERMINATION_LOG_ENV = "WPCLONE_TERMINATION_LOG"  # set in a step pod: its container's termination message file


def emit_result(result: dict[str, Any]) -> None:
    """Write the step's result as one JSON object on the last line of stdout, and, in a pod (``WPCLONE_
    TERMINATION_LOG`` set), into its termination message, where the pod operator reads it for XCom."""
    text = json.dumps(result, sort_keys=True) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
    path = os.environ.get(TERMINATION_LOG_ENV)
    if path:
        with open(path, "w") as message:
            message.write(text)


def mb_per_s(nbytes: int, seconds: float) -> float:
    return round(nbytes / 1e6 / seconds, 1) if seconds > 0 else 0.0
