"""Every form of a site URL, at host boundaries (docs/rewrite.md), against PHP as the oracle.

``PhpOracle.rule`` is the rule written again in PHP (its own form generator, the boundary as a PCRE
lookahead, one ``preg_replace_callback``). Each case below is checked three ways: its written expectation,
PHP's answer, and the engine on a dump (as a plain field, and inside a serialized value that PHP then
unserializes). The properties then look for the cases nobody wrote down. Every test runs once per engine
(the ``rewrite_engine`` fixture).
"""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.fixtures.php_oracle import Nested, PhpOracle, map_strings, serialize
from wpclone.rewrite import ENGINE_ENV, FORMS, Rewriter, mysql_decode, mysql_encode, replacement_table

pytestmark = pytest.mark.usefixtures("rewrite_engine")

SOURCE = "https://www.example.com"
CLONE = "https://qa.staging.example.net"
SITE = [(SOURCE, CLONE)]
SAME = None  # the case's value is expected back unchanged

# (pairs, value, expected): the issue's cases, the rule's own examples, and more like them.
CASES: list[tuple[list[tuple[str, str]], str, str | None]] = [
    # A sister domain, a longer host, another port: someone else's.
    (SITE, "https://www.example.com.au/shop/", SAME),
    (SITE, "https://www.example.community/", SAME),
    (SITE, "https://www.example.com:8443/", SAME),
    (SITE, "http://www.example.com-shop.net/ and //www.example.com_x/", SAME),
    (SITE, "https://www.example.com.2/", SAME),
    (SITE, "https://www.example.com:1", SAME),
    # Where the host ends, whatever follows.
    (SITE, "https://www.example.com.", "https://qa.staging.example.net."),
    (SITE, "https://www.example.com/", "https://qa.staging.example.net/"),
    (SITE, 'href="https://www.example.com"', 'href="https://qa.staging.example.net"'),
    (SITE, "https://www.example.com?p=1", "https://qa.staging.example.net?p=1"),
    (SITE, "see https://www.example.com", "see https://qa.staging.example.net"),
    (SITE, "'https://www.example.com'", "'https://qa.staging.example.net'"),
    (SITE, "https://www.example.com\nnext", "https://qa.staging.example.net\nnext"),
    (SITE, "<a>https://www.example.com</a>", "<a>https://qa.staging.example.net</a>"),
    (SITE, "https://www.example.com:/x", "https://qa.staging.example.net:/x"),
    (SITE, "https://www.example.com.. x", "https://qa.staging.example.net.. x"),
    (SITE, "(https://www.example.com)", "(https://qa.staging.example.net)"),
    (SITE, "https://www.example.com#top", "https://qa.staging.example.net#top"),
    (SITE, "https://www.example.com\\x", "https://qa.staging.example.net\\x"),
    # A bare host is no URL.
    (SITE, "mail info@www.example.com or www.example.com", SAME),
    # Every form: the other scheme, protocol-relative, JSON-escaped, URL-encoded (either hex case).
    (SITE, "http://www.example.com/old", "https://qa.staging.example.net/old"),
    (SITE, '<img src="//www.example.com/a.png">', '<img src="//qa.staging.example.net/a.png">'),
    (
        SITE,
        '{"u":"https:\\/\\/www.example.com\\/a","v":"http:\\/\\/www.example.com"}',
        '{"u":"https:\\/\\/qa.staging.example.net\\/a","v":"https:\\/\\/qa.staging.example.net"}',
    ),
    (SITE, '{"bg":"\\/\\/www.example.com\\/b.jpg"}', '{"bg":"\\/\\/qa.staging.example.net\\/b.jpg"}'),
    (
        SITE,
        "share?u=https%3A%2F%2Fwww.example.com%2Fp%2F1",
        "share?u=https%3A%2F%2Fqa.staging.example.net%2Fp%2F1",
    ),
    (SITE, "cb=http%3a%2f%2fwww.example.com%2f", "cb=https%3a%2f%2fqa.staging.example.net%2f"),
    (
        SITE,
        "x=%2F%2Fwww.example.com%2Fa&y=%2f%2fwww.example.com",
        "x=%2F%2Fqa.staging.example.net%2Fa&y=%2f%2fqa.staging.example.net",
    ),
    (SITE, "https%3A%2F%2Fwww.example.com.au%2F https%3A%2F%2Fwww.example.com%3A8443", SAME),
    (SITE, "https%3a%2f%2fwww.example.com%3a1", SAME),
    # The continuation rule of the URL-encoded forms is theirs: after a plain URL, "%3A" ends the host.
    (SITE, "https://www.example.com%3A8443", "https://qa.staging.example.net%3A8443"),
    # URL-encoded inside JSON, JSON in a query string.
    (
        SITE,
        '{"share":"https:\\/\\/x.test\\/?u=https%3A%2F%2Fwww.example.com%2F"}',
        '{"share":"https:\\/\\/x.test\\/?u=https%3A%2F%2Fqa.staging.example.net%2F"}',
    ),
    # "//host" after any scheme is the protocol-relative form.
    (SITE, "webcal://www.example.com/feed.ics", "webcal://qa.staging.example.net/feed.ics"),
    (SITE, "ftp://www.example.com/pub", "ftp://qa.staging.example.net/pub"),
    (SITE, "xhttps://www.example.com/", "xhttps://qa.staging.example.net/"),
    # A NEW whose host goes on from OLD's: rewritten once, never again.
    (
        [("https://example.com", "https://example.com.staging.net")],
        "https://example.com/a //example.com.au https://example.com.staging.net/b",
        "https://example.com.staging.net/a //example.com.au https://example.com.staging.net/b",
    ),
    # A source with a port, and a clone with one.
    (
        [("http://localhost:8080", "http://clone.localhost:8081")],
        "http://localhost:8080/x http://localhost:80801 http://localhost:8080.au http://localhost/y",
        "http://clone.localhost:8081/x http://localhost:80801 http://localhost:8080.au http://localhost/y",
    ),
    (
        [("http://localhost:8080", "http://clone.localhost:8081")],
        "u=http%3A%2F%2Flocalhost%3A8080%2F v=%2f%2flocalhost%3a8080 w=%2F%2Flocalhost%3A80801",
        "u=http%3A%2F%2Fclone.localhost%3A8081%2F v=%2f%2fclone.localhost%3a8081 w=%2F%2Flocalhost%3A80801",
    ),
    (
        [(SOURCE, "http://localhost:8080")],
        "//www.example.com/a https%3A%2F%2Fwww.example.com%2F",
        "//localhost:8080/a http%3A%2F%2Flocalhost%3A8080%2F",
    ),
    # Only the scheme changes: "//a.test" stays what it is.
    (
        [("http://a.test", "https://a.test")],
        "http://a.test/x //a.test/y https://a.test",
        "https://a.test/x //a.test/y https://a.test",
    ),
    # An alias: the bare domain of the source, all to the clone.
    (
        [(SOURCE, CLONE), ("https://example.com", CLONE)],
        "http://example.com/x https://www.example.com/y //example.com info@example.com https://example.com.au",
        "https://qa.staging.example.net/x https://qa.staging.example.net/y //qa.staging.example.net "
        "info@example.com https://example.com.au",
    ),
    # Explicit pairs: anywhere, no boundary, and they win over the site keys they meet.
    (
        [(SOURCE, CLONE), ("https://www.example.com/special", "https://other.test/x")],
        "https://www.example.com/special/1 https://www.example.com/2 https://www.example.com/specials",
        "https://other.test/x/1 https://qa.staging.example.net/2 https://other.test/xs",
    ),
    (
        [(SOURCE, CLONE), ("//www.example.com", "//cdn.test")],
        "//www.example.com/a https://www.example.com //www.example.com.au \\/\\/www.example.com",
        "//cdn.test/a https://qa.staging.example.net //cdn.test.au \\/\\/cdn.test",
    ),
    (
        [(SOURCE, CLONE), ("info@example.com", "dev@example.net")],
        "write to info@example.com at https://www.example.com/contact",
        "write to dev@example.net at https://qa.staging.example.net/contact",
    ),
]


