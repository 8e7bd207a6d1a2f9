"""The rewrite engine against its rule (docs/rewrite.md), with real PHP as the oracle.

Dumps are built from structures, so every test knows the exact expected output: the same structures with
the rule applied to every string by PHP (``PhpOracle.rule``, an implementation of the rule of its own),
serialized again. PHP then confirms that each rewritten serialized value unserializes to exactly that
structure. The forms a site pair covers and the host boundary have their own file, test_rewrite_forms.py.
Every test runs once per engine (the ``rewrite_engine`` fixture); test_rewrite_engines.py compares them.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.fixtures.php_oracle import Nested, PhpObject, PhpOracle, map_strings, serialize
from wpclone.rewrite import Rewriter, mysql_decode, mysql_encode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OLD = "http://source.localhost:8080"
NEW = "http://clone-abc.localhost:8080"
PAIRS = [(OLD, NEW)]

pytestmark = pytest.mark.usefixtures("rewrite_engine")


def literal(value: bytes) -> bytes:
    return b"'" + mysql_encode(value) + b"'"


def insert(*rows: tuple[bytes, ...]) -> bytes:
    """An extended INSERT as mysqldump writes it; fields are already SQL (literal(), NULL, numbers, 0x..)."""
    return b"INSERT INTO `wp_t` VALUES " + b",".join(b"(" + b",".join(r) + b")" for r in rows) + b";\n"


def rewrite(
    dump: bytes, pairs: list[tuple[str, str]] = PAIRS, chunk_size: int = 1 << 20
) -> tuple[bytes, Rewriter]:
    rewriter = Rewriter(pairs)
    out = io.BytesIO()
    rewriter.rewrite_stream(io.BytesIO(dump), out, chunk_size=chunk_size)
    return out.getvalue(), rewriter


def fields(dump: bytes) -> list[bytes]:
    """Decoded values of every literal in a dump (test-side tokenizer, character by character)."""
    values, i = [], 0
    while i < len(dump):
        if dump[i : i + 1] == b"'":
            j, body = i + 1, bytearray()
            while dump[j : j + 1] != b"'":
                if dump[j : j + 1] == b"\\":
                    body += dump[j : j + 2]
                    j += 2
                else:
                    body += dump[j : j + 1]
                    j += 1
            values.append(mysql_decode(bytes(body)))
            i = j + 1
        else:
            i += 1
    return values


def php_rule(php: PhpOracle, value: bytes, pairs: list[tuple[str, str]] = PAIRS) -> bytes:
    return php.rule([value], pairs)[0]


# -- hypothesis strategies ---------------------------------------------------------------------------------

URL_PIECES = [
    OLD,
    OLD + "/wp-content/uploads/a.jpg",
    "http:\\/\\/source.localhost:8080\\/x",
    "http://source.localhost",
    "source.localhost:8080",
    "https://source.localhost:8080",
    "//source.localhost:8080.au",
    "http%3A%2F%2Fsource.localhost%3A8080%2F",
    ":80801",
    ".",
    "http://",
    "'",
    '"',
    "\\",
    "\0",
    "\n",
    "\r\n",
    "\x1a",
    "é",
    "日本語",
    "😀",
    "a:1:{",
    's:3:"',
    '";',
    "}",
    ";",
    " ",
    "x",
]
text = st.lists(st.sampled_from(URL_PIECES), max_size=8).map(lambda parts: "".join(parts).encode())
plain_text = text.filter(lambda t: not re.match(rb"[aOsCEidbN][:;]", t))
keys = st.one_of(st.integers(-5, 99), plain_text.filter(lambda k: not re.fullmatch(rb"-?\d+", k)))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), plain_text)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    prop_names = st.sampled_from([b"url", b"\0*\0protected_url", b"\0Widget\0private", b"title"])
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
        st.lists(st.tuples(prop_names, children), max_size=3, unique_by=lambda p: p[0]).map(
            lambda props: PhpObject(b"WP_Widget_Custom", tuple(props))
        ),
        children.map(Nested),
    )


php_values = st.recursive(scalars, _containers, max_leaves=12)


def unique_keys_after_mapping(value: Any, f: Any) -> bool:
    """PHP arrays would merge two keys that the rewrite maps to one; such inputs are out of scope."""
    if isinstance(value, dict):
        mapped = [f(k) if isinstance(k, bytes) else k for k in value]
        return len(set(mapped)) == len(mapped) and all(
            unique_keys_after_mapping(v, f) for v in value.values()
        )
    if isinstance(value, list):
        return all(unique_keys_after_mapping(v, f) for v in value)
    if isinstance(value, Nested):
        return unique_keys_after_mapping(value.inner, f)
    if isinstance(value, PhpObject):
        return all(unique_keys_after_mapping(v, f) for _, v in value.props)
    return True


# -- properties --------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=php_values, chunk_size=st.integers(1, 300))
def test_serialized_values_are_rebuilt_exactly(php: PhpOracle, value: Any, chunk_size: int) -> None:
    def f(s: bytes) -> bytes:
        return php_rule(php, s)

    assume(unique_keys_after_mapping(value, f))
    original = serialize(value)
    expected = serialize(map_strings(value, f))
    # Our test serializer writes exactly what PHP writes, so "expected" is what PHP means.
    assert php.reserialize([original, expected]) == [original, expected]

    dump = insert(
        (b"1", literal(original), b"NULL", b"0x41424344"),
        (b"2", literal(b"it's " + OLD.encode()), b"3.5", b"''"),
    )
    out, rewriter = rewrite(dump, chunk_size=chunk_size)

    assert out == insert(
        (b"1", literal(expected), b"NULL", b"0x41424344"),
        (b"2", literal(b"it's " + NEW.encode()), b"3.5", b"''"),
    )
    assert php.reserialize([fields(out)[0]]) == [expected]
    assert rewriter.stats.malformed_serialized == 0


@settings(max_examples=300, deadline=None)
@given(values=st.lists(text, min_size=1, max_size=6), chunk_size=st.integers(1, 200))
def test_plain_fields_get_the_rule_and_nothing_else_changes(
    php: PhpOracle, values: list[bytes], chunk_size: int
) -> None:
    assume(not any(re.match(rb"[aOsCEidbN][:;]", v) for v in values))
    dump = (
        b"-- "
        + OLD.encode()
        + b" in a comment stays\n"
        + insert(*[(b"%d" % i, literal(v)) for i, v in enumerate(values)])
    )
    out, _ = rewrite(dump, chunk_size=chunk_size)
    expected = php.rule(values, PAIRS)
    assert out == b"-- " + OLD.encode() + b" in a comment stays\n" + insert(
        *[(b"%d" % i, literal(v)) for i, v in enumerate(expected)]
    )


@given(st.binary(max_size=200))
def test_encode_decode_round_trip(value: bytes) -> None:
    assert mysql_decode(mysql_encode(value)) == value


def test_decode_reads_every_escape_as_mysql_does() -> None:
    """Every sequence of up to 4 escapes and bytes, against MySQL's escape table applied one by one."""
    table = {b"0": b"\0", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}

    def reference(body: bytes) -> bytes:
        out, i = bytearray(), 0
        while i < len(body):
            if body[i : i + 1] == b"\\":
                out += table.get(body[i + 1 : i + 2], body[i + 1 : i + 2])
                i += 2
            else:
                out += body[i : i + 1]
                i += 1
        return bytes(out)

    pieces = [
        b"\\\\",
        b"\\'",
        b'\\"',
        b"\\n",
        b"\\r",
        b"\\0",
        b"\\Z",
        b"\\t",
        b"\\x41",
        b"\\101",
        b"a",
        b"0",
        "é".encode(),
    ]
    for size in range(1, 5):
        for combo in itertools.product(pieces, repeat=size):
            body = b"".join(combo)
            assert mysql_decode(body) == reference(body), body


