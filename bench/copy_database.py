"""Benchmark copy-database against the limit of a streaming copy, on the same generated data, side by side.

    .venv/bin/python bench/copy_database.py [--runs 3] [--rebuild] [--no-mydumper]

Builds (or reuses) ``bench_src`` on the local MariaDB: a WordPress-shaped database of at least 250 MB
(wp_posts with block markup holding plain and JSON-escaped URLs, wp_postmeta with serialized values holding
URLs, wp_options), generated server-side with bulk ``INSERT ... SELECT`` over MariaDB's sequence engine.
Then it alternates, ``--runs`` times each, into freshly created target databases:

- raw:   ``mariadb-dump | mariadb`` with the step's own dump and load options, no rewrite (the limit);
- ours:  ``python -m wpclone.steps copy-database OLD NEW`` as a subprocess (the CLI code path), which also
         verifies (row counts, leftover URL scan); its copy phase alone is reported too;
- ours --parallel N: the same step loading over N connections from one dump (the fast path);
- ours --client-load: the same step loading through the ``mariadb`` client (used for views/triggers);
- mydumper: ``mydumper -t 2 | myloader -t 2`` through a directory, no rewrite (a parallel path's limit).

It prints MB/s of dump bytes, best-of-runs ratios ours/raw, and the peak RSS of the step process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time

from wpclone.db import DbEndpoint, quote_identifier
from wpclone.local.mariadb import LocalMariaDB
from wpclone.local.settings import StackSettings
from wpclone.steps.copy_database import dump_command, load_command

log = logging.getLogger(__name__)

SOURCE_DB = "bench_src"
OLD = "http://bench-src.example.com"
NEW = "http://bench-clone.localhost:8080"
BENCH_VERSION = "4"
POSTS = 95_000
META_PER_POST = 4
OPTIONS = 3_000
MIN_BYTES = 250 * 1000 * 1000

# Block markup of a typical post: paragraphs, an image block with a JSON-escaped URL, links.
POST_CONTENT = """CONCAT(
 '<!-- wp:paragraph -->\\n<p>Post ', seq, ' — ',
   REPEAT(CONCAT('Lorem ipsum dolor sit amet ', MD5(seq), ' ünïcödé 日本語 '), 12),
   ' <a href="{old}/', seq, '/">read more</a></p>\\n<!-- /wp:paragraph -->\\n',
 '<!-- wp:image {{"id":', seq, ',"sizeSlug":"large",',
   '"url":"{old_json}\\\\/wp-content\\\\/uploads\\\\/2024\\\\/',
   seq, '.jpg"}} -->\\n<figure class="wp-block-image size-large"><img src="{old}/wp-content/uploads/2024/',
   seq, '.jpg" alt="it''s \\\\"quoted\\\\""/></figure>\\n<!-- /wp:image -->\\n',
 '<!-- wp:paragraph -->\\n<p>', REPEAT(CONCAT(SHA1(seq), ' consectetur adipiscing elit. '), 10),
   '</p>\\n<!-- /wp:paragraph -->')"""


def ser_str(expr: str) -> str:
    """SQL for PHP's serialize() of a string expression (byte length via LENGTH())."""
    return f"CONCAT('s:', LENGTH({expr}), ':\"', {expr}, '\";')"


