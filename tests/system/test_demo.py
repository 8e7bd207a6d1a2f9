"""The README's first command, as a newcomer runs it: ``make demo`` twice, then ``make demo-down``.

Runs in a state dir of its own (own MariaDB, site host, Airflow, ports), so it proves the demo from an empty
state and that stopping it leaves no process behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from wpclone.local.procs import is_zombie

DEMO_TIMEOUT_S = 900


def _processes_of(state_dir: Path) -> list[str]:
    """Every live process started for this state dir (by its command line or environment)."""
    marker = str(state_dir).encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ours = marker in (proc / "cmdline").read_bytes() or marker in (proc / "environ").read_bytes()
            if ours and not is_zombie(int(proc.name)):
                found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:120]!r}")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    path = REPO / ".local" / "test-demo"
    shutil.rmtree(path, ignore_errors=True)
    yield path
    subprocess.run(["make", "-s", "demo-down"], cwd=REPO, env=_env(path), check=False, timeout=120)
    shutil.rmtree(path, ignore_errors=True)


def _env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WPCLONE_", "AIRFLOW"))}
    return {**env, "WPCLONE_STATE_DIR": str(state_dir)}


def _make(target: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", target],
        cwd=REPO,
        env=_env(state_dir),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )


def test_demo_clones_the_source_twice_then_demo_down_leaves_nothing(state_dir: Path) -> None:
    first = _make("demo", state_dir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    clone_url = re.search(r"^\s*URL:\s+(http://\S+)$", out, re.MULTILINE)
    assert clone_url, out
    password = re.search(r"Admin password:\s+stored in (\S+)", out)
    assert password and Path(password.group(1)).is_file(), out
    assert Path(password.group(1)).read_text().strip() not in first.stdout + first.stderr  # never printed
    ui = re.search(r"Airflow UI:\s+(http://127\.0\.0\.1:\d+/)\s+\(login admin, password: cat (\S+)\)", out)
    assert ui and Path(ui.group(2)).is_file(), out
    assert "100% completed" in out  # the progress lines of `wpclone clone --wait`

    again = _make("demo", state_dir)  # safe to re-run: reuses what runs, makes another clone
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    second_url = re.search(r"^\s*URL:\s+(http://\S+)$", again.stdout, re.MULTILINE)
    assert second_url and second_url.group(1) != clone_url.group(1)
    assert "Airflow already running" in again.stderr + again.stdout

    assert _processes_of(state_dir)  # the check below can see them while they run
    down = _make("demo-down", state_dir)
    assert down.returncode == 0, down.stderr
    assert _processes_of(state_dir) == []
