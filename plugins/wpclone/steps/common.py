"""What every step shares: the expected-failure type, log set-up, secret scrubbing and the result line."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable
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


class StepError(RuntimeError):
    """An expected failure: its message is one clear sentence and is shown without a traceback."""


def setup_logging(level: int = logging.INFO) -> None:
    """One line per event on stderr, UTC timestamps, ``step=... event=...`` fields in the message."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
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


def emit_result(result: dict[str, Any]) -> None:
    """Write the step's result as one JSON object on the last line of stdout."""
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()


def mb_per_s(nbytes: int, seconds: float) -> float:
    return round(nbytes / 1e6 / seconds, 1) if seconds > 0 else 0.0
