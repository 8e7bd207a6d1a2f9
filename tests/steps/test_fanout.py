"""How the parallel load cuts a mariadb-dump stream into statements, whatever the write sizes."""

from __future__ import annotations

import random

import pytest

from wpclone.errors import LoadError
from wpclone.steps.fanout import FanOutLoader

DUMP = (
    b"/*M!999999\\- enable the sandbox mode */ \n"
    b"-- MariaDB dump 10.19\n--\n-- Host: 127.0.0.1    Database: src\n\n"
    b"/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n"
    b"/*!40101 SET NAMES utf8mb4 */;\n\n"
    b"--\n-- Table structure for table `wp_posts`\n--\n\n"
    b"DROP TABLE IF EXISTS `wp_posts`;\n"
    b"CREATE TABLE `wp_posts` (\n  `ID` int NOT NULL,\n  `c` longtext\n) ENGINE=InnoDB;\n"
    b"INSERT INTO `wp_posts` VALUES (1,'a;\\nb;'),\n(2,'x; ;;\\\\n'),\n(3,'\\';\\n');\n"
    b"INSERT INTO `wp_posts` VALUES (4,'');\n"
    b"/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n"
)
EXPECTED = [
    b"/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;",
    b"/*!40101 SET NAMES utf8mb4 */;",
    b"DROP TABLE IF EXISTS `wp_posts`;",
    b"CREATE TABLE `wp_posts` (\n  `ID` int NOT NULL,\n  `c` longtext\n) ENGINE=InnoDB;",
    b"INSERT INTO `wp_posts` VALUES (1,'a;\\nb;'),\n(2,'x; ;;\\\\n'),\n(3,'\\';\\n');",
    b"INSERT INTO `wp_posts` VALUES (4,'');",
    b"/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;",
]


class Recorder(FanOutLoader):
    def __init__(self) -> None:  # no connections: only the cutting is under test
        self.pieces = []
        self.tail_semicolon = False
        self.statements = 0
        self.seen: list[bytes] = []

    def _check(self) -> None:
        pass

    def _dispatch(self, stmt: bytes) -> None:
        self.seen.append(stmt)

    def _barrier(self) -> None:
        pass

    def _stop(self) -> None:
        pass


@pytest.mark.parametrize("seed", range(25))
def test_statements_are_cut_the_same_for_any_chunking(seed: int) -> None:
    rng = random.Random(seed)
    sink = Recorder()
    pos = 0
    while pos < len(DUMP):
        step = rng.choice([1, 2, 3, 7, 50, 4096])
        sink.write(DUMP[pos : pos + step])
        pos += step
    sink.close()
    assert sink.seen == EXPECTED


def test_delimiter_is_refused() -> None:
    sink = Recorder()
    with pytest.raises(LoadError, match="DELIMITER"):
        sink.write(b"DELIMITER ;;\nCREATE TRIGGER t BEGIN SELECT 1; END ;;\n")
