"""The backup archive format: write a clone's backup, and open one safely (issue 5).

An archive is a tar (plain, gzip or zstd) or a zip holding::

    database.sql.gz        the dump (``database.sql`` also accepted when opening)
    wp-content/...         optional: the site's content, file modes kept (owners are not), and symlinks
                           whose target is relative and stays inside wp-content
    manifest.json          what the archive holds, with sizes and checksums (see :class:`Manifest`)

:func:`write_backup` writes the manifest last, so the archive is made in one streaming pass over the dump
and the content. A bare ``.sql`` or ``.sql.gz`` file is a database-only backup; the site URL and the table
prefix are then read from the dump itself (:func:`read_site`). The kind of a file is told by its first
bytes, never by its name.

**Links.** :func:`write_backup` walks wp-content under the link rule of
:mod:`wpclone.steps.content_tree`: a link into wp-content becomes a symlink member whose target is the
relative path to where it ends (never through another link); a link out of it is archived as what it points
to when its target lies under one of ``link_roots``, and otherwise the backup fails naming it. Sockets and
FIFOs are skipped with a warning.

:func:`open_backup` extracts into a work directory and refuses, with one sentence and before the offending
member is written: absolute paths, ``..``, hardlinks, device files and fifos, names outside the layout
above, duplicates, too many members, too many bytes written (counted as they are written, so a lying header
or a zip bomb is caught), a compression ratio above the limit, truncated or corrupt compression (gzip,
zstd, zip CRC), and a write that would leave less than ``Limits.min_free_bytes`` free on the work
directory's filesystem (checked against a zip's declared sizes before anything is written, against each
tar member's declared size before it is written, and before every chunk written; a tar's manifest comes
last, so it cannot serve). Symlink members are allowed only below ``wp-content/`` and only with a relative
target that, resolved component by component from the link's directory, never leaves wp-content and never
passes through another symlink member; no member may lie below a symlink member (nor a symlink replace a
directory that holds members). Symlinks are created only after every other member is written and the
checksums compared, so nothing is ever written through one. Checksums are compared with the manifest when
there is one. On any refusal nothing it created is left in the work directory.

Content digest: the sha256 of the lines ``json.dumps([path, mode, size, sha256])`` (path relative to
``wp-content``, mode the permission bits in decimal, sha256 of the file's bytes), one per regular file,
sorted by path, then the lines ``json.dumps([path, "symlink", target])``, one per symlink, sorted by path
(an archive without links has the digest it had before links were allowed); computed while writing and
again while extracting.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO, Literal, cast

import zstandard
from pydantic import BaseModel, ConfigDict, ValidationError

from wpclone.errors import ArchiveError
from wpclone.rewrite import mysql_decode
from wpclone.sqlguard import Scanner, Token
from wpclone.steps.common import sentence
from wpclone.steps.content_tree import ContentWalk, LinkReport

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MANIFEST = "manifest.json"
SQL_NAMES = ("database.sql", "database.sql.gz")
CONTENT = "wp-content"
MAX_MANIFEST = 1 << 20
MAX_TAR_HEADER = 1 << 20  # a pax or GNU long-name header
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
MAX_LINK = 4095  # bytes of a symlink's target (PATH_MAX - 1)


@dataclass(frozen=True)
class Limits:
    """What an archive may unpack to."""

    max_files: int = 200_000
    max_bytes: int = 20 << 30
    # bytes written / archive size: an early stop for nested or zstd bombs. Our own archives hold a gzipped
    # dump inside a compressed tar, so a repetitive table (logs, cron, action queues) reaches thousands
    # (the demo site's: 129); max_bytes, counted as written, is the hard cap.
    max_ratio: float = 20_000.0
    ratio_floor: int = 64 << 20  # the ratio is checked once this many bytes are written
    min_free_bytes: int = 256 << 20  # what unpacking leaves free on the work directory's filesystem


class DatabaseEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # the member: database.sql.gz or database.sql
    size: int  # bytes of the member as stored
    sha256: str


class ContentEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    files: int
    bytes: int
    links: int = 0
    sha256: str  # the content digest (module docstring)


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["wpclone-backup"] = "wpclone-backup"
    version: Literal[1] = 1
    site_url: str
    table_prefix: str
    wordpress_version: str | None = None
    created_at: datetime
    clone_id: str | None = None
    database: DatabaseEntry
    content: ContentEntry | None = None


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    size: int
    sha256: str
    manifest: Manifest
    links: LinkReport | None = None  # what the content walk kept and followed


@dataclass(frozen=True)
class Backup:
    manifest: Manifest | None
    sql_path: Path
    sql_gzipped: bool
    content_dir: Path | None
    site_url: str
    table_prefix: str


def content_digest(entries: list[tuple[str, int, int, str]], links: Sequence[tuple[str, str]] = ()) -> str:
    """The digest of (path, mode, size, sha256) entries of regular files and (path, target) of symlinks
    (module docstring)."""
    h = hashlib.sha256()
    for entry in sorted(entries):
        h.update(json.dumps(list(entry)).encode() + b"\n")
    for path, target in sorted(links):
        h.update(json.dumps([path, "symlink", target]).encode() + b"\n")
    return h.hexdigest()


# -- writing -----------------------------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what is written through it to ``raw``."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.raw.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)


class _HashingReader(io.RawIOBase):
    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data


def _add_content(
    tar: tarfile.TarFile, content_dir: Path, link_roots: Sequence[str]
) -> tuple[ContentEntry, LinkReport]:
    entries: list[tuple[str, int, int, str]] = []
    links: list[tuple[str, str]] = []
    root = tarfile.TarInfo(CONTENT)
    root.type = tarfile.DIRTYPE
    root.mode = stat.S_IMODE(content_dir.stat().st_mode)
    tar.addfile(root)
    walk = ContentWalk(content_dir, link_roots)
    for entry in walk:
        rel, st = entry.rel, entry.st
        info = tarfile.TarInfo(f"{CONTENT}/{rel}")
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        info.mtime = int(st.st_mtime)
        if entry.kind == "dir":
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            continue
        if entry.kind == "link":
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.link, 0o777
            tar.addfile(info)
            links.append((rel, entry.link))
            continue
        if entry.kind == "other":
            log.warning(
                "backup: skipped the special file wp-content/%s (archives hold no special files)", rel
            )
            continue
        info.size = st.st_size
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ArchiveError(
                sentence(f"Cannot read wp-content/{rel} for the backup: {exc.strerror}")
            ) from exc
        with os.fdopen(fd, "rb") as f:
            reader = _HashingReader(f)
            try:
                tar.addfile(info, reader)
            except OSError as exc:
                raise ArchiveError(
                    sentence(f"wp-content/{rel} changed while it was being backed up")
                ) from exc
        entries.append((rel, info.mode, info.size, reader.hash.hexdigest()))
    content = ContentEntry(
        files=len(entries),
        bytes=sum(e[2] for e in entries),
        links=len(links),
        sha256=content_digest(entries, links),
    )
    return content, walk.report


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _gzip_dump(dump: BinaryIO, tmp: Path) -> DatabaseEntry:
    with open(tmp, "wb") as f:
        hashed = _HashingWriter(f)
        with gzip.GzipFile(filename="", mode="wb", fileobj=hashed, mtime=0, compresslevel=6) as gz:
            while chunk := dump.read(CHUNK):
                gz.write(chunk)
        f.flush()
    return DatabaseEntry(name="database.sql.gz", size=hashed.size, sha256=hashed.hash.hexdigest())


def write_backup(
    dest: Path,
    *,
    dump: BinaryIO,
    content_dir: Path | None,
    site_url: str,
    table_prefix: str,
    wordpress_version: str | None,
    clone_id: str | None,
    compression: Literal["gzip", "zstd"] = "gzip",
    link_roots: Sequence[str] = (),
) -> BackupInfo:
    """Write a backup archive to ``dest`` (atomically) and its ``<name>.sha256`` sidecar.

    ``dump`` is read once, gzipped into a temporary file next to ``dest`` (a tar member needs its size
    first); the content is read once, hashed as it is archived. Memory stays flat. ``link_roots``: where
    links out of ``content_dir`` may point (module docstring); any other such link fails the backup.
    """
    partial = dest.with_name(dest.name + ".partial")
    tmp_sql = dest.with_name(dest.name + ".sql.gz.partial")
    sidecar = dest.with_name(dest.name + ".sha256")
    try:
        database = _gzip_dump(dump, tmp_sql)
        with open(partial, "wb") as f:
            hashed = _HashingWriter(f)
            compressor: IO[bytes]
            if compression == "zstd":
                zw = zstandard.ZstdCompressor(level=3).stream_writer(cast(IO[bytes], hashed), closefd=False)
                compressor = cast(IO[bytes], zw)
            else:
                gz = gzip.GzipFile(filename="", mode="wb", fileobj=hashed, mtime=0, compresslevel=6)
                compressor = cast(IO[bytes], gz)
            with compressor, tarfile.open(fileobj=compressor, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo(database.name)
                info.size = database.size
                info.mode = 0o600
                with open(tmp_sql, "rb") as sql:
                    tar.addfile(info, sql)
                content, links = (
                    _add_content(tar, content_dir, link_roots) if content_dir is not None else (None, None)
                )
                manifest = Manifest(
                    site_url=site_url,
                    table_prefix=table_prefix,
                    wordpress_version=wordpress_version,
                    created_at=datetime.now(UTC),
                    clone_id=clone_id,
                    database=database,
                    content=content,
                )
                raw = manifest.model_dump_json(indent=2).encode() + b"\n"
                info = tarfile.TarInfo(MANIFEST)
                info.size = len(raw)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(raw))
            f.flush()
            os.fsync(f.fileno())
        digest = hashed.hash.hexdigest()
        side_partial = sidecar.with_name(sidecar.name + ".partial")
        side_partial.write_text(f"{digest}  {dest.name}\n")
        os.replace(partial, dest)
        os.replace(side_partial, sidecar)
        _fsync_dir(dest.parent)
    except OSError as exc:
        raise ArchiveError(sentence(f"Cannot write the backup {dest}: {exc.strerror or exc}")) from exc
    finally:
        for leftover in (partial, tmp_sql, sidecar.with_name(sidecar.name + ".partial")):
            leftover.unlink(missing_ok=True)
    log.info("backup %s written: %d bytes, sha256 %s", dest, hashed.size, digest)
    return BackupInfo(dest, hashed.size, digest, manifest, links)


# -- reading the site from a dump --------------------------------------------------------------------------


class _Found(Exception):
    pass


_SUBSITE = re.compile(rb".*_[0-9]+_options")  # wp_2_options: a multisite sub-site, not the network's own


class _SiteReader(Scanner):
    """Reads the options table's siteurl/home rows while the dump is checked (sqlguard)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[bytes, list[bytes]] = {}
        self.found: dict[bytes, dict[bytes, str]] = {}
        self.table = b""
        self.name_at = self.value_at = 0
        self.depth = self.field = 0
        self.row: dict[int, Token] = {}

    def on_statement(self, tokens: list[Token]) -> None:
        words = [t.value for t in tokens[:2]]
        if words != [b"create", b"table"]:
            return
        rest = [t for t in tokens[2:] if not (t.kind == "word" and t.value in (b"if", b"not", b"exists"))]
        if not rest or not rest[0].value.lower().endswith(b"options"):
            return
        columns, depth, expect = [], 0, False
        for t in rest[1:]:
            if t.kind == "punct" and t.value in (b"(", b")"):
                depth += 1 if t.value == b"(" else -1
                expect = depth == 1 and t.value == b"("
            elif t.kind == "punct" and t.value == b"," and depth == 1:
                expect = True
            elif expect and t.kind in ("ident", "word"):
                columns.append(t.value.lower())
                expect = False
            else:
                expect = False
        if b"option_name" in columns and b"option_value" in columns:
            self.tables[rest[0].value] = columns

    def on_insert(self, table: bytes, columns: list[bytes]) -> bool:
        if table not in self.tables:
            return False
        cols = [c.lower() for c in columns] or self.tables[table]
        if b"option_name" not in cols or b"option_value" not in cols:
            return False
        self.table = table
        self.name_at, self.value_at = cols.index(b"option_name"), cols.index(b"option_value")
        self.depth = self.field = 0
        return True

    def on_value(self, tok: Token) -> None:
        if tok.kind == "punct" and tok.value == b"(":
            self.depth += 1
            if self.depth == 1:
                self.field, self.row = 0, {}
        elif tok.kind == "punct" and tok.value == b")":
            self.depth -= 1
            if self.depth == 0:
                self._row_done()
        elif tok.kind == "punct" and tok.value == b"," and self.depth == 1:
            self.field += 1
        elif self.depth == 1:
            self.row[self.field] = tok

    def _row_done(self) -> None:
        name, value = self.row.get(self.name_at), self.row.get(self.value_at)
        if name is None or value is None or name.kind != "str" or value.kind != "str" or value.long:
            return
        key = mysql_decode(name.value.replace(b"''", b"'"))
        if key not in (b"siteurl", b"home"):
            return
        url = mysql_decode(value.value.replace(b"''", b"'")).decode("utf-8", "replace")
        self.found.setdefault(self.table, {})[key] = url
        if key == b"siteurl" and not _SUBSITE.fullmatch(self.table.lower()):
            raise _Found

    def result(self) -> tuple[str, str] | None:
        ranked = sorted(self.found, key=lambda t: (bool(_SUBSITE.fullmatch(t.lower())), len(t)))
        for table in ranked:
            rows = self.found[table]
            url = rows.get(b"siteurl") or rows.get(b"home")
            if url:
                return url, table[: -len(b"options")].decode("utf-8", "replace")
        return None


