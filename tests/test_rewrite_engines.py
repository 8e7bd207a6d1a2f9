"""The compiled rewrite engine against the Python one (the reference): the same output byte for byte and the
same counts (replacements per form, fields rewritten, serialized values rebuilt, malformed ones left as plain
text, bytes in and out), whatever the dump, the table, the read size and the streaming threshold.

Dumps come from the strategies and corpora of test_rewrite.py and test_rewrite_forms.py (PHP values, URL
pieces, every form at host boundaries, the forms' written cases), from serialized values made malformed,
from literal bodies with escapes mysqldump never writes, from arbitrary bytes (unterminated literals,
stray quotes and backslashes), and from bench/rewrite.py's two generators, compared whole.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.php_oracle import serialize
from tests.test_rewrite import insert, php_values
from tests.test_rewrite import text as url_text
from tests.test_rewrite_forms import CASES, texts
from wpclone.rewrite import STREAM_LITERAL_OVER, Rewriter, mysql_encode

REPO = Path(__file__).resolve().parents[1]
OLD, NEW = "http://source.localhost:8080", "http://clone-abc.localhost:8080"
SOURCE, CLONE = "https://www.example.com", "https://qa.staging.example.net"
# Tables of every kind: one site, aliases, explicit keys (exact and not exact on the escaped body, since
# "n", "t" and a quote can start an escape), a pair that maps a key to itself, keys that interfere.
TABLES: list[list[tuple[str, str]]] = [
    [(OLD, NEW)],
    [(SOURCE, CLONE)],
    [(SOURCE, CLONE), ("https://example.com", CLONE)],
    [(SOURCE, CLONE), ("info@example.com", "dev@example.net"), ("https://www.example.com/special", "x")],
    [(SOURCE, CLONE), ("news@www.example.com", "n@x.test"), ("'q'", '"r"')],
    [(OLD, NEW), ("test", "TEST"), ("same", "same")],
    [("https://example.com", "https://example.com.staging.net"), ("//example.com", "//cdn.test")],
    [("ab", "b"), ("b", "c"), ("aa", "x"), ("a:1", "s:2")],
]
COUNTED = ("bytes_in", "bytes_out", "fields_rewritten", "serialized_rebuilt", "malformed_serialized")


def run(
    engine: str, pairs: list[tuple[str, str]], dump: bytes, chunk_size: int, over: int
) -> tuple[bytes, Any]:
    rewriter = Rewriter(pairs, engine=engine, stream_literal_over=over)
    out = io.BytesIO()
    stats = rewriter.rewrite_stream(io.BytesIO(dump), out, chunk_size=chunk_size)
    assert stats.engine == engine
    counted = asdict(stats)
    return out.getvalue(), {k: counted[k] for k in (*COUNTED, "replacements")}


def assert_same(pairs: list[tuple[str, str]], dump: bytes, chunk_size: int = 1 << 20, over: int = 0) -> Any:
    over = over or STREAM_LITERAL_OVER
    reference, counts = run("python", pairs, dump, chunk_size, over)
    compiled, compiled_counts = run("c", pairs, dump, chunk_size, over)
    assert compiled == reference
    assert compiled_counts == counts
    return counts


# -- what goes into a dump ------------------------------------------------------------------------------


def _mutate(value: bytes, at: int, how: int, byte: int) -> bytes:
    """A serialized value made (most likely) malformed: a byte dropped, one added, or one changed."""
    if not value:
        return value
    at %= len(value)
    if how == 0:
        return value[:at] + value[at + 1 :]
    if how == 1:
        return value[:at] + bytes([byte]) + value[at:]
    return value[:at] + bytes([byte]) + value[at + 1 :]


serialized = php_values.map(serialize)
malformed = st.builds(
    _mutate, serialized, st.integers(0, 500), st.integers(0, 2), st.sampled_from(b'0129:;"{}sa')
)
nested_texts = st.recursive(
    texts, lambda c: st.one_of(st.lists(c, max_size=3), c.map(lambda v: [v])), max_leaves=6
)
values = st.one_of(
    url_text, texts, serialized, malformed, nested_texts.map(serialize), st.binary(max_size=30)
)
# Literal bodies as a dump could hold them, escapes mysqldump never writes included (\t, \x, \b, \%).
RAW_PIECES = [
    b"\\t",
    b"\\x",
    b"\\b",
    b"\\%",
    b"\\_",
    b"\\\\",
    b"\\'",
    b'\\"',
    b"\\0",
    b"\\Z",
    b"\\n",
    b"\t",
    b'"',
]
raw_bodies = st.lists(
    st.one_of(st.sampled_from(RAW_PIECES), url_text.map(mysql_encode), texts.map(mysql_encode)), max_size=8
).map(b"".join)
literals = st.one_of(values.map(mysql_encode), raw_bodies).map(lambda body: b"'" + body + b"'")
fields = st.one_of(literals, st.sampled_from([b"NULL", b"0", b"-1.5e3", b"0x41424344"]))
rows = st.lists(
    st.lists(fields, min_size=1, max_size=4).map(lambda f: b"(" + b",".join(f) + b")"), min_size=1
)
dumps = st.lists(rows.map(lambda r: b"INSERT INTO `wp_t` VALUES " + b",".join(r) + b";\n"), max_size=3).map(
    b"".join
)
# Anything at all: stray quotes and backslashes, literals left open at the end of the input.
BYTE_PIECES = [b"'", b"\\", b"\\'", b"''", b"(", b",", OLD.encode(), b"//www.example.com", b's:1:"', b"a:1:{"]
wild = st.lists(st.one_of(st.sampled_from(BYTE_PIECES), st.binary(max_size=12), literals), max_size=12).map(
    b"".join
)
tables = st.sampled_from(TABLES)
chunk_sizes = st.one_of(st.integers(1, 300), st.just(1 << 20))
thresholds = st.one_of(st.just(STREAM_LITERAL_OVER), st.integers(8, 300))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=tables, dump=dumps, chunk_size=chunk_sizes, over=thresholds)
def test_dumps_come_out_the_same(
    pairs: list[tuple[str, str]], dump: bytes, chunk_size: int, over: int
) -> None:
    assert_same(pairs, dump, chunk_size, over)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=tables, dump=wild, chunk_size=chunk_sizes, over=thresholds)
def test_any_bytes_come_out_the_same(
    pairs: list[tuple[str, str]], dump: bytes, chunk_size: int, over: int
) -> None:
    assert_same(pairs, dump, chunk_size, over)


@settings(max_examples=200, deadline=None)
@given(pairs=tables, value=values)
def test_plain_replacement_is_the_same(pairs: list[tuple[str, str]], value: bytes) -> None:
    reference, compiled = Rewriter(pairs, engine="python"), Rewriter(pairs, engine="c")
    assert compiled.replace_plain(value) == reference.replace_plain(value)


def test_the_written_cases_come_out_the_same() -> None:
    """test_rewrite_forms.CASES, each value plain and inside a serialized value, at every read size."""
    for pairs, value, _ in CASES:
        dump = insert((literal_of(value.encode()), literal_of(serialize({b"v": value.encode()}))))
        for chunk_size in (1, 2, 3, 5, 8, 13, 64, 1 << 20):
            assert_same(pairs, dump, chunk_size)


def literal_of(value: bytes) -> bytes:
    return b"'" + mysql_encode(value) + b"'"


@pytest.mark.parametrize("over", [64, STREAM_LITERAL_OVER])
@pytest.mark.parametrize("pairs", [TABLES[0], TABLES[4]], ids=["site", "not-exact"])
def test_a_dump_that_ends_inside_a_literal(pairs: list[tuple[str, str]], over: int) -> None:
    """The last literal never closes (a dump cut short): plain replacement, not counted as a field; the same
    when it was being streamed, and when the input ends right after a backslash."""
    body = (b"x" * 50 + OLD.encode() + b" //www.example.com news@www.example.com \\t\\'") * 4
    for tail in (b"", b"\\"):
        dump = insert((literal_of(b"a"),)) + b"INSERT INTO `t` VALUES ('" + body + tail
        for chunk_size in (7, 100, 1 << 20):
            counts = assert_same(pairs, dump, chunk_size, over)
            assert counts["fields_rewritten"] == 0
            replaced = counts["replacements"]
            if pairs == TABLES[0]:
                assert replaced["http"] == 4
            else:
                assert replaced["protocol-relative"] == replaced["explicit"] == 4


def test_serialized_strings_nested_too_deep_fail_alike() -> None:
    value = OLD.encode()
    for _ in range(2000):
        value = serialize(value)
    dump = insert((literal_of(value),))
    for engine in ("python", "c"):
        with pytest.raises(RecursionError):
            run(engine, TABLES[0], dump, 1 << 20, STREAM_LITERAL_OVER)


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_rewrite", REPO / "bench" / "rewrite.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("serialized_only", [False, True], ids=["bench-dump", "serialized-dense"])
def test_the_bench_dumps_come_out_the_same(tmp_path: Path, serialized_only: bool) -> None:
    """bench/rewrite.py's generators (its own dump and the serialized-dense one), 3 MB each, whole."""
    path = tmp_path / "dump.sql"
    _bench().generate(path, 3, 7, serialized_only)
    dump = path.read_bytes()
    counts = assert_same([(OLD, NEW)], dump, 1 << 16)
    assert counts["serialized_rebuilt"] > 500 and counts["replacements"]["http"] > 1000


