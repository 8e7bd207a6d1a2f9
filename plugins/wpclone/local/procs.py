"""Stopping the local stack's background processes: each leads its own process group."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def pid_from_file(pidfile: Path, marker: bytes) -> int | None:
    """The pid recorded in ``pidfile`` if that process runs and its command line holds ``marker`` (so a
    reused pid is not taken for ours)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return None if marker not in cmdline or is_zombie(pid) else pid


def group_pids(pgid: int) -> list[int]:
    """The non-zombie processes of a process group."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process of the group is left (reaping our own child if it is one)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    return bool(group_pids(pgid))


def kill_group(pgid: int, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``timeout``; wait until it is gone."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    killed = False
    while group_alive(pgid):
        if not killed and time.monotonic() > deadline:
            log.warning("process group %d did not stop on SIGTERM; killing it", pgid)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                return
            killed = True
        time.sleep(0.05)
