"""Requests, names and the sources configuration: what is accepted, what is refused, and how it reads."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from wpclone.errors import describe
from wpclone.models import (
    CLONE_ID_RE,
    RESERVED_CLONE_IDS,
    TTL_DEFAULT_MINUTES,
    TTL_MAX_MINUTES,
    TTL_MIN_MINUTES,
    CloneRequest,
    CopyMode,
    DeleteRequest,
    SourceConfig,
    WpcloneConfig,
    check_clone_id,
    clone_db_name,
    clone_id_from_db_name,
    generate_clone_id,
    url_spellings,
)

BAD_CLONE_IDS = [
    "a;drop",
    "a';drop table x;--",
    "../x",
    "a/b",
    "$(id)",
    "`id`",
    "a b",
    "a\nb",
    "Upper",
    "ABC",
    "a" * 29,
    "trailing-",
    "-leading",
    "9starts-with-digit",
    "ab",
    "a_b",
    "a.b",
    "caf\u00e9",
]


def source(name: str = "source", url: str = "http://source.localhost:8080", **extra: Any) -> SourceConfig:
    return SourceConfig.model_validate(
        {"name": name, "url": url, "db_host": "127.0.0.1", "db_name": "wp_x", "db_user": "wp_x", **extra}
    )


# -- CloneRequest ----------------------------------------------------------------------------------------


def test_clone_request_defaults() -> None:
    request = CloneRequest.model_validate({"source_url": "http://source.localhost:8080"})
    assert request.ttl_minutes == TTL_DEFAULT_MINUTES == 60
    assert request.clone_id is None
    assert request.copy_mode is CopyMode.EVERYTHING


@pytest.mark.parametrize("ttl", [TTL_MIN_MINUTES, 60, TTL_MAX_MINUTES])
def test_ttl_within_bounds_is_accepted(ttl: int) -> None:
    assert CloneRequest(source_url="http://s.example", ttl_minutes=ttl).ttl_minutes == ttl


@pytest.mark.parametrize("ttl", [TTL_MIN_MINUTES - 1, TTL_MAX_MINUTES + 1, 0, -5, 10**9])
def test_ttl_out_of_bounds_is_refused(ttl: int) -> None:
    with pytest.raises(ValidationError, match="ttl_minutes"):
        CloneRequest(source_url="http://s.example", ttl_minutes=ttl)


def test_ttl_bounds_are_ten_minutes_to_a_week() -> None:
    assert (TTL_MIN_MINUTES, TTL_MAX_MINUTES) == (10, 7 * 24 * 60)


@pytest.mark.parametrize("clone_id", BAD_CLONE_IDS)
def test_clone_ids_with_metacharacters_or_bad_shape_are_refused(clone_id: str) -> None:
    with pytest.raises(ValidationError, match="clone_id"):
        CloneRequest(source_url="http://s.example", clone_id=clone_id)
    with pytest.raises(ValidationError, match="clone_id"):
        DeleteRequest(clone_id=clone_id)
    with pytest.raises(ValueError, match=r"is not valid: use 3-28 lower-case letters"):
        check_clone_id(clone_id)


@pytest.mark.parametrize("clone_id", ["abc", "qa-1", "a" * 28, "source-x2k9pq", "a--b"])
def test_good_clone_ids_are_accepted(clone_id: str) -> None:
    assert CloneRequest(source_url="http://s.example", clone_id=clone_id).clone_id == clone_id
    assert DeleteRequest(clone_id=clone_id).clone_id == clone_id
    assert check_clone_id(clone_id) == clone_id


@pytest.mark.parametrize(
    "clone_id",
    ["mysql", "sys", "information-schema", "performance-schema", "root", "admin", "wpclone", "backups"],
)
def test_reserved_clone_ids_are_refused_with_a_sentence(clone_id: str) -> None:
    """System schemas and accounts of the database server and wpclone's own names: the jobs API, the CLI
    (through the API) and the DAG (its validate_request builds a CloneRequest) refuse them at once."""

    sentence = (
        f"clone id {clone_id!r} is reserved: it names a system schema or account of the database server or "
        "one of wpclone's own objects; choose another clone id."
    )
    with pytest.raises(ValidationError) as caught:
        CloneRequest(source_url="http://s.example", clone_id=clone_id)
    assert describe(caught.value) == f"clone_id: {sentence}"
    with pytest.raises(ValidationError, match="is reserved"):
        DeleteRequest(clone_id=clone_id)
    with pytest.raises(ValueError) as refused:
        check_clone_id(clone_id)
    assert str(refused.value) == sentence
    with pytest.raises(ValueError, match="is reserved"):
        clone_db_name(clone_id)
    # Never taken for one of ours by the orphan sweep either.
    assert clone_id_from_db_name("wpc_" + clone_id.replace("-", "_")) is None


def test_reserved_words_are_valid_shapes_and_generated_ids_never_collide() -> None:
    assert all(CLONE_ID_RE.fullmatch(word) for word in RESERVED_CLONE_IDS)  # else the pattern covers it
    ids = {generate_clone_id(source(name=name)) for name in ("mysql", "admin", "sys-x") for _ in range(10)}
    assert not ids & RESERVED_CLONE_IDS


def test_empty_clone_id_means_generate() -> None:
    assert CloneRequest(source_url="http://s.example", clone_id="").clone_id is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("HTTP://Source.Example.COM/", "http://source.example.com"),
        ("  https://www.example.com:8443  ", "https://www.example.com:8443"),
        ("http://source.localhost:8080///", "http://source.localhost:8080"),
    ],
)
def test_source_url_is_normalized(given: str, normalized: str) -> None:
    assert CloneRequest(source_url=given).source_url == normalized


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com",
        "example.com",
        "http://example.com/path",
        "http://user@example.com",
        "http://example.com?x=1",
        "http://exa mple.com",
        "http://example.com:123456",
        "javascript:alert(1)",
        "",
    ],
)
def test_bad_source_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match=r"must be http\(s\)://host\[:port\] with no path"):
        CloneRequest(source_url=url)


def test_extra_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        CloneRequest.model_validate({"source_url": "http://s.example", "ttl": 30})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        DeleteRequest.model_validate({"clone_id": "abc", "force": True})


def test_copy_mode_is_an_enum() -> None:
    assert CloneRequest(source_url="http://s.example", copy_mode="database").copy_mode is CopyMode.DATABASE  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="copy_mode"):
        CloneRequest.model_validate({"source_url": "http://s.example", "copy_mode": "some"})


def test_requests_are_frozen() -> None:
    request = DeleteRequest(clone_id="abc")
    with pytest.raises(ValidationError):
        request.clone_id = "def"  # type: ignore[misc]


# -- names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clone_id", ["abc", "qa-1", "a" * 28, "my-long-clone-name-0123456789"[:28]])
def test_clone_db_name_round_trip(clone_id: str) -> None:
    name = clone_db_name(clone_id)
    assert name.startswith("wpc_")
    assert "-" not in name
    assert len(name) <= 32  # also the database user: MySQL 8 caps user names at 32
    assert clone_id_from_db_name(name) == clone_id


def test_clone_db_name_refuses_bad_ids() -> None:
    with pytest.raises(ValueError, match="is not valid"):
        clone_db_name("a;drop")


@pytest.mark.parametrize("name", ["wp_source", "wpc_", "wpc_a", "wpc_Abc", "mysql", "wpc_abc_", "xwpc_abc"])
def test_clone_id_from_foreign_db_names_is_none(name: str) -> None:
    assert clone_id_from_db_name(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "source",
        "ab",
        "a" * 32,
        "a" * 20 + "-" + "b" * 11,  # the 21-char cut ends with '-'
        "a" + "-" * 20 + "b",  # the cut is a letter and dashes
        "shop-de-production-eu-west-1",
    ],
)
def test_generate_clone_id_fits_the_pattern(name: str) -> None:
    src = source(name=name)
    ids = {generate_clone_id(src) for _ in range(20)}
    for clone_id in ids:
        assert CLONE_ID_RE.fullmatch(clone_id), clone_id
        assert clone_id.startswith(name[:21].rstrip("-") + "-")
        clone_db_name(clone_id)
    assert len(ids) > 1  # random suffixes


# -- configuration ---------------------------------------------------------------------------------------


def test_source_for_finds_a_source_by_normalized_url() -> None:
    config = WpcloneConfig(sources=[source(), source("shop", "https://shop.example.com")])
    assert config.source_for("HTTPS://Shop.Example.com/").name == "shop"


def test_source_for_an_unregistered_url_lists_the_registered_ones() -> None:
    config = WpcloneConfig(sources=[source(), source("shop", "https://shop.example.com")])
    with pytest.raises(ValueError) as exc:
        config.source_for("http://evil.example/")
    assert str(exc.value) == (
        "http://evil.example is not a registered source site "
        "(registered: http://source.localhost:8080, https://shop.example.com)."
    )
    with pytest.raises(ValueError, match=r"\(registered: none\)\.$"):
        WpcloneConfig().source_for("http://x.example")


@pytest.mark.parametrize(
    ("a", "b", "attr"),
    [
        (("one", "http://a.example"), ("one", "http://b.example"), "name"),
        (("one", "http://a.example"), ("two", "HTTP://A.example/"), "url"),
    ],
)
def test_sources_must_be_unique(a: tuple[str, str], b: tuple[str, str], attr: str) -> None:
    with pytest.raises(ValidationError, match=f"two sources share a {attr}"):
        WpcloneConfig(sources=[source(*a), source(*b)])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Bad Name"),
        ("name", "x"),
        ("db_name", "wp;drop"),
        ("db_user", "a" * 33),
        ("db_host", "host;rm -rf"),
        ("table_prefix", "wp"),
        ("db_password_secret", "Bad_Secret"),
        ("db_port", 0),
    ],
)
def test_source_fields_are_validated(field: str, value: Any) -> None:
    data = source().model_dump()
    data[field] = value
    with pytest.raises(ValidationError, match=field):
        SourceConfig.model_validate(data)


@pytest.mark.parametrize(
    ("given", "spellings"),
    [
        ("http://source.localhost:52919/", ("http://source.localhost:52919",)),
        ("HTTP://Source.Example/", ("http://source.example", "http://source.example:80")),
        ("http://source.example:80", ("http://source.example", "http://source.example:80")),
        ("https://shop.example:443/", ("https://shop.example", "https://shop.example:443")),
        ("https://shop.example:80", ("https://shop.example:80",)),
    ],
)
def test_a_site_url_is_matched_in_every_spelling_clone_accepts(
    given: str, spellings: tuple[str, ...]
) -> None:
    assert url_spellings(given) == spellings
    # Each spelling is what a CloneRequest normalizes that spelling to, so a registered URL is among them.
    assert CloneRequest(source_url=given).source_url in spellings