def rewriter_for(pairs: tuple[tuple[str, str], ...]) -> Rewriter:
    """One rewriter per table and engine (building one takes milliseconds; each run starts its counts
    afresh)."""
    return _rewriter_for(pairs, os.environ[ENGINE_ENV])


@functools.cache
def _rewriter_for(pairs: tuple[tuple[str, str], ...], engine: str) -> Rewriter:
    return Rewriter(pairs, engine=engine)


def rewrite_dump(
    pairs: list[tuple[str, str]], dump: bytes, chunk_size: int = 1 << 20
) -> tuple[bytes, Rewriter]:
    rewriter = rewriter_for(tuple(pairs))
    out = io.BytesIO()
    rewriter.rewrite_stream(io.BytesIO(dump), out, chunk_size=chunk_size)
    return out.getvalue(), rewriter


def insert(*values: bytes) -> bytes:
    return b"INSERT INTO `wp_t` VALUES (" + b",".join(b"'" + mysql_encode(v) + b"'" for v in values) + b");\n"


def literals(dump: bytes) -> list[bytes]:
    """The decoded values of a one-row INSERT written by ``insert``."""
    body = dump[dump.index(b"(") + 2 : dump.rindex(b"')")]
    return [mysql_decode(v) for v in body.split(b"','")]


