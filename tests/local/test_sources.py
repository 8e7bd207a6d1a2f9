"""The local runtime's wpclone.json belongs to the user: seeding rewrites only the seeded source's entry, and
add/remove-source change one entry; reading a wp-config.php runs nothing in it. (No servers: the checks
against a live database are in tests/local/test_sources_integration.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_config import local_stack, state_dir  # noqa: F401  (fixtures)
from wpclone.config import (
    edit_local_config,
    load_config,
    local_config_file,
    local_sources,
    put_local_source,
    remove_local_source,
    write_local_config,
)
from wpclone.errors import ConfigError
from wpclone.local.settings import StackSettings
from wpclone.local.sources import read_wp_config, split_db_host
from wpclone.models import SourceConfig

BLOG = {
    "name": "blog",
    "url": "https://blog.example.org",
    "db_host": "db.internal",
    "db_name": "blog",
    "db_user": "blog_ro",
    "content_claim": "blog-wp-content",
}


def test_a_new_file_holds_the_seeded_source(local_stack: StackSettings) -> None:  # noqa: F811
    path = write_local_config(local_stack)
    data = json.loads(path.read_text())
    assert data["runtime"] == "local" and data["clone_scheme"] == "http"
    assert [s["name"] for s in data["sources"]] == ["source"]


def test_seeding_keeps_other_sources_settings_and_the_users_keys(local_stack: StackSettings) -> None:  # noqa: F811
    path = local_config_file(local_stack)
    user = {
        "runtime": "local",
        "sources": [
            BLOG,
            {**SourceConfig.model_validate(BLOG).model_dump(mode="json"), "name": "source",
             "url": "http://stale.localhost:1", "aliases": ["https://northwind.example"]},
        ],
        "backups": {"keep_per_clone": 2},
    }  # fmt: skip
    path.write_text(json.dumps(user, indent=4))
    write_local_config(local_stack)
    data = json.loads(path.read_text())
    assert data["sources"][0] == BLOG  # untouched, in its place
    assert data["backups"] == {"keep_per_clone": 2}
    assert "clone_scheme" not in data  # nobody asked for it
    seeded = data["sources"][1]
    assert seeded["url"] == "http://source.localhost:8080"  # the stack's fields are the stack's
    assert seeded["db_name"] == "wp_source" and seeded["db_host"] == "127.0.0.1"
    assert seeded["aliases"] == ["https://northwind.example"]  # the user's own key on it stays
    assert seeded["content_claim"] == "blog-wp-content"  # (so does a key the stack does not write)
    before = path.stat().st_mtime_ns
    write_local_config(local_stack)  # unchanged: left alone
    assert path.stat().st_mtime_ns == before


def test_a_broken_file_is_refused_and_kept(local_stack: StackSettings) -> None:  # noqa: F811
    path = local_config_file(local_stack)
    path.write_text('{"sources": [}')
    with pytest.raises(ConfigError) as caught:
        write_local_config(local_stack)
    assert str(caught.value) == (
        f"the wpclone configuration in {path} is not valid JSON (Expecting value at line 1); "
        "fix it or move it away, then try again."
    )
    assert path.read_text() == '{"sources": [}'
    path.write_text('{"sources": [], "colour": "blue"}')
    with pytest.raises(
        ConfigError, match=r"colour: Extra inputs are not permitted\); fix it or move it away"
    ):
        write_local_config(local_stack)
    assert path.read_text() == '{"sources": [], "colour": "blue"}'


def test_an_edit_that_would_break_the_file_writes_nothing(local_stack: StackSettings) -> None:  # noqa: F811
    path = write_local_config(local_stack)
    text = path.read_text()
    clash = SourceConfig.model_validate({**BLOG, "url": "http://source.localhost:8080"})
    with pytest.raises(ConfigError) as caught:
        put_local_source(local_stack, clash)
    assert str(caught.value) == (
        f"the wpclone configuration in {path} after this change is not valid "
        "(top level: Value error, two sources share a url)."
    )
    assert path.read_text() == text

    def half_done(data: dict[str, object]) -> None:
        data["sources"] = []
        raise ConfigError("stop.")

    with pytest.raises(ConfigError, match=r"^stop\.$"):
        edit_local_config(local_stack, half_done)
    assert path.read_text() == text


def test_put_and_remove_a_source(local_stack: StackSettings) -> None:  # noqa: F811
    write_local_config(local_stack)
    blog = SourceConfig.model_validate(BLOG)
    put_local_source(local_stack, blog)
    assert local_sources(local_stack)[1] == blog
    entry = json.loads(local_config_file(local_stack).read_text())["sources"][1]
    assert entry == BLOG  # defaults are left out: what a user would write
    moved = blog.model_copy(update={"db_host": "db2.internal"})
    put_local_source(local_stack, moved)  # replaced in place, not added
    assert local_sources(local_stack)[1:] == [moved]
    remove_local_source(local_stack, "blog")
    assert [s.name for s in local_sources(local_stack)] == ["source"]
    with pytest.raises(ConfigError) as caught:
        remove_local_source(local_stack, "blog")
    assert str(caught.value) == "no source is named blog (registered: source)."
    env = {"WPCLONE_STATE_DIR": str(local_stack.state_dir)}
    assert [s.name for s in load_config(env).sources] == ["source"]


def test_read_wp_config_takes_plain_strings_only(tmp_path: Path) -> None:
    (tmp_path / "wp-content").mkdir()
    path = tmp_path / "wp-config.php"
    path.write_text(
        "<?php\n"
        "// define('DB_NAME', 'commented_out');\n"
        "/* define('DB_USER', 'also_not'); */\n"
        "define( 'DB_NAME', 'shop_live' );\n"
        'define("DB_USER", "shop");\n'
        "define( 'DB_PASSWORD', 'it\\'s \"secret\" \\\\ $x' );\n"
        "define( 'DB_HOST', getenv('DB_HOST') );\n"
        "define( 'DB_NAME', 'second_definition_is_ignored' );\n"
        "\\define('WP_HOME', 'https://shop.example.com');\n"
        "$table_prefix  = 'shp_';\n"
        "system('touch " + str(tmp_path / "ran") + "');\n"
        "require_once ABSPATH . 'wp-settings.php';\n"
    )
    found = read_wp_config(path)
    assert found.db_name == "shop_live"
    assert found.db_user == "shop"
    assert found.db_password == 'it\'s "secret" \\ $x'
    assert found.db_host is None  # not a plain string
    assert found.table_prefix == "shp_"
    assert found.url == "https://shop.example.com"
    assert found.content_dir == str(tmp_path / "wp-content")  # beside the file when not defined
    assert not (tmp_path / "ran").exists()  # nothing in the file ran
    with pytest.raises(ConfigError, match=r"missing\.php cannot be read\.$"):
        read_wp_config(tmp_path / "missing.php")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("db.internal", ("db.internal", None)),
        ("localhost", ("127.0.0.1", None)),
        ("10.0.0.5:3307", ("10.0.0.5", 3307)),
    ],
)
def test_db_host_as_tcp(value: str, expected: tuple[str, int | None]) -> None:
    assert split_db_host(value) == expected


def test_a_socket_db_host_says_what_to_pass() -> None:
    with pytest.raises(ConfigError) as caught:
        split_db_host("localhost:/run/mysqld/mysqld.sock")
    assert str(caught.value) == (
        "DB_HOST 'localhost:/run/mysqld/mysqld.sock' names a socket; the copy connects over TCP: "
        "pass --db-host and --db-port."
    )