# -- families (each an exact expectation) ------------------------------------------------------------------


def test_multibyte_lengths_are_bytes(php: PhpOracle) -> None:
    value = {b"title": "Café 日本語 😀".encode(), b"url": (OLD + "/é").encode()}
    out, rewriter = rewrite(insert((literal(serialize(value)),)))
    new_value = fields(out)[0]
    assert new_value == serialize({b"title": "Café 日本語 😀".encode(), b"url": (NEW + "/é").encode()})
    assert php.reserialize([new_value]) == [new_value]
    assert rewriter.stats.serialized_rebuilt == 1


@pytest.mark.parametrize("escape", [b"\0", b"'", b'"', b"\\", b"\n", b"\r", b"\x1a"])
def test_every_mysqldump_escape(php: PhpOracle, escape: bytes) -> None:
    value = [escape + OLD.encode() + escape, escape]
    out, _ = rewrite(insert((literal(serialize(value)), literal(escape + OLD.encode()))))
    assert fields(out) == [serialize([escape + NEW.encode() + escape, escape]), escape + NEW.encode()]
    assert php.reserialize([fields(out)[0]]) == [fields(out)[0]]


def test_nul_bearing_object_properties(php: PhpOracle) -> None:
    obj = PhpObject(
        b"WP_Theme_Mods",
        ((b"\0*\0header", OLD.encode() + b"/h.png"), (b"\0WP_Theme_Mods\0logo", OLD.encode())),
    )
    out, _ = rewrite(insert((literal(serialize(obj)),)))
    expected = serialize(map_strings(obj, lambda s: s.replace(OLD.encode(), NEW.encode())))
    assert fields(out) == [expected]
    assert php.reserialize([expected]) == [expected]


