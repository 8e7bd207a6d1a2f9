"""The server's share of the same-server rewrite (wpclone.steps.same_server) against the engine.

On random text made of URL pieces, the real MariaDB runs ``server_value`` (the REGEXP_REPLACE passes with the
host-boundary lookahead) over a case-insensitive utf8mb4 column and a binary one; the engine then rewrites
whatever still holds an anchor, as the copy does. The result must be the engine's own rewrite of the
original value, byte for byte, for every value (serialized-looking ones are left whole to the engine).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wpclone.db import DbEndpoint, quote_identifier
from wpclone.rewrite import Rewriter
from wpclone.steps.same_server import server_passes, server_value

NEW = "http://t-clone.localhost:8080"
PAIRS = [
    ("http://src.example.test", NEW),
    ("https://src.example.test", NEW),
    ("https://example-old.test", NEW),
]
KEYS = [  # whole keys and their near misses, in every form the passes and the engine meet
    *("http://src.example.test", "https://src.example.test", "HTTP://src.example.test", "//src.example.test"),
    *("http:\\/\\/src.example.test", "https:\\/\\/example-old.test", "\\/\\/example-old.test"),
    *(
        "https%3A%2F%2Fsrc.example.test",
        "http://example.test",
        "http://SRC.example.test",
        "https://example-old",
    ),
]
PIECES = [  # what may follow or precede them: boundaries, what goes on as a host, serialized starts, noise
    *("/", ".", ".a", "-", "_", "a", "1", ":", ":8443", "%3A8", "%3a", " ", "é", "'", "\\", '"', "\n"),
    *("a:1:{", 's:23:"', '";', '";}', "N;", "b:1;", "i:"),  # s:23: holds one URL key exactly
]
text = st.lists(st.sampled_from(KEYS) | st.sampled_from(PIECES), max_size=10).map("".join)


@pytest.fixture(scope="module")
def table(mariadb: DbEndpoint) -> Iterator[DbEndpoint]:
    name = "t_same_server_passes"
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(name)}")
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {quote_identifier(name)}.v (id INT PRIMARY KEY,"
                " t TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, b BLOB)"
            )
        yield mariadb.with_database(name)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE {quote_identifier(name)}")
    finally:
        conn.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(text, min_size=1, max_size=40))
def test_server_passes_then_the_engine_is_the_engine(table: DbEndpoint, values: list[str]) -> None:
    rewriter = Rewriter(PAIRS)
    passes = server_passes(rewriter)
    assert passes  # the usual table: the server takes its share
    anchors = rewriter.plain.anchors
    conn = table.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM v")
            cur.executemany(
                "INSERT INTO v VALUES (%s, %s, %s)", [(i, v, v.encode()) for i, v in enumerate(values)]
            )
            both = ", ".join(server_value(c, passes) for c in ("t", "b"))
            cur.execute(f"SELECT {both} FROM v ORDER BY id")
            rows = cur.fetchall()
        conn.commit()
    finally:
        conn.close()
    for value, row in zip(values, rows, strict=True):
        original = value.encode()
        expected = Rewriter(PAIRS).rewrite_value(original)
        for got in row:
            left = got if isinstance(got, bytes) else got.encode()
            if any(a in left for a in anchors):  # what the copy's residue pass gives the engine
                left = rewriter.rewrite_value(left)
            assert left == expected, (value, got)


def test_no_server_passes_unless_the_table_is_host_by_host() -> None:
    assert server_passes(Rewriter([("/old/path/", "/new/")])) == []  # explicit keys: the engine's alone
    chained = [("http://a.test", "http://b.test"), ("http://b.test", "http://c.test")]
    assert server_passes(Rewriter(chained)) == []  # one pair's NEW is another's OLD: one strtr pass only
    one = server_passes(Rewriter([("http://a.test:81", "https://b.test")]))
    assert [p.replacement for p in one] == [b"https:\\1b.test"]
