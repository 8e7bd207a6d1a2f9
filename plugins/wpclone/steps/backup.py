"""The backup steps: ``backup-clone`` archives a clone; ``restore-backup`` loads an archive beside a clone.

``backup-clone`` streams ``mariadb-dump`` of the clone (``SOURCE_DB_*``) and its wp-content
(``SOURCE_CONTENT_DIR``) into ``<WPCLONE_BACKUP_DIR>/<clone_id>/<clone_id>-<UTC stamp>.tar.gz`` with a
manifest and a ``.sha256`` sidecar (:mod:`wpclone.archive`). wp-content's symlinks follow copy-content's
rule (:mod:`wpclone.steps.content_tree`, roots from ``SOURCE_CONTENT_LINK_ROOTS``): links inside are
archived as links, links out of it under an allowed root as what they point to, any other fails the backup.
Backups hold password hashes: files are 0600 and directories 0700 whatever the caller's umask. The archive
appears under its name only once it is complete and the dump exited 0 (a killed or failed try leaves
``.partial`` files at most, removed by the next backup of the clone). Then retention
(``WPCLONE_BACKUP_KEEP``, ``WPCLONE_BACKUP_MAX_AGE_DAYS``: the configuration's ``backups.keep_per_clone``
and ``max_age_days``, which the runtime puts in the step's environment) prunes the clone's directory to its
newest archives; the result lists what was pruned.

``restore-backup`` touches nothing the clone serves. It fetches the archive under a URL policy
(:mod:`wpclone.fetch`: refused before any byte when the scheme, host or address is not allowed), unpacks
and verifies it (:mod:`wpclone.archive`: paths, links, sizes, checksums), then loads its SQL dump through
the statement guard (:mod:`wpclone.sqlguard`) and the URL rewrite (the backup's site URL becomes the
clone's) into a **fresh** database (``TARGET_DB_*``: a login that may touch only that database), and
stages its wp-content next to the clone's as ``wp-content.restore-new``. The switch is the next task's.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from wpclone.archive import open_backup, write_backup
from wpclone.db import DbEndpoint
from wpclone.errors import ConfigError, StepError
from wpclone.fetch import FetchPolicy, fetch, redact
from wpclone.models import CLONE_ID_RE, BackupConfig
from wpclone.rewrite import Rewriter
from wpclone.sqlguard import GuardedReader
from wpclone.steps.common import mb_per_s, sentence
from wpclone.steps.content_tree import link_roots_from_env
from wpclone.steps.copy_database import (
    _start_dump,
    _StderrDrain,
    client_env,
    endpoint_from_env,
    load_command,
    parse_pairs,
)

log = logging.getLogger(__name__)

BACKUP_STEP = "backup-clone"
RESTORE_STEP = "restore-backup"
BACKUP_DIR_ENV = "WPCLONE_BACKUP_DIR"
BACKUP_URL_ENV = "WPCLONE_BACKUP_URL"
FETCH_POLICY_ENV = "WPCLONE_FETCH_POLICY"  # JSON of wpclone.fetch.FetchPolicy's fields
STAGED_SUFFIX = ".restore-new"  # wp-content.restore-new: the restored content before the switch
WORK_DIR_NAME = ".restore-work"  # beside wp-content: same filesystem, so staging is a rename
CHUNK = 1 << 20


def staged_content_dir(content_dir: Path) -> Path:
    return content_dir.with_name(content_dir.name + STAGED_SUFFIX)


def _env_dir(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{name} is not set in the environment.")
    return Path(value)


# -- backup-clone ------------------------------------------------------------------------------------------

ARCHIVE_SUFFIX = ".tar.gz"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
ARCHIVE_RE = re.compile(r"(?P<clone>[a-z][a-z0-9-]*)-(?P<stamp>[0-9]{8}T[0-9]{6}Z)\.tar\.gz")
SIDECAR_SUFFIX = ".sha256"
PARTIAL_SUFFIX = ".partial"  # what wpclone.archive.write_backup writes before it renames into place
KEEP_ENV = "WPCLONE_BACKUP_KEEP"  # BackupConfig.keep_per_clone
MAX_AGE_ENV = "WPCLONE_BACKUP_MAX_AGE_DAYS"  # BackupConfig.max_age_days


def retention_env(backups: BackupConfig) -> dict[str, str]:
    """The environment that hands the configuration's retention to the backup step (both runtimes)."""
    return {KEEP_ENV: str(backups.keep_per_clone), MAX_AGE_ENV: str(backups.max_age_days)}


