"""The backup steps: ``backup-clone`` archives a clone; ``restore-backup`` loads an archive beside a clone.

``backup-clone`` streams ``mariadb-dump`` of the clone (``SOURCE_DB_*``) and its wp-content
(``SOURCE_CONTENT_DIR``) into ``<WPCLONE_BACKUP_DIR>/<clone_id>/<clone_id>-<UTC stamp>.tar.gz`` with a
manifest and a ``.sha256`` sidecar (:mod:`wpclone.archive`). wp-content's symlinks follow copy-content's
rule (:mod:`wpclone.steps.content_tree`, roots from ``SOURCE_CONTENT_LINK_ROOTS``): links inside are
archived as links, links out of it under an allowed root as what they point to, any other fails the backup.

``restore-backup`` touches nothing the clone serves. It fetches the archive under a URL policy
(:mod:`wpclone.fetch`: refused before any byte when the scheme, host or address is not allowed), unpacks
and verifies it (:mod:`wpclone.archive`: paths, links, sizes, checksums), then loads its SQL dump through
the statement guard (:mod:`wpclone.sqlguard`) and the URL rewrite (the backup's site URL becomes the
clone's) into a **fresh** database (``TARGET_DB_*``: a login that may touch only that database), and
stages its wp-content next to the clone's as ``wp-content.restore-new``. The switch is the next task's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from wpclone.db import ConfigError, DbEndpoint
from wpclone.steps.common import StepError, mb_per_s, sentence
from wpclone.steps.content_tree import link_roots_from_env

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


def backup_clone(clone_id: str, site_url: str, table_prefix: str) -> dict[str, Any]:
    """Archive the clone's database and wp-content into the backup directory; returns where and what."""
    from wpclone.archive import write_backup
    from wpclone.steps.copy_database import _start_dump, _StderrDrain, endpoint_from_env

    source = endpoint_from_env("SOURCE_DB")
    link_roots = link_roots_from_env()
    content = Path(os.environ["SOURCE_CONTENT_DIR"]) if os.environ.get("SOURCE_CONTENT_DIR") else None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = _env_dir(BACKUP_DIR_ENV).resolve() / clone_id / f"{clone_id}-{stamp}.tar.gz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info("step=%s event=start clone=%s dest=%s", BACKUP_STEP, clone_id, dest)
    dump = _start_dump(source)
    assert dump.stdout is not None and dump.stderr is not None
    errors = _StderrDrain(dump.stderr)
    errors.start()
    try:
        info = write_backup(
            dest,
            dump=cast(BinaryIO, dump.stdout),
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
        code = dump.wait()
    if code != 0:  # never keep an archive of a truncated dump
        for path in (dest, dest.with_name(dest.name + ".sha256")):
            path.unlink(missing_ok=True)
        raise StepError(
            sentence(f"mariadb-dump of the clone exited with {code}: {errors.text([source.password])}")
        )
    seconds = time.monotonic() - started
    log.info(
        "step=%s event=done bytes=%d seconds=%.1f mb_per_s=%.1f",
        BACKUP_STEP,
        info.size,
        seconds,
        mb_per_s(info.size, seconds),
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
    }


# -- restore-backup ----------------------------------------------------------------------------------------


def fetch_policy_from_env() -> Any:
    from wpclone.fetch import FetchPolicy

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
    from wpclone.rewrite import Rewriter
    from wpclone.sqlguard import GuardedReader
    from wpclone.steps.copy_database import _StderrDrain, client_env, load_command

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
    import gzip

    with gzip.open(path, "rb") if gzipped else path.open("rb") as handle:
        yield cast(IO[bytes], handle)


def restore_backup(url: str, clone_url: str, table_prefix: str) -> dict[str, Any]:
    """Fetch, verify and load the backup at ``url`` beside the clone (module docstring)."""
    from wpclone.archive import open_backup
    from wpclone.fetch import fetch, redact
    from wpclone.steps.copy_database import endpoint_from_env, parse_pairs

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
