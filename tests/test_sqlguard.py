"""The SQL guard: a restored dump may touch only its own database, and the mariadb client may run nothing."""

from __future__ import annotations

import io

import pytest

from wpclone.errors import SqlRefused
from wpclone.sqlguard import MAX_HELD, SANDBOX_LINE, GuardedReader, Scanner, check_dump, guard

# The shape of real mariadb-dump 10.11 output of a WordPress database (copied from a dump of the seeded site).
MARIADB_DUMP = (
    SANDBOX_LINE
    + b" \n"
    + rb"""-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB
--
-- Host: 127.0.0.1    Database: wp_source
-- ------------------------------------------------------
-- Server version	10.11.19-MariaDB-0+deb12u1

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET @OLD_CHARACTER_SET_RESULTS=@@CHARACTER_SET_RESULTS */;
/*!40101 SET @OLD_COLLATION_CONNECTION=@@COLLATION_CONNECTION */;
/*!40101 SET NAMES utf8mb4 */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;
/*!40103 SET TIME_ZONE='+00:00' */;
/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;
/*!40111 SET @OLD_SQL_NOTES=@@SQL_NOTES, SQL_NOTES=0 */;

--
-- Table structure for table `wp_options`
--

DROP TABLE IF EXISTS `wp_options`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `wp_options` (
  `option_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `option_name` varchar(191) NOT NULL DEFAULT '',
  `option_value` longtext NOT NULL,
  `autoload` varchar(20) NOT NULL DEFAULT 'yes',
  PRIMARY KEY (`option_id`),
  UNIQUE KEY `option_name` (`option_name`),
  KEY `autoload` (`autoload`)
) ENGINE=InnoDB AUTO_INCREMENT=127 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

--
-- Dumping data for table `wp_options`
--

/*!40000 ALTER TABLE `wp_options` DISABLE KEYS */;
INSERT INTO `wp_options` VALUES
(1,'siteurl','http://source.localhost:39363','yes'),
(2,'home','http://source.localhost:39363','yes'),
(3,'blogname','Northwind Field Station','yes'),
(4,'widget_text','a:2:{i:1;a:1:{s:4:\"text\";s:21:\"it\'s USE other; -- x\";}s:1:\"_\";i:1;}','yes'),
(5,'weird','line1\nline2\r\n\\ \0 \Z /* not */ # nor -- this; DROP DATABASE x; \\! rm','no'),
(6,'num',-1.5e-3,NULL),
(7,0xDEADBEEF,0x0123456789abcdef,_binary 'x');
/*!40000 ALTER TABLE `wp_options` ENABLE KEYS */;
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;
/*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;
/*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;
/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;
/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;

-- Dump completed
"""
)

# What phpMyAdmin exports (another common source of WordPress backups).
PHPMYADMIN_DUMP = b"""-- phpMyAdmin SQL Dump
SET SQL_MODE = "NO_AUTO_VALUE_ON_ZERO";
START TRANSACTION;
SET time_zone = "+00:00";
/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET NAMES utf8mb4 */;
CREATE TABLE `wp_postmeta` (
  `meta_id` bigint(20) UNSIGNED NOT NULL,
  `meta_value` longtext COLLATE utf8mb4_unicode_ci
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO `wp_postmeta` (`meta_id`, `meta_value`) VALUES
(1, 'default'),
(2, 'it''s');
ALTER TABLE `wp_postmeta`
  ADD PRIMARY KEY (`meta_id`);
ALTER TABLE `wp_postmeta`
  MODIFY `meta_id` bigint(20) UNSIGNED NOT NULL AUTO_INCREMENT, AUTO_INCREMENT=3;
COMMIT;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;
"""


def run(data: bytes, chunk: int | None = None) -> bytes:
    chunks = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return b"".join(guard(chunks))


def refused(data: bytes, chunk: int | None = None) -> str:
    with pytest.raises(SqlRefused) as err:
        run(data, chunk)
    message = str(err.value)
    assert message.endswith(".") and "\n" not in message
    return message


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 5, 7, 13, 64, 4096])
def test_real_dumps_pass_byte_identical_however_they_are_cut(chunk: int | None) -> None:
    assert run(MARIADB_DUMP, chunk) == MARIADB_DUMP
    assert run(PHPMYADMIN_DUMP, chunk) == PHPMYADMIN_DUMP


