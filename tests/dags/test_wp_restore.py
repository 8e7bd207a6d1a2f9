"""wp_backup and wp_restore end to end with ``dag.test()`` on the local runtime, against the real stack.

The round trip of the issue: clone -> change a post and upload a file -> back it up -> restore that backup
into a second clone, which then serves the changed post and the file at its own URL with valid serialized
data. Then hostile restores: each fails, and the clone keeps serving exactly what it served before.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import tarfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fixtures.dagtest import run, states, xcom
from tests.fixtures.php_oracle import PhpOracle
from tests.local.test_seed import _get
from tests.steps import test_main_clone_by_hand as by_hand
from wpclone.airflow.services import services
from wpclone.archive import write_backup
from wpclone.db import DbEndpoint
from wpclone.local.seed import site_endpoint
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, content_dir, load_site
from wpclone.models import CloneStatus
from wpclone.registry import Registry
from wpclone.services.cleanup import sweep_orphans

A, B = "rt-alpha", "rt-bravo"
TITLE = "Changed in the clone before its backup"
FILE = "uploads/restore-check/note.txt"
FILE_BODY = b"uploaded to the first clone\n"


def _query(site: SiteConfig, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    with site_endpoint(site).connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        rows = list(cur.fetchall())
        conn.commit()
        return rows


def _first_post(site: SiteConfig) -> tuple[int, str]:
    rows = _query(
        site,
        f"SELECT ID, post_name FROM `{site.table_prefix}posts` WHERE post_type = 'post' "
        "AND post_status = 'publish' ORDER BY ID LIMIT 1",
    )
    return int(rows[0][0]), str(rows[0][1])


def _clone(dags: Any, source: SiteConfig, stack: StackSettings, clone_id: str) -> SiteConfig:
    dagrun = run(dags, "wp_clone", {"source_url": source.url, "clone_id": clone_id, "ttl_minutes": 60})
    assert str(dagrun.state) == "success", states(dagrun)
    return load_site(stack, clone_id)


# The staging bar says the time left in words ("expires in 59 min"): it changes as the minutes pass.
TIME_LEFT = re.compile(rb"(Staging clone [a-z0-9-]+, )(?:expires in [^(<]*|expired) \(")


def _served(site: SiteConfig) -> tuple[bytes, bytes]:
    """What the clone serves: its first post's page (the staging bar's time left aside) and the uploaded
    file."""
    post_id, _ = _first_post(site)
    status, _, page = _get(f"{site.url}/?p={post_id}")
    assert status == 200
    assert TIME_LEFT.search(page), page[-500:]
    _, _, body = _get(f"{site.url}/wp-content/{FILE}")
    return TIME_LEFT.sub(rb"\1(", page), body


@pytest.fixture(scope="module")
def backup(dags: Any, source_site: SiteConfig, stack: StackSettings) -> dict[str, Any]:
    """Clone A, changed (a post naming A's URL, an uploaded file), then backed up by wp_backup."""
    alpha = _clone(dags, source_site, stack, A)
    post_id, _ = _first_post(alpha)
    _query(
        alpha,
        f"UPDATE `{alpha.table_prefix}posts` SET post_title = %s, post_content = %s WHERE ID = %s",
        (TITLE, f'<a href="{alpha.url}/wp-content/{FILE}">the note</a>', post_id),
    )
    note = content_dir(stack, A) / FILE
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_bytes(FILE_BODY)
    dagrun = run(dags, "wp_backup", {"clone_id": A})
    assert str(dagrun.state) == "success", states(dagrun)
    return {"alpha": alpha, "result": xcom(dagrun, "release_clone")}


@pytest.fixture(scope="module")
def restored(
    dags: Any, backup: dict[str, Any], source_site: SiteConfig, stack: StackSettings
) -> dict[str, Any]:
    bravo = _clone(dags, source_site, stack, B)
    dagrun = run(dags, "wp_restore", {"clone_id": B, "source_backup_url": backup["result"]["backup_url"]})
    return {"run": dagrun, "site": bravo, "result": xcom(dagrun, "release_clone")}


def test_backup_is_an_archive_in_the_backup_directory(backup: dict[str, Any], stack: StackSettings) -> None:
    result = backup["result"]
    path = Path(urlsplit(result["backup_url"]).path)
    assert path.parent == stack.state_dir / "backups" / A and path.name.endswith(".tar.gz")
    assert path.stat().st_size == result["size"]
    sidecar = path.with_name(path.name + ".sha256").read_text()
    assert sidecar.split()[0] == result["sha256"]
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert "manifest.json" in names and "database.sql.gz" in names and f"wp-content/{FILE}" in names


def test_the_second_clone_serves_the_backup_at_its_own_url(
    restored: dict[str, Any], backup: dict[str, Any], registry: Registry, php: PhpOracle
) -> None:
    dagrun, bravo, alpha = restored["run"], restored["site"], backup["alpha"]
    assert str(dagrun.state) == "success", states(dagrun)
    page, body = _served(bravo)
    assert TITLE.encode() in page
    assert f"{bravo.url}/wp-content/{FILE}".encode() in page  # the backup's URL rewritten to the clone's
    assert body == FILE_BODY
    by_hand.test_no_source_url_left_in_the_clone(clone_site=bravo, source_site=alpha)
    by_hand.test_every_serialized_value_unserializes_in_php(clone_site=bravo, php=php)
    result = restored["result"]
    assert result["clone_id"] == B and result["backup_site_url"] == alpha.url
    assert result["safety_backup_url"].startswith("file://") and "/rt-bravo/" in result["safety_backup_url"]
    record = registry.get(B)
    assert record is not None and record.status is CloneStatus.READY
    assert record.lock_job_id is None and record.last_error is None


def test_the_restore_leaves_no_database_or_content_of_its_own(
    restored: dict[str, Any], admin_db: DbEndpoint, stack: StackSettings
) -> None:
    assert str(restored["run"].state) == "success"
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name IN (%s, %s)",
            ("wpr_rt_bravo", "wpo_rt_bravo"),
        )
        assert cur.fetchall() == ()
        cur.execute("SELECT user FROM mysql.user WHERE user = 'wpr_rt_bravo'")
        assert cur.fetchall() == ()
    siblings = sorted(p.name for p in content_dir(stack, B).parent.iterdir())
    assert not [name for name in siblings if "restore" in name], siblings


