"""copy-database on the real local MariaDB: fidelity (checked by PHP), verification, failure modes.

PHP is the reference for every value: its own unserialize/serialize, and the URL rule written in PHP
(tests/fixtures/php_oracle.py ``PHP_RULE``): every form of a site URL where its host ends, explicit pairs
as given.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.php_oracle import PHP_RULE
from wpclone.db import DbEndpoint, quote_identifier
from wpclone.errors import StepError
from wpclone.local.settings import free_port
from wpclone.php import php_serialize
from wpclone.rewrite import FORMS
from wpclone.steps import copy_database as module
from wpclone.steps.copy_database import form_checks, leftover_checks, verify_target

OLD = "http://src.example.test"
OLD_TLS = "https://src.example.test"
NEW = "http://t-clone.localhost:8080"
ALIAS = "https://example-old.test"
PAIRS = [OLD, NEW, OLD_TLS, NEW, "--aliases", ALIAS]
TABLES = ("wp_blobs", "wp_options", "wp_postmeta", "wp_posts")
SISTERS = ("http://src.example.test.au/shop/", "https://src.example.testing/", "//src.example.test:8443/x")
# Source and target share this server, where ``auto`` copies on the server (tested by
# test_copy_database_same_server.py): the tests of the dump path's loaders and counts ask for the dump.
DUMP = ["--copy-path", "dump"]
RULE_PAIRS = [(OLD, NEW), (OLD_TLS, NEW), (ALIAS, NEW)]  # what PAIRS asks for, as the rule's pairs

PHP_CHECK = (
    "<?php\n"
    + PHP_RULE
    + r"""