@pytest.mark.parametrize(("pairs", "value", "expected"), CASES)
def test_case(php: PhpOracle, pairs: list[tuple[str, str]], value: str, expected: str | None) -> None:
    want = (value if expected is SAME else expected).encode()
    assert php.rule([value.encode()], pairs) == [want], "PHP reads the rule otherwise"
    assert Rewriter(pairs).replace_plain(value.encode()) == want
    # Through a dump: a plain field, and the same inside a serialized array that PHP reads back.
    structure = {b"url": value.encode(), b"nested": Nested([value.encode()])}
    expected_structure = map_strings(structure, lambda s: want if s == value.encode() else s)
    out, _ = rewrite_dump(pairs, insert(value.encode(), serialize(structure)))
    assert literals(out) == [want, serialize(expected_structure)]
    assert php.reserialize([literals(out)[1]]) == [serialize(expected_structure)]


def test_every_form_is_counted() -> None:
    value = (
        b"https://www.example.com/1 http://www.example.com/2 //www.example.com/3 "
        b"https:\\/\\/www.example.com\\/4 \\/\\/www.example.com https%3A%2F%2Fwww.example.com%2F "
        b"%2f%2fwww.example.com https://www.example.com.au info@www.example.com"
    )
    pairs = [*SITE, ("info@www.example.com", "dev@example.net")]
    _, rewriter = rewrite_dump(pairs, insert(value, serialize([value, value])))
    assert rewriter.stats.replacements == {
        "https": 3,
        "http": 3,
        "protocol-relative": 3,
        "json": 6,
        "url-encoded": 6,
        "explicit": 3,
    }
    assert rewriter.stats.fields_rewritten == 2 and rewriter.stats.serialized_rebuilt == 1
    assert set(rewriter.stats.replacements) == set(FORMS)


def test_a_malformed_serialized_value_is_counted_once() -> None:
    broken = b'a:2:{i:0;s:23:"https://www.example.com";i:1;s:99:"x";}'
    out, rewriter = rewrite_dump(SITE, insert(broken))
    assert literals(out) == [broken.replace(b"www.example.com", b"qa.staging.example.net")]
    assert rewriter.stats.malformed_serialized == 1
    assert rewriter.stats.replacements["https"] == 1


@pytest.mark.parametrize(
    "after",
    [b"'", b'"', b"\\", b"\n", b"\r", b"\0", b"\x1a"],
    ids=["quote", "dquote", "bs", "lf", "cr", "nul", "ctrl-z"],
)
def test_an_escape_after_the_host_is_a_boundary(after: bytes) -> None:
    """In the dump the host is followed by an escape (``\\'``, ``\\n``...): the byte it stands for ends it."""
    value = b"https://www.example.com" + after + b"x https://www.example.com.au" + after
    out, _ = rewrite_dump(SITE, insert(value))
    assert literals(out) == [
        b"https://qa.staging.example.net" + after + b"x https://www.example.com.au" + after
    ]