def retention_from_env() -> tuple[int, timedelta]:
    """(keep per clone, max age) from :func:`retention_env`'s variables; the configuration's defaults
    where they are unset."""
    defaults = BackupConfig()
    values = []
    for name, default in ((KEEP_ENV, defaults.keep_per_clone), (MAX_AGE_ENV, defaults.max_age_days)):
        raw = os.environ.get(name) or str(default)
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{name} must be a whole number of at least 1, not {raw!r}.")
        values.append(int(raw))
    return values[0], timedelta(days=values[1])


def prune_backups(
    clone_dir: Path, clone_id: str, *, keep: int, max_age: timedelta, now: datetime, written: Path
) -> list[str]:
    """Keep the clone's newest ``keep`` archives no older than ``max_age`` (by the UTC stamp in their
    names) and always ``written``; remove the others with their sidecars, sidecars whose archive is gone
    and ``.partial`` files of killed tries (the clone's lock means no other backup of it is running).
    Files that are not ours are left alone. Returns the names removed."""
    archives: list[tuple[datetime, Path]] = []
    for path in clone_dir.iterdir():
        match = ARCHIVE_RE.fullmatch(path.name)
        if match and match["clone"] == clone_id and path.is_file():
            stamp = datetime.strptime(match["stamp"], STAMP_FORMAT).replace(tzinfo=UTC)
            archives.append((stamp, path))
    archives.sort(reverse=True)  # newest first
    fresh = [path for stamp, path in archives if now - stamp <= max_age]
    kept = {written, *fresh[:keep]}
    doomed = [path for _, path in archives if path not in kept]
    for path in clone_dir.iterdir():
        name = path.name
        if name.endswith(PARTIAL_SUFFIX) and name.startswith(f"{clone_id}-") and path.is_file():
            doomed.append(path)
        elif name.endswith(SIDECAR_SUFFIX) and ARCHIVE_RE.fullmatch(name.removesuffix(SIDECAR_SUFFIX)):
            archive = path.with_name(name.removesuffix(SIDECAR_SUFFIX))
            if archive in doomed or not archive.exists():
                doomed.append(path)
    removed = []
    for path in doomed:
        path.unlink(missing_ok=True)
        removed.append(path.name)
    if removed:
        log.info("step=%s event=pruned clone=%s removed=%s", BACKUP_STEP, clone_id, ",".join(removed))
    return sorted(removed)


def purge_backups(clone_dir: Path) -> int:
    """Remove a clone's backup directory (its delete, unless the configuration keeps backups); how many
    files it held. Idempotent."""
    if not clone_dir.is_dir():
        return 0
    files = sum(len(names) for _, _, names in os.walk(clone_dir))
    shutil.rmtree(clone_dir)
    return files