def test_strings_that_are_serialized_several_levels_deep(php: PhpOracle) -> None:
    value = Nested(Nested({b"deep": Nested([OLD.encode() + b"/x"])}))
    out, rewriter = rewrite(insert((literal(serialize(value)),)))
    expected = serialize(Nested(Nested({b"deep": Nested([NEW.encode() + b"/x"])})))
    assert fields(out) == [expected]
    # PHP unserializes every level.
    level = fields(out)[0]
    for _ in range(3):
        (again,) = php.reserialize([level])
        assert again == level
        level = level.split(b'"', 1)[1].rsplit(b'"', 1)[0]
    assert rewriter.stats.serialized_rebuilt == 1


def test_json_escaped_urls_plain_and_inside_serialized(php: PhpOracle) -> None:
    json_old = b'{"url":"http:\\/\\/source.localhost:8080\\/wp-content\\/a.jpg"}'
    json_new = b'{"url":"http:\\/\\/clone-abc.localhost:8080\\/wp-content\\/a.jpg"}'
    out, _ = rewrite(insert((literal(json_old), literal(serialize({b"_elementor_data": json_old})))))
    assert fields(out) == [json_new, serialize({b"_elementor_data": json_new})]


def test_text_that_merely_looks_serialized_gets_plain_replacement() -> None:
    values = [b"a:2 apples at " + OLD.encode(), b's:99:"short";' + OLD.encode(), b"i:am " + OLD.encode()]
    out, rewriter = rewrite(insert(tuple(literal(v) for v in values)))
    assert fields(out) == [v.replace(OLD.encode(), NEW.encode()) for v in values]
    assert rewriter.stats.serialized_rebuilt == 0


def test_malformed_length_is_left_as_plain_text_and_rest_of_line_processed() -> None:
    broken = b'a:1:{i:0;s:5:"' + OLD.encode() + b'";}'  # wrong length
    good = serialize([OLD.encode()])
    out, rewriter = rewrite(insert((literal(broken), literal(good)), (literal(OLD.encode()),)))
    assert fields(out) == [
        broken.replace(OLD.encode(), NEW.encode()),
        serialize([NEW.encode()]),
        NEW.encode(),
    ]
    assert rewriter.stats.malformed_serialized == 1
    assert rewriter.stats.serialized_rebuilt == 1


def test_references_are_kept(php: PhpOracle) -> None:
    template = b'a:3:{i:0;O:8:"stdClass":1:{s:1:"u";s:%d:"%s";}i:1;r:2;i:2;R:3;}'
    original = template % (len(OLD), OLD.encode())
    assert php.reserialize([original]) == [original]
    out, _ = rewrite(insert((literal(original),)))
    expected = template % (len(NEW), NEW.encode())
    assert fields(out) == [expected]
    assert php.reserialize([expected]) == [expected]


def test_urls_as_array_keys(php: PhpOracle) -> None:
    value = {OLD.encode() + b"/a": b"x", b"k": {OLD.encode(): 1}}
    out, _ = rewrite(insert((literal(serialize(value)),)))
    expected = serialize({NEW.encode() + b"/a": b"x", b"k": {NEW.encode(): 1}})
    assert fields(out) == [expected]
    assert php.reserialize([expected]) == [expected]


