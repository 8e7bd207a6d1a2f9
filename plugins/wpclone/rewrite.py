"""Serialization-safe URL rewrite over mysqldump output (DESIGN §6).

The rule, applied to every SQL string literal of the dump (a *field*):

* a field whose whole value is PHP-serialized data is parsed and rebuilt with every string (keys included)
  rewritten and every length recomputed, recursively into strings that are themselves serialized;
* any other field, and any serialized value that does not parse, gets plain replacement.

Replacement follows PHP ``strtr`` semantics: all pairs in one pass, longest match first, replaced text never
rescanned. Each pair also applies in its JSON-escaped form (``http:\\/\\/host``). Bytes outside string
literals pass through unchanged.

How it stays fast: the needles (the pairs' OLD values as they appear *encoded* in the dump) are searched
for by the regex engine in C; whether a needle lies inside a literal, and where that literal starts and
ends, comes from counting quotes in a copy of the chunk with its escapes masked (``_feed``), also in C.
Only literals that hold a needle are rebuilt in Python. Plain literals are rewritten in their encoded form
directly when that is exact (see ``_encoded_is_exact``), with chained ``bytes.replace`` when that equals
strtr (see ``strtr_function``); serialized values are checked and rebuilt in one flat pass.

How memory stays flat: input is read in chunks; only an unfinished literal is carried over to the next
chunk. A literal longer than ``stream_literal_over`` that is not serialized is rewritten as it streams; a
serialized one must be held whole (its length prefixes come first), so memory is bounded by the largest
serialized field that contains a URL to replace.
"""

from __future__ import annotations

import codecs
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from wpclone.metrics import peak_rss_kib

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
STREAM_LITERAL_OVER = 8 << 20