def build_source(admin: DbEndpoint) -> None:
    old_json = OLD.replace("/", "\\\\/")
    conn = admin.connect()
    started = time.monotonic()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SOURCE_DB}")
        cur.execute(f"CREATE DATABASE {SOURCE_DB} CHARACTER SET utf8mb4")
        cur.execute(f"USE {SOURCE_DB}")
        cur.execute(
            "CREATE TABLE wp_posts (ID BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,"
            " post_author BIGINT UNSIGNED NOT NULL DEFAULT 0, post_date DATETIME NOT NULL,"
            " post_content LONGTEXT NOT NULL, post_title TEXT NOT NULL, post_excerpt TEXT NOT NULL,"
            " post_status VARCHAR(20) NOT NULL, post_name VARCHAR(200) NOT NULL, guid VARCHAR(255) NOT NULL,"
            " post_type VARCHAR(20) NOT NULL, KEY type_status (post_type, post_status),"
            " KEY post_name (post_name(191))) DEFAULT CHARSET=utf8mb4"
        )
        cur.execute(
            "CREATE TABLE wp_postmeta (meta_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, post_id BIGINT"
            " UNSIGNED NOT NULL, meta_key VARCHAR(255), meta_value LONGTEXT, KEY post_id (post_id),"
            " KEY meta_key (meta_key(191))) DEFAULT CHARSET=utf8mb4"
        )
        cur.execute(
            "CREATE TABLE wp_options (option_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, option_name"
            " VARCHAR(191) NOT NULL UNIQUE, option_value LONGTEXT NOT NULL, autoload VARCHAR(20) NOT NULL"
            " DEFAULT 'yes') DEFAULT CHARSET=utf8mb4"
        )
        cur.execute("CREATE TABLE bench_meta (version VARCHAR(10))")
        content = POST_CONTENT.format(old=OLD, old_json=old_json)
        cur.execute(
            "INSERT INTO wp_posts (ID, post_date, post_content, post_title, post_excerpt, post_status,"
            " post_name, guid, post_type)"
            f" SELECT seq, '2024-01-01' + INTERVAL seq MINUTE, {content}, CONCAT('Post ', seq, ' Straße'),"
            f" '', 'publish', CONCAT('post-', seq), CONCAT('{OLD}/?p=', seq), 'post'"
            f" FROM seq_1_to_{POSTS}"
        )
        url = f"CONCAT('{OLD}/wp-content/uploads/2024/', p.seq, '.jpg')"
        attachment = (
            "CONCAT('a:3:{s:4:\"file\";', "
            + ser_str("CONCAT('2024/', p.seq, '.jpg')")
            + ', \'s:5:"sizes";a:1:{s:5:"thumb";a:2:{s:4:"file";\', '
            + ser_str("CONCAT(p.seq, '-150x150.jpg')")
            + ', \'s:5:"width";i:150;}}s:10:"source_url";\', '
            + ser_str(url)
            + ", '}')"
        )
        cur.execute(
            "INSERT INTO wp_postmeta (post_id, meta_key, meta_value)"
            f" SELECT p.seq, CASE m.seq WHEN 1 THEN '_wp_attachment_metadata' WHEN 2 THEN '_links'"
            " WHEN 3 THEN '_edit_lock' ELSE '_thumbnail_url' END,"
            f" CASE m.seq WHEN 1 THEN {attachment}"
            f" WHEN 2 THEN CONCAT('[\"{old_json}\\\\/a\\\\/', p.seq, '\"]')"
            " WHEN 3 THEN CONCAT(p.seq, ':1')"
            f" ELSE {url} END"
            f" FROM seq_1_to_{POSTS} p JOIN seq_1_to_{META_PER_POST} m"
        )
        option_value = (
            "CONCAT('a:2:{s:3:\"url\";', "
            + ser_str(f"CONCAT('{OLD}/opt/', seq)")
            + ", 's:5:\"inner\";', "
            + ser_str("CONCAT('a:1:{s:1:\"u\";', " + ser_str(f"CONCAT('{OLD}/in/', seq)") + ", '}')")
            + ", '}')"
        )
        cur.execute(
            "INSERT INTO wp_options (option_name, option_value, autoload)"
            f" SELECT CONCAT('opt_', seq), {option_value}, IF(seq % 10 = 0, 'yes', 'no')"
            f" FROM seq_1_to_{OPTIONS}"
        )
        cur.execute(
            "INSERT INTO wp_options (option_name, option_value) VALUES ('siteurl', %s), ('home', %s)",
            (OLD, OLD),
        )
        cur.execute("INSERT INTO bench_meta VALUES (%s)", (BENCH_VERSION,))
    conn.close()
    print(f"built {SOURCE_DB} in {time.monotonic() - started:.1f} s")


def source_ready(admin: DbEndpoint) -> bool:
    conn = admin.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME ="
                " 'bench_meta'",
                (SOURCE_DB,),
            )
            if not cur.fetchone()[0]:
                return False
            cur.execute(f"SELECT version FROM {SOURCE_DB}.bench_meta")
            row = cur.fetchone()
            return bool(row and row[0] == BENCH_VERSION)
    finally:
        conn.close()


def fresh_db(admin: DbEndpoint, name: str) -> DbEndpoint:
    conn = admin.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)}")
        cur.execute(f"CREATE DATABASE {quote_identifier(name)} CHARACTER SET utf8mb4")
    conn.close()
    return admin.with_database(name)


def dump_size(admin: DbEndpoint) -> int:
    """Bytes of the dump (what the MB/s figures are measured in), from one dump to /dev/null."""
    source = admin.with_database(SOURCE_DB)
    proc = subprocess.Popen(dump_command(source), stdout=subprocess.PIPE, env=source.client_env())
    assert proc.stdout
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        total += len(chunk)
    if proc.wait() != 0:
        raise SystemExit("mariadb-dump of the bench source failed.")
    return total


def run_raw(admin: DbEndpoint) -> float:
    source, target = admin.with_database(SOURCE_DB), fresh_db(admin, "bench_dst_raw")
    started = time.monotonic()
    dump = subprocess.Popen(dump_command(source), stdout=subprocess.PIPE, env=source.client_env())
    load = subprocess.Popen(load_command(target), stdin=dump.stdout, env=target.client_env())
    assert dump.stdout
    dump.stdout.close()
    if dump.wait() != 0 or load.wait() != 0:
        raise SystemExit("raw mariadb-dump | mariadb failed.")
    return time.monotonic() - started


