"""copy-content on real directories: metadata kept, resume converges, symlinks stay inside, errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from wpclone.steps.copy_content import TEMP_SUFFIX, copy_content

pytestmark = pytest.mark.integration

MTIME_NS = 1_600_000_000_123_456_789


def make_tree(root: Path) -> None:
    """A small wp-content: uploads with many small files and a big one, plugins, odd names and modes."""
    (root / "uploads/2024/01").mkdir(parents=True)
    (root / "plugins/akismet").mkdir(parents=True)
    (root / "themes/t/empty").mkdir(parents=True)
    for i in range(200):
        (root / f"uploads/2024/01/img-{i}.jpg").write_bytes(os.urandom(i * 37 + 1))
    (root / "uploads/big.bin").write_bytes(os.urandom(8 * 1024 * 1024 + 3))
    (root / "uploads/empty.txt").write_bytes(b"")
    (root / "plugins/akismet/akismet.php").write_text("<?php // plugin\n")
    (root / "plugins/akismet/run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "plugins/akismet/run.sh", 0o750)
    os.chmod(root / "plugins/akismet/akismet.php", 0o640)
    (root / "uploads/name with spaces & ünïcode.txt").write_text("x")
    (root / "themes/t/style.css").write_text("body{}")
    os.chmod(root / "themes/t", 0o755)
    os.symlink("../plugins/akismet/akismet.php", root / "uploads/inside-link.php")
    os.symlink(str(root / "themes/t/style.css"), root / "abs-inside.css")
    os.symlink("../../etc/passwd", root / "uploads/escape-relative")
    os.symlink("/etc/passwd", root / "escape-absolute")
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        os.utime(path, ns=(MTIME_NS, MTIME_NS + len(path.parts)), follow_symlinks=False)
    os.chmod(root / "themes/t/empty", 0o500)  # read-only directory, after its mtime is set


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Relative path → (type, mode, mtime_ns, content or link) for everything under root."""
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(path), st.st_mtime_ns)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes())
    return out


def expected(src: Path) -> dict[str, tuple[object, ...]]:
    want = snapshot(src)
    del want["uploads/escape-relative"], want["escape-absolute"]
    want["abs-inside.css"] = ("link", "themes/t/style.css", want["abs-inside.css"][2])
    return want


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    return src


def run_cli(
    *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "wpclone.steps", "copy-content", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def test_copy_keeps_modes_mtimes_and_inside_symlinks(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst" / "wp-content"
    proc = run_cli(str(tree), str(dst))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["files"] == result["files_copied"] == 206 and result["files_skipped"] == 0
    assert result["symlinks"] == 2 and len(result["skipped"]) == 2
    assert "step=copy-content event=summary" in proc.stderr
    assert "event=skip path=escape-absolute" in proc.stderr
    assert snapshot(dst) == expected(tree)
    assert stat.S_IMODE(os.stat(dst).st_mode) == stat.S_IMODE(os.stat(tree).st_mode)
    assert os.stat(dst).st_mtime_ns == os.stat(tree).st_mtime_ns
    assert not list(dst.rglob(f"*{TEMP_SUFFIX}"))

    again = run_cli(env={"SOURCE_CONTENT_DIR": str(tree), "TARGET_CONTENT_DIR": str(dst)})
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout.strip().splitlines()[-1])
    assert second["files_copied"] == 0 and second["files_skipped"] == 206 and second["bytes_copied"] == 0
    assert snapshot(dst) == expected(tree)


def test_resume_after_interruption_converges(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    copy_content(tree, dst)
    # Simulate a copy killed halfway: some files missing, a truncated temp file, a file cut short that
    # kept its name (only possible from another tool; its size differs so it is copied again), a stale
    # temp file whose source no longer exists.
    for i in range(0, 200, 2):
        (dst / f"uploads/2024/01/img-{i}.jpg").unlink()
    big = dst / "uploads/big.bin"
    big.rename(dst / "uploads" / f".big.bin{TEMP_SUFFIX}")
    with open(dst / "uploads" / f".big.bin{TEMP_SUFFIX}", "r+b") as handle:
        handle.truncate(1000)
    truncated = dst / "uploads/2024/01/img-101.jpg"
    truncated.write_bytes(truncated.read_bytes()[:10])
    (dst / "uploads/2024/01" / f".gone.jpg{TEMP_SUFFIX}").write_bytes(b"partial")
    os.chmod(dst / "themes/t/empty", 0o500)

    result = copy_content(tree, dst)
    assert result.files_copied == 100 + 1 + 1
    assert result.files_skipped == 206 - 102
    assert snapshot(dst) == expected(tree)
    assert not list(dst.rglob(f"*{TEMP_SUFFIX}"))


def test_source_changed_while_copying_is_detected(tree: Path, tmp_path: Path) -> None:
    from wpclone.steps import copy_content as module
    from wpclone.steps.common import StepError

    victim = tree / "uploads/empty.txt"
    st = os.stat(victim)
    victim.write_bytes(b"grew after the scan")
    with pytest.raises(StepError, match="changed while it was being copied"):
        module.copy_file(str(victim), tmp_path / "out.txt", st)
    assert not (tmp_path / f".out.txt{TEMP_SUFFIX}").exists() and not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "copy-content needs SRC_DIR and DST_DIR"),
        (("/nonexistent-wpclone-src", "/tmp/x"), "does not exist or is not a directory"),
    ],
)
def test_bad_arguments_fail_with_one_sentence(args: tuple[str, ...], message: str) -> None:
    env = {"SOURCE_CONTENT_DIR": "", "TARGET_CONTENT_DIR": ""}
    proc = run_cli(*args, env=env)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert message in last and last.startswith("error: ") and "Traceback" not in proc.stderr


def test_overlapping_directories_are_refused(tree: Path) -> None:
    proc = run_cli(str(tree), str(tree / "uploads" / "copy"))
    assert proc.returncode == 2 and "overlap" in proc.stderr.splitlines()[-1]
    assert not (tree / "uploads" / "copy").exists()


# Without these capabilities even root obeys file modes, so the test means the same for every user.
NO_DAC_OVERRIDE = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")


def test_unreadable_source_file_fails_with_one_sentence(tree: Path, tmp_path: Path) -> None:
    os.chmod(tree / "uploads/empty.txt", 0)
    proc = run_cli(str(tree), str(tmp_path / "dst"), prefix=NO_DAC_OVERRIDE)
    assert proc.returncode == 1 and "Permission denied" in proc.stderr.splitlines()[-1]


def test_target_file_where_source_has_directory_fails(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "uploads").write_text("not a dir")
    proc = run_cli(str(tree), str(dst))
    assert proc.returncode == 1
    assert "exists in the target and is not a directory" in proc.stderr.splitlines()[-1]


def test_database_copy_mode_leaves_uploads_empty(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    proc = run_cli(str(tree), str(dst), "--copy-mode", "database")
    assert proc.returncode == 0, proc.stderr
    assert (dst / "uploads").is_dir() and not any((dst / "uploads").iterdir())

    def files(root: Path) -> set[Path]:
        return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and not p.is_symlink()}

    copied = files(dst)
    assert copied == {p for p in files(tree) if p.parts[0] != "uploads"} and copied


def test_unknown_copy_mode_is_refused_before_copying(tree: Path, tmp_path: Path) -> None:
    proc = run_cli(str(tree), str(tmp_path / "dst"), "--copy-mode", "some")
    assert proc.returncode == 2 and "--copy-mode must be one of" in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "dst").exists()