def test_floats_and_custom_serialized_objects(php: PhpOracle) -> None:
    inner = serialize([OLD.encode()])
    value = b'a:3:{i:0;d:0.1;i:1;d:-1.0E+25;i:2;C:11:"ArrayObject":%d:{%s}}' % (len(inner), inner)
    out, _ = rewrite(insert((literal(value),)))
    new_inner = serialize([NEW.encode()])
    assert fields(out) == [
        b'a:3:{i:0;d:0.1;i:1;d:-1.0E+25;i:2;C:11:"ArrayObject":%d:{%s}}' % (len(new_inner), new_inner)
    ]


def test_empty_strings_and_crlf_and_no_trailing_newline() -> None:
    dump = insert((literal(b""), literal(serialize([b"", OLD.encode()])), literal(b"\r\n" + OLD.encode())))
    dump = dump.replace(b";\n", b";\r\n") + b"INSERT INTO `x` VALUES ('" + OLD.encode() + b"');"
    out, _ = rewrite(dump)
    assert out == dump.replace(
        serialize([b"", OLD.encode()]).replace(b'"', b'\\"'),
        serialize([b"", NEW.encode()]).replace(b'"', b'\\"'),
    ).replace(OLD.encode(), NEW.encode())
    assert out.endswith(b"');")


def test_hex_blobs_numbers_and_identifiers_pass_through() -> None:
    dump = (
        b"INSERT INTO `http://source.localhost:8080` VALUES (0x"
        + OLD.encode().hex().encode()
        + b",-1.5e3,NULL);\n"
    )
    assert rewrite(dump)[0] == dump


def test_new_containing_old_is_not_rescanned() -> None:
    pairs = [("http://a.test", "http://a.test.staging.test")]
    out, _ = rewrite(
        insert((literal(serialize([b"http://a.test/x"])), literal(b"http://a.test http://a.test"))), pairs
    )
    assert fields(out) == [
        serialize([b"http://a.test.staging.test/x"]),
        b"http://a.test.staging.test http://a.test.staging.test",
    ]


def test_regex_metacharacters_in_old() -> None:
    pairs = [("http://a.test/?p=(1)+[x]*", "http://b.test/$1\\0")]
    out, _ = rewrite(insert((literal(b"see http://a.test/?p=(1)+[x]* and http://aXtest/?p=11x"),)), pairs)
    assert fields(out) == [b"see http://b.test/$1\\0 and http://aXtest/?p=11x"]


def test_several_pairs_sharing_a_prefix_longest_first(php: PhpOracle) -> None:
    pairs = [
        ("http://a.test", "http://x.test"),
        ("http://a.test/blog", "http://y.test"),
        ("http://a.tes", "Z"),
    ]
    value = b"http://a.test/blog/1 http://a.test/2 http://a.tes"
    out, _ = rewrite(insert((literal(value), literal(serialize([value])))), pairs)
    expected = php.rule([value], pairs)[0]
    assert expected == b"http://y.test/1 http://x.test/2 Z"
    assert fields(out) == [expected, serialize([expected])]


def test_needles_across_every_chunk_boundary() -> None:
    value = serialize({b"u": OLD.encode() + b"/" + b"x" * 40})
    dump = insert(*[(literal(OLD.encode()), literal(value), b"0x00")] * 5)
    expected, _ = rewrite(dump)
    for chunk_size in range(1, 80):
        assert rewrite(dump, chunk_size=chunk_size)[0] == expected


def test_long_plain_literal_streams_across_chunks() -> None:
    body = (b"x" * 1000 + OLD.encode() + b"\\'") * 300
    dump = insert((literal(body), literal(OLD.encode())))
    rewriter = Rewriter(PAIRS, stream_literal_over=4096)
    out = io.BytesIO()
    rewriter.rewrite_stream(io.BytesIO(dump), out, chunk_size=1000)
    assert fields(out.getvalue()) == [body.replace(OLD.encode(), NEW.encode()), NEW.encode()]
    assert rewriter.stats.fields_rewritten == 2


