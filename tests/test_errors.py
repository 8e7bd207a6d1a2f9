"""Nothing leaks through errors: a fetched file that is not a backup is refused without quoting it, and a
database driver's error reaches users as a sentence, never as its ``(code, "...")`` tuple.

The same sentences from errors the real MariaDB raises: tests/test_errors_drivers.py.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import MySQLdb
import pymysql
import pytest

from wpclone.archive import open_backup
from wpclone.errors import ArchiveError, describe

SECRET = "internal-token-7f3a"
NOT_BACKUPS = [
    b"<!DOCTYPE html>\n<html><title>" + SECRET.encode() + b"</title></html>\n",
    b'{"error": "unauthorized", "token": "' + SECRET.encode() + b'"}\n',
    b"Set up your account: " + SECRET.encode() + b"\n",  # starts like SET, is not a dump
    b"Forbidden: " + SECRET.encode() + b"\n",
    b"\n\n   \n",
]


@pytest.mark.parametrize("body", NOT_BACKUPS)
@pytest.mark.parametrize("gzipped", [False, True])
def test_a_fetched_file_that_is_not_a_backup_is_not_quoted(
    tmp_path: Path, body: bytes, gzipped: bool
) -> None:
    src = tmp_path / "archive"
    src.write_bytes(gzip.compress(body) if gzipped else body)
    with pytest.raises(ArchiveError) as caught:
        open_backup(src, tmp_path / "work")
    assert str(caught.value) == "archive is neither a backup archive nor an SQL dump."
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(
    "head",
    [
        b"-- MariaDB dump 10.19\n",
        b"/*M!999999\\- enable the sandbox mode */\n",
        b"/*!40101 SET NAMES utf8mb4 */;\n",
        b"SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS;\n",
        b"DROP TABLE IF EXISTS `wp_options`;\n",
        b"create table wp_options (option_id int);\n",
        b"# a hand-written dump\nINSERT INTO `wp_options` VALUES (1);\n",
    ],
)
def test_dumps_still_read_as_dumps(tmp_path: Path, head: bytes) -> None:
    """Past the sniffing: a dump is read (this one has no site row, which is the next refusal)."""
    src = tmp_path / "b.sql"
    src.write_bytes(head)
    with pytest.raises(ArchiveError, match="has no siteurl or home row"):
        open_backup(src, tmp_path / "work")


@pytest.mark.parametrize("driver", [pymysql.err, MySQLdb])
def test_driver_errors_become_sentences(driver: object) -> None:
    programming = driver.ProgrammingError  # type: ignore[attr-defined]
    operational = driver.OperationalError  # type: ignore[attr-defined]
    cases = {
        programming(
            1146, "Table 'wpc_x.wp_users' doesn't exist"
        ): "the database wpc_x has no table wp_users.",
        operational(1049, "Unknown database 'wpc_gone'"): "the database wpc_gone does not exist on the "
        "database server.",
        operational(1045, "Access denied for user 'wpc_x'@'10.0.0.5' (using password: YES)"): (
            "the database server refused the login of user wpc_x: wrong password, or the user does not exist "
            "or may not connect from here."
        ),
        operational(1044, "Access denied for user 'wpc_x'@'%' to database 'mysql'"): (
            "the database user wpc_x may not use the database mysql."
        ),
        operational(2003, "Can't connect to MySQL server on 'db' ([Errno 111] Connection refused)"): (
            "the database server could not be reached or dropped the connection: Can't connect to MySQL "
            "server on 'db' ([Errno 111] Connection refused)."
        ),
        programming(1064, "You have an error in your SQL syntax near 'IDENTIFIED BY 'hunter2''"): (
            "the database server could not parse a statement (MySQL error 1064)."
        ),
        operational(1205, "Lock wait timeout exceeded; try restarting transaction"): (
            "the database server refused a statement (MySQL error 1205): Lock wait timeout exceeded; try "
            "restarting transaction."
        ),
    }
    for exc, sentence in cases.items():
        assert describe(exc) == sentence
        assert "(" + str(exc.args[0]) + "," not in describe(exc)  # never the driver's tuple
    assert (
        describe(pymysql.err.InterfaceError(0, ""))
        == "the database server connection failed (MySQL error 0)."
    )


def test_other_errors_are_described_as_before() -> None:
    assert describe(ValueError("clone qa-1 does not exist")) == "clone qa-1 does not exist."
    assert describe(RuntimeError()) == "RuntimeError."
