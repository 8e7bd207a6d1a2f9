"""A step's time limit: sized to its source between a floor and a ceiling, and the sentences of a timeout."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from wpclone.errors import ConfigError
from wpclone.runtimes.limits import source_bytes, step_limit, task_timed_out, tree_bytes
from wpclone.settings import TimeLimits

LIMITS = TimeLimits(step_floor_s=60, step_ceiling_s=3600, step_mb_per_s=2.0)


def test_a_small_source_gets_the_floor() -> None:
    limit = step_limit(50_000_000, LIMITS)  # 25 s at 2 MB/s
    assert (limit.seconds, limit.setting) == (60, "WPCLONE_STEP_TIMEOUT_FLOOR_S")


def test_a_middling_source_gets_its_size_at_the_slowest_healthy_rate() -> None:
    limit = step_limit(1_000_000_000, LIMITS)  # 1000 MB at 2 MB/s
    assert (limit.seconds, limit.setting) == (500, "WPCLONE_STEP_MIN_MB_PER_S")
    assert step_limit(2_000_000_000, LIMITS).seconds == 1000  # twice the size, twice the time


def test_a_huge_source_and_an_unknown_one_get_the_ceiling() -> None:
    assert (step_limit(10**12, LIMITS).seconds, step_limit(10**12, LIMITS).setting) == (
        3600,
        "WPCLONE_STEP_TIMEOUT_CEILING_S",
    )
    unknown = step_limit(None, LIMITS)
    assert (unknown.seconds, unknown.source_bytes) == (3600, None)


def test_the_timeout_sentence_names_the_task_the_time_the_size_and_the_setting() -> None:
    said = step_limit(45_300_000, LIMITS).timed_out("copy_database", 61.4)
    assert said == (
        "copy_database timed out after 61 s (limit for a 45.3 MB source: 60 s, "
        "WPCLONE_STEP_TIMEOUT_FLOOR_S); the step was killed."
    )
    assert "a source of unknown size: 3600 s" in step_limit(None, LIMITS).timed_out("copy_content", 3601)
    assert re.fullmatch(
        r"load_backup timed out after 3720 s \(its task's limit: WPCLONE_STEP_TIMEOUT_CEILING_S and 120 s "
        r"more\); the step was killed\.",
        task_timed_out("load_backup", timedelta(seconds=3720)),
    )


def test_limits_from_the_environment_and_their_refusals() -> None:
    env = {
        "WPCLONE_STEP_TIMEOUT_FLOOR_S": "30",
        "WPCLONE_STEP_TIMEOUT_CEILING_S": "90",
        "WPCLONE_STEP_MIN_MB_PER_S": "0.5",
        "WPCLONE_TASK_TIMEOUT_S": "120",
        "WPCLONE_RUN_TIMEOUT_MINUTES": "10",
    }
    assert TimeLimits.from_env(env) == TimeLimits(
        task_s=120, step_floor_s=30, step_ceiling_s=90, step_mb_per_s=0.5, run_minutes=10
    )
    assert TimeLimits.from_env({}) == TimeLimits()
    with pytest.raises(ConfigError, match="FLOOR_S=100 is above WPCLONE_STEP_TIMEOUT_CEILING_S=90"):
        TimeLimits.from_env({**env, "WPCLONE_STEP_TIMEOUT_FLOOR_S": "100"})
    with pytest.raises(ConfigError, match="WPCLONE_RUN_TIMEOUT_MINUTES=1 is not above the limit of a task"):
        TimeLimits.from_env({**env, "WPCLONE_RUN_TIMEOUT_MINUTES": "1"})
    with pytest.raises(ConfigError, match="WPCLONE_STEP_MIN_MB_PER_S must be a number of MB per second"):
        TimeLimits.from_env({**env, "WPCLONE_STEP_MIN_MB_PER_S": "0"})


def test_a_source_tree_is_measured_by_its_files_not_what_its_links_point_to(tmp_path: Path) -> None:
    (tmp_path / "uploads" / "2026").mkdir(parents=True)
    (tmp_path / "uploads" / "2026" / "a.jpg").write_bytes(b"x" * 1000)
    (tmp_path / "index.php").write_bytes(b"y" * 24)
    big = tmp_path.parent / f"{tmp_path.name}-outside"
    big.write_bytes(b"z" * 100_000)
    (tmp_path / "link").symlink_to(big)
    assert tree_bytes(tmp_path) == 1024 + len(str(big))  # the link's own size: its target's path
    assert source_bytes({"SOURCE_CONTENT_DIR": str(tmp_path)}) == tree_bytes(tmp_path)


def test_a_step_without_a_source_or_with_one_that_cannot_be_measured_has_no_size(tmp_path: Path) -> None:
    assert source_bytes({"TARGET_DB_HOST": "127.0.0.1"}) is None
    with socket.socket() as sock:  # a port nothing listens on: the connection is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    password = tmp_path / "pw"
    password.write_text("secret")
    env = {
        "SOURCE_DB_HOST": "127.0.0.1",
        "SOURCE_DB_PORT": str(port),
        "SOURCE_DB_USER": "wp",
        "SOURCE_DB_NAME": "wp",
        "SOURCE_DB_PASSWORD_FILE": str(password),
    }
    assert source_bytes(env) is None
