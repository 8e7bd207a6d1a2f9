"""copy-database's two paths give the same clone: dump | rewrite | load, and the same-server copy.

For each corpus (the rewrite corpus of test_copy_database.py plus a keyless table, a generated column and a
table of the edges of the rows the engine copies itself, the seeded source site, the other site of
tests/fixtures/othersite.py), the step copies the source twice on its own server, ``--copy-path dump`` and
``--copy-path same-server``, each into its own database under a login that owns that database and may only
SELECT the source's tables (the grant the control plane gives). Every table must have the same row count and
``CHECKSUM TABLE`` in both, and both runs pass the step's own verification (nothing left of any form). A
same-server copy that fails midway leaves the target empty.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.steps.test_copy_database import (
    NEW,
    OLD,
    OLD_TLS,
    PAIRS,
    _exec,
    assert_one_sentence_failure,
    build_source,
    checksums,
    run_step,
)
from wpclone.db import DbEndpoint, quote_identifier
from wpclone.php import php_serialize
from wpclone.rewrite import FORMS

USER_HOST = "127.0.0.1"


def counts(endpoint: DbEndpoint) -> dict[str, int]:
    conn = endpoint.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW FULL TABLES")
            tables = sorted(str(t) for t, _ in cur.fetchall())
            found = {}
            for table in tables:
                cur.execute(f"SELECT COUNT(*) FROM {quote_identifier(table)}")
                found[table] = int(cur.fetchone()[0])
        return found
    finally:
        conn.close()


def source_database(admin: DbEndpoint, made: list[tuple[DbEndpoint, str]]) -> DbEndpoint:
    """A new empty source database (recorded in ``made``), as the admin login."""
    name = f"t_ss_src_{secrets.token_hex(3)}"
    made.append((admin, name))
    _exec(admin, f"CREATE DATABASE {quote_identifier(name)} CHARACTER SET utf8mb4")
    return admin.with_database(name)


def clone_login(
    admin: DbEndpoint, made: list[tuple[DbEndpoint, str]], database: str, source_db: str
) -> DbEndpoint:
    """A login owning ``database`` that may SELECT the tables of ``source_db`` (the control plane's grant);
    both recorded in ``made``."""
    user, password = f"t_ss_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    made.extend([(admin, database), (admin, user)])
    db = quote_identifier(database)
    _exec(
        admin,
        f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4",
        f"CREATE USER '{user}'@'{USER_HOST}' IDENTIFIED BY '{password}'",
        f"GRANT ALL PRIVILEGES ON {db}.* TO '{user}'@'{USER_HOST}'",
    )
    conn = admin.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (source_db,)
            )
            for (table,) in cur.fetchall():
                cur.execute(
                    f"GRANT SELECT ON {quote_identifier(source_db)}.{quote_identifier(table)} TO %s@%s",
                    (user, USER_HOST),
                )
    finally:
        conn.close()
    return DbEndpoint(admin.host, admin.port, user, password, database)


@pytest.fixture
def made(request: pytest.FixtureRequest) -> Iterator[list[tuple[DbEndpoint, str]]]:
    """(admin, name) of every database and login a test makes, dropped afterwards."""
    made: list[tuple[DbEndpoint, str]] = []
    yield made
    for admin, name in made:
        _exec(admin, f"DROP DATABASE IF EXISTS {quote_identifier(name)}")
        if name.startswith("t_ss_"):
            _exec(admin, f"DROP USER IF EXISTS '{name}'@'{USER_HOST}'")


def copy_both_ways(
    admin: DbEndpoint, source: DbEndpoint, urls: list[str], made: list[tuple[DbEndpoint, str]]
) -> tuple[dict[str, Any], dict[str, Any], DbEndpoint, DbEndpoint]:
    """Copy ``source`` by each path into its own database; return both results and targets."""
    assert source.database
    results = []
    targets = []
    for path in ("dump", "same-server"):
        name = f"t_ss_{secrets.token_hex(3)}_{path.replace('-', '_')}"
        target = clone_login(admin, made, name, source.database)
        proc = run_step(source, target, *urls, "--copy-path", path, "--json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "log": proc.stderr})
        targets.append(target)
    return results[0], results[1], targets[0], targets[1]


def assert_same_clone(dump: DbEndpoint, server: DbEndpoint) -> None:
    dump_counts, server_counts = counts(dump), counts(server)
    assert dump_counts == server_counts
    assert sum(dump_counts.values()) > 0
    assert checksums(dump) == checksums(server)


def assert_verified(result: dict[str, Any], path: str) -> None:
    assert result["path"] == path
    assert result["leftovers"] == dict.fromkeys(FORMS, 0)


@pytest.fixture(scope="module")
def admin(mariadb: DbEndpoint) -> DbEndpoint:
    """The local MariaDB's admin login."""
    return mariadb


def test_rewrite_corpus_same_clone_by_both_paths(
    admin: DbEndpoint, made: list[tuple[DbEndpoint, str]]
) -> None:
    source = source_database(admin, made)
    build_source(source, posts=120)
    _exec(
        source,
        # no primary key: rows rewritten by delete and insert; a duplicate row stays a duplicate
        "CREATE TABLE wp_keyless (a VARCHAR(200), b BLOB, n INT) DEFAULT CHARSET=utf8mb4",
        f"INSERT INTO wp_keyless VALUES ('{OLD}/x', '{OLD_TLS}/b', 1), ('{OLD}/x', '{OLD_TLS}/b', 1),"
        " ('plain', NULL, 2), (NULL, NULL, NULL)",
        # a generated column is computed by the server on both paths
        "CREATE TABLE wp_gen (id INT PRIMARY KEY, url TEXT, len INT AS (CHAR_LENGTH(url)) STORED)",
        f"INSERT INTO wp_gen (id, url) VALUES (1, '{OLD}/g'), (2, 'none')",
    )
    engine_share_edges(source)
    dump_result, server_result, dump, server = copy_both_ways(admin, source, PAIRS, made)
    assert_verified(dump_result, "dump")
    assert_verified(server_result, "same-server")
    assert server_result["rewrite"]["fields_rewritten"] > 0  # the engine's share
    # the same serialized values rebuilt (by the engine on both paths); the engine counts only what it
    # rewrote on the same-server path (the server's passes are checked by the verification, not counted)
    assert server_result["serialized_rebuilt"] == dump_result["serialized_rebuilt"]
    assert all(server_result["replacements"][f] <= n for f, n in dump_result["replacements"].items())
    assert_same_clone(dump, server)
    # the engine copied the serialized rows itself, during the server's copy: nothing was left to rewrite
    (copied,) = re.findall(r"event=server-copied .*", server_result["log"])
    assert int(re.search(r"engine_fields=(\d+)", copied)[1]) >= 4500, copied  # type: ignore[index]
    assert "wp_engine_share" not in re.findall(r"holding=(\S*)", copied)[0].split(","), copied
    assert _rows(server, "SELECT COUNT(*) FROM wp_engine_share WHERE v LIKE '%src.example.test%'") == [(0,)]
    rows = _rows(server, "SELECT a, b FROM wp_keyless WHERE n = 1")
    assert rows == [(f"{NEW}/x", f"{NEW}/b".encode())] * 2


def engine_share_edges(source: DbEndpoint) -> None:
    """A table whose serialized rows the engine copies itself during the same-server copy: more rows than
    one batch, rows longer than one statement, every escape, NULLs, a blob that is not UTF-8, a negative
    key."""
    escapes = "\x1a\\\0'\"\n\r\t"
    big = "x" * (3 << 20)
    rows: list[tuple[Any, ...]] = [
        (-5, f"{OLD}/k", php_serialize({"u": f"{OLD}/e{escapes}"}), b'a:1:{i:0;s:3:"\xff\xfe/";}', None),
        (0, None, None, None, None),
        (1, "k", 's:3:"abc";', b"plain", 1),
        (2, None, php_serialize([OLD_TLS, None]), f's:{len(OLD) + 2}:"{OLD}/\xff";'.encode("latin-1"), 2),
        *((10 + i, "big", php_serialize({"u": f"{OLD}/{i}", "pad": big}), None, 3) for i in range(3)),
        *((100 + i, "many", php_serialize({"u": f"{OLD_TLS}/m/{i}"}), None, 4) for i in range(4500)),
    ]
    _exec(
        source,
        "CREATE TABLE wp_engine_share (id BIGINT PRIMARY KEY, k VARCHAR(100), v LONGTEXT, b LONGBLOB, n INT)"
        " DEFAULT CHARSET=utf8mb4",
    )
    conn = source.connect()
    try:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO wp_engine_share VALUES (%s, %s, %s, %s, %s)", rows)
        conn.commit()
    finally:
        conn.close()


def _rows(endpoint: DbEndpoint, sql: str) -> list[tuple[Any, ...]]:
    conn = endpoint.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def test_seeded_source_same_clone_by_both_paths(
    admin: DbEndpoint, source_site: Any, made: list[tuple[DbEndpoint, str]]
) -> None:
    source = admin.with_database(source_site.db_name)
    urls = [source_site.url, "http://t-ss-clone.localhost:8080"]
    dump_result, server_result, dump, server = copy_both_ways(admin, source, urls, made)
    assert_verified(dump_result, "dump")
    assert_verified(server_result, "same-server")
    assert_same_clone(dump, server)


def test_other_site_same_clone_by_both_paths(other_site: Any, made: list[tuple[DbEndpoint, str]]) -> None:
    source = other_site.db_admin.with_database(other_site.db.database)
    urls = [
        other_site.source.url,
        "https://t-ss-other.localhost",
        "--aliases",
        ",".join(other_site.source.aliases),
    ]
    dump_result, server_result, dump, server = copy_both_ways(other_site.db_admin, source, urls, made)
    assert_verified(dump_result, "dump")
    assert_verified(server_result, "same-server")
    assert_same_clone(dump, server)


def test_failure_midway_leaves_the_target_empty(
    admin: DbEndpoint, made: list[tuple[DbEndpoint, str]]
) -> None:
    """The rewritten URL no longer fits its column: the in-place UPDATE fails after the rows were copied."""
    source = source_database(admin, made)
    name = source.database
    _exec(
        source,
        "CREATE TABLE a_first (id INT PRIMARY KEY, v TEXT)",
        f"INSERT INTO a_first VALUES (1, '{OLD}/fits')",
        f"CREATE TABLE z_tight (id INT PRIMARY KEY, v VARCHAR({len(OLD) + 2}))",
        f"INSERT INTO z_tight VALUES (1, '{OLD}/a')",
    )
    assert name
    target = clone_login(admin, made, f"t_ss_{secrets.token_hex(3)}_fail", name)
    proc: subprocess.CompletedProcess[str] = run_step(source, target, *PAIRS, "--copy-path", "same-server")
    last = assert_one_sentence_failure(proc, target.password)
    assert ("server copy" in last and "z_tight" in last) or "Data too long" in last, last
    assert counts(target) == {}
    # the same login copies it fine once the column is wide enough: a retry converges
    _exec(source, "ALTER TABLE z_tight MODIFY v VARCHAR(200)")
    _exec(admin, f"GRANT SELECT ON {quote_identifier(name)}.* TO '{target.user}'@'{USER_HOST}'")
    proc = run_step(source, target, *PAIRS, "--copy-path", "same-server")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert counts(target) == {"a_first": 1, "z_tight": 1}


def test_without_the_grant_auto_takes_the_dump_path(
    admin: DbEndpoint, made: list[tuple[DbEndpoint, str]]
) -> None:
    source = source_database(admin, made)
    _exec(source, "CREATE TABLE t (id INT PRIMARY KEY, v TEXT)", f"INSERT INTO t VALUES (1, '{OLD}/x')")
    # owns its database, reads nothing else
    target = clone_login(admin, made, f"t_ss_{secrets.token_hex(3)}_nogrant", "no_such_source_db")
    proc = run_step(source, target, *PAIRS, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"path": "dump"' in proc.stdout
    forced = run_step(source, target, *PAIRS, "--copy-path", "same-server")
    last = assert_one_sentence_failure(forced, target.password)
    assert "cannot read" in last