// Reference: what the rewrite must produce for each source value, by PHP's own unserialize and the rule.
$in = json_decode(file_get_contents($argv[1]), true);
$pairs = rule_keys($in['pairs']);
function rw_value($v, $pairs) {
    if (is_string($v)) {
        $u = @unserialize($v);
        if ($u !== false || $v === 'b:0;') {
            return serialize(rw_value($u, $pairs));
        }
        return rule_apply($v, $pairs);
    }
    if (is_array($v)) {
        foreach ($v as $k => $x) { $v[$k] = rw_value($x, $pairs); }
    } elseif (is_object($v)) {
        foreach (get_object_vars($v) as $k => $x) { $v->$k = rw_value($x, $pairs); }
    }
    return $v;
}
$bad = [];
$serialized = 0;
foreach ($in['values'] as [$where, $src, $dst]) {
    $src = base64_decode($src);
    $dst = base64_decode($dst);
    $u = @unserialize($src);
    if ($u !== false || $src === 'b:0;') {
        $serialized++;
        $got = @unserialize($dst);
        if ($got === false && $dst !== 'b:0;') { $bad[] = "$where: target does not unserialize"; continue; }
        if (rw_value($u, $pairs) != $got) { $bad[] = "$where: serialized value differs from reference"; }
    } elseif (rule_apply($src, $pairs) !== $dst) {
        $bad[] = "$where: plain value differs from the rule's reference";
    }
}
echo json_encode(['bad' => $bad, 'serialized' => $serialized, 'checked' => count($in['values'])]);
"""
)


def _exec(endpoint: DbEndpoint, *statements: str) -> None:
    conn = endpoint.connect()
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def build_source(endpoint: DbEndpoint, posts: int = 300) -> None:
    """A WordPress-shaped database: serialized, JSON-escaped and multibyte values, escapes, a blob, an FK."""
    conn = endpoint.connect()
    multibyte = "Ünïcödé – 日本語 – 🎉 – Straße"
    escapes = 'it\'s "quoted" \\ back\\slash\n\r\tend\x00nul'
    options = [
        ("siteurl", OLD),
        ("home", OLD_TLS),
        ("blogname", multibyte),
        (
            "widget_text",
            php_serialize({2: {"title": multibyte, "text": f'<a href="{OLD}/p?a=1&b=2">{escapes}</a>'}}),
        ),
        (
            "theme_mods_x",
            php_serialize(
                {"header": f"{OLD}/wp-content/uploads/h.jpg", "inner": php_serialize({"u": OLD_TLS + "/x"})}
            ),
        ),
        ("object_opt", f'O:8:"stdClass":1:{{s:3:"url";s:{len(OLD) + 2}:"{OLD}/y";}}'),
        ("json_opt", json.dumps({"url": OLD + "/a", "name": multibyte}).replace("/", "\\/")),
        ("malformed", f's:99:"{OLD}";'),
        ("false_opt", "b:0;"),
        ("empty", ""),
        ("already_new", NEW + "/kept"),
        ("list_opt", php_serialize([OLD, OLD_TLS + "/z", 7, True, None])),
        ("sisters", " ".join(SISTERS) + " mail@src.example.test"),
        (
            "share",
            "https://x.test/share?u=https%3A%2F%2Fsrc.example.test%2Fp%2F1&r=http%3a%2f%2fsrc.example.test",
        ),
        ("builder", php_serialize({"bg": json.dumps({"u": "//src.example.test/b.jpg"}).replace("/", "\\/")})),
    ]
    try:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE wp_options (option_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,"
                " option_name VARCHAR(191) NOT NULL UNIQUE, option_value LONGTEXT NOT NULL,"
                " autoload VARCHAR(20) NOT NULL DEFAULT 'yes') DEFAULT CHARSET=utf8mb4"
            )
            cur.execute(
                "CREATE TABLE wp_posts (ID BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,"
                " post_date DATETIME NOT NULL, post_content LONGTEXT NOT NULL, post_title TEXT NOT NULL,"
                " post_excerpt TEXT NULL, post_status VARCHAR(20) NOT NULL, guid VARCHAR(255) NOT NULL)"
                " DEFAULT CHARSET=utf8mb4"
            )
            cur.execute(
                "CREATE TABLE wp_postmeta (meta_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,"
                " post_id BIGINT UNSIGNED NOT NULL, meta_key VARCHAR(255), meta_value LONGTEXT,"
                " KEY post_id (post_id)) DEFAULT CHARSET=utf8mb4"
            )
            # Sorts before wp_posts in the dump, so the load must run with foreign_key_checks off.
            cur.execute(
                "CREATE TABLE wp_blobs (id INT PRIMARY KEY, post_id BIGINT UNSIGNED NOT NULL, data LONGBLOB,"
                " FOREIGN KEY (post_id) REFERENCES wp_posts (ID)) DEFAULT CHARSET=utf8mb4"
            )
            cur.executemany("INSERT INTO wp_options (option_name, option_value) VALUES (%s, %s)", options)
            rows = []
            meta = []
            for i in range(1, posts + 1):
                url = OLD if i % 2 else OLD_TLS
                content = (
                    f'<!-- wp:image {{"id":{i},"url":"{url.replace("/", chr(92) + "/")}'
                    f'\\/wp-content\\/uploads\\/{i}.jpg"}} -->\n'
                    f'<figure><img src="{url}/wp-content/uploads/{i}.jpg" alt="{multibyte}"/></figure>\n'
                    f"<!-- /wp:image -->\n<p>{escapes} {i}</p>\n"
                    f'<img src="//src.example.test/a/{i}.png"> <a href="{ALIAS}/legacy/{i}">old</a> '
                    f'<a href="{SISTERS[i % 3]}">sister</a>'
                )
                rows.append(
                    (
                        i,
                        "2024-01-02 03:04:05",
                        content,
                        f"Post {i} {multibyte}",
                        None if i % 3 else "",
                        "publish",
                        f"{OLD}/?p={i}",
                    )
                )
                meta.append(
                    (
                        i,
                        "_wp_attachment_metadata",
                        php_serialize(
                            {
                                "file": f"2024/01/{i}.jpg",
                                "sizes": {"thumb": {"file": f"{i}-150.jpg", "width": 150}},
                                "source_url": f"{url}/wp-content/uploads/{i}.jpg",
                            }
                        ),
                    )
                )
                meta.append((i, "_links", json.dumps([f"{OLD}/a/{i}", multibyte]).replace("/", "\\/")))
                meta.append((i, "_plain", f"see {url}/p/{i} and {OLD}{OLD_TLS}"))
            cur.executemany(
                "INSERT INTO wp_posts (ID, post_date, post_content, post_title, post_excerpt, post_status,"
                " guid)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
            cur.executemany(
                "INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES (%s, %s, %s)", meta
            )
            cur.executemany(
                "INSERT INTO wp_blobs (id, post_id, data) VALUES (%s, %s, %s)",
                [(i, i, bytes(range(256)) * 4 + bytes([i % 256])) for i in range(1, 11)],
            )
    finally:
        conn.close()


@pytest.fixture(scope="module")
def admin(mariadb: DbEndpoint) -> DbEndpoint:
    """The local MariaDB's admin login (this module needs the server, not the site host or the source)."""
    return mariadb


