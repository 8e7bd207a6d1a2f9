"""The restore's wp-content switch on a clone's content claim: the program the short content pod runs.

``python -m wpclone.k8s.content switch|switch-back|discard|inspect <claim root>`` in the toolbox image,
with the clone's claim mounted whole at ``<claim root>``. The site mounts only the claim's ``wp-content``
(``subPath``), so the restore step can stage ``wp-content.restore-new`` beside it on the same filesystem
and this program makes it live with directory renames, exactly what the local runtime does in its sites
directory (:meth:`wpclone.runtimes.local.LocalRuntime.switch_content`):

- ``switch``: ``wp-content`` -> ``wp-content.restore-old``, ``wp-content.restore-new`` -> ``wp-content``;
- ``switch-back``: the restored ``wp-content`` is removed and ``wp-content.restore-old`` put back;
- ``discard``: ``wp-content.restore-new``, ``wp-content.restore-old`` and ``.restore-work`` are removed.
  What cannot be removed (a mount point the kubelet created as root inside the old tree) is moved into
  ``.restore-trash/`` so the names are free for the next restore;
- ``inspect``: changes nothing; also answers ``"staged"``, the revision of ``wp-content.restore-new`` (""
  when the backup brought no wp-content, so the switch will keep the live tree): which tree the restore's
  preview serves, and the identity that rolls it when that tree is another (``deploy_preview``).

One more action runs on the backups claim instead, for a clone's delete: ``purge <backups mount>/<clone
id>`` removes that clone's backup directory and answers ``{"removed_files": n}``
(:func:`wpclone.steps.backup.purge_backups`, in the same image).

Each action is idempotent (a retry after a crash at any line converges) and answers one JSON line, on
stdout and in the container's termination message: ``{"moved": bool, "revision": "<inode of the live
wp-content>"}``. The runtime rolls the site's pod when the revision changes (a subPath mount keeps the
directory it was given, whatever its name is now). A failure exits 1 with ``error: <sentence>``.

Standard library only (but ``purge``): the toolbox image runs it next to the steps.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from wpclone.errors import ContentError

LIVE = "wp-content"  # the site Deployment's subPath (wpclone.k8s.manifests.CONTENT_SUBPATH)
STAGED = LIVE + ".restore-new"  # wpclone.steps.backup.STAGED_SUFFIX
ASIDE = LIVE + ".restore-old"  # wpclone.runtimes.local.ASIDE_SUFFIX
WORK = ".restore-work"  # wpclone.steps.backup.WORK_DIR_NAME
TRASH = ".restore-trash"
ACTIONS = ("switch", "switch-back", "discard", "inspect", "purge")
TERMINATION_LOG = "/dev/termination-log"


def revision(root: Path, name: str = LIVE) -> str:
    """Identity of the live (or ``name``) wp-content directory: its inode, or "" when there is none."""
    try:
        return str((root / name).stat().st_ino)
    except FileNotFoundError:
        return ""


def switch(root: Path, *, restored: bool) -> dict[str, Any]:
    """Make the staged tree live (``restored``) or put the set-aside one back; whether anything moved."""
    live, staged, aside = root / LIVE, root / STAGED, root / ASIDE
    moved = False
    try:
        if restored and staged.is_dir():
            if live.exists():
                if aside.exists():
                    _to_trash(root, aside)  # a previous restore's leftovers: never mixed with ours
                live.rename(aside)
            staged.rename(live)
            moved = True
        elif not restored and aside.is_dir():
            if live.exists():
                _remove(root, live)
            aside.rename(live)
            moved = True
    except OSError as exc:
        raise ContentError(
            f"cannot {'switch to' if restored else 'switch back from'} the restored wp-content in the "
            f"clone's claim ({exc.strerror or exc} on {exc.filename})."
        ) from exc
    return {"moved": moved, "revision": revision(root)}


def discard(root: Path) -> dict[str, Any]:
    """Remove what a restore staged or set aside; never the live tree."""
    for name in (STAGED, ASIDE, WORK):
        if (root / name).exists():
            _remove(root, root / name)
    return {"moved": False, "revision": revision(root)}


def inspect(root: Path) -> dict[str, Any]:
    """The live and the staged tree's revisions; changes nothing."""
    staged = revision(root, STAGED) if (root / STAGED).is_dir() else ""
    return {"moved": False, "revision": revision(root), "staged": staged}


def _remove(root: Path, path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():  # files we may not delete (root-owned mount points): out of the way instead
        _to_trash(root, path)


def _to_trash(root: Path, path: Path) -> None:
    trash = root / TRASH
    trash.mkdir(exist_ok=True)
    path.rename(trash / f"{path.name}-{path.stat().st_ino}")


def purge(directory: Path) -> dict[str, Any]:
    """Remove a clone's backup directory on the backups claim (mounted at its parent)."""
    from wpclone.steps.backup import purge_backups  # noqa: PLC0415 (purge only: the switch runs on the standard library)

    if not directory.parent.is_dir():
        raise ContentError(f"the backups claim is not mounted at {directory.parent}.")
    try:
        return {"moved": False, "removed_files": purge_backups(directory)}
    except OSError as exc:
        raise ContentError(f"cannot remove {directory} ({exc.strerror or exc} on {exc.filename}).") from exc


def run(action: str, root: Path) -> dict[str, Any]:
    if action not in ACTIONS:
        raise ContentError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}.")
    if action == "purge":
        return purge(root)
    if not root.is_dir():
        raise ContentError(f"the clone's claim is not mounted at {root}.")
    if action == "discard":
        return discard(root)
    if action == "inspect":
        return inspect(root)
    return switch(root, restored=action == "switch")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(f"usage: python -m wpclone.k8s.content {'|'.join(ACTIONS)} ROOT", file=sys.stderr)
        return 2
    try:
        line = json.dumps(run(args[0], Path(args[1])))
        code = 0
    except ContentError as exc:
        line, code = f"error: {exc}", 1
    print(line, file=sys.stdout if code == 0 else sys.stderr, flush=True)
    log = os.environ.get("WPCLONE_TERMINATION_LOG", TERMINATION_LOG)
    with contextlib.suppress(OSError):  # not in a pod: stdout/stderr said it
        Path(log).write_text(line + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
