"""Walking a wp-content tree under the link rule: what copy-content copies and a backup archives.

:class:`ContentWalk` yields every entry below a wp-content directory (not the directory itself), parents
before their contents, each directory's entries sorted by name, and applies one rule to every symlink it
meets. A link is judged by where the kernel resolves it (``realpath``: every link on the way followed),
never by its text alone, so a chain of links cannot hide where it ends.

- **A link into the tree stays a link.** Its new text is the relative path from its directory to where it
  ends, so an absolute link inside becomes relative and a chain becomes one link: a copy of the tree
  elsewhere points into the copy, and its path never passes through another link.
- **A link out of the tree is copied as what it points to** (a file, or a directory walked under this same
  rule) when its resolved target lies under one of the allowed roots (the source's ``content_link_roots``,
  passed to the step in ``SOURCE_CONTENT_LINK_ROOTS``). Otherwise the walk stops with :class:`LinkRefused`,
  one sentence naming the link (relative to wp-content), its target and how to allow it.
- **Inside a followed tree** the same rule holds with the followed directory as one more "tree": a link
  there that ends inside it, inside wp-content or inside a tree followed further up stays a link (to where
  that place is in the copy); one that ends elsewhere is followed under the roots, or refused.
- **Dangling links and loops of links**: one that ends (as far as it resolves) inside a tree is kept as the
  same kind of link and reported in ``dangling``: the copy is then exactly as broken as the source, and
  nothing is read through it. One that ends under an allowed root which exists here is broken on the source
  too (Debian's package links every default theme, installed or not): there is nothing to copy, so it is
  left out and reported in ``dangling``. Any other is refused: its target may exist only where this step
  cannot see it (a pod that does not mount it), and a copy without it would be a clone whose theme is
  missing (issue 11's blank pages).
- **Cycles**: following a directory that contains one where a followed link sits (or the directory being
  walked) would never end, so it is refused with a sentence; at most :data:`MAX_FOLLOW_DEPTH` follows nest.
- Sockets, FIFOs and devices are yielded as kind ``other`` for the caller to report.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wpclone.errors import ConfigError, LinkRefused
from wpclone.steps.common import sentence

LINK_ROOTS_ENV = "SOURCE_CONTENT_LINK_ROOTS"  # a JSON list of absolute directories
MAX_FOLLOW_DEPTH = 40  # the kernel's own limit on links in one path
MAX_LISTED = 20

Kind = Literal["dir", "file", "link", "other"]


def link_roots_from_env() -> list[str]:
    """The allowed roots from ``SOURCE_CONTENT_LINK_ROOTS`` (unset or empty: none)."""
    raw = os.environ.get(LINK_ROOTS_ENV, "").strip()
    if not raw:
        return []
    try:
        roots = json.loads(raw)
    except ValueError:
        roots = None
    if not isinstance(roots, list) or not all(isinstance(r, str) and r.startswith("/") for r in roots):
        raise ConfigError(f"{LINK_ROOTS_ENV} must be a JSON list of absolute directory paths.")
    return roots


@dataclass(frozen=True)
class Entry:
    rel: str  # the path below wp-content, '/'-separated
    kind: Kind
    path: str  # what to read: the entry itself, or for a followed link what it resolves to
    st: os.stat_result  # of what is read (of the link itself for kind "link")
    link: str = ""  # kind "link": the text to give the link


@dataclass
class LinkReport:
    kept: int = 0
    followed: int = 0
    followed_list: list[str] = field(default_factory=list)  # "rel -> target", at most MAX_LISTED
    dangling: list[str] = field(default_factory=list)  # "rel -> text[ (missing: not copied)]", at most 20


@dataclass(frozen=True)
class _Tree:
    real: str  # a directory's real path
    rel: str  # where it is in the copy


@dataclass(frozen=True)
class _Frame:
    real: str  # the real path of the directory being listed
    rel: str  # its path below wp-content ("" for wp-content)
    trees: tuple[_Tree, ...]  # wp-content and each followed tree above, innermost last
    trail: tuple[str, ...]  # real directories where the followed links on this path sit


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _dir_stat(path: str, fallback: str) -> os.stat_result:
    """The stat of the directory ``path`` resolves to, else of ``fallback``."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            return st
    return os.stat(fallback)