def test_hostile_text_inside_strings_is_data() -> None:
    values = [
        "USE other; GRANT ALL ON *.* TO x@\\'%\\';",
        "\\\\! rm -rf /",
        "*/ DROP DATABASE x; /*",
        "-- \\' ; DROP DATABASE x",
        "\\' ; CREATE USER evil",
        "delimiter //",
        "`other`.`t`",
    ]
    for value in values:
        dump = f"INSERT INTO `t` VALUES (1,'{value}'),(2,\"{value}\");\n".encode()
        assert run(dump) == dump
        assert run(dump, 1) == dump


REFUSED = [
    # reaching outside the database
    (b"USE other;", "switches to another database"),
    (b"use `other`\n", "switches to another database"),
    (b"CREATE DATABASE evil;", "creates a database"),
    (b"CREATE SCHEMA IF NOT EXISTS evil;", "creates a database"),
    (b"ALTER DATABASE other CHARACTER SET latin1;", "alters a database"),
    (b"DROP DATABASE other;", "drops a database"),
    (b"DROP SCHEMA other;", "drops a database"),
    (b"CREATE USER evil@'%' IDENTIFIED BY 'x';", "creates a user"),
    (b"ALTER USER root@localhost IDENTIFIED BY 'x';", "alters a user"),
    (b"DROP USER wp;", "drops a user"),
    (b"RENAME USER a TO b;", "renames tables or users"),
    (b"GRANT ALL ON *.* TO evil@'%';", "changes privileges"),
    (b"REVOKE ALL ON *.* FROM wp;", "changes privileges"),
    (b"SET PASSWORD = PASSWORD('x');", "changes passwords"),
    (b"SET PASSWORD FOR root@localhost = 'x';", "changes passwords"),
    (b"SET GLOBAL general_log = 1;", "global server setting"),
    (b"SET @@global.max_connections = 1;", "global server setting"),
    (b"SET @x = @@GLOBAL.secure_file_priv;", "global server setting"),
    (b"INSERT INTO other.wp_users VALUES (1);", "another database"),
    (b"INSERT INTO `other`.`wp_users` VALUES (1);", "another database"),
    (b"INSERT INTO `other` . `wp_users` VALUES (1);", "another database"),
    (b"DROP TABLE IF EXISTS `other`.`wp_posts`;", "another database"),
    (b"CREATE TABLE t LIKE other.t;", "another database"),
    (b"ALTER TABLE t RENAME TO other.t;", "another database"),
    (b"CREATE TABLE t (a int REFERENCES other.p (id));", "another database"),
    (b"INSERT INTO t VALUES (x.5);", "another database"),
    (b"LOAD DATA INFILE '/etc/passwd' INTO TABLE t;", "reads a file"),
    (b"LOAD XML LOCAL INFILE '/etc/passwd' INTO TABLE t;", "reads a file"),
    (b"SELECT * FROM wp_users INTO OUTFILE '/tmp/x';", "runs a query"),
    (b"SELECT 'x' INTO DUMPFILE '/var/lib/mysql/x.so';", "runs a query"),
    (b"INSTALL PLUGIN evil SONAME 'evil.so';", "installs a server plugin"),
    (b"INSTALL SONAME 'evil';", "installs a server plugin"),
    (b"UNINSTALL PLUGIN audit_log;", "removes a server plugin"),
    (b"UNINSTALL SONAME 'x';", "removes a server plugin"),
    (b"SHUTDOWN;", "shuts the database server down"),
    (b"KILL 1;", "kills database connections"),
    (b"FLUSH PRIVILEGES;", "administers"),
    (b"CHANGE MASTER TO MASTER_HOST='evil';", "replication"),
    (b"RESET MASTER;", "administers"),
    (b"PURGE BINARY LOGS BEFORE NOW();", "administers"),
    (b"HANDLER t OPEN;", "reads tables directly"),
    (b"CALL p();", "calls a stored procedure"),
    (b"PREPARE s FROM @q;", "dynamic SQL"),
    (b"EXECUTE s;", "dynamic SQL"),
    (b"DO SLEEP(100);", "not a statement a database dump needs"),
    # stored programs and views run with their definer's privileges
    (b"CREATE DEFINER=`root`@`localhost` PROCEDURE p() SELECT 1;", "stored program"),
    (b"CREATE PROCEDURE p() SELECT 1;", "stored program"),
    (b"CREATE FUNCTION f() RETURNS INT RETURN 1;", "stored program"),
    (b"CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET @a = 1;", "stored program"),
    (b"CREATE EVENT e ON SCHEDULE EVERY 1 SECOND DO SELECT 1;", "stored program"),
    (b"CREATE VIEW v AS SELECT 1;", "stored program"),
    (b"CREATE OR REPLACE ALGORITHM=MERGE VIEW v AS SELECT 1;", "stored program"),
    (
        b"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`%`*/ /*!50003 TRIGGER t BEFORE INSERT ON x"
        + b" FOR EACH ROW SET @a=1 */;",
        "stored program",
    ),
    (b"CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (HOST 'x');", "link to another server"),
    (b"BEGIN NOT ATOMIC DROP DATABASE x; END;", "plain BEGIN"),
    # tables that reach outside the database's directory or server
    (b"CREATE TABLE t (a int) DATA DIRECTORY = '/etc';", "outside the database's directory"),
    (b"CREATE TABLE t (a int) INDEX DIRECTORY = '/etc';", "outside the database's directory"),
    (
        b"CREATE TABLE t (a int) ENGINE=CONNECT TABLE_TYPE=DOS FILE_NAME='/etc/passwd';",
        "storage engine connect",
    ),
    (b"CREATE TABLE t (a int) ENGINE=FEDERATED CONNECTION='mysql://u@h/db/t';", "storage engine federated"),
    (b"CREATE TABLE t (a int) CONNECTION='mysql://u@h/db/t';", "connects a table to another server"),
    (b"CREATE TABLE t (a int) ENGINE=MERGE UNION=(a,b);", "storage engine merge"),
    (b"CREATE TABLE t (a int) UNION=(a,b);", "merges tables"),
    (b"CREATE TABLE t SELECT * FROM wp_users;", "runs a query"),
    (b"ALTER TABLE t ENGINE = 'SPIDER';", "storage engine spider"),
    (b"ALTER TABLE t DISCARD TABLESPACE;", "tablespace"),
    (b"CREATE TABLE t (a text DEFAULT (LOAD_FILE('/etc/passwd')));", "reads a file"),
    # inserts that are more than literal values
    (b"INSERT INTO t VALUES (LOAD_FILE('/etc/passwd'));", "not literal values"),
    (b"INSERT INTO t VALUES ((SELECT password FROM mysql.user));", "not literal values"),
    (b"INSERT INTO t VALUES ((SELECT 1));", "not literal values"),
    (b"INSERT INTO t VALUES (@x);", "not literal values"),
    (b"INSERT INTO t VALUES (`a`);", "not literal values"),
    (b"INSERT INTO t SELECT * FROM wp_users;", "plain INSERT"),
    (b"INSERT INTO t SET a = 1;", "plain INSERT"),
    (b"INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2;", "not literal values"),
    # settings that change how the rest of the dump is read
    (b"SET sql_mode = 'NO_BACKSLASH_ESCAPES';", "sql_mode"),
    (b"SET SESSION sql_mode = 'ANSI_QUOTES';", "sql_mode"),
    (b"SET @@session.sql_mode = 'ANSI';", "sql_mode"),
    (b"SET sql_mode = 'ORACLE';", "sql_mode"),
    (b"SET sql_mode = 4;", "sql_mode"),
    (b"SET @m = 'NO_BACKSLASH_ESCAPES'; SET sql_mode = @m;", "sql_mode"),
    (b"SET sql_mode = @never_set;", "does not hold its saved value"),
    (b"SET @x = @@sql_mode; SET character_set_client = @x;", "does not hold its saved value"),
    (b"SET NAMES gbk;", "character set"),
    (b"SET NAMES 'sjis';", "character set"),
    (b"SET CHARACTER SET big5;", "character set"),
    (b"SET character_set_client = cp932;", "character set"),
    (b"SET NAMES utf8mb4 COLLATE gbk_chinese_ci;", "collation"),
    (b"SET sql_log_bin = 0;", "sql_log_bin"),
    (b"SET @@SESSION.SQL_LOG_BIN = 0;", "sql_log_bin"),
    (b"SET autocommit = (SELECT 1);", "expression"),
    (b"SET @x = CONCAT('a', 'b');", "expression"),
    (b"SET ROLE admin;", "passwords or roles"),
    (b"SET STATEMENT max_statement_time=1 FOR SELECT 1;", "statement"),
    # mariadb client commands, which the client runs on the loader's machine
    (b"\\! rm -rf /\n", "client command"),
    (b"system rm -rf /\n", "client command 'system'"),
    (b"SYSTEM id;\n", "client command 'system'"),
    (b"\\. /etc/passwd\n", "client command"),
    (b"source /etc/passwd\n", "client command 'source'"),
    (b"connect other_db\n", "client command 'connect'"),
    (b"\\r other_db\n", "client command"),
    (b"\\u other_db\n", "client command"),
    (b"tee /tmp/out\n", "client command 'tee'"),
    (b"\\T /tmp/out\n", "client command"),
    (b"pager sh -c id\n", "client command 'pager'"),
    (b"delimiter //\nCREATE PROCEDURE p() BEGIN DROP DATABASE x; END//\n", "client command 'delimiter'"),
    (b"DELIMITER ;;\n", "client command 'delimiter'"),
    (b"charset gbk\n", "client command 'charset'"),
    (b"\\C gbk\n", "client command"),
    (b"INSERT INTO t VALUES (1);\\! id\n", "client command"),
    (b"INSERT INTO t VALUES (1)\\g\n", "client command"),
    (b"/*!40101 \\! id */;\n", "client command"),
    (b"/* c */system id\n", "client command 'system'"),
    (b"INSERT INTO t VALUES (1);\n\\- \n", "client command"),
    # where the client and the server would read bytes differently
    (b"/*!40101 SET NAMES utf8mb4; DROP DATABASE x */;", "leaves an executable comment open"),
    (b"/*!99999 ' */ DROP DATABASE x; -- ' */;", "holding */"),
    (b"/*!40101 SET @a = 1 # */ ; DROP DATABASE x;\n*/;", "line comment inside an executable comment"),
    (b"/*!40101 SET @a = 1 -- */ ; DROP DATABASE x;\n*/;", "line comment inside an executable comment"),
    (b"/*!40101 SET @a = 1 /* x */ */;", "opens a comment inside an executable comment"),
    (b"/*!40101 /*!40101 SET @a = 1 */ */;", "nests executable comments"),
    (b"INSERT INTO t VALUES (1) --\x01'\n; DROP DATABASE other; -- '\n;", "not literal values"),
    (b"CREATE TABLE t (a int) --\x01'\n; DROP DATABASE other; -- '\n;", "control byte 0x01"),
    (b"/*M!999999\\- enable the sandbox mode */\n--x;DROP DATABASE y;\n", "does not start with a statement"),
    (b"INSERT INTO t VALUES ('x'\x00);", "NUL byte"),
    (b"INSERT INTO t VALUES ('unterminated);", "ends inside a quoted string"),
    (b"INSERT INTO t VALUES ('a', 'b\\", "ends inside a quoted string"),
    (b"SET @a = 1 /*!40101 , @b = 2", "leaves an executable comment open"),
]


