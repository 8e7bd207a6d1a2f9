"""backup-clone against the real MariaDB: private files, retention, and no archive that looks finished
unless it is (a failed dump, a killed step). Run as the local runtime runs it: ``python -m wpclone.steps``
in a process of its own, here under a permissive umask (022) that must not show in the files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from wpclone.db import DbEndpoint
from wpclone.local.mariadb import LOCAL_USER_HOST
from wpclone.mysql_admin import MySqlAdmin
from wpclone.steps.backup import ARCHIVE_RE, KEEP_ENV, MAX_AGE_ENV, STAMP_FORMAT

CLONE = "bk-probe"
DATABASE = "wpc_bk_probe"
PASSWORD = "bk-probe-pw-41ab"
SITE = "http://bk-probe.localhost"


@pytest.fixture
def clone(admin_db: DbEndpoint, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A small clone (its own login, an options table, a wp-content) and the step's environment."""
    MySqlAdmin.from_endpoint(admin_db).create_database_and_user(
        DATABASE, DATABASE, PASSWORD, user_host=LOCAL_USER_HOST
    )
    login = DbEndpoint(admin_db.host, admin_db.port, DATABASE, PASSWORD, DATABASE)
    with login.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS wp_options (option_name VARCHAR(64), option_value TEXT)")
        cur.execute("INSERT INTO wp_options VALUES ('siteurl', %s), ('home', %s)", (SITE, SITE))
    content = tmp_path / "wp-content"
    (content / "uploads").mkdir(parents=True)
    (content / "uploads" / "a.txt").write_text("hello")
    env = {
        **login.to_env("SOURCE_DB"),
        "SOURCE_CONTENT_DIR": str(content),
        "WPCLONE_BACKUP_DIR": str(tmp_path / "backups"),
        KEEP_ENV: "2",
        MAX_AGE_ENV: "30",
    }
    yield env
    MySqlAdmin.from_endpoint(admin_db).drop_database_and_user(DATABASE, DATABASE, user_host=LOCAL_USER_HOST)


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wpclone.steps", "backup-clone", CLONE, SITE, "--json"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.umask(0o022),  # noqa: PLW1509  (the caller's umask is permissive)
    )


def backup(env: dict[str, str]) -> dict[str, object]:
    proc = start(env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def finished(directory: Path) -> list[str]:
    """Files that look like finished archives (what a restore or an operator would take)."""
    return sorted(p.name for p in directory.iterdir() if ARCHIVE_RE.fullmatch(p.name))


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def old_archive(directory: Path, days: int) -> str:
    stamp = (datetime.now(UTC) - timedelta(days=days)).strftime(STAMP_FORMAT)
    path = directory / f"{CLONE}-{stamp}.tar.gz"
    path.write_bytes(b"an older backup")
    path.with_name(path.name + ".sha256").write_text(f"{'0' * 64}  {path.name}\n")
    return path.name


def test_backups_are_private_and_pruned(clone: dict[str, str]) -> None:
    root = Path(clone["WPCLONE_BACKUP_DIR"])
    directory = root / CLONE
    directory.mkdir(parents=True)
    directory.chmod(0o755)  # made by an earlier version: made private now
    older = [old_archive(directory, days) for days in (1, 2, 45)]
    leftover = directory / f"{CLONE}-20260101T000000Z.tar.gz.partial"  # a killed try's
    leftover.write_bytes(b"half")

    result = backup(clone)

    dest = Path(str(result["backup_url"]).removeprefix("file://"))
    sidecar = dest.with_name(dest.name + ".sha256")
    assert dest.parent == directory
    assert (mode(root), mode(directory), mode(dest), mode(sidecar)) == (0o700, 0o700, 0o600, 0o600)
    # Keep 2: the one just written and the newest older one; the rest (and the leftover) are pruned.
    assert finished(directory) == sorted([dest.name, older[0]])
    assert result["pruned"] == sorted(
        [older[1], older[1] + ".sha256", older[2], older[2] + ".sha256", leftover.name]
    )
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [dest.name, dest.name + ".sha256", older[0], older[0] + ".sha256"]
    )


def test_a_failed_dump_leaves_no_archive(clone: dict[str, str]) -> None:
    proc = start({**clone, "SOURCE_DB_PASSWORD": "not-the-password"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1].startswith("error: mariadb-dump of the clone exited with 2:")
    directory = Path(clone["WPCLONE_BACKUP_DIR"]) / CLONE
    assert list(directory.iterdir()) == []  # nothing finished, nothing half-written


def test_a_killed_backup_leaves_nothing_that_looks_finished_and_a_retry_cleans_up(
    clone: dict[str, str],
) -> None:
    content = Path(clone["SOURCE_CONTENT_DIR"])
    (content / "uploads" / "big.bin").write_bytes(os.urandom(96 << 20))  # incompressible: a slow write
    directory = Path(clone["WPCLONE_BACKUP_DIR"]) / CLONE
    proc = start(clone)
    deadline = time.monotonic() + 120
    partial: list[Path] = []
    while not partial and proc.poll() is None and time.monotonic() < deadline:
        partial = list(directory.glob("*.tar.gz.partial")) if directory.is_dir() else []
        time.sleep(0.01)
    assert partial, "the archive was never being written"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert finished(directory) == []
    assert {mode(path) for path in directory.iterdir()} == {0o600}  # its temporary files are private too

    result = backup(clone)  # the retry
    name = Path(str(result["backup_url"])).name
    assert finished(directory) == [name]
    assert sorted(p.name for p in directory.iterdir()) == [name, name + ".sha256"]
    # The killed try's temporary file is pruned, unless the retry (in the same second) wrote over it.
    left = {p.name for p in partial} - {name + ".partial"}
    assert left <= set(result["pruned"])  # type: ignore[arg-type]