def read_site(dump: IO[bytes], what: str = "the dump") -> tuple[str, str]:
    """The site URL and table prefix of a WordPress dump: the ``siteurl`` (else ``home``) option row of the
    table whose ``CREATE TABLE`` makes it the options table. Streams, and stops once found.
    """
    reader = _SiteReader()
    try:
        while chunk := dump.read(CHUNK):
            reader.feed(chunk, final=False)
        reader.feed(b"", final=True)
    except _Found:
        pass
    found = reader.result()
    if found is None:
        raise ArchiveError(
            sentence(
                f"{what} has no siteurl or home row in a WordPress options table, so its site is unknown"
            )
        )
    return found


# -- opening -----------------------------------------------------------------------------------------------


class _ZstdReader(io.RawIOBase):
    """Decompresses zstd frames from ``raw``; a frame cut short raises EOFError."""

    def __init__(self, raw: IO[bytes]) -> None:

        super().__init__()
        self._new = zstandard.ZstdDecompressor().decompressobj
        self.raw = raw
        self.dobj = self._new()
        self.pending = b""
        self.started = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.pending:
            data = self.raw.read(CHUNK)
            if not data:
                if self.started and not self.dobj.eof:
                    raise EOFError("zstd stream ends in the middle of a frame")
                return 0
            while data:
                if self.dobj.eof:
                    self.dobj = self._new()
                self.started = True
                self.pending += self.dobj.decompress(data)
                data = self.dobj.unused_data if self.dobj.eof else b""
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