class ContentWalk:
    """The entries below ``root`` under the link rule (module docstring); ``report`` fills as it goes.

    ``empty`` names top-level directories (or links) yielded as a directory whose contents are not walked
    (nor judged);
    ``avoid`` is a directory (the copy's target) that a followed directory may neither hold nor lie in.
    """

    def __init__(
        self,
        root: Path,
        link_roots: Sequence[str],
        empty: frozenset[str] = frozenset(),
        avoid: str | None = None,
    ) -> None:
        self.root = os.path.realpath(root)
        self.link_roots = [os.path.realpath(r) for r in link_roots]
        self.empty = empty
        self.avoid = os.path.realpath(avoid) if avoid else None
        self.report = LinkReport()

    def __iter__(self) -> Iterator[Entry]:
        first = _Frame(self.root, "", (_Tree(self.root, ""),), ())
        stack = [(first, iter(self._listing(first.real)))]
        while stack:
            frame, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                continue
            entry, descend = self._entry(frame, name)
            if entry is not None:
                yield entry
            if descend is not None:
                stack.append((descend, iter(self._listing(descend.real))))

    @staticmethod
    def _listing(path: str) -> list[str]:
        with os.scandir(path) as it:
            return sorted(e.name for e in it)

    def _entry(self, frame: _Frame, name: str) -> tuple[Entry | None, _Frame | None]:
        path = os.path.join(frame.real, name)
        rel = _join(frame.rel, name)
        st = os.lstat(path)
        if not frame.rel and name in self.empty and (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            # Not read, so not judged: a link here becomes an empty directory with the look of its target.
            return Entry(rel, "dir", path, _dir_stat(path, self.root)), None
        if stat.S_ISDIR(st.st_mode):
            return Entry(rel, "dir", path, st), _Frame(path, rel, frame.trees, frame.trail)
        if stat.S_ISREG(st.st_mode):
            return Entry(rel, "file", path, st), None
        if stat.S_ISLNK(st.st_mode):
            return self._link(frame, rel, path, st)
        return Entry(rel, "other", path, st), None

    def _in_copy(self, frame: _Frame, target: str) -> str | None:
        """Where ``target`` (a real path) is in the copy, when it is inside one of the walked trees."""
        for tree in reversed(frame.trees):
            if _inside(target, tree.real):
                below = target[len(tree.real) :].strip("/")
                return _join(tree.rel, below) if below else tree.rel
        return None

    def _link(
        self, frame: _Frame, rel: str, path: str, st: os.stat_result
    ) -> tuple[Entry | None, _Frame | None]:
        text = os.readlink(path)
        target = os.path.realpath(path)  # as far as it resolves: a dangling tail is joined as written
        try:
            resolved = os.stat(path)
        except OSError:
            resolved = None  # dangling, or a loop of links
        where = self._in_copy(frame, target)
        if where is not None:
            if resolved is None:
                self._dangling(f"{rel} -> {text}")
            self.report.kept += 1
            link = os.path.relpath("/" + where, "/" + frame.rel)  # both below wp-content ("/" here)
            return Entry(rel, "link", path, st, link=link), None
        if resolved is None and any(_inside(target, r) and os.path.isdir(r) for r in self.link_roots):
            self._dangling(f"{rel} -> {text} (missing: not copied)")
            return None, None
        if resolved is None:
            raise LinkRefused(
                sentence(
                    f"The symlink wp-content/{rel} points to {text}, which does not exist here (or is a loop "
                    "of links); fix or remove it on the source, or make its target visible to this step"
                )
            )
        if not any(_inside(target, r) for r in self.link_roots):
            allowed = ", ".join(self.link_roots) or "none"
            raise LinkRefused(
                sentence(
                    f"The symlink wp-content/{rel} points outside wp-content to {target}, which is not under "
                    f"a directory the source allows links into ({allowed}); add that directory to the "
                    "source's content_link_roots to copy it as what it points to, or replace the link on the "
                    "source"
                )
            )
        return self._follow(frame, rel, target, resolved)

    def _dangling(self, shown: str) -> None:
        if len(self.report.dangling) < MAX_LISTED:
            self.report.dangling.append(shown)

    def _follow(
        self, frame: _Frame, rel: str, target: str, st: os.stat_result
    ) -> tuple[Entry, _Frame | None]:
        """The allowed link ``rel`` as what it points to: a file, or a directory to walk (cycles refused)."""
        if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):
            return Entry(rel, "other", target, st), None
        self.report.followed += 1
        if len(self.report.followed_list) < MAX_LISTED:
            self.report.followed_list.append(f"{rel} -> {target}")
        if stat.S_ISREG(st.st_mode):
            return Entry(rel, "file", target, st), None
        trail = (*frame.trail, frame.real)
        if any(_inside(d, target) for d in trail) or len(trail) > MAX_FOLLOW_DEPTH:
            raise LinkRefused(
                sentence(
                    f"The symlink wp-content/{rel} points to {target}, a directory that holds the link "
                    "itself or one followed on the way to it, so copying it would never end; replace the "
                    "link on the source"
                )
            )
        if self.avoid and (_inside(self.avoid, target) or _inside(target, self.avoid)):
            raise LinkRefused(
                sentence(
                    f"The symlink wp-content/{rel} points to {target}, which holds or lies in the "
                    "directory being copied into"
                )
            )
        descend = _Frame(target, rel, (*frame.trees, _Tree(target, rel)), trail)
        return Entry(rel, "dir", target, st), descend