@contextlib.contextmanager
def _private_files() -> Iterator[None]:
    """Files and directories created meanwhile are the owner's alone (umask 077), whatever the caller's
    umask; the step is its own process, with no other thread creating files."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) 0700, or make it 0700 if it is ours; never a mount point (on
    Kubernetes the backups claim's root, whose mode the kubelet keeps for the pods' fsGroup: a changed one
    would make it walk the whole claim on the next mount)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not os.path.ismount(path) and path.stat().st_uid == os.geteuid():
        path.chmod(0o700)


class _CheckedDump(io.RawIOBase):
    """The dump's output; at its end, the dump's exit status. A failed dump raises StepError before
    write_backup renames anything into place, so no archive of a truncated dump ever looks finished."""

    def __init__(self, proc: subprocess.Popen[bytes], errors: Any, password: str) -> None:
        super().__init__()
        assert proc.stdout is not None
        self.proc, self.stdout, self.errors, self.password = proc, proc.stdout, errors, password

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.stdout.read(size)
        if not chunk and (code := self.proc.wait()) != 0:
            why = self.errors.text([self.password])
            raise StepError(sentence(f"mariadb-dump of the clone exited with {code}: {why}"))
        return chunk


def backup_clone(clone_id: str, site_url: str, table_prefix: str) -> dict[str, Any]:
    """Archive the clone's database and wp-content into ``<backup dir>/<clone_id>/`` (files 0600, the
    directories 0700), then prune that directory (:func:`prune_backups`); returns where, what and what
    was pruned."""

    if not CLONE_ID_RE.fullmatch(clone_id):  # a path component: the shape is enough, reserved or not
        raise ConfigError(f"clone id {clone_id!r} is not valid.")
    source = endpoint_from_env("SOURCE_DB")
    link_roots = link_roots_from_env()
    content = Path(os.environ["SOURCE_CONTENT_DIR"]) if os.environ.get("SOURCE_CONTENT_DIR") else None
    keep, max_age = retention_from_env()
    now = datetime.now(UTC).replace(microsecond=0)
    root = _env_dir(BACKUP_DIR_ENV).resolve()
    dest = root / clone_id / f"{clone_id}-{now.strftime(STAMP_FORMAT)}{ARCHIVE_SUFFIX}"
    sidecar = dest.with_name(dest.name + SIDECAR_SUFFIX)
    started = time.monotonic()
    log.info("step=%s event=start clone=%s dest=%s", BACKUP_STEP, clone_id, dest)
    with _private_files():
        _private_dir(root)
        _private_dir(dest.parent)
        dump = _start_dump(source)
        assert dump.stderr is not None
        errors = _StderrDrain(dump.stderr)
        errors.start()
        try:
            info = write_backup(
                dest,
                dump=cast(BinaryIO, _CheckedDump(dump, errors, source.password)),
                content_dir=content if content and content.is_dir() else None,
                site_url=site_url,
                table_prefix=table_prefix,
                wordpress_version=None,
                clone_id=clone_id,
                link_roots=link_roots,
            )
        finally:
            if dump.poll() is None:
                dump.kill()
            dump.wait()
        for path in (dest, sidecar):
            path.chmod(0o600)
    pruned = prune_backups(dest.parent, clone_id, keep=keep, max_age=max_age, now=now, written=dest)
    seconds = time.monotonic() - started
    log.info(
        "step=%s event=done bytes=%d seconds=%.1f mb_per_s=%.1f pruned=%d",
        BACKUP_STEP,
        info.size,
        seconds,
        mb_per_s(info.size, seconds),
        len(pruned),
    )
    return {
        "clone_id": clone_id,
        "backup_url": dest.as_uri(),
        "size": info.size,
        "sha256": info.sha256,
        "content_files": info.manifest.content.files if info.manifest.content else 0,
        "content_links_kept": info.links.kept if info.links else 0,
        "content_links_followed": info.links.followed if info.links else 0,
        "content_followed": info.links.followed_list if info.links else [],
        "seconds": round(seconds, 2),
        "pruned": pruned,
    }


# -- restore-backup ----------------------------------------------------------------------------------------


def fetch_policy_from_env() -> Any:

    raw = os.environ.get(FETCH_POLICY_ENV)
    if not raw:
        raise ConfigError(f"{FETCH_POLICY_ENV} is not set in the environment.")
    data = json.loads(raw)
    data["file_roots"] = tuple(Path(p) for p in data.get("file_roots", ()))
    for key in ("schemes", "allowed_hosts", "allowed_networks"):
        data[key] = tuple(data.get(key, ()))
    return FetchPolicy(**data)


def load_sql(sql: IO[bytes], target: DbEndpoint, pairs: list[tuple[str, str]]) -> tuple[int, int]:
    """guard | rewrite | ``mariadb --sandbox`` into ``target``; returns (bytes read, URLs rewritten)."""

    command = load_command(target)
    command.insert(1, "--sandbox")  # the client refuses its own file-system commands too
    load = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=client_env(target),
    )
    assert load.stdin is not None and load.stderr is not None
    errors = _StderrDrain(load.stderr)
    errors.start()
    reader = GuardedReader(cast(BinaryIO, sql))  # SqlRefused at the first statement leaving the database
    try:
        if pairs:
            stats = Rewriter(pairs).rewrite_stream(reader, load.stdin)  # type: ignore[arg-type]
            read, rewritten = stats.bytes_in, stats.fields_rewritten
        else:  # the backup is of this very URL: nothing to rewrite
            read, rewritten = 0, 0
            while chunk := reader.read(CHUNK):
                load.stdin.write(chunk)
                read += len(chunk)
        load.stdin.close()
    except BrokenPipeError:
        pass  # the loader ended early: its exit status and stderr say why
    except BaseException:  # kill, never close its input: it would run the checked part of a statement
        load.kill()
        load.wait()
        raise
    code = load.wait()
    if code != 0:
        raise StepError(
            sentence(
                f"loading the backup into {target.database} failed (mariadb exited with {code}): "
                + errors.text([target.password])
            )
        )
    return read, rewritten


@contextlib.contextmanager
def _open_sql(path: Path, gzipped: bool) -> Iterator[IO[bytes]]:

    with gzip.open(path, "rb") if gzipped else path.open("rb") as handle:
        yield cast(IO[bytes], handle)


def restore_backup(url: str, clone_url: str, table_prefix: str) -> dict[str, Any]:
    """Fetch, verify and load the backup at ``url`` beside the clone (module docstring)."""

    target = endpoint_from_env("TARGET_DB")
    content = _env_dir("TARGET_CONTENT_DIR")
    policy = fetch_policy_from_env()
    work = content.parent / WORK_DIR_NAME
    shutil.rmtree(work, ignore_errors=True)  # a previous try's leftovers
    work.mkdir(parents=True)
    started = time.monotonic()
    try:
        log.info("step=%s event=fetch url=%s", RESTORE_STEP, redact(url))
        fetched = fetch(url, work / "archive", policy)
        log.info("step=%s event=fetched bytes=%d sha256=%s", RESTORE_STEP, fetched.size, fetched.sha256)
        backup = open_backup(fetched.path, work / "unpacked")
        if backup.table_prefix != table_prefix:
            raise StepError(
                f"the backup's tables use the prefix {backup.table_prefix!r} but the clone's site uses "
                f"{table_prefix!r}; restore a backup of a site with the same table prefix."
            )
        pairs = parse_pairs([backup.site_url, clone_url]) if backup.site_url != clone_url else []
        with _open_sql(backup.sql_path, backup.sql_gzipped) as sql:
            sql_bytes, rewritten = load_sql(sql, target, pairs)
        staged = staged_content_dir(content)
        shutil.rmtree(staged, ignore_errors=True)
        content_files = 0
        if backup.content_dir is not None:
            backup.content_dir.rename(staged)
            content_files = sum(len(files) for _, _, files in os.walk(staged))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    log.info(
        "step=%s event=done archive_bytes=%d sql_bytes=%d content_files=%d seconds=%.1f",
        RESTORE_STEP,
        fetched.size,
        sql_bytes,
        content_files,
        seconds,
    )
    return {
        "backup_site_url": backup.site_url,
        "archive_bytes": fetched.size,
        "archive_sha256": fetched.sha256,
        "manifest": backup.manifest is not None,
        "sql_bytes": sql_bytes,
        "fields_rewritten": rewritten,
        "content_restored": backup.content_dir is not None,
        "content_files": content_files,
        "seconds": round(seconds, 2),
    }
