"""copy-content on real directories: metadata kept, resume converges, the link rule, errors."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.stack import remove_site_like, run_step, site_like
from tests.k8s.test_manifests import make_plan, make_source
from wpclone.airflow.builders import COPY_CONTENT, COPY_DATABASE
from wpclone.db import DbEndpoint, quote_identifier
from wpclone.errors import StepError
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import (
    WORDPRESS_CORE,
    SiteConfig,
    content_dir,
    http_opener,
    register_site,
)
from wpclone.models import RuntimeKind, WpcloneConfig
from wpclone.runtimes.local import LocalRuntime
from wpclone.steps import copy_content as module
from wpclone.steps.content_tree import LINK_ROOTS_ENV
from wpclone.steps.copy_content import TEMP_SUFFIX, copy_content

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
    os.symlink(str(root / "uploads/2024/01"), root / "uploads/latest")  # absolute, to a directory inside
    os.mkfifo(root / "uploads/a-fifo")
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
        elif stat.S_ISREG(st.st_mode):
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, path.read_bytes())
        else:
            out[rel] = ("special",)
    return out


def expected(src: Path) -> dict[str, tuple[object, ...]]:
    want = snapshot(src)
    del want["uploads/a-fifo"]
    want["abs-inside.css"] = ("link", "themes/t/style.css", want["abs-inside.css"][2])
    want["uploads/latest"] = ("link", "2024/01", want["uploads/latest"][2])
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
    assert result["links_kept"] == 3 and result["links_followed"] == 0 and result["dangling"] == []
    assert result["skipped"] == ["uploads/a-fifo: not a regular file, directory or symlink"]
    assert "step=copy-content event=summary" in proc.stderr
    assert "event=skip path=uploads/a-fifo" in proc.stderr
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


# -- links out of wp-content: Debian's and Capistrano's layouts --------------------------------------------


@dataclass(frozen=True)
class Deployed:
    src: Path  # <site>/current/wp-content
    parent: Path  # <core>/wp-content/themes/parent, linked from src/themes/parent (absolute)
    shared: Path  # <site>/shared/uploads, linked from src/uploads as ../../shared/uploads
    core: Path

    def roots(self, *which: Path) -> dict[str, str]:
        return {LINK_ROOTS_ENV: json.dumps([str(p) for p in which])}


@pytest.fixture
def deployed(tmp_path: Path) -> Deployed:
    """A child theme whose parent is a symlink into WordPress's core (Debian's /usr/share/wordpress layout)
    and ``uploads -> ../../shared/uploads`` (a Capistrano/Deployer release)."""
    core = tmp_path / "usr-share-wordpress"
    parent = core / "wp-content/themes/parent"
    (parent / "assets/js").mkdir(parents=True)
    (parent / "style.css").write_text("/*\nTheme Name: Parent\n*/\n")
    (parent / "functions.php").write_text("<?php // parent\n")
    (parent / "assets/js/app.js").write_bytes(os.urandom(5000))
    os.chmod(parent / "assets/js/app.js", 0o640)
    os.symlink("assets/js/app.js", parent / "app.js")  # a link inside the followed tree
    site = tmp_path / "srv/site"
    shared = site / "shared/uploads"
    (shared / "2024/05").mkdir(parents=True)
    (shared / "2024/05/photo.jpg").write_bytes(os.urandom(20_000))
    src = site / "current/wp-content"
    (src / "themes/child").mkdir(parents=True)
    (src / "themes/child/style.css").write_text("/*\nTheme Name: Child\nTemplate: parent\n*/\n")
    os.symlink(src / "themes/child/style.css", parent / "child-style.css")  # back into wp-content
    os.symlink(parent, src / "themes/parent")
    os.symlink("../../shared/uploads", src / "uploads")
    (src / "index.php").write_text("<?php\n")
    for path in [*sorted(core.rglob("*")), *sorted(site.rglob("*"))]:
        os.utime(path, ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    return Deployed(src, parent, shared, core)


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    parsed: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return parsed


def links_leaving(root: Path) -> list[str]:
    """Symlinks under ``root`` that resolve (or would) outside it."""
    real = os.path.realpath(root)
    return [
        str(p)
        for p in root.rglob("*")
        if p.is_symlink() and not (os.path.realpath(p) + "/").startswith(real + "/")
    ]


def test_links_out_of_wp_content_are_copied_as_their_targets_under_allowed_roots(
    deployed: Deployed, tmp_path: Path
) -> None:
    before = snapshot(tmp_path / "usr-share-wordpress"), snapshot(tmp_path / "srv/site/shared")
    dst = tmp_path / "clone/wp-content"
    roots = deployed.roots(deployed.core, deployed.shared)
    result = result_of(run_cli(str(deployed.src), str(dst), env=roots))
    assert result["links_followed"] == 2
    assert result["followed"] == [
        f"themes/parent -> {deployed.parent}",
        f"uploads -> {deployed.shared}",
    ]
    # The followed trees are real directories with their targets' files, modes and mtimes; the link inside
    # the parent theme stays a link, and the one back into wp-content points into the clone's copy.
    assert not (dst / "themes/parent").is_symlink() and not (dst / "uploads").is_symlink()
    parent = snapshot(dst / "themes/parent")
    assert parent.pop("child-style.css")[:2] == ("link", "../child/style.css")
    want = snapshot(deployed.parent)
    del want["child-style.css"]
    assert parent == want
    assert snapshot(dst / "uploads") == snapshot(deployed.shared)
    assert os.stat(dst / "themes/parent").st_mtime_ns == os.stat(deployed.parent).st_mtime_ns
    assert result["links_kept"] == 2 and result["files"] == 6 and result["bytes_total"] > 25_000
    assert links_leaving(dst) == []
    # Nothing outside the target changed.
    assert (snapshot(tmp_path / "usr-share-wordpress"), snapshot(tmp_path / "srv/site/shared")) == before


def test_a_link_out_of_wp_content_no_root_allows_fails_naming_it(deployed: Deployed, tmp_path: Path) -> None:
    dst = tmp_path / "clone/wp-content"
    proc = run_cli(str(deployed.src), str(dst), env=deployed.roots(deployed.core))
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: The symlink wp-content/uploads points outside wp-content to {deployed.shared}, which is not "
        f"under a directory the source allows links into ({deployed.core}); add that directory to the "
        "source's content_link_roots to copy it as what it points to, or replace the link on the source."
    )
    # What was copied is left for the rollback; nothing in it points out of it, nothing outside was written.
    assert (dst / "themes/parent").is_dir() and not (dst / "uploads").exists()
    assert links_leaving(dst) == []
    # With no roots at all (the Kubernetes default), the first link out is named.
    none = run_cli(str(deployed.src), str(tmp_path / "other"), env={LINK_ROOTS_ENV: ""})
    assert none.returncode == 1 and "wp-content/themes/parent points outside" in none.stderr.splitlines()[-1]
    assert "(none)" in none.stderr.splitlines()[-1]


def test_a_link_whose_target_goes_on_through_another_link_is_judged_where_it_ends(
    deployed: Deployed, tmp_path: Path
) -> None:
    """An allowed directory holding a link out of it: the chain is resolved, not its first step."""
    os.symlink("/etc", deployed.core / "etc-link")
    os.symlink(str(deployed.core / "etc-link/hostname"), deployed.src / "hostname")
    roots = deployed.roots(deployed.core, deployed.shared)
    proc = run_cli(str(deployed.src), str(tmp_path / "dst"), env=roots)
    assert proc.returncode == 1
    assert "wp-content/hostname points outside wp-content to /etc/hostname" in proc.stderr.splitlines()[-1]


def test_dangling_links_inside_are_kept_and_reported_outside_refused(
    deployed: Deployed, tmp_path: Path
) -> None:
    os.symlink("missing.jpg", deployed.shared / "gone.jpg")  # inside the followed uploads tree
    os.symlink("nowhere.php", deployed.src / "index-old.php")
    dst = tmp_path / "dst"
    roots = deployed.roots(deployed.core, deployed.shared)
    result = result_of(run_cli(str(deployed.src), str(dst), env=roots))
    assert result["dangling"] == ["index-old.php -> nowhere.php", "uploads/gone.jpg -> missing.jpg"]
    assert os.readlink(dst / "index-old.php") == "nowhere.php"
    assert os.readlink(dst / "uploads/gone.jpg") == "missing.jpg"

    # Out of wp-content under an allowed root that exists here, a missing target is missing on the source
    # too (Debian links every default theme, installed or not): nothing to copy, listed.
    os.symlink(str(deployed.core / "wp-content/themes/removed"), deployed.src / "themes/removed")
    result = result_of(run_cli(str(deployed.src), str(tmp_path / "dst2"), env=roots))
    assert (
        f"themes/removed -> {deployed.core}/wp-content/themes/removed (missing: not copied)"
        in result["dangling"]
    )
    assert not os.path.lexists(tmp_path / "dst2/themes/removed")
    # Anywhere else it may exist only where this step cannot see it (a root the pod does not mount): refused.
    unseen = tmp_path / "not-mounted"
    os.symlink(str(unseen / "themes/x"), deployed.src / "themes/x")
    for env in (roots, deployed.roots(deployed.core, deployed.shared, unseen)):
        proc = run_cli(str(deployed.src), str(tmp_path / "dst3"), env=env)
        assert proc.returncode == 1
        last = proc.stderr.splitlines()[-1]
        assert f"wp-content/themes/x points to {unseen}/themes/x, which does not exist here" in last


def test_link_loops(deployed: Deployed, tmp_path: Path) -> None:
    roots = deployed.roots(deployed.core, deployed.shared)
    # A loop inside wp-content resolves nowhere: kept, reported, never followed.
    os.symlink("loop-b", deployed.src / "loop-a")
    os.symlink("loop-a", deployed.src / "loop-b")
    os.symlink(".", deployed.src / "self")
    result = result_of(run_cli(str(deployed.src), str(tmp_path / "ok"), env=roots))
    assert os.readlink(tmp_path / "ok/self") == "." and (tmp_path / "ok/loop-a").is_symlink()
    assert {"loop-a -> loop-b", "loop-b -> loop-a"} <= set(result["dangling"])

    # A followed directory holding a link to a directory above it would be copied forever: refused.
    os.symlink("..", deployed.parent / "themes-dir")
    proc = run_cli(str(deployed.src), str(tmp_path / "loop"), env=roots)
    assert proc.returncode == 1
    last = proc.stderr.splitlines()[-1]
    assert "wp-content/themes/parent/themes-dir points to" in last and "would never end" in last
    os.unlink(deployed.parent / "themes-dir")

    # A loop of links outside wp-content.
    os.symlink(str(tmp_path / "l2"), tmp_path / "l1")
    os.symlink(str(tmp_path / "l1"), tmp_path / "l2")
    os.symlink(str(tmp_path / "l1"), deployed.src / "outside-loop")
    proc = run_cli(str(deployed.src), str(tmp_path / "loop2"), env=roots)
    assert proc.returncode == 1 and "(or is a loop of links)" in proc.stderr.splitlines()[-1]
    # Under an allowed root that is there, such a loop is broken on the source too: listed, not copied.
    result = result_of(run_cli(str(deployed.src), str(tmp_path / "loop3"), env=deployed.roots(tmp_path)))
    assert any(d.startswith("outside-loop -> ") for d in result["dangling"])
    assert not os.path.lexists(tmp_path / "loop3/outside-loop")


def test_database_mode_leaves_a_linked_uploads_empty_without_reading_it(
    deployed: Deployed, tmp_path: Path
) -> None:
    dst = tmp_path / "dst"
    result = result_of(
        run_cli(str(deployed.src), str(dst), "--copy-mode", "database", env=deployed.roots(deployed.core))
    )
    uploads = dst / "uploads"
    assert uploads.is_dir() and not uploads.is_symlink() and not any(uploads.iterdir())
    assert result["followed"] == [f"themes/parent -> {deployed.parent}"]


# Runs the steps CLI with SIGXFSZ at its default action (Python ignores it): a write past the file size limit
# kills the process there and then, as a SIGKILL would, leaving its temp file behind.
KILLED_AT_FILE_SIZE = (
    "import runpy, signal; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
    "runpy.run_module('wpclone.steps', run_name='__main__', alter_sys=True)"
)


def test_resume_after_a_kill_halfway_through_a_followed_tree(deployed: Deployed, tmp_path: Path) -> None:
    for i in range(30):
        (deployed.parent / f"assets/part-{i:02}.css").write_bytes(os.urandom(3000 + i))
    (deployed.parent / "assets/part-15b.woff").write_bytes(os.urandom(3 << 20))  # after part-15.css
    roots = deployed.roots(deployed.core, deployed.shared)
    dst = tmp_path / "dst"
    killed = subprocess.run(
        [
            *("prlimit", f"--fsize={1 << 20}", "--", sys.executable, "-c", KILLED_AT_FILE_SIZE),
            *("copy-content", str(deployed.src), str(dst), "--workers", "1"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **roots},
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr
    assets = dst / "themes/parent/assets"
    partial = assets / f".part-15b.woff{TEMP_SUFFIX}"
    assert partial.stat().st_size == 1 << 20 and not (assets / "part-15b.woff").exists()
    done_before = sorted(p.name for p in assets.iterdir() if p.name.startswith("part-"))
    assert done_before == [f"part-{i:02}.css" for i in range(16)]  # killed halfway through the followed tree

    result = result_of(run_cli(str(deployed.src), str(dst), env=roots))
    # Copied now: part-15b, part-16..29, and what the walk reaches after assets/ (the parent's
    # functions.php and style.css, the shared photo); already there: the rest (part-00..15 among them).
    assert (result["files_copied"], result["files_skipped"]) == (15 + 3, result["files"] - 18)
    assert snapshot(assets) == snapshot(deployed.parent / "assets")
    assert not list(dst.rglob(f"*{TEMP_SUFFIX}"))
    again = result_of(run_cli(str(deployed.src), str(dst), env=roots))
    assert again["files_copied"] == 0 and again["files_skipped"] == again["files"]


DEBIAN_CONTENT = Path("/var/lib/wordpress/wp-content")  # Debian's package: themes/* link into WORDPRESS_CORE


def test_the_local_runtime_copies_debians_own_wp_content(tmp_path: Path) -> None:
    """Debian's WordPress layout, as installed on this machine: the local runtime's default roots (WordPress's
    core directory) copy its linked themes as directories; a source allowing no roots fails naming one."""
    runtime = LocalRuntime(WpcloneConfig(runtime=RuntimeKind.LOCAL), StackSettings(tmp_path / "state", 1, 2))
    plan = make_plan("debian", source=make_source(content_dir=str(DEBIAN_CONTENT)))
    env = runtime.step_env(plan, COPY_CONTENT)
    assert json.loads(env[LINK_ROOTS_ENV]) == [str(WORDPRESS_CORE)]
    assert LINK_ROOTS_ENV not in runtime.step_env(plan, COPY_DATABASE)

    result = result_of(run_cli(env=env))
    dst = Path(env["TARGET_CONTENT_DIR"])
    themes = sorted((DEBIAN_CONTENT / "themes").iterdir())
    assert themes and all(t.is_symlink() for t in themes)
    for theme in themes:
        target = os.path.realpath(theme)
        if os.path.isdir(target):  # copied as the directory it points to, every file in it
            assert f"themes/{theme.name} -> {target}" in result["followed"]
            copy = dst / "themes" / theme.name
            assert copy.is_dir() and not copy.is_symlink()
            assert snapshot(copy) == snapshot(Path(target))
        else:  # the package links default themes whether or not they are installed
            assert f"themes/{theme.name} -> {os.readlink(theme)} (missing: not copied)" in result["dangling"]
            assert not os.path.lexists(dst / "themes" / theme.name)
    assert result["links_followed"] >= 1 and links_leaving(dst) == []

    strict = make_plan("debian", source=make_source(content_dir=str(DEBIAN_CONTENT), content_link_roots=[]))
    proc = run_cli(env=runtime.step_env(strict, COPY_CONTENT))
    assert proc.returncode == 1
    last = proc.stderr.splitlines()[-1]
    assert (
        last.startswith("error: The symlink wp-content/")
        and f"outside wp-content to {WORDPRESS_CORE}/" in last
    )


# -- a real WordPress site whose parent theme is a link out of wp-content -----------------------------------

LINKED_SITE = "links-parent"
CHILD_MARK = '<meta name="wpclone-child-theme" content="active">'


def test_a_copied_site_whose_parent_theme_is_a_link_renders_with_it(
    stack: StackSettings, source_site: SiteConfig, admin_db: DbEndpoint, tmp_path: Path
) -> None:
    """The source's database with a child theme active whose parent (Twenty Twenty-One) is a symlink into
    Debian's WordPress; after copy-content the copy serves the theme's pages from its own files."""
    src = tmp_path / "wp-content"
    child = src / "themes/wpclone-child"
    child.mkdir(parents=True)
    (child / "style.css").write_text("/*\nTheme Name: wpclone child\nTemplate: twentytwentyone\n*/\n")
    (child / "functions.php").write_text(
        f"<?php\nadd_action('wp_head', function () {{ echo '{CHILD_MARK}'; }});\n"
    )
    parent = WORDPRESS_CORE / "wp-content/themes/twentytwentyone"
    os.symlink(parent, src / "themes/twentytwentyone")
    site = site_like(stack, source_site, admin_db, LINKED_SITE, "wp_links_parent")
    url, database, user = site.url, site.db_name, site.db_user
    try:
        target = DbEndpoint(site.db_host, site.db_port, user, site.db_password(), database)
        source = admin_db.with_database(source_site.db_name)
        run_step(
            "copy-database",
            source_site.url,
            url,
            env={**source.to_env("SOURCE_DB"), **target.to_env("TARGET_DB")},
        )
        with target.connect() as conn, conn.cursor() as cur:
            options = quote_identifier(f"{site.table_prefix}options")
            cur.execute(
                f"UPDATE {options} SET option_value = 'twentytwentyone' WHERE option_name = 'template'"
            )
            cur.execute(
                f"UPDATE {options} SET option_value = 'wpclone-child' WHERE option_name = 'stylesheet'"
            )
            conn.commit()
        dst = content_dir(stack, LINKED_SITE)
        copied = run_step(
            "copy-content", str(src), str(dst), env={LINK_ROOTS_ENV: json.dumps([str(WORDPRESS_CORE)])}
        )
        assert copied["followed"] == [f"themes/twentytwentyone -> {parent}"]
        theme = dst / "themes/twentytwentyone"
        assert theme.is_dir() and not theme.is_symlink() and (theme / "functions.php").is_file()
        register_site(stack, site, default_content=False)

        opener = http_opener(follow_redirects=False)
        with opener.open(url + "/", timeout=30) as response:
            status, page = response.status, response.read().decode()
        assert status == 200 and CHILD_MARK in page
        assert f"{url}/wp-content/themes/twentytwentyone/style.css" in page  # the parent's stylesheet
        with opener.open(url + "/wp-content/themes/twentytwentyone/style.css", timeout=30) as response:
            assert response.status == 200 and b"Theme Name: Twenty Twenty-One" in response.read()
    finally:
        remove_site_like(stack, admin_db, site)