class _SafeTarInfo(tarfile.TarInfo):
    """Refuses pax and GNU long-name headers big enough to fill memory (tarfile reads them whole)."""

    def _proc_gnulong(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_TAR_HEADER:
            raise ArchiveError(sentence(f"The archive has a tar long-name header of {self.size} bytes"))
        info: tarfile.TarInfo = super()._proc_gnulong(tf)  # type: ignore[misc]
        return info

    def _proc_pax(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_TAR_HEADER:
            raise ArchiveError(sentence(f"The archive has a tar pax header of {self.size} bytes"))
        info: tarfile.TarInfo = super()._proc_pax(tf)  # type: ignore[misc]
        return info


def _sniff(src: Path) -> str:
    """tar, tar.gz, tar.zst, zip, sql or sql.gz, from the first bytes.

    A bare dump must start (after comments) the way a dump does; anything else, such as a web page or an
    error message a server answered with, is "neither an archive nor an SQL dump" and none of it is
    quoted: the statement guard would quote its first line as a refused statement.
    """
    sql_start = re.compile(
        rb"(?:\s|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*"  # blanks and comments, then
        rb"(?:$|SET\s+(?:@|NAMES\b|SESSION\b|\w+\s*:?=)"  # a dump's first statement (or more comment)
        rb"|(?:CREATE|DROP|ALTER)\s+(?:TABLE|DATABASE|SCHEMA|VIEW|TEMPORARY|OR\s+REPLACE|DEFINER|ALGORITHM"
        rb"|PROCEDURE|FUNCTION|TRIGGER|EVENT|USER|INDEX|UNIQUE)\b"
        rb"|(?:INSERT|REPLACE)\s+(?:INTO|IGNORE|LOW_PRIORITY|DELAYED|HIGH_PRIORITY)\b"
        rb"|(?:LOCK|UNLOCK)\s+TABLES\b|START\s+TRANSACTION\b|(?:BEGIN|COMMIT)\s*;|USE\s+(?:`|\w+\s*;)"
        rb"|DELIMITER\s)",
        re.IGNORECASE | re.DOTALL,
    )

    def refuse_unless_sql(block: bytes) -> None:
        if not sql_start.match(block) or not block.strip():
            raise ArchiveError(sentence(f"{src.name} is neither a backup archive nor an SQL dump"))

    with open(src, "rb") as f:
        head = f.read(512)
        if head.startswith(ZIP_MAGICS):
            return "zip"
        if head.startswith(GZIP_MAGIC) or head.startswith(ZSTD_MAGIC):
            f.seek(0)
            zst = head.startswith(ZSTD_MAGIC)
            stream: IO[bytes] = _ZstdReader(f) if zst else gzip.GzipFile(fileobj=f)  # type: ignore[assignment]
            try:
                inner = stream.read(512)
            except (OSError, *_read_errors()) as exc:  # type: ignore[misc]
                raise ArchiveError(
                    sentence(f"{src.name} is not a readable compressed file ({_short(exc)})")
                ) from exc
            if _is_tar(inner):
                return "tar.zst" if zst else "tar.gz"
            if zst:
                raise ArchiveError(sentence(f"{src.name} is zstd-compressed but holds no tar archive"))
            refuse_unless_sql(inner)
            return "sql.gz"
    if _is_tar(head):
        return "tar"
    if b"\0" in head:
        raise ArchiveError(sentence(f"{src.name} is neither a backup archive nor an SQL dump"))
    refuse_unless_sql(head)
    return "sql"


def _is_tar(block: bytes) -> bool:
    return len(block) >= 262 and block[257:262] == b"ustar"


class _Extractor:
    """Writes allowed members into ``workdir``, counting and hashing as it goes."""

    def __init__(self, workdir: Path, limits: Limits, src_size: int) -> None:
        self.workdir = workdir
        self.limits = limits
        self.src_size = max(src_size, 1)
        self.seen: set[tuple[str, ...]] = set()
        self.members = 0
        self.written = 0
        self.entries: list[tuple[str, int, int, str]] = []
        self.dirs: list[tuple[Path, int]] = []
        self.sql: tuple[str, int, str] | None = None
        self.manifest_raw: bytes | None = None
        self.has_content = False
        self.below: set[tuple[str, ...]] = set()  # every directory a member lies in
        # symlink members: parts -> (target, the paths its target passes through on the way)
        self.links: dict[tuple[str, ...], tuple[str, list[tuple[str, ...]]]] = {}

    def room(self, n: int, what: str) -> None:
        """Refuse writing ``n`` more bytes when they would leave less than the margin free."""
        st = os.statvfs(self.workdir)
        free, margin = st.f_bavail * st.f_frsize, self.limits.min_free_bytes
        if free - n < margin:
            raise ArchiveError(
                sentence(
                    f"Unpacking {what} would leave less than {_mib(margin)} free on the filesystem of the "
                    f"work directory {self.workdir} ({_mib(free)} free, {_mib(n)} more to write); free some "
                    "space there and try again"
                )
            )

    def count(self, n: int) -> None:
        self.written += n
        if self.written > self.limits.max_bytes:
            raise ArchiveError(sentence(f"The archive unpacks to more than {self.limits.max_bytes} bytes"))
        limits = self.limits
        if self.written > limits.ratio_floor and self.written > limits.max_ratio * self.src_size:
            raise ArchiveError(
                sentence(
                    f"The archive unpacks to more than {self.limits.max_ratio:g} times its size "
                    "(a compression bomb?)"
                )
            )

    def check(self, name: str, kind: str, size: int) -> tuple[str, ...]:
        """Refuse a member by its header alone; return its path parts."""
        self.members += 1
        if self.members > self.limits.max_files:
            raise ArchiveError(sentence(f"The archive has more than {self.limits.max_files} members"))
        shown = name[:200]
        if "\0" in name or "\\" in name:
            raise ArchiveError(sentence(f"The archive member {shown!r} has a backslash or NUL in its name"))
        if name.startswith("/") or re.match(r"[A-Za-z]:", name):
            raise ArchiveError(sentence(f"The archive member {shown!r} has an absolute path"))
        raw_parts = name.split("/")
        if ".." in raw_parts:
            raise ArchiveError(sentence(f"The archive member {shown!r} has a '..' in its path"))
        parts = tuple(p for p in raw_parts if p not in ("", "."))
        if kind == "hardlink" or (kind == "symlink" and (len(parts) < 2 or parts[0] != CONTENT)):
            where = "" if kind == "hardlink" else " outside wp-content"
            raise ArchiveError(
                sentence(f"The archive member {shown!r} is a {kind}{where}, which backups never hold")
            )
        if kind in ("device", "fifo", "other"):
            raise ArchiveError(sentence(f"The archive member {shown!r} is a {kind}, not a file or directory"))
        top = parts[0] if parts else ""
        if top != CONTENT and (len(parts) != 1 or kind != "file" or top not in (MANIFEST, *SQL_NAMES)):
            raise ArchiveError(
                sentence(f"The archive member {shown!r} is not part of a backup (manifest, dump, wp-content)")
            )
        if parts in self.seen:
            raise ArchiveError(sentence(f"The archive holds {shown!r} twice"))
        if top in SQL_NAMES and self.sql is not None:
            raise ArchiveError(sentence(f"The archive holds two SQL dumps ({self.sql[0]} and {top})"))
        if size > self.limits.max_bytes:
            raise ArchiveError(sentence(f"The archive member {shown!r} claims {size} bytes, above the limit"))
        self._check_not_through_links(parts, kind, shown)
        self.seen.add(parts)
        self.below.update(parts[:i] for i in range(1, len(parts)))
        return parts

    def _check_not_through_links(self, parts: tuple[str, ...], kind: str, shown: str) -> None:
        """No member below a symlink member, and no symlink where members have a directory."""
        for i in range(1, len(parts)):
            if parts[:i] in self.links:
                raise ArchiveError(
                    sentence(f"The archive member {shown!r} lies below the symlink {'/'.join(parts[:i])!r}")
                )
        if kind == "symlink" and parts in self.below:
            raise ArchiveError(
                sentence(f"The archive member {shown!r} is a symlink where other members have a directory")
            )

    def add_link(self, parts: tuple[str, ...], target: str) -> None:
        """Record a symlink member (made by :meth:`finish`); refuse a target that could leave wp-content."""
        shown = "/".join(parts)
        if not target or len(target.encode()) > MAX_LINK or "\0" in target or "\\" in target:
            raise ArchiveError(sentence(f"The symlink {shown!r} has an empty or malformed target"))
        if target.startswith("/"):
            raise ArchiveError(
                sentence(
                    f"The symlink {shown!r} points to the absolute path {target[:200]!r}; links in a "
                    "backup must be relative and stay inside wp-content"
                )
            )
        here, through = list(parts[1:-1]), []
        steps = [c for c in target.split("/") if c not in ("", ".")]
        for i, step in enumerate(steps):
            if step != "..":
                here.append(step)
                if i < len(steps) - 1:
                    through.append((CONTENT, *here))
            elif here:
                here.pop()
            else:
                raise ArchiveError(
                    sentence(f"The symlink {shown!r} points to {target[:200]!r}, which leaves wp-content")
                )
        self.links[parts] = (target, through)
        self.has_content = True

    def _ensure_dir(self, path: Path) -> None:
        rel = path.relative_to(self.workdir)
        current = self.workdir
        for part in rel.parts:
            current = current / part
            try:
                os.mkdir(current, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(current).st_mode):
                    raise ArchiveError(sentence(f"The archive member {rel} is below a file")) from None

    def add_dir(self, parts: tuple[str, ...], mode: int) -> None:
        path = self.workdir.joinpath(*parts)
        self._ensure_dir(path)
        self.has_content = True
        self.dirs.append((path, (mode & 0o777) | 0o700))

    def add_file(self, parts: tuple[str, ...], mode: int, data: IO[bytes]) -> None:
        path = self.workdir.joinpath(*parts)
        self._ensure_dir(path.parent)
        name = "/".join(parts)
        is_manifest = parts == (MANIFEST,)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        h = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := data.read(CHUNK):
                size += len(chunk)
                if is_manifest and size > MAX_MANIFEST:
                    raise ArchiveError(
                        sentence(f"The archive's {MANIFEST} is larger than {MAX_MANIFEST} bytes")
                    )
                self.count(len(chunk))
                self.room(len(chunk), name)
                out.write(chunk)
                h.update(chunk)
            if not is_manifest and parts[0] == CONTENT:
                os.fchmod(out.fileno(), mode & 0o777)
        digest = h.hexdigest()
        if parts[0] == CONTENT:
            self.has_content = True
            self.entries.append(("/".join(parts[1:]), mode & 0o777, size, digest))
        elif is_manifest:
            self.manifest_raw = path.read_bytes()
        else:
            self.sql = (name, size, digest)
            if name.endswith(".gz"):
                self._check_gzip(path)

    def _check_gzip(self, path: Path) -> None:
        """The dump inside must be a whole gzip stream; its unpacked size counts towards the limits."""
        try:
            with gzip.open(path, "rb") as gz:
                while chunk := gz.read(CHUNK):
                    self.count(len(chunk))
        except (OSError, EOFError, zlib.error) as exc:
            raise ArchiveError(
                sentence(f"The archive's {path.name} is a truncated or corrupt gzip stream")
            ) from exc

    def _make_links(self) -> None:
        """Create the symlink members, last: none may resolve through another (so none leaves wp-content)."""
        for parts, (target, through) in self.links.items():
            via = next((p for p in through if p in self.links), None)
            if via is not None:
                raise ArchiveError(
                    sentence(
                        f"The symlink {'/'.join(parts)!r} points to {target[:200]!r}, through the symlink "
                        f"{'/'.join(via)!r}; links in a backup never go through another link"
                    )
                )
        for parts, (target, _) in sorted(self.links.items()):
            path = self.workdir.joinpath(*parts)
            self._ensure_dir(path.parent)
            os.symlink(target, path)

    def finish(self, src: Path) -> Backup:
        if self.sql is None:
            raise ArchiveError(sentence(f"{src.name} holds no database.sql or database.sql.gz"))
        name, size, digest = self.sql
        sql_path = self.workdir / name
        manifest = self._manifest(src) if self.manifest_raw is not None else None
        if manifest is not None:
            db = manifest.database
            if db.name != name or db.size != size or db.sha256 != digest:
                raise ArchiveError(
                    sentence(f"{src.name}'s {name} does not match the checksum in its manifest")
                )
            self._verify_content(src, manifest)
            site_url, prefix = manifest.site_url, manifest.table_prefix
        else:
            with _open_sql(sql_path, name.endswith(".gz")) as dump:
                site_url, prefix = read_site(dump, f"{src.name}'s {name}")
        self._make_links()
        for path, mode in sorted(self.dirs, key=lambda d: len(d[0].parts), reverse=True):
            os.chmod(path, mode)
        content_dir = self.workdir / CONTENT if self.has_content else None
        return Backup(manifest, sql_path, name.endswith(".gz"), content_dir, site_url, prefix)

    def _manifest(self, src: Path) -> Manifest:
        assert self.manifest_raw is not None
        try:
            return Manifest.model_validate_json(self.manifest_raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top)"
            raise ArchiveError(
                sentence(f"{src.name}'s {MANIFEST} is not a wpclone manifest: {where}: {first['msg']}")
            ) from exc

    def _verify_content(self, src: Path, manifest: Manifest) -> None:
        files = len(self.entries)
        if manifest.content is None:
            if self.has_content:
                raise ArchiveError(sentence(f"{src.name} holds wp-content that its manifest does not list"))
            return
        c = manifest.content
        total, links = sum(e[2] for e in self.entries), [(self.rel(p), t) for p, (t, _) in self.links.items()]
        digest = content_digest(self.entries, links)
        if (c.files, c.bytes, c.links, c.sha256) != (files, total, len(links), digest):
            raise ArchiveError(
                sentence(
                    f"{src.name}'s wp-content ({files} files, {total} bytes, {len(links)} links) does not "
                    f"match its manifest ({c.files} files, {c.bytes} bytes, {c.links} links, or a different "
                    "checksum)"
                )
            )

    @staticmethod
    def rel(parts: tuple[str, ...]) -> str:
        return "/".join(parts[1:])


@contextlib.contextmanager
def _open_sql(path: Path, gzipped: bool) -> Iterator[IO[bytes]]:
    with open(path, "rb") as f:
        if gzipped:
            with gzip.GzipFile(fileobj=f) as gz:
                yield cast(IO[bytes], gz)
        else:
            yield f


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "fifo"
    return "other"


def _extract_tar(src: Path, kind: str, ex: _Extractor) -> None:
    with open(src, "rb") as f:
        stream: IO[bytes]
        if kind == "tar.gz":
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=f))
        elif kind == "tar.zst":
            stream = io.BufferedReader(_ZstdReader(f), CHUNK)
        else:
            stream = f
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_SafeTarInfo) as tar:
            for member in tar:
                tar.members.clear()  # type: ignore[attr-defined]  # stream mode keeps every header otherwise
                member_kind = _tar_kind(member)
                parts = ex.check(member.name, member_kind, member.size)
                if member_kind == "dir":
                    ex.add_dir(parts, member.mode)
                    continue
                if member_kind == "symlink":
                    ex.add_link(parts, member.linkname)
                    continue
                ex.room(member.size, "/".join(parts))
                data = tar.extractfile(member)
                assert data is not None
                ex.add_file(parts, member.mode, data)
        # Read what follows the end of the tar to the end of the stream: only then are the gzip CRC and the
        # end of the zstd frame checked. Those bytes count towards the limits like any others.
        while rest := stream.read(CHUNK):
            ex.count(len(rest))


