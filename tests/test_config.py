"""Where the configuration comes from (file, inline JSON, local state dir), in that order, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wpclone.config import (
    load_config,
    local_config,
    local_config_path,
    write_local_config,
)
from wpclone.errors import ConfigError
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, content_dir, register_site
from wpclone.models import RuntimeKind
from wpclone.settings import CONTROL_SCHEMA as CONTROL_SCHEMA_ENV
from wpclone.settings import Settings, control_schema, same_server_copy


def config_json(name: str, url: str) -> str:
    source = {"name": name, "url": url, "db_host": "db.internal", "db_name": "wp_x", "db_user": "wp_x"}
    return json.dumps({"runtime": "kubernetes", "sources": [source], "clone_domain": "staging.example.com"})


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def env(state_dir: Path) -> dict[str, str]:
    """An environment with no configuration: only a private, empty state dir."""
    return {"WPCLONE_STATE_DIR": str(state_dir)}


def test_the_file_wins(tmp_path: Path, env: dict[str, str], state_dir: Path) -> None:
    path = tmp_path / "wpclone.json"
    path.write_text(config_json("from-file", "https://file.example.com"))
    env["WPCLONE_CONFIG"] = str(path)
    env["WPCLONE_CONFIG_JSON"] = config_json("from-json", "https://json.example.com")
    state_dir.mkdir()
    (state_dir / "wpclone.json").write_text(config_json("from-state", "https://state.example.com"))
    config = load_config(env)
    assert [s.name for s in config.sources] == ["from-file"]
    assert config.runtime is RuntimeKind.KUBERNETES


def test_inline_json_comes_second(env: dict[str, str], state_dir: Path) -> None:
    env["WPCLONE_CONFIG"] = ""  # empty counts as unset
    env["WPCLONE_CONFIG_JSON"] = config_json("from-json", "https://json.example.com")
    state_dir.mkdir()
    (state_dir / "wpclone.json").write_text(config_json("from-state", "https://state.example.com"))
    assert [s.name for s in load_config(env).sources] == ["from-json"]


def test_the_local_state_file_comes_last(env: dict[str, str], state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "wpclone.json").write_text(config_json("from-state", "https://state.example.com"))
    assert [s.name for s in load_config(env).sources] == ["from-state"]


def test_no_configuration_says_how_to_configure(env: dict[str, str], state_dir: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(env)
    assert str(exc.value) == (
        "wpclone is not configured: set WPCLONE_CONFIG to the path of a JSON configuration file or "
        f"WPCLONE_CONFIG_JSON to the JSON itself, or, for the local runtime, create {state_dir}/wpclone.json "
        "with wpclone.config.write_local_config after seeding the local stack."
    )
    assert not state_dir.exists()  # looking for the configuration creates nothing


def test_an_unreadable_file_is_one_sentence(tmp_path: Path, env: dict[str, str]) -> None:
    env["WPCLONE_CONFIG"] = str(tmp_path / "missing.json")
    with pytest.raises(ConfigError) as exc:
        load_config(env)
    assert str(exc.value) == (
        f"WPCLONE_CONFIG names {tmp_path}/missing.json, which cannot be read (No such file or directory); "
        "point it at the wpclone configuration JSON file."
    )


def test_invalid_json_names_its_origin(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"sources": [\n')
    env["WPCLONE_CONFIG"] = str(path)
    with pytest.raises(
        ConfigError, match=r"^the wpclone configuration in .*broken\.json \(WPCLONE_CONFIG\) "
    ):
        load_config(env)
    with pytest.raises(ConfigError) as exc:
        load_config({**env, "WPCLONE_CONFIG": "", "WPCLONE_CONFIG_JSON": "{nope"})
    assert str(exc.value) == (
        "the wpclone configuration in WPCLONE_CONFIG_JSON is not valid JSON "
        "(Expecting property name enclosed in double quotes at line 1)."
    )


def test_invalid_configuration_lists_the_problems(env: dict[str, str]) -> None:
    data = json.loads(config_json("from-json", "https://json.example.com/path"))
    data["sources"][0]["db_name"] = "wp;drop"
    data["colour"] = "blue"
    env["WPCLONE_CONFIG_JSON"] = json.dumps(data)
    with pytest.raises(ConfigError) as exc:
        load_config(env)
    message = str(exc.value)
    assert message.startswith("the wpclone configuration in WPCLONE_CONFIG_JSON is not valid (")
    assert "sources.0.url: Value error, must be http(s)://host[:port] with no path" in message
    assert "sources.0.db_name: String should match pattern" in message
    assert "colour: Extra inputs are not permitted" in message
    assert message.endswith(").")
    assert "\n" not in message


def test_local_config_path_matches_the_stack_settings(
    env: dict[str, str], state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WPCLONE_STATE_DIR", str(state_dir))
    monkeypatch.setenv("WPCLONE_DB_PORT", "3306")
    monkeypatch.setenv("WPCLONE_HTTP_PORT", "8080")
    assert local_config_path(env) == StackSettings.load().state_dir / "wpclone.json"


def test_control_schema(env: dict[str, str]) -> None:
    assert control_schema(env) == "wpclone_control"
    assert control_schema({CONTROL_SCHEMA_ENV: "ops_control"}) == "ops_control"
    with pytest.raises(ConfigError, match=r"^WPCLONE_CONTROL_SCHEMA 'x;drop' is not valid"):
        control_schema({CONTROL_SCHEMA_ENV: "x;drop"})


# -- the local runtime's configuration ---------------------------------------------------------------------


@pytest.fixture
def local_stack(state_dir: Path) -> StackSettings:
    """A state dir with two registered sites (no servers): the seeded source and a clone-like site."""
    settings = StackSettings(state_dir, 3306, 8080)
    for name in ("source", "source-abc123"):
        secret = state_dir / "secrets" / f"site-{name}-db"
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_text("s3cret-Value-Q7\n")
        site = SiteConfig(
            name=name,
            url=settings.site_url(name),
            db_host="127.0.0.1",
            db_port=3306,
            db_name=f"wp_{name.replace('-', '_')}",
            db_user=f"wp_{name.replace('-', '_')}",
            db_password_file=secret,
        )
        register_site(settings, site, default_content=False)
    return settings


def test_local_config_makes_the_named_sites_sources(local_stack: StackSettings) -> None:
    config = local_config(local_stack)
    assert config.runtime is RuntimeKind.LOCAL
    assert config.clone_scheme == "http"
    [source] = config.sources  # the clone-like site is not a source
    assert source.name == "source"
    assert source.url == "http://source.localhost:8080"
    assert (source.db_host, source.db_port, source.db_name, source.db_user) == (
        "127.0.0.1",
        3306,
        "wp_source",
        "wp_source",
    )
    assert source.db_password_file == str(local_stack.secrets_dir / "site-source-db")
    assert source.content_dir == str(content_dir(local_stack, "source"))
    assert "s3cret-Value-Q7" not in config.model_dump_json()  # the password file is referenced, never read
    assert config.source_for("http://source.localhost:8080/") == source


def test_local_config_refuses_an_unregistered_site(local_stack: StackSettings) -> None:
    with pytest.raises(ConfigError, match=r"^site shop is not registered \(no .*/sites/shop/site\.json\)\.$"):
        local_config(local_stack, ["shop"])


def test_write_local_config_is_idempotent_and_loads_back(
    local_stack: StackSettings, env: dict[str, str]
) -> None:
    path = write_local_config(local_stack)
    assert path == local_stack.state_dir / "wpclone.json"
    first = path.stat()
    assert write_local_config(local_stack) == path
    assert path.stat().st_mtime_ns == first.st_mtime_ns and path.stat().st_ino == first.st_ino
    assert load_config(env) == local_config(local_stack)
    # A change in the stack (another port) rewrites it.
    moved = StackSettings(local_stack.state_dir, 3307, 8081)
    register_site(
        moved,
        SiteConfig(
            name="source",
            url=moved.site_url("source"),
            db_host="127.0.0.1",
            db_port=3307,
            db_name="wp_source",
            db_user="wp_source",
            db_password_file=moved.secrets_dir / "site-source-db",
        ),
        default_content=False,
    )
    write_local_config(moved)
    assert load_config(env).sources[0].url == "http://source.localhost:8081"


@pytest.mark.parametrize(("raw", "on"), [(None, True), ("on", True), ("OFF", False), (" off ", False)])
def test_same_server_copy_is_on_unless_switched_off(raw: str | None, on: bool) -> None:
    env = {} if raw is None else {"WPCLONE_SAME_SERVER_COPY": raw}
    assert same_server_copy(env) is on
    assert Settings.from_env(env).same_server_copy is on


def test_same_server_copy_takes_only_on_or_off() -> None:
    with pytest.raises(ConfigError, match=r"^WPCLONE_SAME_SERVER_COPY must be on or off, not 'no'\.$"):
        same_server_copy({"WPCLONE_SAME_SERVER_COPY": "no"})