# mysqldump (mysql_real_escape_string) escapes NUL ' " \\ LF CR and ^Z inside string literals.
# MySQL's reading of backslash escapes; any other escaped byte stands for itself.
_DECODE = {b"0": b"\0", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}
_DECODE_RE = re.compile(rb"\\(.)", re.DOTALL)
# A backslash starting something other than \' \" \n \r (after pairing off escaped backslashes).
_NOT_PYTHON_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*+\\[^'\"\\nr]")
# Bytes that can follow a backslash in an escape: a needle starting with one could match mid-escape.
_ESCAPE_SECOND = set(b"0'\"\\nrZbt%_")

# The rest of a literal after its opening quote, through the closing quote.
_LITERAL_REST = re.compile(rb"[^'\\]*+(?:\\.[^'\\]*+)*+'", re.DOTALL)
# A complete prefix of a literal body that does not end inside an escape (for streaming huge literals).
_LITERAL_PREFIX = re.compile(rb"[^'\\]*+(?:\\.[^'\\]*+)*+", re.DOTALL)

# What a PHP-serialized value can start with.
_SERIALIZED_START = re.compile(rb"(?:[aOsCE]:\d|[id]:|b:[01];|N;)")
_S_HEAD = re.compile(rb"s:(\d+):\"")
_A_HEAD = re.compile(rb"a:(\d+):\{")
_O_HEAD = re.compile(rb"O:(\d+):\"")
_C_HEAD = re.compile(rb"C:(\d+):\"")
_E_HEAD = re.compile(rb"E:(\d+):\"")
_AFTER_CLASS = re.compile(rb"\":(\d+):\{")  # O: the property count; C: the payload length
_SCALAR = re.compile(
    rb"i:[+-]?\d+;|d:(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|-?INF|NAN);|b:[01];|N;|[Rr]:\d+;"
)


class _Malformed(Exception):
    """A value that starts like serialized data but does not parse to its end."""


def mysql_encode(value: bytes) -> bytes:
    """Escape ``value`` for the inside of a single-quoted literal, as mysqldump does."""
    # Backslash first: the later replacements add backslashes that must stay single.
    return (
        value.replace(b"\\", b"\\\\")
        .replace(b"\0", b"\\0")
        .replace(b"'", b"\\'")
        .replace(b'"', b'\\"')
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
        .replace(b"\x1a", b"\\Z")
    )


def mysql_decode(body: bytes) -> bytes:
    """The value of a literal's body (the text between its quotes)."""
    if b"\\" not in body:
        return body
    # Python reads \' \" \\ \n \r as MySQL does; with no \0 or \Z present, every backslash that
    # mysqldump writes is one of those, so the C decoder is exact. Anything else: MySQL's full table.
    if not _NOT_PYTHON_ESCAPE.search(body):
        return codecs.escape_decode(body)[0]
    return _DECODE_RE.sub(lambda m: _DECODE.get(m.group(1), m.group(1)), body)


def json_escaped(text: str) -> str:
    """The form a URL takes inside JSON written by PHP's json_encode: every ``/`` escaped."""
    return text.replace("/", "\\/")


@dataclass
class RewriteStats:
    bytes_in: int = 0
    bytes_out: int = 0
    fields_rewritten: int = 0
    serialized_rebuilt: int = 0
    malformed_serialized: int = 0
    seconds: float = 0.0
    peak_rss_kib: int = 0

    def summary(self) -> str:
        rate = self.bytes_in / self.seconds / 1e6 if self.seconds else 0.0
        return (
            f"rewrite: {self.bytes_in} bytes in, {self.bytes_out} bytes out, "
            f"{self.fields_rewritten} fields rewritten, {self.serialized_rebuilt} serialized values rebuilt, "
            f"{self.malformed_serialized} malformed serialized values left as plain text, "
            f"{self.seconds:.2f} s ({rate:.1f} MB/s), peak RSS {self.peak_rss_kib / 1024:.1f} MiB"
        )


def _alternation(keys: Sequence[bytes]) -> re.Pattern[bytes]:
    # Longest first: at one position the longest key wins, as in strtr.
    return re.compile(b"|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True)))


def _touch(a: bytes, b: bytes) -> bool:
    """Whether one of ``a``, ``b`` holds the other or they overlap (a suffix of one begins the other)."""
    return (
        b in a or a in b or any(a.endswith(b[:i]) or b.endswith(a[:i]) for i in range(1, min(len(a), len(b))))
    )


def strtr_function(table: dict[bytes, bytes]) -> Callable[[bytes], bytes]:
    """A function computing PHP ``strtr(value, table)``.

    When no key can overlap another key, occur in another key, or occur in or across the edge of another
    pair's replacement, strtr equals chained ``bytes.replace`` (longest key first), which runs in C without a
    Python call per match. Otherwise one regex pass with a lookup per match.
    """
    keys = sorted(table, key=len, reverse=True)
    independent = all(
        not _touch(ki, kj) and not _touch(table[ki], kj) for ki in keys for kj in keys if ki is not kj
    )
    if independent:
        steps = [(k, table[k]) for k in keys]

        def replace_chain(value: bytes) -> bytes:
            for old, new in steps:
                value = value.replace(old, new)
            return value

        return replace_chain
    pattern = _alternation(keys)

    def replace_regex(value: bytes) -> bytes:
        return pattern.sub(lambda m: table[m.group()], value)

    return replace_regex


class Rewriter:
    """Replaces URL pairs inside the string literals of a mysqldump stream (see the module docstring)."""

    def __init__(self, pairs: Sequence[tuple[str, str]], *, stream_literal_over: int = STREAM_LITERAL_OVER):
        if not pairs:
            raise ValueError("Give at least one OLD NEW pair to replace.")
        table: dict[bytes, bytes] = {}
        for old, new in pairs:
            if not old:
                raise ValueError("An OLD value to replace must not be empty.")
            for o, n in ((old, new), (json_escaped(old), json_escaped(new))):
                ob, nb = o.encode(), n.encode()
                if table.get(ob, nb) != nb:
                    raise ValueError(f"{o!r} is given twice with different replacements.")
                table[ob] = nb
        self.table = table
        self.stream_literal_over = stream_literal_over
        self._plain = _alternation(list(table))
        self.replace_plain = strtr_function(table)
        enc_table = {mysql_encode(o): mysql_encode(n) for o, n in table.items()}
        self._enc_table = enc_table
        self._needles = _alternation(list(enc_table))
        # In the encoded form a needle may only match at an escape boundary; that holds by construction
        # unless a needle starts with a byte that can also be the second half of an escape.
        self._encoded_is_exact = all(k[0] not in _ESCAPE_SECOND for k in enc_table)
        self._replace_encoded: Callable[[bytes], bytes] = (
            strtr_function(enc_table) if self._encoded_is_exact else self._replace_decoded
        )
        self.stats = RewriteStats()

    # -- plain replacement -------------------------------------------------------------------------------

    def _replace_decoded(self, body: bytes) -> bytes:
        """strtr on a literal's encoded body by way of its value (when the encoded form is not exact)."""
        return mysql_encode(self.replace_plain(mysql_decode(body)))

    # -- serialized values -------------------------------------------------------------------------------

    def rewrite_value(self, value: bytes) -> bytes:
        """Apply the rule to one decoded field value."""
        if _SERIALIZED_START.match(value):
            try:
                return self._rebuild_whole(value)
            except _Malformed:
                self.stats.malformed_serialized += 1
        return self.replace_plain(value)

    def _rebuild_whole(self, value: bytes) -> bytes:  # noqa: C901, PLR0912, PLR0915
        """Rebuild serialized ``value`` with its strings rewritten, or raise _Malformed.

        One flat pass with a stack of open containers: every token is checked (lengths, counts, braces)
        and the bytes of everything that does not change are copied through in spans.
        """
        out: list[bytes] = []
        emitted = pos = 0
        remaining = 1  # values still expected in the innermost open container (keys count as values)
        stack: list[int] = []
        plain = self._plain.search
        s_head = _S_HEAD.match
        scalar = _SCALAR.match
        try:
            while True:
                if remaining == 0:
                    if not stack:
                        break
                    if value[pos] != 0x7D:  # "}"
                        raise _Malformed
                    pos += 1
                    remaining = stack.pop()
                    continue
                kind = value[pos]
                if kind == 0x73:  # s:<len>:"<bytes>";
                    m = s_head(value, pos)
                    if m is None:
                        raise _Malformed
                    start = m.end()
                    end = start + int(m[1])
                    if not value.startswith(b'";', end):
                        raise _Malformed
                    if plain(value, start, end):
                        text = value[start:end]
                        new = self.rewrite_value(text)
                        if new != text:
                            out.append(value[emitted:pos])
                            out.append(b's:%d:"%s";' % (len(new), new))
                            emitted = end + 2
                    pos = end + 2
                    remaining -= 1
                elif kind == 0x61:  # a:<count>:{
                    m = _A_HEAD.match(value, pos)
                    if m is None:
                        raise _Malformed
                    stack.append(remaining - 1)
                    remaining = 2 * int(m.group(1))
                    pos = m.end()
                elif kind == 0x4F:  # O:<len>:"<class>":<count>:{
                    m = _O_HEAD.match(value, pos)
                    if m is None:
                        raise _Malformed
                    count = _AFTER_CLASS.match(value, m.end() + int(m.group(1)))
                    if count is None:
                        raise _Malformed
                    stack.append(remaining - 1)
                    remaining = 2 * int(count.group(1))
                    pos = count.end()
                elif kind == 0x43:  # C:<len>:"<class>":<len>:{<payload>}: rewrite the payload, fix its length
                    m = _C_HEAD.match(value, pos)
                    if m is None:
                        raise _Malformed
                    head = _AFTER_CLASS.match(value, m.end() + int(m.group(1)))
                    if head is None:
                        raise _Malformed
                    start = head.end()
                    end = start + int(head.group(1))
                    if value[end : end + 1] != b"}":
                        raise _Malformed
                    payload = value[start:end]
                    if plain(payload):
                        new = self.rewrite_value(payload)
                        out.append(value[emitted : head.start()])
                        out.append(b'":%d:{%s}' % (len(new), new))
                        emitted = end + 1
                    pos = end + 1
                    remaining -= 1
                elif kind == 0x45:  # E:<len>:"<Enum:Case>";
                    m = _E_HEAD.match(value, pos)
                    if m is None:
                        raise _Malformed
                    end = m.end() + int(m.group(1))
                    if value[end : end + 2] != b'";':
                        raise _Malformed
                    pos = end + 2
                    remaining -= 1
                else:
                    m = scalar(value, pos)
                    if m is None:
                        raise _Malformed
                    pos = m.end()
                    remaining -= 1
        except IndexError as exc:
            raise _Malformed from exc
        if pos != len(value):
            raise _Malformed
        if not out:
            return value
        out.append(value[emitted:])
        return b"".join(out)

    # -- literals ----------------------------------------------------------------------------------------

    def _rewrite_literal(self, body: bytes) -> bytes:
        """Rewrite one literal's encoded body (between the quotes)."""
        stats = self.stats
        if _SERIALIZED_START.match(body):
            value = mysql_decode(body)
            try:
                new_value = self._rebuild_whole(value)
            except _Malformed:
                stats.malformed_serialized += 1
            else:
                if new_value != value:
                    stats.serialized_rebuilt += 1
                    stats.fields_rewritten += 1
                    return mysql_encode(new_value)
                return body
        new = self._replace_encoded(body)
        if new != body:
            stats.fields_rewritten += 1
        return new

    # -- streaming ---------------------------------------------------------------------------------------

    def _feed(self, buf: bytes, out: list[bytes]) -> int:
        """Rewrite what ``buf`` completes (it starts outside any literal); return where the carry starts.

        Escaped backslashes, then escaped quotes, are masked with same-length filler (a run of backslashes
        always starts on an escape boundary, so the leftmost pairs are the escapes). Every quote left in the
        mask is a literal's delimiter, so whether a needle is inside a literal is the parity of the quotes
        before it, counted from a position known to be outside: C-speed counting, no tokenizing in Python.
        """
        mask = buf.replace(b"\\\\", b"\1\1") if b"\\\\" in buf else buf
        mask = mask.replace(b"\\'", b"\1\1")
        search = self._needles.search
        rewrite = self._rewrite_literal
        emitted = pos = look = 0  # pos: a position known to be outside any literal
        while (m := search(buf, look)) is not None:
            at = m.start()
            if not mask.count(b"'", pos, at) & 1:  # the needle lies outside any literal: leave it
                pos, look = at, m.end()
                continue
            start = mask.rfind(b"'", pos, at)
            end = mask.find(b"'", at)  # the closing quote
            if end < 0:  # the literal goes on in the next chunk
                out.append(buf[emitted:start])
                return start
            out.append(buf[emitted : start + 1])
            out.append(rewrite(buf[start + 1 : end]))
            emitted = end
            pos = look = end + 1
        if mask.count(b"'", pos) & 1:  # the buffer ends inside a literal: carry it from its opening quote
            start = mask.rfind(b"'", pos)
            out.append(buf[emitted:start])
            return start
        out.append(buf[emitted:])
        return len(buf)

    def _stream_long_literal(self, carry: bytes, read: Callable[[], bytes], out: list[bytes]) -> bytes:
        """Rewrite a long non-serialized literal as it streams; return what follows its closing quote."""
        body = carry[1:]
        out.append(b"'")
        rewritten = False
        keep = max(map(len, self._enc_table)) - 1
        while True:
            rest = _LITERAL_REST.match(body)
            if rest is not None:
                tail = self._replace_encoded(body[: rest.end() - 1])
                rewritten = rewritten or tail != body[: rest.end() - 1]
                out.append(tail + b"'")
                if rewritten:
                    self.stats.fields_rewritten += 1
                return body[rest.end() :]
            # Emit a prefix that ends on an escape boundary and cannot hold the start of a needle cut in two.
            cut = _LITERAL_PREFIX.match(body, 0, max(0, len(body) - keep)).end()  # type: ignore[union-attr]
            for m in self._needles.finditer(body, max(0, cut - keep), len(body)):
                if m.start() < cut < m.end():
                    cut = m.start()
                    break
            head = self._replace_encoded(body[:cut])
            rewritten = rewritten or head != body[:cut]
            out.append(head)
            self._flush(out)
            data = read()
            if not data:  # unterminated literal at end of input: pass it on as it is
                out.append(body[cut:])
                return b""
            self.stats.bytes_in += len(data)
            body = body[cut:] + data

    def _flush(self, out: list[bytes]) -> None:
        data = b"".join(out)
        out.clear()
        self.stats.bytes_out += len(data)
        self._write(data)

    def rewrite_stream(self, src: BinaryIO, dst: BinaryIO, chunk_size: int = CHUNK_SIZE) -> RewriteStats:
        """Rewrite the dump read from ``src`` into ``dst``; returns (and keeps in ``self.stats``) counters."""
        self.stats = stats = RewriteStats()
        started = time.monotonic()
        self._write = dst.write
        out: list[bytes] = []
        carry = b""

        def read() -> bytes:
            # Read at least as much as is carried, so a long literal costs amortised linear copying.
            return src.read(max(chunk_size, len(carry)))

        while data := read():
            stats.bytes_in += len(data)
            buf = carry + data if carry else data
            carry = buf[self._feed(buf, out) :]
            while len(carry) > self.stream_literal_over and not _SERIALIZED_START.match(carry, 1):
                after = self._stream_long_literal(carry, lambda: src.read(chunk_size), out)
                carry = after[self._feed(after, out) :] if after else b""
            self._flush(out)
        if carry:  # an unterminated literal at the end of the input: rewrite it as plain text
            out.append(b"'" + self._replace_encoded(carry[1:]))
            self._flush(out)
        stats.seconds = time.monotonic() - started
        stats.peak_rss_kib = peak_rss_kib()
        return stats

    def rewrite_bytes(self, dump: bytes) -> bytes:
        """Rewrite a whole dump held in memory (tests, small inputs)."""
        import io

        out = io.BytesIO()
        self.rewrite_stream(io.BytesIO(dump), out)
        return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wpclone.rewrite OLD NEW [OLD NEW ...] < dump.sql > out.sql``"""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or len(args) % 2 or args[0] in ("-h", "--help"):
        print(
            "usage: python -m wpclone.rewrite OLD NEW [OLD NEW ...] < dump.sql > rewritten.sql\n"
            "Give OLD NEW pairs of URLs; the dump is read from stdin and written to stdout.",
            file=sys.stderr,
        )
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    try:
        rewriter = Rewriter(list(zip(args[::2], args[1::2], strict=True)))
    except ValueError as exc:
        print(f"rewrite: {exc}", file=sys.stderr)
        return 2
    stats = rewriter.rewrite_stream(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    print(stats.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