def run_ours(admin: DbEndpoint, *extra: str) -> tuple[float, float, int]:
    """Wall time, copy-phase time (from the JSON result) and peak RSS (KiB) of the step process."""
    source, target = admin.with_database(SOURCE_DB), fresh_db(admin, "bench_dst_ours")
    env = {**os.environ, **source.to_env("SOURCE_DB"), **target.to_env("TARGET_DB")}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wpclone.steps", "copy-database", *extra, OLD, NEW],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"copy-database failed: {err.decode()[-2000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    peak = int(result.get("peak_rss_kib", 0))
    return wall, float(result["copy_s"]), peak


def run_mydumper(admin: DbEndpoint) -> float | None:
    if not shutil.which("mydumper") or not shutil.which("myloader"):
        return None
    target = fresh_db(admin, "bench_dst_myd")
    env = {**os.environ, "MYSQL_PWD": admin.password}
    conn = ["-h", admin.host, "-P", str(admin.port), "-u", admin.user]
    with tempfile.TemporaryDirectory(prefix="bench-myd-") as tmp:
        started = time.monotonic()
        dump = subprocess.run(
            [
                "mydumper",
                *conn,
                "-B",
                SOURCE_DB,
                "-o",
                tmp,
                "-t",
                "2",
                "--trx-consistency-only",
                "-r",
                "20000",
            ],
            env=env,
            capture_output=True,
            check=False,
        )
        if dump.returncode != 0:
            print(f"mydumper failed: {dump.stderr.decode()[-300:]}")
            return None
        load = subprocess.run(
            ["myloader", *conn, "-d", tmp, "-B", target.database or "", "-t", "2", "-o"],
            env=env,
            capture_output=True,
            check=False,
        )
        if load.returncode != 0:
            print(f"myloader failed: {load.stderr.decode()[-300:]}")
            return None
        return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--no-mydumper", action="store_true")
    parser.add_argument("--parallel", type=int, default=2, help="streams for the parallel variant")
    args = parser.parse_args()
    server = LocalMariaDB(StackSettings.load())
    server.start()
    admin = server.admin
    if args.rebuild or not source_ready(admin):
        build_source(admin)
    size = dump_size(admin)
    print(f"source {SOURCE_DB}: dump {size / 1e6:.1f} MB")
    if size < MIN_BYTES:
        print(f"warning: dump is smaller than {MIN_BYTES / 1e6:.0f} MB; rerun with --rebuild")

    raw: list[float] = []
    ours: list[tuple[float, float, int]] = []
    par: list[tuple[float, float, int]] = []
    client: list[tuple[float, float, int]] = []
    myd: list[float] = []
    mb = size / 1e6
    for i in range(args.runs):
        raw.append(run_raw(admin))
        print(f"run {i + 1}: raw               {raw[-1]:6.2f} s  {mb / raw[-1]:6.1f} MB/s")
        variants: list[tuple[str, list[tuple[float, float, int]], tuple[str, ...]]] = [
            ("ours", ours, ()),
            (f"ours --parallel {args.parallel}", par, ("--parallel", str(args.parallel))),
            ("ours --client-load", client, ("--client-load",)),
        ]
        for label, runs, extra in variants:
            runs.append(run_ours(admin, *extra))
            wall, copy_s, peak = runs[-1]
            print(
                f"run {i + 1}: {label:18}{wall:6.2f} s  {mb / wall:6.1f} MB/s"
                f"  (copy phase {copy_s:.2f} s, {mb / copy_s:.1f} MB/s; peak RSS {peak / 1024:.0f} MiB)"
            )
        if not args.no_mydumper and (t := run_mydumper(admin)) is not None:
            myd.append(t)
            print(f"run {i + 1}: mydumper+myloader {t:6.2f} s  {mb / t:6.1f} MB/s")

    best_raw = min(raw)
    print("--- best of runs")
    print(f"dump bytes                       {mb:.1f} MB")
    print(f"raw mariadb-dump | mariadb       {best_raw:6.2f} s  {mb / best_raw:6.1f} MB/s")
    rows = [
        ("ours (end to end)", min(w for w, _, _ in ours)),
        ("ours (copy phase)", min(c for _, c, _ in ours)),
        (f"ours --parallel {args.parallel} (end to end)", min(w for w, _, _ in par)),
        (f"ours --parallel {args.parallel} (copy phase)", min(c for _, c, _ in par)),
        ("ours --client-load (end to end)", min(w for w, _, _ in client)),
    ]
    if myd:
        rows.append(("mydumper+myloader (no rewrite)", min(myd)))
    for label, best in rows:
        print(f"{label:32} {best:6.2f} s  {mb / best:6.1f} MB/s  ratio to raw {best / best_raw:.2f}x")
    print(f"peak RSS of the step process     {max(p for _, _, p in ours + par + client) / 1024:.0f} MiB")
    best_ours = min(rows[0][1], rows[2][1])
    print(f"target <= 1.15x end to end: {'met' if best_ours / best_raw <= 1.15 else 'NOT met'}")
    for name in ("bench_dst_raw", "bench_dst_ours", "bench_dst_myd"):
        conn = admin.connect()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)}")
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
