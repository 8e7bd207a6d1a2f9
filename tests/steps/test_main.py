"""The steps CLI without a database: argument and environment validation, one-sentence errors, no secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wpclone.db import DbEndpoint
from wpclone.errors import ConfigError
from wpclone.local.settings import free_port
from wpclone.steps.common import scrub, sentence
from wpclone.steps.copy_database import (
    dump_command,
    endpoints_from_env,
    json_escaped,
    leftover_checks,
    load_command,
    parse_pairs,
)

PASSWORD = "pw-Unit-7f3a9"


def db_env(port: int, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCE_DB_", "TARGET_DB_"))}
    for prefix, name in (("SOURCE_DB", "src_db"), ("TARGET_DB", "dst_db")):
        env.update(
            {
                f"{prefix}_HOST": "127.0.0.1",
                f"{prefix}_PORT": str(port),
                f"{prefix}_USER": "someone",
                f"{prefix}_PASSWORD": PASSWORD,
                f"{prefix}_NAME": name,
            }
        )
    env.update(overrides)
    return {k: v for k, v in env.items() if v != "<unset>"}


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wpclone.steps", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_sentence(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert PASSWORD not in proc.stderr and PASSWORD not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and last.endswith(".") and last.count(". ") == 0, last
    return last


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "OLD NEW"),
        (["a"], "even, non-zero count"),
        (["http://a", "http://b", "http://c"], "even, non-zero count"),
        (["http://a", "http://a"], "replaces a value with itself"),
        (["http://a", "http://b", "http://a", "http://c"], "more than once"),
        (["http://a", " http://b"], "no spaces at the ends"),
        (["http://a", "http://b\n"], "no spaces at the ends"),
        (["", "http://b"], "must be non-empty"),
    ],
)
def test_parse_pairs_rejects(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_pairs(args)


def test_parse_pairs_accepts() -> None:
    assert parse_pairs(["http://a", "http://b", "https://a", "http://b"]) == [
        ("http://a", "http://b"),
        ("https://a", "http://b"),
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SOURCE_DB_HOST": "<unset>"}, "SOURCE_DB_HOST is not set"),
        ({"TARGET_DB_PASSWORD": "<unset>"}, "Neither TARGET_DB_PASSWORD nor TARGET_DB_PASSWORD_FILE"),
        ({"SOURCE_DB_PORT": "33o6"}, "SOURCE_DB_PORT must be a number"),
        ({"SOURCE_DB_NAME": "<unset>"}, "SOURCE_DB_NAME is not set"),
        ({"TARGET_DB_NAME": "Bad-Name"}, "TARGET_DB_NAME 'Bad-Name' is not valid"),
        ({"TARGET_DB_NAME": "src_db"}, "same database"),
        (
            {"SOURCE_DB_PASSWORD": "<unset>", "SOURCE_DB_PASSWORD_FILE": "/nonexistent/pw"},
            "cannot read SOURCE_DB_PASSWORD_FILE",
        ),
    ],
)
def test_environment_errors_are_one_sentence(overrides: dict[str, str], message: str) -> None:
    proc = run_cli(["copy-database", "http://a", "http://b"], db_env(1, **overrides))
    assert message in one_sentence(proc, 2)
    assert proc.stdout == ""


def test_usage_error_is_one_sentence() -> None:
    proc = run_cli(["copy-database"], db_env(1))
    assert "OLD NEW" in one_sentence(proc, 2)
    proc = run_cli(["no-such-step"], db_env(1))
    assert "invalid choice" in one_sentence(proc, 2)


def test_unreachable_source_fails_fast_without_password() -> None:
    port = free_port()
    proc = run_cli(["copy-database", "http://a", "http://b"], db_env(port))
    last = one_sentence(proc, 1)
    assert f"cannot open the source database src_db@127.0.0.1:{port} as someone" in last
    assert "step=copy-database event=start" in proc.stderr


def test_password_file_is_read_and_never_printed(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    env = db_env(free_port(), SOURCE_DB_PASSWORD="<unset>", SOURCE_DB_PASSWORD_FILE=str(secret))
    source, _ = endpoints_from_env_with(env)
    assert source.password == PASSWORD and PASSWORD not in repr(source)


def endpoints_from_env_with(env: dict[str, str]) -> tuple[DbEndpoint, DbEndpoint]:
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        source, target = endpoints_from_env()
        return source, target
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_client_commands_never_carry_the_password() -> None:
    env = db_env(3306)
    source, target = endpoints_from_env_with(env)
    for argv in (dump_command(source), load_command(target)):
        assert PASSWORD not in " ".join(argv)
        assert not any(a.startswith(("-p", "--password")) for a in argv)
    assert "--single-transaction" in dump_command(source)
    assert "--database=dst_db" in load_command(target)


def test_scrub_and_sentence() -> None:
    assert (
        scrub(f"Access denied for {PASSWORD}\n  at line 3", [PASSWORD, ""])
        == "Access denied for *** at line 3"
    )
    assert sentence("it failed.. ") == "it failed."


def test_leftover_checks_mask_new_values_that_contain_old() -> None:
    pairs = [("http://a.test", "http://a.test.staging"), ("https://b.test", "http://x.test")]
    exprs, params, labels = leftover_checks(pairs, ["col"])
    assert labels == [
        ("col", "http://a.test"),
        ("col", json_escaped("http://a.test")),
        ("col", "https://b.test"),
        ("col", json_escaped("https://b.test")),
    ]
    assert exprs[0].count("REPLACE(") == 1 and exprs[2].count("REPLACE(") == 0
    assert params[:2] == ["http://a.test.staging", "http://a.test"]
    assert all("`col`" in e for e in exprs)
