"""A clone made by hand with the steps CLI: what its copy reports, and what is in its database and files.

Its pages, menu, widgets, images, admin login and builder data are checked over HTTP by the site tests in
``tests/local/test_seed.py``, which run on both the source and this clone.
"""

from __future__ import annotations

import os
import stat

import pytest

from tests.fixtures.php_oracle import PhpOracle
from tests.fixtures.stack import HandClone
from wpclone.db import DbEndpoint, quote_identifier
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, content_dir

# (table, key column, value column) of every place WordPress keeps serialized values.
META_TABLES = [
    ("options", "option_id", "option_value"),
    ("postmeta", "meta_id", "meta_value"),
    ("usermeta", "umeta_id", "meta_value"),
    ("termmeta", "meta_id", "meta_value"),
    ("commentmeta", "meta_id", "meta_value"),
]
SERIALIZED = r"^([aOC]:[0-9]+:|s:[0-9]+:\"|[id]:|b:[01];|N;)"


@pytest.fixture
def clone_site(hand_clone: HandClone) -> SiteConfig:
    """The clone these checks look at (other modules import the tests and override this)."""
    return hand_clone.site


@pytest.fixture
def copy_results(hand_clone: HandClone) -> dict[str, dict[str, object]]:
    return {"copy_database": hand_clone.copy_database, "copy_content": hand_clone.copy_content}


def _clone_db(site: SiteConfig) -> DbEndpoint:
    return DbEndpoint(site.db_host, site.db_port, site.db_user, site.db_password(), site.db_name)


def test_copy_reports_equal_row_counts(
    clone_site: SiteConfig,
    copy_results: dict[str, dict[str, object]],
    admin_db: DbEndpoint,
    source_site: SiteConfig,
) -> None:
    options = f"{source_site.table_prefix}options"

    def counts(database: str) -> tuple[dict[str, int], set[str]]:
        """Rows per table (options apart), and the option names."""
        with admin_db.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (database,)
            )
            tables = [str(row[0]) for row in cur.fetchall()]
            found = {}
            for table in tables:
                # Staging safety ends the source's login sessions on a clone; everything else is equal.
                where = " WHERE meta_key <> 'session_tokens'" if table.endswith("usermeta") else ""
                cur.execute(
                    f"SELECT COUNT(*) FROM {quote_identifier(database)}.{quote_identifier(table)}{where}"
                )
                found[table] = int(cur.fetchone()[0])
            cur.execute(f"SELECT option_name FROM {quote_identifier(database)}.{quote_identifier(options)}")
            return found, {str(row[0]) for row in cur.fetchall()}

    (source, source_options), (clone, clone_options) = counts(source_site.db_name), counts(clone_site.db_name)
    # A site writes options (transients, flags) when it first serves a request, as the clone's readiness
    # check makes it do: no option of the source may be missing, and every other table is equal.
    assert source_options <= clone_options
    assert {t: n for t, n in clone.items() if t != options} == {
        t: n for t, n in source.items() if t != options
    }
    assert f"{source_site.table_prefix}posts" in clone
    result = copy_results["copy_database"]
    assert result["status"] == "ok"
    assert result["tables"] == len(source)
    assert result["rewrite"]["fields_rewritten"] > 0  # type: ignore[index]


def test_every_serialized_value_unserializes_in_php(clone_site: SiteConfig, php: PhpOracle) -> None:
    prefix = clone_site.table_prefix
    checked = with_new_url = 0
    new_url = clone_site.url.encode()
    with _clone_db(clone_site).connect() as conn, conn.cursor() as cur:
        for table, key, column in META_TABLES:
            cur.execute(
                f"SELECT {key}, CAST({column} AS BINARY) FROM `{prefix}{table}` WHERE {column} REGEXP %s",
                (SERIALIZED,),
            )
            rows = cur.fetchall()
            for start in range(0, len(rows), 2000):
                batch = rows[start : start + 2000]
                results = php.reserialize([value for _, value in batch])
                bad = [row_id for (row_id, _), result in zip(batch, results, strict=True) if result is None]
                assert bad == [], f"{table} rows {bad[:10]} do not unserialize"
                checked += len(batch)
                with_new_url += sum(new_url in value for _, value in batch)
    assert checked > 100
    assert with_new_url > 10  # serialized values that held the source URL now hold the clone's


def test_no_source_url_left_in_the_clone(clone_site: SiteConfig, source_site: SiteConfig) -> None:
    prefix = clone_site.table_prefix
    host = source_site.url.split("://", 1)[1]
    with _clone_db(clone_site).connect() as conn, conn.cursor() as cur:
        for table, column in [
            ("posts", "post_content"),
            ("posts", "guid"),
            ("postmeta", "meta_value"),
            ("options", "option_value"),
            ("comments", "comment_content"),
        ]:
            cur.execute(f"SELECT COUNT(*) FROM `{prefix}{table}` WHERE {column} LIKE %s", (f"%{host}%",))
            assert cur.fetchone()[0] == 0, f"{table}.{column} still names {host}"
        cur.execute(f"SELECT option_value FROM `{prefix}options` WHERE option_name IN ('siteurl', 'home')")
        assert {row[0] for row in cur.fetchall()} == {clone_site.url}


def test_content_is_identical_with_modes_and_mtimes(
    clone_site: SiteConfig,
    copy_results: dict[str, dict[str, object]],
    stack: StackSettings,
    source_site: SiteConfig,
) -> None:
    source = content_dir(stack, source_site.name)
    clone = content_dir(stack, clone_site.name)
    seen = 0
    for directory, _, files in os.walk(source):
        for name in files:
            src = os.path.join(directory, name)
            dst = os.path.join(clone, os.path.relpath(src, source))
            a, b = os.lstat(src), os.lstat(dst)
            assert (stat.S_IMODE(a.st_mode), a.st_size, int(a.st_mtime)) == (
                stat.S_IMODE(b.st_mode),
                b.st_size,
                int(b.st_mtime),
            ), dst
            seen += 1
    assert seen > 50
    assert copy_results["copy_content"]["files"] >= seen  # type: ignore[operator]