@pytest.fixture(scope="module")
def names(admin: DbEndpoint) -> Iterator[dict[str, str]]:
    token = secrets.token_hex(4)
    made = {k: f"t_cdb_{token}_{k}" for k in ("src", "dst", "ref", "bad")}
    for name in made.values():
        _exec(admin, f"CREATE DATABASE {quote_identifier(name)} CHARACTER SET utf8mb4")
    build_source(admin.with_database(made["src"]))
    yield made
    for name in made.values():
        _exec(admin, f"DROP DATABASE IF EXISTS {quote_identifier(name)}")
    _exec(admin, f"DROP USER IF EXISTS 't_cdb_{token}'@'127.0.0.1'")


def step_env(source: DbEndpoint, target: DbEndpoint) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCE_DB_", "TARGET_DB_"))}
    return {**env, **source.to_env("SOURCE_DB"), **target.to_env("TARGET_DB")}


def run_step(source: DbEndpoint, target: DbEndpoint, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wpclone.steps", "copy-database", *args],
        env=step_env(source, target),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def assert_one_sentence_failure(proc: subprocess.CompletedProcess[str], *passwords: str) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and last.endswith(".")
    for password in passwords:
        assert password not in proc.stderr and password not in proc.stdout
    assert proc.stdout == ""
    return last


def checksums(endpoint: DbEndpoint) -> dict[str, Any]:
    conn = endpoint.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW FULL TABLES")
            tables = sorted(str(t) for t, _ in cur.fetchall())
            cur.execute(f"CHECKSUM TABLE {', '.join(quote_identifier(t) for t in tables)}")
            sums = {str(name).split(".", 1)[1]: value for name, value in cur.fetchall()}
    finally:
        conn.close()
    return sums


def fetch_all(endpoint: DbEndpoint) -> dict[str, list[tuple[Any, ...]]]:
    conn = endpoint.connect()
    try:
        out = {}
        with conn.cursor() as cur:
            for table in TABLES:
                cur.execute(f"SELECT * FROM {quote_identifier(table)} ORDER BY 1")
                out[table] = list(cur.fetchall())
        return out
    finally:
        conn.close()


def php_reference_check(source: DbEndpoint, target: DbEndpoint, tmp: Path) -> dict[str, Any]:
    """Every text value of the target equals what PHP's unserialize/serialize/strtr make of the source."""
    src, dst = fetch_all(source), fetch_all(target)
    values = []
    for table in TABLES:
        assert len(src[table]) == len(dst[table]), table
        for srow, drow in zip(src[table], dst[table], strict=True):
            for col, (a, b) in enumerate(zip(srow, drow, strict=True)):
                if isinstance(a, str):
                    enc = [base64.b64encode(v.encode()).decode() for v in (a, b)]
                    values.append([f"{table}[{srow[0]}][{col}]", *enc])
                elif isinstance(a, bytes):
                    assert a == b, f"{table}[{srow[0]}][{col}] bytes changed"
                else:
                    assert a == b, f"{table}[{srow[0]}][{col}]"
    data = tmp / "values.json"
    data.write_text(json.dumps({"pairs": RULE_PAIRS, "values": values}))
    script = tmp / "check.php"
    script.write_text(PHP_CHECK)
    out = subprocess.run(["php", str(script), str(data)], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def test_copy_matches_php_reference_and_reports(
    admin: DbEndpoint, names: dict[str, str], tmp_path: Path
) -> None:
    source, target = admin.with_database(names["src"]), admin.with_database(names["dst"])
    _exec(target, "CREATE TABLE left_over (id INT)")  # whatever the target holds is dropped first
    proc = run_step(source, target, *DUMP, *PAIRS)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "ok" and result["tables"] == 4
    assert (result["loader"], result["streams"]) == ("pymysql", 2)  # the default: --parallel 2
    assert result["rows"] == 15 + 300 + 900 + 10
    assert result["dropped"] == ["left_over"]
    assert result["serialized_rebuilt"] == result["rewrite"]["serialized_rebuilt"] > 300
    # Every form the data holds was replaced and counted; the verification found nothing of any left.
    assert result["leftovers"] == dict.fromkeys(FORMS, 0)
    assert all(result["replacements"][form] > 0 for form in FORMS if form != "explicit")
    assert result["replacements"]["explicit"] == 0
    assert result["replacements"] == result["rewrite"]["replacements"]
    assert "event=summary" in proc.stderr and "step=copy-database" in proc.stderr
    assert admin.password not in proc.stderr + proc.stdout

    report = php_reference_check(source, target, tmp_path)
    assert report["bad"] == []
    assert report["serialized"] >= 300 + 5
    conn = target.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT option_value FROM wp_options WHERE option_name = 'theme_mods_x'")
        value = cur.fetchone()[0]
    conn.close()
    # PHP reads it back from a file: it unserializes and carries the new URL, also in the nested string.
    (tmp_path / "v.txt").write_text(value)
    php = subprocess.run(
        [
            "php",
            "-r",
            "$v = unserialize(file_get_contents($argv[1]));"
            ' echo $v["header"], " ", unserialize($v["inner"])["u"];',
            str(tmp_path / "v.txt"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert php.stdout == f"{NEW}/wp-content/uploads/h.jpg {NEW}/x"
    # Sister domains, longer hosts and other ports are someone else's: not one was touched.
    conn = target.connect()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT option_value FROM wp_options WHERE option_name IN ('sisters', 'share') ORDER BY 1"
        )
        assert [v for (v,) in cur.fetchall()] == [
            " ".join(SISTERS) + " mail@src.example.test",
            "https://x.test/share?u=http%3A%2F%2Ft-clone.localhost%3A8080%2Fp%2F1&r=http%3a%2f%2ft-clone.localhost%3a8080",
        ]
        for sister in SISTERS:
            cur.execute(
                "SELECT COUNT(*) FROM wp_posts WHERE INSTR(BINARY post_content, BINARY %s)", (sister,)
            )
            assert cur.fetchone()[0] == 100
    conn.close()


@pytest.fixture(scope="module")
def reference(admin: DbEndpoint, names: dict[str, str]) -> dict[str, Any]:
    """Checksums of a clean copy, for the convergence checks."""
    proc = run_step(admin.with_database(names["src"]), admin.with_database(names["ref"]), *PAIRS)
    assert proc.returncode == 0, proc.stderr
    return checksums(admin.with_database(names["ref"]))


def test_retry_after_partial_copy_converges(
    admin: DbEndpoint, names: dict[str, str], reference: dict[str, Any]
) -> None:
    source, target = admin.with_database(names["src"]), admin.with_database(names["bad"])
    # A previous attempt that was killed mid-stream...
    proc = subprocess.Popen(
        [sys.executable, "-m", "wpclone.steps", "copy-database", *PAIRS],
        env=step_env(source, target),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr
    for line in proc.stderr:
        if "event=copy-start" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    # ...and a target mangled in every way a partial or stale copy can be.
    _exec(
        target,
        "CREATE TABLE IF NOT EXISTS wp_posts (ID INT)",
        "CREATE TABLE stale_extra (id INT)",
        "CREATE OR REPLACE VIEW stale_view AS SELECT 1 AS x",
        "DROP TABLE IF EXISTS wp_postmeta",
    )
    assert run_step(source, target, *PAIRS).returncode == 0
    assert checksums(target) == reference


def test_source_unreachable_fails_with_one_sentence(admin: DbEndpoint, names: dict[str, str]) -> None:
    source = DbEndpoint("127.0.0.1", free_port(), admin.user, "s3cret-unreachable", names["src"])
    last = assert_one_sentence_failure(
        run_step(source, admin.with_database(names["bad"]), *PAIRS), "s3cret-unreachable"
    )
    assert "source database" in last and "connect" in last.lower()


def test_source_database_missing_fails(admin: DbEndpoint, names: dict[str, str]) -> None:
    source = admin.with_database("t_cdb_does_not_exist")
    last = assert_one_sentence_failure(
        run_step(source, admin.with_database(names["bad"]), *PAIRS), admin.password
    )
    assert "Unknown database" in last and "source" in last


def test_target_wrong_password_fails(admin: DbEndpoint, names: dict[str, str]) -> None:
    target = DbEndpoint(admin.host, admin.port, admin.user, "wrong-pass-xyz", names["bad"])
    last = assert_one_sentence_failure(
        run_step(admin.with_database(names["src"]), target, *PAIRS), "wrong-pass-xyz", admin.password
    )
    assert "target database" in last and "Access denied" in last


@pytest.mark.parametrize(
    "mode", [[], ["--parallel", "3"], ["--client-load"]], ids=["default", "parallel", "client"]
)
def test_load_error_mid_stream_then_retry_converges(
    admin: DbEndpoint, names: dict[str, str], reference: dict[str, Any], mode: list[str]
) -> None:
    """A target user who may create tables but not insert: the load fails; after a grant a retry converges."""
    user = names["src"].rsplit("_", 1)[0]  # t_cdb_<token>
    password = "lo4d-" + secrets.token_hex(8)
    target_db = quote_identifier(names["bad"])
    _exec(
        admin,
        f"DROP USER IF EXISTS '{user}'@'127.0.0.1'",
        f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'",
        f"GRANT SELECT, CREATE, DROP, ALTER, INDEX, REFERENCES ON {target_db}.* TO '{user}'@'127.0.0.1'",
    )
    target = DbEndpoint(admin.host, admin.port, user, password, names["bad"])
    proc = run_step(admin.with_database(names["src"]), target, *mode, *PAIRS)
    last = assert_one_sentence_failure(proc, password, admin.password)
    assert "load stage" in last and "INSERT command denied" in last
    _exec(admin, f"GRANT INSERT ON {target_db}.* TO '{user}'@'127.0.0.1'")
    proc = run_step(admin.with_database(names["src"]), target, *mode, *PAIRS)
    assert proc.returncode == 0, proc.stderr
    assert checksums(admin.with_database(names["bad"])) == reference


@pytest.mark.parametrize(
    "case",
    [
        ([*DUMP, "--parallel", "1"], "pymysql", 1),
        ([*DUMP, "--parallel", "3"], "pymysql", 3),
        ([*DUMP, "--client-load"], "mariadb-client", 1),
    ],
    ids=["one", "parallel", "client"],
)
def test_every_load_path_gives_the_same_copy(
    admin: DbEndpoint, names: dict[str, str], reference: dict[str, Any], case: tuple[list[str], str, int]
) -> None:
    mode, loader, streams = case
    target = admin.with_database(names["bad"])
    proc = run_step(admin.with_database(names["src"]), target, *mode, *PAIRS)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert (result["loader"], result["streams"]) == (loader, streams)
    assert checksums(target) == reference


def test_dump_error_fails_and_retry_after_fix_converges(admin: DbEndpoint, names: dict[str, str]) -> None:
    """A view over a dropped table makes mariadb-dump fail after it has streamed the tables."""
    broken = names["src"] + "v"
    _exec(admin, f"CREATE DATABASE {quote_identifier(broken)}")
    try:
        source = admin.with_database(broken)
        _exec(
            source,
            "CREATE TABLE a_posts (id INT PRIMARY KEY, url TEXT)",
            f"INSERT INTO a_posts VALUES (1, '{OLD}/1'), (2, '{OLD}/2')",
            "CREATE TABLE gone (id INT)",
            "CREATE VIEW z_view AS SELECT id FROM gone",
            "DROP TABLE gone",
        )
        target = admin.with_database(names["bad"])
        last = assert_one_sentence_failure(run_step(source, target, *PAIRS), admin.password)
        assert "dump stage" in last and "z_view" in last
        _exec(source, "DROP VIEW z_view")
        proc = run_step(source, target, *PAIRS)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.splitlines()[-1])["rows"] == 2
        assert sorted(checksums(target)) == ["a_posts"]
    finally:
        _exec(admin, f"DROP DATABASE IF EXISTS {quote_identifier(broken)}")


def test_verification_counts_what_is_left_of_every_form(admin: DbEndpoint, names: dict[str, str]) -> None:
    """The verification on a database prepared by hand: each form the rule covers is counted where it is
    left, per column and form; a sister domain, a NEW that goes on from OLD, another case are not."""
    target = admin.with_database(names["bad"])
    _exec(
        target,
        "DROP TABLE IF EXISTS v_check",
        "CREATE TABLE v_check (id INT PRIMARY KEY, a VARCHAR(200), b LONGTEXT, n INT) CHARSET=utf8mb4",
        "INSERT INTO v_check VALUES (1, 'http://a.test.staging/x', 'clean', 1)",
        r"INSERT INTO v_check VALUES (2, 'HTTP://A.TEST is another URL', 'x http:\\/\\/a.test\\/y', 2)",
        "INSERT INTO v_check VALUES (3, NULL, NULL, 3)",
        "INSERT INTO v_check VALUES (4, 'http://a.test.au https://a.testing //a.test:8443 a.test', "
        "'//a.test/1 //a.test https://a.test/2 https://a.test', 4)",
        "INSERT INTO v_check VALUES (5, 'u=http%3A%2F%2Fa.test%2F v=%2f%2fa.test w=%2F%2Fa.test%3A1', "
        "'mail me@a.test; \\\\/\\\\/a.test', 5)",
        "INSERT INTO v_check VALUES (6, 'old@x.test', 'write to old@x.test or old@x.test', 6)",
    )
    pairs = [("http://a.test", "http://a.test.staging"), ("old@x.test", "new@x.test")]
    conn = target.connect()
    try:
        counts, leftovers = verify_target(conn, ["v_check"], {"v_check": ["a", "b"]}, pairs)
    finally:
        conn.close()
    assert counts == {"v_check": 6}
    assert leftovers.found == {
        ("v_check", "a", "url-encoded"): 2,
        ("v_check", "a", "explicit"): 1,
        ("v_check", "b", "json"): 2,
        ("v_check", "b", "protocol-relative"): 2,
        ("v_check", "b", "https"): 2,
        ("v_check", "b", "explicit"): 2,
    }
    assert leftovers.per_form() == {
        "https": 2,
        "http": 0,
        "protocol-relative": 2,
        "json": 2,
        "url-encoded": 2,
        "explicit": 3,
    }
    assert leftovers.places().startswith("v_check.a (url-encoded 2, explicit 1); v_check.b (")
    # The explicit pair keeps today's check: OLD plain and JSON-escaped, NEW values holding OLD set aside.
    assert [c.form for c in form_checks(pairs)].count("explicit") == 1
    exprs, params, labels = leftover_checks([("http://a.test", "http://a.test.staging")], ["a"])
    assert len(exprs) == 2 and labels == [("a", "http://a.test"), ("a", "http:\\/\\/a.test")]
    assert params == [
        "http://a.test.staging",
        "http://a.test",
        "http:\\/\\/a.test.staging",
        "http:\\/\\/a.test",
    ]


def test_a_leftover_fails_the_step_naming_table_column_form_and_count(
    admin: DbEndpoint, names: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the rewrite cannot reach (written into the clone between load and verification) fails the copy."""
    source, target = admin.with_database(names["src"]), admin.with_database(names["bad"])
    verify = module.verify

    def tamper_then_verify(src_conn: Any, dst_conn: Any, *args: Any, **kwargs: Any) -> Any:
        with dst_conn.cursor() as cur:
            cur.execute(
                "UPDATE wp_options SET option_value = CONCAT(option_value, %s)"
                " WHERE option_name = 'blogname'",
                (" //src.example.test/x https%3A%2F%2Fsrc.example.test%2F https://src.example.test.au",),
            )
        dst_conn.commit()
        return verify(src_conn, dst_conn, *args, **kwargs)

    monkeypatch.setattr(module, "verify", tamper_then_verify)
    with pytest.raises(StepError) as caught:
        module.copy_database(source, target, [(OLD, NEW), (OLD_TLS, NEW)])
    assert str(caught.value) == (
        "verification failed: the clone still holds what the rewrite replaces (occurrences per form): "
        "wp_options.option_value (protocol-relative 1, url-encoded 1)."
    )


def test_same_database_is_refused(admin: DbEndpoint, names: dict[str, str]) -> None:
    endpoint = admin.with_database(names["src"])
    proc = run_step(endpoint, endpoint, *PAIRS)
    assert proc.returncode == 2 and "same database" in proc.stderr.splitlines()[-1]
    assert textwrap.dedent(proc.stdout) == ""


@pytest.mark.parametrize("streams", [1, 2])
def test_rewrite_failure_names_the_rewrite_stage(
    admin: DbEndpoint, names: dict[str, str], monkeypatch: pytest.MonkeyPatch, streams: int
) -> None:
    class Failing:
        def __init__(self, pairs: object) -> None:
            self.pairs = pairs

        def rewrite_stream(self, src: Any, dst: Any) -> None:
            dst.write(src.read(1000))  # the loader has started on the stream
            raise ValueError("malformed literal")

    monkeypatch.setattr(module, "Rewriter", Failing)
    source, target = admin.with_database(names["src"]), admin.with_database(names["bad"])
    pairs = [(OLD, NEW)]
    with pytest.raises(StepError) as caught:
        if streams == 1:
            module.stream_copy(source, target, pairs)
        else:
            module.stream_copy_parallel(source, target, pairs, streams)
    assert str(caught.value) == "copy-database failed in the rewrite stage: ValueError: malformed literal."


def test_views_are_loaded_with_the_mariadb_client(admin: DbEndpoint, names: dict[str, str]) -> None:
    with_view = names["src"] + "w"
    _exec(admin, f"CREATE DATABASE {quote_identifier(with_view)}")
    try:
        source = admin.with_database(with_view)
        _exec(
            source,
            "CREATE TABLE a_posts (id INT PRIMARY KEY, url TEXT)",
            f"INSERT INTO a_posts VALUES (1, '{OLD}/1')",
            "CREATE VIEW b_urls AS SELECT url FROM a_posts",
        )
        target = admin.with_database(names["bad"])
        proc = run_step(source, target, "--parallel", "2", *PAIRS)
        assert proc.returncode == 0, proc.stderr
        assert "event=client-load-fallback reason=view" in proc.stderr
        result = json.loads(proc.stdout.splitlines()[-1])
        assert result["loader"] == "mariadb-client"
        assert (result["streams"], result["tables"], result["views"], result["rows"]) == (1, 1, 1, 1)
        conn = target.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT url FROM b_urls")
            assert cur.fetchall() == ((f"{NEW}/1",),)
        conn.close()
    finally:
        _exec(admin, f"DROP DATABASE IF EXISTS {quote_identifier(with_view)}")