def test_the_boundary_holds_across_every_read_chunk_edge() -> None:
    """What follows the host may arrive in the next read: every split of the dump gives the same result."""
    values = [
        b"https://www.example.com.au/a https://www.example.com/b",
        b"x https://www.example.com",
        b"%2F%2Fwww.example.com%3A8443 https%3a%2f%2fwww.example.com%2f",
        serialize([b"//www.example.com:1", b"\\/\\/www.example.com\\/"]),
    ]
    dump = insert(*values)
    expected, _ = rewrite_dump(SITE, dump)
    assert literals(expected) == [
        b"https://www.example.com.au/a https://qa.staging.example.net/b",
        b"x https://qa.staging.example.net",
        b"%2F%2Fwww.example.com%3A8443 https%3a%2f%2fqa.staging.example.net%2f",
        serialize([b"//www.example.com:1", b"\\/\\/qa.staging.example.net\\/"]),
    ]
    for chunk_size in range(1, 120):
        assert rewrite_dump(SITE, dump, chunk_size)[0] == expected, chunk_size


def test_a_streamed_literal_keeps_the_boundary_at_every_cut() -> None:
    """A literal longer than the streaming threshold is cut into pieces: no cut may split a key from what
    follows it (``….com`` | ``.au``), whatever the read size."""
    unit = (
        b"y" * 37
        + b"https://www.example.com.au/ https://www.example.com/ //www.example.com\\/ "
        + b"%2F%2Fwww.example.com%3A8"
    )
    body = unit * 300
    dump = insert(body, b"https://www.example.com")
    want = [
        body.replace(b"https://www.example.com/", b"https://qa.staging.example.net/").replace(
            b"//www.example.com\\/", b"//qa.staging.example.net\\/"
        ),
        b"https://qa.staging.example.net",
    ]
    for chunk_size in (7, 64, 1000, 4096):
        rewriter = Rewriter(SITE, stream_literal_over=2048)
        out = io.BytesIO()
        rewriter.rewrite_stream(io.BytesIO(dump), out, chunk_size=chunk_size)
        assert literals(out.getvalue()) == want, chunk_size
        assert rewriter.stats.replacements["https"] == 301 and rewriter.stats.fields_rewritten == 2


def test_a_cut_moved_back_keeps_the_boundary_of_the_key_before_it() -> None:
    """Keys back to back: moving a cut back to the start of one key must not put it right after another,
    whose boundary (the next key's first letter: the host goes on) would then be read as an end."""
    body = b"https://www.example.com" * 3 + b"/ " + b"//www.example.com" * 3
    want = (
        b"https://www.example.com" * 2 + b"https://qa.staging.example.net/ " + b"//qa.staging.example.net" * 3
    )
    for chunk_size in range(1, 60):
        rewriter = Rewriter(SITE, stream_literal_over=8)
        out = io.BytesIO()
        rewriter.rewrite_stream(io.BytesIO(insert(body)), out, chunk_size=chunk_size)
        assert literals(out.getvalue()) == [want], chunk_size
        assert rewriter.stats.replacements["https"] == 1
        assert rewriter.stats.replacements["protocol-relative"] == 3


def test_a_dump_cut_short_inside_a_streamed_literal_is_still_rewritten() -> None:
    """The input ends inside a literal long enough to stream: what arrived of it gets plain replacement,
    as an unterminated literal too short to stream does, and neither counts as a field."""
    head = b"INSERT INTO `t` VALUES ('"
    body = (b"x" * 40 + b"https://www.example.com/ https://www.example.com.au ") * 20
    want = body.replace(b"https://www.example.com/", b"https://qa.staging.example.net/")
    for over in (64, 1 << 20):
        for chunk_size in (1, 7, 100, 1 << 20):
            rewriter = Rewriter(SITE, stream_literal_over=over)
            out = io.BytesIO()
            rewriter.rewrite_stream(io.BytesIO(head + body), out, chunk_size=chunk_size)
            assert out.getvalue() == head + want, (over, chunk_size)
            assert rewriter.stats.replacements["https"] == 20 and rewriter.stats.fields_rewritten == 0


