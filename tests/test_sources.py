"""A source registered as an Airflow connection: the Connection -> SourceConfig mapping, its refusals, and
the one lookup over the configuration and connections (wpclone.sources, wpclone.airflow.sources)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from airflow.sdk import Connection

from wpclone.airflow.sources import source_from_connection
from wpclone.errors import BadRequest, ConfigError
from wpclone.models import SourceConfig
from wpclone.sources import SourceCatalog

EXTRA = {
    "url": "https://WWW.Example.com/",
    "aliases": ["example.com"],
    "table_prefix": "ex_",
    "content": "/srv/example/wp-content",
    "content_link_roots": ["/usr/share/wordpress"],
}


def conn(conn_id: str = "wpclone_source_example", extra: Any = None, **fields: Any) -> Connection:
    values = {
        "conn_type": "mysql",
        "host": "db.internal",
        "port": 3307,
        "login": "example",
        "password": "s3cret-pw",
        "schema": "example_wp",
    }
    values.update(fields)
    text = extra if isinstance(extra, str) else json.dumps(EXTRA if extra is None else extra)
    return Connection(conn_id=conn_id, extra=text, **values)


def test_a_connection_becomes_the_source_it_describes_without_its_password() -> None:
    source = source_from_connection(conn())
    assert source == SourceConfig(
        name="example",
        url="https://www.example.com",
        db_host="db.internal",
        db_port=3307,
        db_user="example",
        db_name="example_wp",
        table_prefix="ex_",
        content_dir="/srv/example/wp-content",
        aliases=["https://example.com"],
        content_link_roots=["/usr/share/wordpress"],
        db_conn_id="wpclone_source_example",
    )
    assert "s3cret-pw" not in source.model_dump_json()


def test_defaults_and_a_content_claim_for_kubernetes() -> None:
    source = source_from_connection(
        conn(
            extra={
                "url": "https://a.example.org",
                "content": "example-content",
                "db_password_secret": "ex-db",
            },
            port=None,
        )
    )
    assert (source.db_port, source.table_prefix, source.aliases) == (3306, "wp_", [])
    assert (source.content_claim, source.content_dir, source.db_password_secret) == (
        "example-content",
        None,
        "ex-db",
    )


@pytest.mark.parametrize(
    ("connection", "sentence"),
    [
        (
            conn(extra={"aliases": []}),
            "connection wpclone_source_example: extra field url (the site's origin) is missing.",
        ),
        (conn(extra="not json"), "connection wpclone_source_example: its extra must be a JSON object"),
        (
            conn(extra={**EXTRA, "tabel_prefix": "x_"}),
            "connection wpclone_source_example: extra field tabel_prefix is not known",
        ),
        (
            conn(extra={**EXTRA, "url": "https://example.com/blog"}),
            "connection wpclone_source_example: extra field url is not valid",
        ),
        (
            conn(extra={**EXTRA, "table_prefix": "wp"}),
            "connection wpclone_source_example: extra field table_prefix is not valid",
        ),
        (
            conn(extra={**EXTRA, "content": "Not A Claim"}),
            "connection wpclone_source_example: extra field content is not valid",
        ),
        (conn(login=None), "connection wpclone_source_example: login is not valid"),
        (conn(schema="bad-db"), "connection wpclone_source_example: schema is not valid"),
        (
            conn("wpclone_source_Bad_Name"),
            "connection wpclone_source_Bad_Name: connection id (the name after",
        ),
        (conn("other_conn"), "connection other_conn is not a source: its id must be wpclone_source_<name>."),
        (
            conn(conn_type="postgres"),
            "connection wpclone_source_example is of type postgres; a source's connection is of type mysql.",
        ),
    ],
)
def test_a_malformed_connection_is_one_sentence_naming_it_and_the_field(
    connection: Connection, sentence: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        source_from_connection(connection)
    assert str(caught.value).startswith(sentence)
    assert "s3cret-pw" not in str(caught.value)


def test_the_mysql_providers_own_extras_are_allowed() -> None:
    source = source_from_connection(conn(extra={**EXTRA, "charset": "utf8mb4", "ssl": {"ca": "/ca.pem"}}))
    assert source.name == "example"


CONFIGURED = SourceConfig(
    name="source",
    url="http://source.localhost:8080",
    db_host="127.0.0.1",
    db_name="wp_source",
    db_user="source",
)
CONNECTED = source_from_connection(conn())


def test_a_task_finds_a_connections_source_by_name_only() -> None:
    task = SourceCatalog([CONFIGURED], by_name={"example": CONNECTED}.get)
    assert task.find("http://source.localhost:8080/") == CONFIGURED
    assert task.find("https://www.example.com", "example") == CONNECTED
    with pytest.raises(BadRequest, match="set the job's source param to it"):
        task.find("https://www.example.com")
    with pytest.raises(
        BadRequest,
        match=r"source example \(connection wpclone_source_example\) is "
        r"https://www.example.com, not https://other.example.com\.",
    ):
        task.find("https://other.example.com", "example")
    with pytest.raises(
        BadRequest,
        match=re.escape(
            "no source is named nope: register it in the configuration or as "
            "the Airflow connection wpclone_source_nope."
        ),
    ):
        task.find("https://www.example.com", "nope")


def test_the_api_finds_a_connections_source_by_url_and_refuses_a_duplicate() -> None:
    api = SourceCatalog([CONFIGURED], by_name={"example": CONNECTED}.get, listed=lambda: [CONNECTED])
    assert api.find("https://www.example.com") == CONNECTED
    assert [s.name for s in api.all()] == ["source", "example"]
    twin = CONNECTED.model_copy(update={"name": "twin", "db_conn_id": "wpclone_source_twin"})
    dup = SourceCatalog([CONFIGURED], listed=lambda: [CONNECTED, twin])
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "source url https://www.example.com is registered twice, in "
            "connection wpclone_source_example and in connection wpclone_source_twin; remove one"
        ),
    ):
        dup.all()