def _zip_kind(info: zipfile.ZipInfo) -> tuple[str, int]:
    st = info.external_attr >> 16
    mode = stat.S_IMODE(st) or (0o755 if info.is_dir() else 0o644)
    if stat.S_ISLNK(st):
        return "symlink", mode
    if stat.S_ISCHR(st) or stat.S_ISBLK(st):
        return "device", mode
    if stat.S_ISFIFO(st) or stat.S_ISSOCK(st):
        return "fifo", mode
    return ("dir" if info.is_dir() else "file"), mode


def _extract_zip(src: Path, ex: _Extractor) -> None:
    with zipfile.ZipFile(src) as zf:
        infos = zf.infolist()
        if len(infos) > ex.limits.max_files:
            raise ArchiveError(sentence(f"The archive has more than {ex.limits.max_files} members"))
        ex.room(sum(info.file_size for info in infos), src.name)  # as declared; each write is checked too
        for info in infos:
            member_kind, mode = _zip_kind(info)
            parts = ex.check(info.filename, member_kind, info.file_size)
            if info.flag_bits & 0x1:
                raise ArchiveError(sentence(f"The archive member {info.filename!r} is encrypted"))
            if member_kind == "dir":
                ex.add_dir(parts, mode)
                continue
            if member_kind == "symlink":  # a zip keeps a link's target as its data
                with zf.open(info) as data:
                    target = data.read(MAX_LINK + 1)
                ex.add_link(parts, target.decode("utf-8", "replace") if len(target) <= MAX_LINK else "")
                continue
            with zf.open(info) as data:
                ex.add_file(parts, mode, data)


