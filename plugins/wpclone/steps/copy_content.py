"""copy-content: copy a site's wp-content tree (uploads can be many GB), streamed and resumable.

Rules:

- Regular files are copied in the kernel (``copy_file_range``, falling back to ``sendfile`` and then to a
  1 MiB ``copyfileobj``) into ``.<name>.wpclone-part`` in the target directory, given the source's
  permission bits and mtime, then renamed into place. A killed copy therefore never leaves a truncated file
  under the real name; leftover ``.wpclone-part`` files are removed when the directory is visited again.
- Resume: a target file with the source's size and mtime (to the nanosecond) is already copied and skipped.
  This holds inside followed trees too: their files are compared with what the link points to.
- Directories get the source's permission bits and mtime once everything inside them is written.
- Symlinks follow the link rule of :mod:`wpclone.steps.content_tree`: a link into wp-content stays a link
  (made relative); a link out of it is copied as what it points to when its target lies under one of the
  allowed roots (``SOURCE_CONTENT_LINK_ROOTS``, set by the runtime from the source's
  ``content_link_roots``), and otherwise the step fails with a sentence naming it, leaving what it copied
  for the rollback. Dangling links are listed (kept when they point inside, left out when their target is
  missing under an allowed root, refused otherwise); sockets, FIFOs and devices are skipped with a warning
  and listed. Ownership is not copied (the step does not run as root).
- Nothing outside the target directory is written or deleted; inside it, only our own temp files are
  deleted (and a file or link the source now has as something else is replaced). Files that exist only in
  the target are left alone.

The result counts files and bytes (copied and already there), directories, links kept, links followed
(with up to 20 of them and their targets), dangling links and skipped entries.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wpclone.errors import ConfigError, StepError
from wpclone.steps.common import mb_per_s, sentence
from wpclone.steps.content_tree import MAX_LISTED, ContentWalk, Entry, link_roots_from_env

log = logging.getLogger(__name__)

STEP = "copy-content"
TEMP_SUFFIX = ".wpclone-part"
DEFAULT_WORKERS = 4
MAX_PENDING = 2000
COPY_CHUNK = 1 << 30
BUFFER = 1 << 20
PROGRESS_EVERY_S = 10.0


@dataclass
class ContentResult:
    source: str
    target: str
    files: int = 0
    files_copied: int = 0
    files_skipped: int = 0
    bytes_total: int = 0
    bytes_copied: int = 0
    dirs: int = 0
    links_kept: int = 0
    links_followed: int = 0
    followed: list[str] = field(default_factory=list)  # "link -> target", at most MAX_LISTED
    dangling: list[str] = field(default_factory=list)  # content_tree.LinkReport.dangling
    skipped: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    mb_per_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"step": STEP, "status": "ok", **asdict(self)}


def dirs_from_args(src: str | None, dst: str | None) -> tuple[Path, Path]:
    src = src or os.environ.get("SOURCE_CONTENT_DIR")
    dst = dst or os.environ.get("TARGET_CONTENT_DIR")
    if not src or not dst:
        raise ConfigError(
            "copy-content needs SRC_DIR and DST_DIR arguments or SOURCE_CONTENT_DIR and TARGET_CONTENT_DIR."
        )
    return Path(src), Path(dst)


def _temp_name(name: str) -> str:
    return f".{name}{TEMP_SUFFIX}"


def _copy_data(src_fd: int, dst_fd: int) -> int:
    """Copy all of src_fd to dst_fd in the kernel where possible; return the byte count."""
    copied = 0
    try:
        while n := os.copy_file_range(src_fd, dst_fd, COPY_CHUNK):
            copied += n
        return copied
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) or copied:
            raise
    try:
        while n := os.sendfile(dst_fd, src_fd, None, COPY_CHUNK):
            copied += n
        return copied
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS) or copied:
            raise
    with open(src_fd, "rb", closefd=False) as fsrc, open(dst_fd, "wb", closefd=False) as fdst:
        shutil.copyfileobj(fsrc, fdst, BUFFER)
        return fdst.tell()


def copy_file(src: str, dst: Path, st: os.stat_result) -> int | None:
    """Copy one regular file; return the bytes copied, or None when the target already had it."""
    try:
        have = os.lstat(dst)
    except FileNotFoundError:
        have = None
    if have is not None:
        if stat.S_ISDIR(have.st_mode):
            raise StepError(f"{dst} is a directory in the target but a file in the source.")
        if stat.S_ISREG(have.st_mode) and have.st_size == st.st_size and have.st_mtime_ns == st.st_mtime_ns:
            if stat.S_IMODE(have.st_mode) != stat.S_IMODE(st.st_mode):
                os.chmod(dst, stat.S_IMODE(st.st_mode))
            return None
    tmp = dst.parent / _temp_name(dst.name)
    with open(src, "rb") as fsrc:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            copied = _copy_data(fsrc.fileno(), fd)
            after = os.fstat(fsrc.fileno())
            if copied != after.st_size or after.st_mtime_ns != st.st_mtime_ns:
                raise StepError(f"{src} changed while it was being copied; run the step again.")
            os.fchmod(fd, stat.S_IMODE(after.st_mode))
            os.utime(fd, ns=(after.st_atime_ns, after.st_mtime_ns))
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
    os.replace(tmp, dst)
    return copied


class _Copier:
    def __init__(
        self,
        src: Path,
        dst: Path,
        workers: int,
        link_roots: Sequence[str],
        empty_top: frozenset[str] = frozenset(),  # top-level directories created empty instead of copied
    ) -> None:
        self.src = src
        self.dst = dst
        self.walk_content = ContentWalk(src, link_roots, empty_top, avoid=str(dst))
        self.result = ContentResult(str(src), str(dst))
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copy")
        self.pending: deque[tuple[str, int, Future[int | None]]] = deque()
        self.dir_meta: list[tuple[Path, os.stat_result]] = []

    def skip(self, rel: str, why: str) -> None:
        log.warning("step=%s event=skip path=%s reason=%s", STEP, rel, why)
        if len(self.result.skipped) < MAX_LISTED:
            self.result.skipped.append(f"{rel}: {why}")

    def ensure_dir(self, path: Path) -> None:
        try:
            have = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o700)
            return
        if not stat.S_ISDIR(have.st_mode):
            raise StepError(f"{path} exists in the target and is not a directory.")
        if not os.access(path, os.W_OK | os.X_OK):  # left read-only by an earlier run; fixed at the end
            os.chmod(path, stat.S_IMODE(have.st_mode) | stat.S_IRWXU)
        with os.scandir(path) as it:
            for entry in it:
                if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX):
                    os.unlink(entry.path)

    def symlink(self, entry: Entry, dst: Path) -> None:
        with contextlib.suppress(OSError):
            if os.readlink(dst) == entry.link:
                return
        if dst.is_dir() and not dst.is_symlink():
            raise StepError(f"{dst} is a directory in the target but a symlink in the source.")
        tmp = dst.parent / _temp_name(dst.name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(entry.link, tmp)
        os.utime(tmp, ns=(entry.st.st_atime_ns, entry.st.st_mtime_ns), follow_symlinks=False)
        os.replace(tmp, dst)

    def submit(self, entry: Entry, dst: Path) -> None:
        self.result.files += 1
        self.result.bytes_total += entry.st.st_size
        future = self.pool.submit(copy_file, entry.path, dst, entry.st)
        self.pending.append((entry.rel, entry.st.st_size, future))
        while len(self.pending) > MAX_PENDING:
            self.collect_one()

    def collect_one(self) -> None:
        rel, _size, future = self.pending.popleft()
        try:
            copied = future.result()
        except StepError:
            raise
        except OSError as exc:
            raise StepError(sentence(f"cannot copy {rel}: {exc.strerror or exc}")) from exc
        if copied is None:
            self.result.files_skipped += 1
        else:
            self.result.files_copied += 1
            self.result.bytes_copied += copied

    def walk(self) -> None:
        self.ensure_dir(self.dst)
        self.dir_meta.append((self.dst, os.stat(self.src)))
        self.result.dirs += 1
        for entry in self.walk_content:
            dst = self.dst / entry.rel
            if entry.kind == "dir":
                self.ensure_dir(dst)
                self.result.dirs += 1
                self.dir_meta.append((dst, entry.st))
            elif entry.kind == "file":
                self.submit(entry, dst)
            elif entry.kind == "link":
                self.symlink(entry, dst)
            else:
                self.skip(entry.rel, "not a regular file, directory or symlink")
        while self.pending:
            self.collect_one()
        report = self.walk_content.report
        self.result.links_kept, self.result.links_followed = report.kept, report.followed
        self.result.followed, self.result.dangling = report.followed_list, report.dangling
        for link in report.dangling:
            log.warning("step=%s event=dangling link=%s", STEP, link)
        # Deepest first, so setting a parent's mtime is the last write into it.
        for path, st in sorted(self.dir_meta, key=lambda item: len(item[0].parts), reverse=True):
            os.chmod(path, stat.S_IMODE(st.st_mode))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def check_dirs(src: Path, dst: Path) -> tuple[Path, Path]:
    if not src.is_dir():
        raise ConfigError(f"source content directory {src} does not exist or is not a directory.")
    src = src.resolve()
    dst = Path(os.path.realpath(dst))
    if dst == src or src in dst.parents or dst in src.parents:
        raise ConfigError(f"source {src} and target {dst} overlap; they must be separate directories.")
    if dst.exists() and not dst.is_dir():
        raise ConfigError(f"target content directory {dst} exists and is not a directory.")
    return src, dst


# What each copy mode leaves out of wp-content: ``database`` copies code and settings, not the media library.
EMPTY_TOP_BY_MODE = {"everything": frozenset(), "database": frozenset({"uploads"}), "files": frozenset()}


def copy_content(
    src: Path,
    dst: Path,
    workers: int | None = None,
    copy_mode: str = "everything",
    link_roots: Sequence[str] | None = None,
) -> ContentResult:
    """Copy ``src`` to ``dst`` (module docstring). ``link_roots``: where links out of ``src`` may point
    (default: ``SOURCE_CONTENT_LINK_ROOTS`` from the environment, else nowhere)."""
    if copy_mode not in EMPTY_TOP_BY_MODE:
        raise ConfigError(f"--copy-mode must be one of {', '.join(EMPTY_TOP_BY_MODE)}, not {copy_mode!r}.")
    src, dst = check_dirs(src, dst)
    workers = workers or DEFAULT_WORKERS
    if not 1 <= workers <= 64:
        raise ConfigError(f"--workers must be between 1 and 64, not {workers}.")
    started = time.monotonic()
    log.info("step=%s event=start source=%s target=%s workers=%d", STEP, src, dst, workers)
    dst.mkdir(parents=True, exist_ok=True)
    roots = link_roots_from_env() if link_roots is None else link_roots
    copier = _Copier(src, dst, workers, roots, EMPTY_TOP_BY_MODE[copy_mode])
    done = threading.Event()

    def progress() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            r = copier.result
            log.info(
                "step=%s event=progress files=%d copied=%d skipped=%d copied_mb=%.1f",
                STEP,
                r.files,
                r.files_copied,
                r.files_skipped,
                r.bytes_copied / 1e6,
            )

    threading.Thread(target=progress, daemon=True).start()
    try:
        copier.walk()
    except OSError as exc:
        raise StepError(
            sentence(f"copy-content failed at {exc.filename or dst}: {exc.strerror or exc}")
        ) from exc
    finally:
        done.set()
        copier.pool.shutdown(wait=True, cancel_futures=True)
    result = copier.result
    result.duration_s = round(time.monotonic() - started, 3)
    result.mb_per_s = mb_per_s(result.bytes_copied, result.duration_s)
    log.info(
        "step=%s event=summary files=%d copied=%d skipped_existing=%d bytes_total=%d bytes_copied=%d "
        "dirs=%d links_kept=%d links_followed=%d dangling=%d skipped_entries=%d duration_s=%.2f "
        "mb_per_s=%.1f",
        STEP,
        result.files,
        result.files_copied,
        result.files_skipped,
        result.bytes_total,
        result.bytes_copied,
        result.dirs,
        result.links_kept,
        result.links_followed,
        len(result.dangling),
        len(result.skipped),
        result.duration_s,
        result.mb_per_s,
    )
    return result