@pytest.mark.parametrize(("dump", "reason"), REFUSED, ids=[r[0][:40].decode("latin1") for r in REFUSED])
def test_refused(dump: bytes, reason: str) -> None:
    whole = refused(dump)
    assert reason in whole, whole
    assert refused(dump, 1) == whole  # the same answer however the input is cut
    if not dump.startswith(b"/*M!"):  # the sandbox line counts only as the very first line
        assert reason in refused(b"SET NAMES utf8mb4;\n" + dump, 3)


def test_refused_statement_is_named_with_its_line() -> None:
    message = refused(MARIADB_DUMP + b"\n\nUSE `other`;\nINSERT INTO t VALUES (1);\n")
    lines = MARIADB_DUMP.count(b"\n") + 3
    assert message == f"The dump's statement at line {lines} switches to another database: USE `other`;."


def test_long_statements_are_shown_truncated() -> None:
    message = refused(b"GRANT ALL ON *.* TO " + b"x" * 500 + b";")
    assert message.endswith("…") or message.endswith("….")
    assert len(message) < 250


def test_nothing_of_a_refused_statement_is_passed_on() -> None:
    dump = MARIADB_DUMP + b"DROP DATABASE other;\n" + b"INSERT INTO t VALUES (1);\n"
    passed = bytearray()
    with pytest.raises(SqlRefused):
        for piece in guard([dump[i : i + 5] for i in range(0, len(dump), 5)]):
            passed += piece
    assert b"DROP" not in passed[len(MARIADB_DUMP) - 20 :]
    assert bytes(passed).startswith(MARIADB_DUMP[: len(MARIADB_DUMP) // 2])


def test_sandbox_line_only_at_the_very_start() -> None:
    assert run(b"/*M!999999\\- enable the sandbox mode */ \nSET NAMES utf8mb4;\n") is not None
    assert "client command" in refused(b"SET NAMES utf8mb4;\n/*M!999999\\- enable the sandbox mode */\n")
    assert "client command" in refused(b"/*M!999999\\- enable the sandbox mode; DROP DATABASE x */\n")


def test_client_comment_lines_at_statement_start() -> None:
    """The client drops a line starting with -- at the start of a statement, whatever follows."""
    dump = b"--'\nINSERT INTO t VALUES (1);\n--x\n#y\n-- z\n"
    assert run(dump) == dump


def test_set_restores_saved_session_values() -> None:
    dump = (
        b"SET @saved = @@character_set_client; SET character_set_client = @saved;\n"
        b"SET @m := 'STRICT_TRANS_TABLES,NO_ZERO_DATE'; SET sql_mode = @m;\n"
        b"SET unique_checks = 0, foreign_key_checks = OFF, autocommit = 1, SESSION sql_notes = 0;\n"
        b"SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_520_ci', time_zone = 'SYSTEM';\n"
        b"SET @a = -1, @b = NULL, @c = @a;\n"
        b"LOCK TABLES `wp_posts` WRITE, `wp_users` READ; UNLOCK TABLES;\nBEGIN; COMMIT;\n"
    )
    assert run(dump) == dump


def test_long_literals_stream_with_flat_memory() -> None:
    """A 10 MB field inside a 12 MB line: the scanner never holds more than about a chunk."""
    field = b"y" * (10 << 20)
    dump = b"INSERT INTO `t` VALUES ('" + field + b"'," + b"(1,2)," * 300_000 + b"(3,'x');\n"
    scanner = Scanner()
    peak = 0
    out = 0
    for i in range(0, len(dump), 1 << 20):
        out += len(scanner.feed(dump[i : i + (1 << 20)], final=False))
        peak = max(peak, len(scanner.buf))
    out += len(scanner.feed(b"", final=True))
    assert out == len(dump)
    assert peak < (1 << 20) + 4096


def test_a_statement_other_than_insert_is_held_at_most_16_mib() -> None:
    dump = b"CREATE TABLE t (a int) COMMENT '" + b"c" * (MAX_HELD + (2 << 20)) + b"';\n"
    assert "longer than 16 MiB" in refused(dump, 1 << 20)


def test_guarded_reader_and_check_dump() -> None:
    reader = GuardedReader(io.BytesIO(MARIADB_DUMP), chunk_size=7)
    assert reader.read() == MARIADB_DUMP
    assert check_dump(io.BytesIO(PHPMYADMIN_DUMP)) == len(PHPMYADMIN_DUMP)
    with pytest.raises(SqlRefused):
        GuardedReader(io.BytesIO(b"USE x;")).read()