def test_site_pairs_and_explicit_pairs_make_the_table() -> None:
    table = replacement_table([(SOURCE, CLONE), ("https://example.com", CLONE), ("a@b.test", "c@d.test")])
    assert table["//example.com"].new == "//qa.staging.example.net"
    assert table["http%3a%2f%2fwww.example.com"].new == "https%3a%2f%2fqa.staging.example.net"
    assert table["a@b.test"].form == "explicit" and "a@b.test" in table
    assert len([f for f in table.values() if f.form != "explicit"]) == 2 * 12
    # A port is written the way its form writes ":".
    table = replacement_table([("http://a.test:8080", "http://b.test")])
    assert table["%2F%2Fa.test%3A8080"].new == "%2F%2Fb.test"
    assert "//a.test" not in table
    with pytest.raises(ValueError, match="twice"):
        replacement_table([(SOURCE, CLONE), (SOURCE.replace("https", "http"), "https://other.test")])


def test_the_issue_reproduction_on_the_command_line() -> None:
    row = insert(
        b"https://www.example.com.au/shop/",
        b"https://www.example.community/",
        b"https://www.example.com:8443/",
        b"https://www.example.com/shop/",
        serialize({b"home": b"https://www.example.com", b"sister": b"https://www.example.com.au"}),
    )
    result = subprocess.run(
        [sys.executable, "-m", "wpclone.rewrite", SOURCE, "https://qa.staging.example.net"],
        input=row,
        capture_output=True,
        check=True,
    )
    assert literals(result.stdout) == [
        b"https://www.example.com.au/shop/",
        b"https://www.example.community/",
        b"https://www.example.com:8443/",
        b"https://qa.staging.example.net/shop/",
        serialize({b"home": b"https://qa.staging.example.net", b"sister": b"https://www.example.com.au"}),
    ]
    assert "replacements per form: https 2, http 0" in result.stderr.decode()


# -- properties ----------------------------------------------------------------------------------------------

HOST = "www.example.com"
NEW_HOST = "qa.staging.example.net"
# (form as written before the host, the same for the clone, URL-encoded?)
PREFIXES = [
    ("https://", "https://", False),
    ("http://", "https://", False),
    ("//", "//", False),
    ("https:\\/\\/", "https:\\/\\/", False),
    ("http:\\/\\/", "https:\\/\\/", False),
    ("\\/\\/", "\\/\\/", False),
    ("https%3A%2F%2F", "https%3A%2F%2F", True),
    ("http%3a%2f%2f", "https%3a%2f%2f", True),
    ("%2F%2F", "%2F%2F", True),
    ("%2f%2f", "%2f%2f", True),
]
LETTERS_DIGITS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
prefixes = st.sampled_from(PREFIXES)
# What goes on as a host after it: the key must not match.
continuations = st.one_of(
    st.sampled_from(LETTERS_DIGITS + "_-"),
    st.sampled_from(LETTERS_DIGITS).map(lambda c: "." + c),
    st.sampled_from("0123456789").map(lambda c: ":" + c),
)
url_continuations = st.sampled_from(["%3A", "%3a"]).flatmap(
    lambda p: st.sampled_from("0123456789").map(lambda d: p + d)
)
# What ends a host: any byte that is no letter, digit, "_" or "-", and after "." or ":" nothing that goes on.
ends = st.one_of(
    st.sampled_from([*" /?#\"'<>()[]{},;!*&=+@|~^`$\n\r\t\0\\\x1a", "é", "日", "😀", "%2F", "%3Ax"]),
    st.sampled_from([".", ":"]).flatmap(lambda c: st.sampled_from([c + " ", c + "/", c, c + "."])),
)
tails = st.text(alphabet=" /?=&#.:abcXYZ019_-é\"'\\", max_size=12)


@settings(max_examples=400, deadline=None)
@given(prefix=prefixes, cont=continuations, url_cont=url_continuations, tail=tails, which=st.booleans())
def test_a_host_that_goes_on_is_left_alone(
    prefix: tuple[str, str, bool], cont: str, url_cont: str, tail: str, which: bool
) -> None:
    written, _, url = prefix
    # A URL-encoded form also goes on with an encoded port; the others take "%3A8" as an end (below).
    value = (written + HOST + (url_cont if url and which else cont) + tail).encode()
    assume(HOST not in tail)
    assert rewriter_for(tuple(SITE)).replace_plain(value) == value
    out, _ = rewrite_dump(SITE, insert(value, serialize([value])))
    assert literals(out) == [value, serialize([value])]