def _hostile_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = b"-- nothing\n"
        info = tarfile.TarInfo("database.sql")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("wp-content/../../escaped.php")
        evil.size = 5
        tar.addfile(evil, io.BytesIO(b"<?php"))
    return path


def _hostile_sql(path: Path, site_url: str) -> Path:
    path.write_text(
        "CREATE TABLE `wp_options` (option_id int, option_name varchar(191), option_value longtext);\n"
        f"INSERT INTO `wp_options` VALUES (1,'siteurl','{site_url}');\n"
        "CREATE DATABASE `wpclone_evil`;\n"
    )
    return path


@pytest.mark.parametrize(
    ("make", "sentence"),
    [
        (lambda path, url: _hostile_tar(path / "escape.tar.gz"), "wp-content/../../escaped.php"),
        (lambda path, url: _hostile_sql(path / "evil.sql", url), "CREATE DATABASE"),
    ],
    ids=["path-escape", "create-database"],
)
def test_a_hostile_backup_fails_and_the_clone_serves_what_it_served(
    make: Any,
    sentence: str,
    restored: dict[str, Any],
    dags: Any,
    registry: Registry,
    admin_db: DbEndpoint,
    stack: StackSettings,
) -> None:
    bravo = restored["site"]
    before = _served(bravo)
    backups = stack.state_dir / "backups"
    archive = make(backups, bravo.url)
    dagrun = run(dags, "wp_restore", {"clone_id": B, "source_backup_url": archive.as_uri()})
    assert str(dagrun.state) == "failed"
    assert states(dagrun)["switch_site"] != "success"
    error = xcom(dagrun, "load_backup", "error")
    assert sentence in error, error
    assert _served(bravo) == before
    assert not (backups.parent / "escaped.php").exists() and not (stack.sites_dir / "escaped.php").exists()
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name IN (%s, %s, %s)",
            ("wpclone_evil", "wpr_rt_bravo", "wpo_rt_bravo"),
        )
        assert cur.fetchall() == ()
    record = registry.get(B)
    assert record is not None and record.status is CloneStatus.READY and record.lock_job_id is None
    assert record.last_error and sentence in record.last_error


