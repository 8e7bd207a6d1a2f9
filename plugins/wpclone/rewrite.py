"""Serialization-safe URL rewrite over mysqldump output (DESIGN §6).

The rule, applied to every SQL string literal of the dump (a *field*):

* a field whose whole value is PHP-serialized data is parsed and rebuilt with every string (keys included)
  rewritten and every length recomputed, recursively into strings that are themselves serialized;
* any other field, and any serialized value that does not parse, gets plain replacement.

Replacement follows PHP ``strtr`` semantics: all pairs in one pass, longest match first, replaced text never
rescanned. Each pair also applies in its JSON-escaped form (``http:\\/\\/host``). Bytes outside string
literals pass through unchanged.

How it stays fast: the needles (the pairs' OLD values as they appear *encoded* in the dump) are searched
for by the regex engine in C; the dump is tokenized (possessive regex, also in C) only as far as the next
needle, and only literals that contain one are rebuilt in Python. Plain literals are rewritten in their
encoded form directly when that is exact (see ``_encoded_is_exact``).

How memory stays flat: input is read in chunks; only an unfinished literal is carried over to the next
chunk. A literal longer than ``stream_literal_over`` that is not serialized is rewritten as it streams; a
serialized one must be held whole (its length prefixes come first), so memory is bounded by the largest
serialized field that contains a URL to replace.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
STREAM_LITERAL_OVER = 8 << 20

# mysqldump (mysql_real_escape_string) escapes these bytes inside string literals.
_ENCODE = {0: b"\\0", 0x27: b"\\'", 0x22: b'\\"', 0x5C: b"\\\\", 0x0A: b"\\n", 0x0D: b"\\r", 0x1A: b"\\Z"}
_ENCODE_RE = re.compile(rb"[\x00'\"\\\n\r\x1a]")
# MySQL's reading of backslash escapes; any other escaped byte stands for itself.
_DECODE = {b"0": b"\0", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}
_DECODE_RE = re.compile(rb"\\(.)", re.DOTALL)
# Bytes that can follow a backslash in an escape: a needle starting with one could match mid-escape.
_ESCAPE_SECOND = set(b"0'\"\\nrZbt%_")

# Tokenizer: outside text and complete literals, possessive so it never backtracks. With endpos set to a
# needle's position it stops at the opening quote of the literal that holds the needle (or at the needle
# itself when the needle lies outside any literal).
_TOKENS = re.compile(rb"[^']*+(?:'[^'\\]*+(?:\\.[^'\\]*+)*+'[^']*+)*+", re.DOTALL)
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
_COUNT_HEAD = re.compile(rb"\":(\d+):\{")
_SCALAR = re.compile(
    rb"i:[+-]?\d+;|d:(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|-?INF|NAN);|b:[01];|N;|[Rr]:\d+;"
)


class _Malformed(Exception):
    """A value that starts like serialized data but does not parse to its end."""


def mysql_encode(value: bytes) -> bytes:
    """Escape ``value`` for the inside of a single-quoted literal, as mysqldump does."""
    return _ENCODE_RE.sub(lambda m: _ENCODE[m.group()[0]], value)


def mysql_decode(body: bytes) -> bytes:
    """The value of a literal's body (the text between its quotes)."""
    if b"\\" not in body:
        return body
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

    def summary(self) -> str:
        rate = self.bytes_in / self.seconds / 1e6 if self.seconds else 0.0
        return (
            f"rewrite: {self.bytes_in} bytes in, {self.bytes_out} bytes out, "
            f"{self.fields_rewritten} fields rewritten, {self.serialized_rebuilt} serialized values rebuilt, "
            f"{self.malformed_serialized} malformed serialized values left as plain text, "
            f"{self.seconds:.2f} s ({rate:.1f} MB/s)"
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

    def _rebuild_whole(self, value: bytes) -> bytes:
        out: list[bytes] = []
        try:
            end = self._rebuild(value, 0, out)
        except (IndexError, ValueError, RecursionError) as exc:
            raise _Malformed from exc
        if end != len(value):
            raise _Malformed
        return b"".join(out)

    def _string(self, data: bytes, start: int, length: int, close: bytes) -> tuple[bytes, int]:
        end = start + length
        if end > len(data) or data[end : end + len(close)] != close:
            raise _Malformed
        return data[start:end], end + len(close)

    def _rebuild(self, data: bytes, pos: int, out: list[bytes]) -> int:  # noqa: C901, PLR0912
        kind = data[pos : pos + 1]
        if kind == b"s":
            m = _S_HEAD.match(data, pos)
            if not m:
                raise _Malformed
            text, end = self._string(data, m.end(), int(m.group(1)), b'";')
            new = self.rewrite_value(text) if self._plain.search(text) else text
            out.append(b's:%d:"%s";' % (len(new), new))
            return end
        if kind == b"a":
            m = _A_HEAD.match(data, pos)
            if not m:
                raise _Malformed
            out.append(m.group())
            pos = m.end()
            for _ in range(2 * int(m.group(1))):
                pos = self._rebuild(data, pos, out)
            return self._close(data, pos, out)
        if kind == b"O":
            m = _O_HEAD.match(data, pos)
            if not m:
                raise _Malformed
            _, pos = self._string(data, m.end(), int(m.group(1)), b"")  # the class name
            count = _COUNT_HEAD.match(data, pos)
            if not count:
                raise _Malformed
            out.append(data[m.start() : count.end()])
            pos = count.end()
            for _ in range(2 * int(count.group(1))):
                pos = self._rebuild(data, pos, out)
            return self._close(data, pos, out)
        if kind == b"C":
            # Custom serialization: an opaque payload whose length we recompute after the string rule.
            m = _C_HEAD.match(data, pos)
            if not m:
                raise _Malformed
            _, pos = self._string(data, m.end(), int(m.group(1)), b'":')
            head = data[m.start() : pos]
            length = re.compile(rb"(\d+):\{").match(data, pos)
            if not length:
                raise _Malformed
            payload, end = self._string(data, length.end(), int(length.group(1)), b"}")
            new = self.rewrite_value(payload) if self._plain.search(payload) else payload
            out.append(b"%s%d:{%s}" % (head, len(new), new))
            return end
        if kind == b"E":
            m = _E_HEAD.match(data, pos)
            if not m:
                raise _Malformed
            _, end = self._string(data, m.end(), int(m.group(1)), b'";')
            out.append(data[pos:end])
            return end
        m = _SCALAR.match(data, pos)
        if not m:
            raise _Malformed
        out.append(m.group())
        return m.end()

    @staticmethod
    def _close(data: bytes, pos: int, out: list[bytes]) -> int:
        if data[pos : pos + 1] != b"}":
            raise _Malformed
        out.append(b"}")
        return pos + 1

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
        """Rewrite what ``buf`` completes (it starts outside any literal); return where the carry starts."""
        search = self._needles.search
        tokens = _TOKENS.match
        literal_rest = _LITERAL_REST.match
        rewrite = self._rewrite_literal
        exact = self._encoded_is_exact
        emitted = pos = look = 0  # pos: a position known to be outside any literal
        while (m := search(buf, look)) is not None:
            at = m.start()
            start = tokens(buf, pos, at).end()  # type: ignore[union-attr]  # matches ''
            if start == at:  # the needle lies outside any literal: leave it
                pos, look = at, m.end()
                continue
            # An exact needle starts on an escape boundary, so the literal's end can be sought from it.
            rest = literal_rest(buf, at if exact else start + 1)
            if rest is None:  # the literal goes on in the next chunk
                out.append(buf[emitted:start])
                return start
            end = rest.end() - 1  # the closing quote
            out.append(buf[emitted : start + 1])
            out.append(rewrite(buf[start + 1 : end]))
            emitted = end
            pos = look = end + 1
        start = tokens(buf, pos).end()  # type: ignore[union-attr]
        out.append(buf[emitted:start])
        return start

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