def test_the_compiled_engine_builds_cleanly_from_setup_py(tmp_path: Path) -> None:
    """What ``pip install .`` and scripts/setup.sh run: the extension compiles without a warning, and the
    module it makes runs."""
    done = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", tmp_path / "lib", "--build-temp", tmp_path],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "warning:" not in done.stderr and "error:" not in done.stderr, done.stderr
    (built,) = (tmp_path / "lib" / "wpclone").glob("_rewrite_core*.so")
    spec = importlib.util.spec_from_file_location("wpclone._rewrite_core", built)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    engine = module.Engine(
        [(b"a.test", b"b.test", 5, 0)],
        (b"a.test",),
        [(b"a.test", b"b.test", 5, 0)],
        (b"a.test",),
        True,
        1 << 20,
    )
    assert engine.replace_plain(b"x a.test y") == b"x b.test y"


def test_the_compiled_engine_refuses_a_second_stream_while_one_runs() -> None:
    """It lets go of the GIL while it works: a rewriter used by a second caller meanwhile says so."""
    rewriter = Rewriter([(OLD, NEW)], engine="c")
    refused: list[str] = []

    class Source(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            try:
                rewriter.replace_plain(b"x")
            except RuntimeError as exc:
                refused.append(str(exc))
            return super().read(size)

    out = io.BytesIO()
    rewriter.rewrite_stream(Source(insert((literal_of(OLD.encode()),))), out)
    assert (
        refused and refused[0] == "This rewriter is already rewriting a stream: use one Rewriter per stream."
    )
    assert out.getvalue() == insert((literal_of(NEW.encode()),))
    assert rewriter.replace_plain(OLD.encode()) == NEW.encode()  # and it is free again afterwards