def test_a_url_outside_the_policy_is_refused_before_anything_happens(
    restored: dict[str, Any], dags: Any, stack: StackSettings
) -> None:
    backups = stack.state_dir / "backups" / B
    before = sorted(backups.iterdir())
    dagrun = run(dags, "wp_restore", {"clone_id": B, "source_backup_url": "file:///etc/passwd"})
    assert str(dagrun.state) == "failed"
    assert states(dagrun)["lock_clone"] == "upstream_failed"
    error = xcom(dagrun, "validate_request", "error")
    assert "/etc/passwd" in error, error
    assert sorted(backups.iterdir()) == before  # not even the safety backup was made


def test_the_orphan_sweep_drops_restore_databases_no_job_holds(
    restored: dict[str, Any], registry: Registry, admin_db: DbEndpoint
) -> None:

    planted = ("wpr_rt_bravo", "wpo_rt_bravo", "wpr_gone_clone")
    with admin_db.connect() as conn, conn.cursor() as cur:
        for name in planted:
            cur.execute(f"CREATE DATABASE `{name}`")
    registry.lock(B, "a-restore-job")  # while a job holds the clone, its restore databases are its own
    try:
        sweep_orphans(services())
        assert _schemas(admin_db, planted) == ["wpo_rt_bravo", "wpr_rt_bravo"]
    finally:
        registry.unlock(B, "a-restore-job")
    sweep_orphans(services())
    assert _schemas(admin_db, planted) == []
    assert registry.get(B) is not None and _served(restored["site"])[1] == FILE_BODY  # the clone untouched


def _schemas(admin: DbEndpoint, names: tuple[str, ...]) -> list[str]:
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name IN %s ORDER BY 1", (names,)
        )
        return [str(row[0]) for row in cur.fetchall()]


MARKER = b"served from a restore that must never go live\n"


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _only_options(site_url: str) -> bytes:
    """A dump of one table: wp_options with the site's URLs (what the issue's 1 KB archive held)."""
    return (
        "CREATE TABLE `wp_options` (option_id bigint, option_name varchar(191), option_value longtext, "
        "autoload varchar(20));\n"
        f"INSERT INTO `wp_options` VALUES (1,'siteurl','{site_url}','yes'),(2,'home','{site_url}','yes');\n"
    ).encode()


class _Watcher:
    """Polls the clone while a restore runs: whether it ever served the restore's marker file, and every
    front-page status it answered."""

    def __init__(self, site: SiteConfig) -> None:

        self.site = site
        self.marker_served = False
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.is_set():
            status, _, body = _get(f"{self.site.url}/wp-content/uploads/restore-marker.txt")
            self.marker_served |= status == 200 and body == MARKER
            self.statuses.append(_get(f"{self.site.url}/")[0])
            self.stop.wait(0.05)

    def __enter__(self) -> _Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _incomplete(path: Path, site: SiteConfig) -> Path:
    return _tar(
        path / "incomplete.tar.gz",
        {"database.sql": _only_options(site.url), "wp-content/uploads/restore-marker.txt": MARKER},
    )


def _bomb(path: Path, site: SiteConfig) -> Path:
    # 1,000:1 like the issue's: 64 MiB of zeros compress to about 64 KiB (the caps allow it).
    big = b"\0" * (64 << 20)
    return _tar(
        path / "bomb.tar.gz",
        {
            "database.sql": _only_options(site.url),
            "wp-content/uploads/big.bin": big,
            "wp-content/uploads/restore-marker.txt": MARKER,
        },
    )


@pytest.mark.parametrize(("make", "size_limit"), [(_incomplete, 2048), (_bomb, 1 << 20)], ids=["1kb", "bomb"])
def test_an_incomplete_backup_is_never_served(
    make: Any,
    size_limit: int,
    restored: dict[str, Any],
    dags: Any,
    registry: Registry,
    stack: StackSettings,
) -> None:
    bravo = restored["site"]
    before = _served(bravo)
    backups = stack.state_dir / "backups" / B
    archive = make(stack.state_dir / "backups", bravo)
    assert archive.stat().st_size < size_limit
    kept = sorted(backups.iterdir())
    with _Watcher(bravo) as watcher:
        dagrun = run(dags, "wp_restore", {"clone_id": B, "source_backup_url": archive.as_uri()})
    assert str(dagrun.state) == "failed"
    assert states(dagrun)["verify_restore"] == "failed"
    for task_id in ("deploy_preview", "backup_clone", "switch_site"):
        assert states(dagrun)[task_id] == "upstream_failed", states(dagrun)
    error = xcom(dagrun, "verify_restore", "error")
    assert error == (
        "the backup is not a complete WordPress site for the table prefix wp_: it lacks wp_users, "
        "wp_usermeta, wp_posts, wp_postmeta, wp_comments, wp_commentmeta and 5 more."
    )
    assert not watcher.marker_served and watcher.statuses and set(watcher.statuses) == {200}
    assert _served(bravo) == before
    assert sorted(backups.iterdir()) == kept  # no safety backup for an archive that never could be served
    record = registry.get(B)
    assert record is not None and record.status is CloneStatus.READY and record.lock_job_id is None
    assert not (content_dir(stack, B).parent / "wp-content.restore-new").exists()


