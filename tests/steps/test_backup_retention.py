"""Backups are pruned and go with their clone: retention in the backup step, the settings' way to it, and
the local runtime's delete (the kubernetes runtime's is in tests/runtimes/test_kubernetes_ownership.py)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.test_pod import (  # k8s_dags: a fixture, resolved by name in this module
    build_task,
    container_env,
    k8s_config_json,
    k8s_dags,  # noqa: F401
)
from wpclone.airflow.builders import BACKUP_CLONE
from wpclone.archive import write_backup
from wpclone.errors import ConfigError, StepError
from wpclone.local.settings import StackSettings
from wpclone.models import BackupConfig, ClonePlan, CopyMode, SourceConfig, WpcloneConfig
from wpclone.runtimes.local import LocalRuntime
from wpclone.steps.backup import (
    KEEP_ENV,
    MAX_AGE_ENV,
    STAMP_FORMAT,
    _CheckedDump,
    prune_backups,
    retention_env,
    retention_from_env,
)
from wpclone.steps.copy_database import _StderrDrain

CLONE = "qa-1"
NOW = datetime(2026, 6, 30, 12, 0, 0, tzinfo=UTC)


def archive(directory: Path, age: timedelta, clone_id: str = CLONE, sidecar: bool = True) -> Path:
    path = directory / f"{clone_id}-{(NOW - age).strftime(STAMP_FORMAT)}.tar.gz"
    path.write_bytes(b"archive")
    if sidecar:
        path.with_name(path.name + ".sha256").write_text(f"{'0' * 64}  {path.name}\n")
    return path


def test_prune_keeps_the_newest_within_the_age_and_never_the_one_just_written(tmp_path: Path) -> None:
    written = archive(tmp_path, timedelta(0))
    day = timedelta(days=1)
    recent = [archive(tmp_path, n * day) for n in (1, 2, 3)]
    old = archive(tmp_path, 40 * day)  # older than the age limit although within the count
    orphan_sidecar = tmp_path / f"{CLONE}-20260101T000000Z.tar.gz.sha256"
    orphan_sidecar.write_text("x")
    partials = [tmp_path / f"{written.name}.partial", tmp_path / f"{written.name}.sql.gz.partial"]
    for path in partials:  # a killed try's leftovers
        path.write_bytes(b"half")
    not_ours = [
        tmp_path / "notes.txt",
        tmp_path / f"qa-10-{NOW.strftime(STAMP_FORMAT)}.tar.gz",  # another clone's name
        tmp_path / f"{CLONE}-manual.tar.gz",
    ]
    for path in not_ours:
        path.write_bytes(b"theirs")

    removed = prune_backups(tmp_path, CLONE, keep=3, max_age=timedelta(days=30), now=NOW, written=written)

    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(
        [
            *(p.name for p in (written, recent[0], recent[1])),
            *(p.name + ".sha256" for p in (written, recent[0], recent[1])),
            *(p.name for p in not_ours),
        ]
    )
    assert removed == sorted(
        [
            recent[2].name,
            recent[2].name + ".sha256",
            old.name,
            old.name + ".sha256",
            orphan_sidecar.name,
            *(p.name for p in partials),
        ]
    )


def test_prune_keeps_what_was_just_written_even_when_the_clock_disagrees(tmp_path: Path) -> None:
    written = archive(tmp_path, timedelta(days=90))  # a clock far behind: "too old" by its own stamp
    newer = archive(tmp_path, -timedelta(days=1))  # and one from a clock ahead
    removed = prune_backups(tmp_path, CLONE, keep=1, max_age=timedelta(days=30), now=NOW, written=written)
    assert removed == [] and written.exists() and newer.exists()


def test_retention_reaches_the_step_through_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEEP_ENV, raising=False)
    monkeypatch.delenv(MAX_AGE_ENV, raising=False)
    assert retention_from_env() == (5, timedelta(days=30))  # BackupConfig's defaults
    env = retention_env(BackupConfig(keep_per_clone=2, max_age_days=7))
    assert env == {KEEP_ENV: "2", MAX_AGE_ENV: "7"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert retention_from_env() == (2, timedelta(days=7))
    monkeypatch.setenv(KEEP_ENV, "0")
    with pytest.raises(
        ConfigError, match="WPCLONE_BACKUP_KEEP must be a whole number of at least 1, not '0'"
    ):
        retention_from_env()


def local_runtime(tmp_path: Path, **backups: Any) -> LocalRuntime:
    settings = StackSettings(tmp_path / "state", db_port=3306, http_port=8080)
    config = WpcloneConfig(backups=BackupConfig(directory=str(tmp_path / "backups"), **backups))
    return LocalRuntime(config, settings)


def test_the_local_step_environment_carries_the_configured_retention(tmp_path: Path) -> None:
    runtime = local_runtime(tmp_path, keep_per_clone=3, max_age_days=9)
    source = SourceConfig(name="source", url="http://source.localhost", db_host="h", db_name="d", db_user="u")
    plan = ClonePlan(
        clone_id=CLONE,
        source=source,
        url="http://qa-1.localhost",
        db_name="wpc_qa_1",
        ttl_minutes=60,
        copy_mode=CopyMode.EVERYTHING,
        expires_at=NOW,
    )
    env = runtime.step_env(plan, BACKUP_CLONE, job_id="j")
    assert (env[KEEP_ENV], env[MAX_AGE_ENV]) == ("3", "9")


def test_the_kubernetes_backup_step_gets_the_retention_of_task_time(
    k8s_dags: dict[str, Any],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WPCLONE_CONFIG_JSON", k8s_config_json(keep_per_clone=4, max_age_days=12))
    _, _, pod = build_task(k8s_dags["wp_backup"], "backup_clone")
    env = container_env(pod)
    assert (env[KEEP_ENV]["value"], env[MAX_AGE_ENV]["value"]) == ("4", "12")
    _, _, load = build_task(k8s_dags["wp_restore"], "load_backup")
    assert KEEP_ENV not in container_env(load)  # only the step that writes backups prunes them


@pytest.mark.parametrize("keep_after_delete", [False, True])
def test_a_local_clones_backups_go_with_it_unless_kept(tmp_path: Path, keep_after_delete: bool) -> None:
    runtime = local_runtime(tmp_path, keep_after_delete=keep_after_delete)
    mine, other = runtime.backup_dir / CLONE, runtime.backup_dir / "qa-2"
    for directory in (mine, other):
        directory.mkdir(parents=True)
        archive(directory, timedelta(0), clone_id=directory.name)
    removed = runtime.delete_clone_objects(CLONE)
    assert len(list(other.iterdir())) == 2
    if keep_after_delete:
        assert len(list(mine.iterdir())) == 2 and removed == []
    else:
        assert not mine.exists() and removed == [f"backups of {CLONE} (2 files)"]
        assert runtime.delete_clone_objects(CLONE) == []  # again: nothing left, no error


def test_a_dump_that_fails_midway_is_never_renamed_into_place(tmp_path: Path) -> None:
    """The archive becomes visible under its name inside write_backup: the dump's exit status is read at
    the end of its output, before that, so a failed dump's archive never looks finished, not even for an
    instant in which the step could be killed."""
    dump = subprocess.Popen(
        ["sh", "-c", "printf 'CREATE TABLE `wp_options` ('; echo 'lost connection' >&2; exit 3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert dump.stderr is not None
    errors = _StderrDrain(dump.stderr)
    errors.start()
    dest = tmp_path / f"{CLONE}-{NOW.strftime(STAMP_FORMAT)}.tar.gz"
    with pytest.raises(StepError, match="mariadb-dump of the clone exited with 3: lost connection"):
        write_backup(
            dest,
            dump=_CheckedDump(dump, errors, "pw"),  # type: ignore[arg-type]
            content_dir=None,
            site_url="http://qa-1.localhost",
            table_prefix="wp_",
            wordpress_version=None,
            clone_id=CLONE,
        )
    assert list(tmp_path.iterdir()) == []