@settings(max_examples=400, deadline=None)
@given(prefix=prefixes, end=ends, tail=tails)
def test_a_host_that_ends_is_rewritten(prefix: tuple[str, str, bool], end: str, tail: str) -> None:
    written, rewritten, url = prefix
    assume(not (url and end.lower().startswith("%3a")))
    assume(HOST not in tail)
    value = (written + HOST + end + " " + tail).encode()
    want = (rewritten + NEW_HOST + end + " " + tail).encode()
    assert rewriter_for(tuple(SITE)).replace_plain(value) == want
    out, _ = rewrite_dump(SITE, insert(value, serialize({value: value})))
    assert literals(out) == [want, serialize({want: want})]


PIECES = [
    *(p[0] + HOST for p in PREFIXES),
    HOST,
    "example.com",
    "https://example.com",
    ".au",
    ".",
    ":8443",
    ":",
    "%3A8",
    "/",
    "\\/",
    "%2F",
    "x",
    "-",
    " ",
    '"',
    "'",
    "\\",
    "\n",
    "é",
    "https://qa.staging.example.net",
    "//",
    "http",
    "s",
]
texts = st.lists(st.sampled_from(PIECES), max_size=10).map(lambda parts: "".join(parts).encode())
ALIASED = [(SOURCE, CLONE), ("https://example.com", CLONE)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(texts, min_size=1, max_size=5), chunk_size=st.integers(1, 200), aliased=st.booleans())
def test_the_engine_is_the_php_rule(
    php: PhpOracle, values: list[bytes], chunk_size: int, aliased: bool
) -> None:
    pairs = ALIASED if aliased else SITE
    expected = php.rule(values, pairs)
    out, rewriter = rewrite_dump(pairs, insert(*values), chunk_size)
    counted = php.rule_counts(values, pairs)
    assert rewriter.stats.replacements == {f: sum(c.get(f, 0) for c in counted) for f in FORMS}
    assert literals(out) == expected
    assert [rewriter.replace_plain(v) for v in values] == expected


@settings(max_examples=300, deadline=None)
@given(value=texts, aliased=st.booleans())
def test_rewriting_is_idempotent(value: bytes, aliased: bool) -> None:
    replace = rewriter_for(tuple(ALIASED if aliased else SITE)).replace_plain
    once = replace(value)
    assert replace(once) == once


@settings(max_examples=300, deadline=None)
@given(value=texts)
def test_the_fast_way_is_the_plain_alternation(value: bytes) -> None:
    """The usual table goes by host (a reversed pass); with any explicit key it is one alternation of every
    key. With an explicit key the text never holds, both must agree. (The Python engine's ways.)"""
    fast, plain = (
        _rewriter_for(tuple(ALIASED), "python"),
        _rewriter_for((*ALIASED, ("\x00never", "x")), "python"),
    )
    assert (fast.plain.mode, plain.plain.mode) == ("by-host", "alternation")
    for rewriter in (fast, plain):
        rewriter.counts.update(dict.fromkeys(FORMS, 0))
    assert fast.replace_plain(value) == plain.replace_plain(value)
    assert fast.counts == plain.counts


def _structures(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(texts.filter(lambda k: not k.isdigit()), children, max_size=4),
        children.map(Nested),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.recursive(texts, _structures, max_leaves=10))
def test_serialized_values_stay_valid_with_every_form_inside(php: PhpOracle, value: Any) -> None:
    def rule(s: bytes) -> bytes:
        return php.rule([s], SITE)[0]

    keys_stay_distinct = _keys_distinct(value, rule)
    assume(keys_stay_distinct)
    original, expected = serialize(value), serialize(map_strings(value, rule))
    out, _ = rewrite_dump(SITE, insert(original))
    assert literals(out) == [expected]
    assert php.reserialize([expected]) == [expected]


def _keys_distinct(value: Any, f: Any) -> bool:
    """PHP arrays would merge two keys the rewrite maps to one; such inputs are out of scope."""
    if isinstance(value, dict):
        mapped = [f(k) if isinstance(k, bytes) else k for k in value]
        return len(set(mapped)) == len(mapped) and all(_keys_distinct(v, f) for v in value.values())
    if isinstance(value, list):
        return all(_keys_distinct(v, f) for v in value)
    if isinstance(value, Nested):
        return _keys_distinct(value.inner, f)
    return True