@pytest.mark.parametrize(
    ("pairs", "mode"),
    [
        ([("http://a/x", "http://b/y")], "chain"),  # explicit and independent: chained replace
        ([("ab", "b"), ("b", "c")], "alternation"),  # a replacement that would be rescanned
        ([("aa", "x"), ("a", "y")], "alternation"),  # overlapping keys
        ([("abc", "1"), ("bcd", "2")], "alternation"),  # keys overlapping at a boundary
    ],
)
def test_explicit_pairs_are_php_strtr(php: PhpOracle, pairs: list[tuple[str, str]], mode: str) -> None:
    samples = [b"abcd", b"aaa", b"http://a/x http:\\/\\/a\\/x", b"abbcd ab b", b"xabcdx"]
    rewriter = Rewriter(pairs)
    assert rewriter.plain.mode == mode  # the Python engine's way; the compiled one has a single way
    table = [(o.encode(), n.encode()) for o, n in pairs]
    table += [(o.replace(b"/", b"\\/"), n.replace(b"/", b"\\/")) for o, n in table if b"/" in o]
    assert (
        [rewriter.replace_plain(s) for s in samples] == php.strtr(samples, table) == php.rule(samples, pairs)
    )


def test_bad_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Rewriter([])
    with pytest.raises(ValueError, match="must not be empty"):
        Rewriter([("", "x")])
    with pytest.raises(ValueError, match="twice"):
        Rewriter([("a", "b"), ("a", "c")])


def test_cli_filter_and_summary() -> None:
    dump = insert((literal(serialize([OLD.encode()])), literal(OLD.encode())))
    result = subprocess.run(
        [sys.executable, "-m", "wpclone.rewrite", OLD, NEW], input=dump, capture_output=True, check=True
    )
    assert fields(result.stdout) == [serialize([NEW.encode()]), NEW.encode()]
    summary = result.stderr.decode()
    assert summary.count("\n") == 1
    assert f"{len(dump)} bytes in" in summary
    assert "2 fields rewritten, 1 serialized values rebuilt, 0 malformed" in summary
    assert summary.rstrip().endswith(
        "replacements per form: https 0, http 2, protocol-relative 0, json 0, url-encoded 0, explicit 0"
    )


def test_cli_usage_errors_exit_2_with_a_sentence() -> None:
    for argv in ([], [OLD], ["", NEW]):
        result = subprocess.run(
            [sys.executable, "-m", "wpclone.rewrite", *argv], input=b"", capture_output=True, check=False
        )
        assert result.returncode == 2
        assert result.stderr.strip()
        assert result.stdout == b""


def _rss_of_rewrite(generator: str) -> tuple[float, int, str]:
    """Pipe ``tests.fixtures.dumpgen.<generator>`` through the CLI; return (peak RSS MiB, NEWs seen,
    summary)."""
    gen = subprocess.Popen(
        [sys.executable, "-c", f"from tests.fixtures import dumpgen; dumpgen.{generator}"],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    rw = subprocess.Popen(
        [sys.executable, "-m", "wpclone.rewrite", OLD, NEW],
        stdin=gen.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert gen.stdout is not None and rw.stdout is not None and rw.stderr is not None
    gen.stdout.close()
    count, tail = 0, b""
    while block := rw.stdout.read(1 << 20):
        count += (tail + block).count(NEW.encode())
        tail = block[-(len(NEW) - 1) :]
    summary = rw.stderr.read().decode()
    assert rw.wait() == 0, summary
    assert gen.wait() == 0
    peak = re.search(r"peak RSS ([0-9.]+) MiB", summary)
    assert peak, summary
    return float(peak.group(1)), count, summary


def test_a_line_of_300_mb_keeps_memory_flat() -> None:
    rows = 300_000
    rss_mib, replaced, summary = _rss_of_rewrite(f"long_line({OLD!r}, {rows})")
    assert replaced == 2 * rows
    assert f"{2 * rows} fields rewritten, {rows} serialized values rebuilt, 0 malformed" in summary
    assert 5 < rss_mib < 100, summary


def test_a_single_200_mb_plain_field_keeps_memory_flat() -> None:
    rss_mib, replaced, summary = _rss_of_rewrite(f"long_field({OLD!r}, 200)")
    assert replaced == 200 * 100
    assert "1 fields rewritten" in summary
    assert 5 < rss_mib < 100, summary
