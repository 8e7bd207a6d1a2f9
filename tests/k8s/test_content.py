"""The restore's wp-content switch on a clone's claim (wpclone.k8s.content), on real directories.

The same renames as the local runtime's switch: staged -> live with the live one set aside, back again,
discard; each idempotent, so a retry after a crash at any point converges; the answer is one JSON line
(stdout and the termination message) whose revision changes exactly when the live tree does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wpclone.errors import ContentError
from wpclone.k8s import content, manifests
from wpclone.runtimes.local import ASIDE_SUFFIX
from wpclone.steps.backup import STAGED_SUFFIX, WORK_DIR_NAME

REPO = Path(__file__).resolve().parents[2]


def claim(root: Path, *, staged: bool = True) -> Path:
    (root / "wp-content" / "uploads").mkdir(parents=True)
    (root / "wp-content" / "uploads" / "a.txt").write_text("before")
    if staged:
        (root / "wp-content.restore-new" / "uploads").mkdir(parents=True)
        (root / "wp-content.restore-new" / "uploads" / "a.txt").write_text("restored")
    return root


def live_text(root: Path) -> str:
    return (root / "wp-content" / "uploads" / "a.txt").read_text()


def test_the_names_are_the_steps_and_the_sites() -> None:
    assert content.STAGED == content.LIVE + STAGED_SUFFIX
    assert content.ASIDE == content.LIVE + ASIDE_SUFFIX
    assert content.WORK == WORK_DIR_NAME
    assert content.LIVE == manifests.CONTENT_SUBPATH
    assert content.STAGED == manifests.RESTORE_SUBPATH  # what a restore's preview serves
    assert content.ACTIONS[-1] == manifests.PURGE_ACTION
    assert content.ACTIONS[:-1] == manifests.CONTENT_ACTIONS


def test_switch_back_and_discard(tmp_path: Path) -> None:
    root = claim(tmp_path)
    before = content.revision(root)
    result = content.run("switch", root)
    assert result["moved"] is True and live_text(root) == "restored"
    assert result["revision"] == content.revision(root) != before
    assert (root / "wp-content.restore-old" / "uploads" / "a.txt").read_text() == "before"
    # A retry moves nothing and keeps the revision.
    assert content.run("switch", root) == {"moved": False, "revision": result["revision"]}
    back = content.run("switch-back", root)
    assert back["moved"] is True and live_text(root) == "before"
    assert back["revision"] == str((root / "wp-content").stat().st_ino)
    assert content.run("switch-back", root)["moved"] is False
    (root / ".restore-work").mkdir()
    assert content.run("discard", root)["moved"] is False
    assert sorted(p.name for p in root.iterdir()) == ["wp-content"]
    assert live_text(root) == "before"


def test_a_switch_interrupted_between_its_renames_converges(tmp_path: Path) -> None:
    root = claim(tmp_path)
    (root / "wp-content").rename(root / "wp-content.restore-old")  # crashed right after the first rename
    assert content.run("switch", root)["moved"] is True
    assert live_text(root) == "restored"
    assert (root / "wp-content.restore-old" / "uploads" / "a.txt").read_text() == "before"


def test_nothing_staged_moves_nothing(tmp_path: Path) -> None:
    root = claim(tmp_path, staged=False)
    revision = content.revision(root)
    assert content.run("switch", root) == {"moved": False, "revision": revision}
    assert content.run("switch-back", root) == {"moved": False, "revision": revision}
    assert live_text(root) == "before"


def test_inspect_names_the_staged_tree_and_changes_nothing(tmp_path: Path) -> None:
    """What the restore's preview serves: the staged tree (its identity rolls a stale preview), or none."""
    root = claim(tmp_path / "staged")
    listing = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    answer = content.run("inspect", root)
    assert answer == {
        "moved": False,
        "revision": content.revision(root),
        "staged": str((root / "wp-content.restore-new").stat().st_ino),
    }
    assert answer["staged"] != answer["revision"] != ""
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == listing
    # Another staged tree (the next restore's, made before the old one is removed) is another revision.
    (root / "next").mkdir()
    shutil.rmtree(root / "wp-content.restore-new")
    (root / "next").rename(root / "wp-content.restore-new")
    assert content.run("inspect", root)["staged"] not in ("", answer["staged"])
    # A database-only backup staged nothing: the switch keeps the live tree.
    bare = claim(tmp_path / "bare", staged=False)
    assert content.run("inspect", bare) == {"moved": False, "revision": content.revision(bare), "staged": ""}
    with pytest.raises(ContentError, match="not mounted"):
        content.run("inspect", tmp_path / "nope")


def test_a_previous_restores_leftovers_never_mix_with_this_one(tmp_path: Path) -> None:
    root = claim(tmp_path)
    (root / "wp-content.restore-old").mkdir()
    (root / "wp-content.restore-old" / "stale.txt").write_text("stale")
    assert content.run("switch", root)["moved"] is True
    assert sorted(p.name for p in (root / "wp-content.restore-old").iterdir()) == ["uploads"]
    [trashed] = (root / ".restore-trash").iterdir()
    assert (trashed / "stale.txt").read_text() == "stale"


def test_what_discard_cannot_delete_is_moved_out_of_the_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = claim(tmp_path)
    content.run("switch", root)
    locked = root / "wp-content.restore-old" / "mu-plugins"  # like a mount point the kubelet made as root
    locked.mkdir()
    (locked / "wpclone-staging.php").write_text("")
    real_rmtree = shutil.rmtree

    def rmtree_but_not_locked(path: Path, ignore_errors: bool = False) -> None:
        # What rmtree does to a tree holding a directory we may not delete (as any user, root included).
        for child in sorted(Path(path).rglob("*"), reverse=True):
            if locked not in (child, *child.parents):
                real_rmtree(child) if child.is_dir() else child.unlink()

    monkeypatch.setattr(shutil, "rmtree", rmtree_but_not_locked)
    content.run("discard", root)
    assert sorted(p.name for p in root.iterdir()) == [".restore-trash", "wp-content"]
    assert live_text(root) == "restored"
    [trashed] = (root / ".restore-trash").iterdir()
    assert (trashed / "mu-plugins" / "wpclone-staging.php").exists()


def test_bad_input_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ContentError, match="unknown action"):
        content.run("rm-rf", tmp_path)
    with pytest.raises(ContentError, match="not mounted"):
        content.run("switch", tmp_path / "nope")


def test_the_program_answers_one_json_line_and_in_the_termination_message(tmp_path: Path) -> None:
    root = claim(tmp_path / "claim")
    log = tmp_path / "termination-log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), "WPCLONE_TERMINATION_LOG": str(log)}
    command = [sys.executable, "-m", "wpclone.k8s.content", "switch", str(root)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["moved"] is True and json.loads(log.read_text()) == answer
    done = subprocess.run(
        [*command[:-2], "nope", str(root)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 1 and done.stderr.startswith("error: unknown action")
    assert log.read_text().startswith("error: ")
    assert content.main(["only-one"]) == 2