def test_a_restore_whose_site_is_broken_is_caught_by_its_preview(
    backup: dict[str, Any], restored: dict[str, Any], dags: Any, registry: Registry, stack: StackSettings
) -> None:
    """A complete backup whose site breaks (a must-use plugin with a fatal error): the preview fails the
    readiness check and the clone never serves it."""

    bravo = restored["site"]
    before = _served(bravo)
    alpha_archive = Path(urlsplit(backup["result"]["backup_url"]).path)
    with tarfile.open(alpha_archive) as tar:
        member = tar.extractfile("database.sql.gz")
        assert member is not None
        dump = gzip.decompress(member.read())
    content = stack.state_dir / "broken-restore-content"

    shutil.rmtree(content, ignore_errors=True)
    shutil.copytree(content_dir(stack, A), content)
    (content / "mu-plugins" / "aa-broken.php").write_text("<?php wpclone_restore_breaks_here();\n")
    (content / "uploads" / "restore-marker.txt").write_bytes(MARKER)
    archive = stack.state_dir / "backups" / "broken-site.tar.gz"
    write_backup(
        archive,
        dump=io.BytesIO(dump),
        content_dir=content,
        site_url=backup["alpha"].url,
        table_prefix="wp_",
        wordpress_version=None,
        clone_id=None,
    )
    shutil.rmtree(content)
    with _Watcher(bravo) as watcher:
        dagrun = run(dags, "wp_restore", {"clone_id": B, "source_backup_url": archive.as_uri()})
    assert str(dagrun.state) == "failed"
    assert states(dagrun)["verify_restore"] == "success"
    assert states(dagrun)["await_preview_ready"] == "failed"
    assert states(dagrun)["switch_site"] == "upstream_failed"
    error = xcom(dagrun, "await_preview_ready", "error")
    assert f"the restored site's preview at {bravo.url}/ is not ready" in error, error
    assert "wpclone_restore_breaks_here" in error  # the site's own log line
    assert not watcher.marker_served and set(watcher.statuses) == {200}
    assert _served(bravo) == before
    record = registry.get(B)
    assert record is not None and record.status is CloneStatus.READY and record.lock_job_id is None


def test_a_database_only_backup_restores_and_keeps_the_clones_wp_content(
    backup: dict[str, Any], restored: dict[str, Any], dags: Any, stack: StackSettings
) -> None:
    """A bare .sql.gz (no wp-content): previewed and switched with the clone's own wp-content."""
    bravo = restored["site"]
    alpha_archive = Path(urlsplit(backup["result"]["backup_url"]).path)
    with tarfile.open(alpha_archive) as tar:
        member = tar.extractfile("database.sql.gz")
        assert member is not None
        dump = member.read()
    bare = stack.state_dir / "backups" / "database-only.sql.gz"
    bare.write_bytes(dump)
    marker = content_dir(stack, B) / "uploads" / "kept-by-a-database-only-restore.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_bytes(MARKER)
    post_id, _ = _first_post(bravo)
    _query(bravo, f"UPDATE `{bravo.table_prefix}posts` SET post_title = %s WHERE ID = %s", ("Since", post_id))
    assert TITLE.encode() not in _served(bravo)[0]
    dagrun = run(dags, "wp_restore", {"clone_id": B, "source_backup_url": bare.as_uri()})
    assert str(dagrun.state) == "success", states(dagrun)
    assert xcom(dagrun, "release_clone")["content_restored"] is False
    page, _ = _served(bravo)
    assert TITLE.encode() in page  # the backup's database is back
    status, _, body = _get(f"{bravo.url}/wp-content/uploads/kept-by-a-database-only-restore.txt")
    assert status == 200 and body == MARKER  # the clone's own wp-content