def _open_bare(src: Path, kind: str, limits: Limits) -> Backup:
    gzipped = kind == "sql.gz"
    size = src.stat().st_size
    with _open_sql(src, gzipped) as dump:
        site_url, prefix = read_site(dump, src.name)
        # Read to the end: a truncated stream is refused now, not halfway through a load.
        if gzipped:
            total = 0
            while chunk := dump.read(CHUNK):
                total += len(chunk)
                if total > limits.max_bytes:
                    raise ArchiveError(sentence(f"{src.name} unpacks to more than {limits.max_bytes} bytes"))
    if not gzipped and size > limits.max_bytes:
        raise ArchiveError(sentence(f"{src.name} is larger than {limits.max_bytes} bytes"))
    return Backup(None, src, gzipped, None, site_url, prefix)


def _read_errors() -> tuple[type[BaseException], ...]:

    return (
        tarfile.TarError,
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        zlib.error,
        gzip.BadGzipFile,
        NotImplementedError,
        zstandard.ZstdError,
    )


def open_backup(src: Path, workdir: Path, limits: Limits = Limits()) -> Backup:
    """Open the backup ``src``: extract an archive into ``workdir`` (created; must be absent or empty) or use
    a bare dump in place. Raises :class:`ArchiveError` (or :class:`~wpclone.sqlguard.SqlRefused` when a bare
    dump has to be read and is refused); then nothing it created is left in ``workdir``.
    """
    kind = _sniff(src)
    created = not workdir.exists()
    if not created and any(workdir.iterdir()):
        raise ArchiveError(sentence(f"The work directory {workdir} for the backup is not empty"))
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        try:
            if kind in ("sql", "sql.gz"):
                return _open_bare(src, kind, limits)
            ex = _Extractor(workdir, limits, src.stat().st_size)
            if kind == "zip":
                _extract_zip(src, ex)
            else:
                _extract_tar(src, kind, ex)
        except _read_errors() as exc:
            raise ArchiveError(sentence(f"{src.name} is truncated or corrupt ({_short(exc)})")) from exc
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise ArchiveError(
                sentence(
                    f"The filesystem of the work directory {workdir} filled up while {src.name} was unpacked"
                )
            ) from exc
        return ex.finish(src)
    except BaseException:
        _clean(workdir, created)
        raise


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]


def _clean(workdir: Path, created: bool) -> None:
    """Remove what open_backup made: the whole work directory if it made it, else its contents."""

    def writable(func: Callable[..., object], path: str, _exc: object) -> None:
        os.chmod(os.path.dirname(path), 0o700)
        func(path)

    if created:
        shutil.rmtree(workdir, onerror=writable)
        return
    for child in workdir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, onerror=writable)
        else:
            child.unlink()
