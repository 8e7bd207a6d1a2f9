"""Serialization-safe URL rewrite over mysqldump output.

The rule, applied to every SQL string literal of the dump (a *field*):

* a field whose whole value is PHP-serialized data is parsed and rebuilt with every string (keys included)
  rewritten and every length recomputed, recursively into strings that are themselves serialized;
* any other field, and any serialized value that does not parse, gets plain replacement.

Plain replacement follows PHP ``strtr`` semantics over a table of *keys* (``replacement_table``): all keys in
one pass, the longest key that matches at a position wins, replaced text is never rescanned. Bytes outside
string literals pass through unchanged.

The keys a pair makes:

* A *site pair* (OLD and NEW both origins ``http(s)://host[:port]``, see ``is_origin``) makes a key for
  every form WordPress data holds OLD in (``site_forms``): ``http://host`` and ``https://host`` (both become
  NEW), protocol-relative ``//host`` (becomes ``//newhost[:port]``), each of these JSON-escaped
  (``https:\\/\\/host``, ``\\/\\/host``) and URL-encoded (``https%3A%2F%2Fhost``, ``%2F%2Fhost``; a port's
  ``:`` is ``%3A`` too), the URL-encoded forms once in upper-case and once in lower-case hex, NEW encoded the
  same way in the same case.
  A form whose replacement would equal it (the scheme-only change ``http://a`` → ``https://a`` makes no
  ``//a`` key) is not made. Several site pairs (a source and its aliases, all → the clone's URL) share one
  table.
* A site key matches only where the host ends (``HOST_GOES_ON``): not where the next bytes go on as a host,
  that is a letter, digit, ``_`` or ``-``, a ``.`` then a letter or digit, a ``:`` then a digit, and for the
  URL-encoded forms also ``%3A``/``%3a`` then a digit. So with OLD ``https://www.example.com``,
  ``https://www.example.com.au``, ``https://www.example.community`` and ``https://www.example.com:8443`` stay;
  ``…com/``, ``…com.``, ``…com"``, ``…com?``, ``…com`` at the end of a value match. The same test holds on a
  literal's escaped body, where an escape after the host (``\\'``, ``\\n``) is a boundary, as the bytes it
  stands for are. A bare host (``www.example.com`` in an e-mail address) is no key and stays.
* Any other pair (a path, an e-mail address, any string) is *explicit*: OLD and its JSON-escaped form, matched
  anywhere, no boundary. An explicit key that equals a site key replaces it.

Every replacement is counted per form (``FORMS``): ``https``, ``http`` (the plain forms, by the scheme found),
``protocol-relative``, ``json``, ``url-encoded`` and ``explicit``.

How it stays fast: a field is looked at only if it holds an *anchor* (a site pair's host, or an explicit key),
found by ``bytes.find`` over the dump; whether it lies inside a literal, and where that literal starts and
ends, comes from counting quotes in a copy of the chunk with its escapes masked (``_feed``), in C. Plain
literals are rewritten in their escaped form directly when that is exact (``_encoded_is_exact``). A field
that holds a site host once (most: a URL, a serialized string) is told its key by the bytes around the host;
one that holds it more often gets one regex pass over the field reversed, where every key of the host starts
with the same literal bytes (``Replacer``). Tables where host-by-host could differ from one strtr pass (see
``_sequential_is_strtr``), and tables with explicit pairs, get one pass of an alternation of every key
instead. Serialized values are checked and rebuilt in one flat pass.

How memory stays flat: input is read in chunks; only an unfinished literal is carried over to the next
chunk. A literal longer than ``stream_literal_over`` that is not serialized is rewritten as it streams, cut
only where no key (or the bytes its boundary test reads) crosses the cut; a serialized one must be held whole
(its length prefixes come first), so memory is bounded by the largest serialized field that holds an anchor.
A dump that ends inside a literal gets that literal plain replacement (it is not counted as a field).

Two engines apply the same table with the same result, byte for byte and count for count: the compiled one
(``_rewrite_core.c``, a CPython extension built by ``scripts/setup.sh`` and by ``pip install``) when it is
built, and this module's Python engine, the reference, otherwise. ``WPCLONE_REWRITE_ENGINE`` (``c``,
``python``; default: ``c`` if built) or ``Rewriter(engine=...)`` chooses; every run logs which one ran and
``RewriteStats.engine`` says it.
"""

from __future__ import annotations

import codecs
import functools
import io
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from wpclone.metrics import peak_rss_kib

try:  # the compiled engine (wpclone/_rewrite_core.c); without it the Python engine runs
    from wpclone import _rewrite_core
except ImportError:  # not built: the Python engine runs
    _rewrite_core = None  # type: ignore[assignment]  # (the optional-module idiom)

log = logging.getLogger(__name__)

ENGINE_ENV = "WPCLONE_REWRITE_ENGINE"
ENGINES = ("c", "python")

CHUNK_SIZE = 1 << 20
STREAM_LITERAL_OVER = 8 << 20

# The forms replacements are counted in, in the order reports list them.
FORMS = ("https", "http", "protocol-relative", "json", "url-encoded", "explicit")
# What goes on as a host after a site key (the key then does not match): a regex, for Python and PCRE alike;
# and the same read backwards, as it precedes a key in reversed text.
_GOES_ON = (r"[A-Za-z0-9_-]", r"\.[A-Za-z0-9]", r":[0-9]")
_GOES_ON_BACKWARDS = (r"[A-Za-z0-9_-]", r"[A-Za-z0-9]\.", r"[0-9]:")
_URL_PORT, _URL_PORT_BACKWARDS = r"%3[Aa][0-9]", r"[0-9][Aa]3%"
HOST_GOES_ON = "|".join(_GOES_ON)
HOST_GOES_ON_URL_ENCODED = "|".join((*_GOES_ON, _URL_PORT))
# The most bytes of a literal's escaped body a boundary test reads past a key (``%3A`` and a digit, escaped).
LOOKAHEAD = 8

# An origin as the configuration normalizes it (wpclone.models.URL_PATTERN), with DNS-shaped host labels.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_ORIGIN = re.compile(rf"(https?)://((?:{_LABEL}\.)*{_LABEL})(?::([0-9]{{1,5}}))?")

# mysqldump (mysql_real_escape_string) escapes NUL ' " \\ LF CR and ^Z inside string literals.
# MySQL's reading of backslash escapes; any other escaped byte stands for itself.
_DECODE = {b"0": b"\0", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}
_DECODE_RE = re.compile(rb"\\(.)", re.DOTALL)
# The escapes Python's decoder reads as MySQL does (with escaped backslashes).
_PYTHON_READS_AS_MYSQL = (b'\\"', b"\\'", b"\\n", b"\\r")
# Bytes that can follow a backslash in an escape: a key starting with one could match mid-escape.
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
    # Python's C decoder reads \\ \' \" \n \r as MySQL does, so it is exact when every escape is one of
    # those: with the escaped backslashes taken out (a run of backslashes starts on an escape boundary, so
    # its leftmost pairs are the escapes), every backslash left starts one of the other four.
    singles = body.replace(b"\\\\", b"") if b"\\\\" in body else body
    left = singles.count(b"\\")
    for escape in _PYTHON_READS_AS_MYSQL:
        if not left:
            break
        left -= singles.count(escape)
    if not left:
        return codecs.escape_decode(body)[0]
    return _DECODE_RE.sub(lambda m: _DECODE.get(m.group(1), m.group(1)), body)


def json_escaped(text: str) -> str:
    """The form a URL takes inside JSON written by PHP's json_encode: every ``/`` escaped."""
    return text.replace("/", "\\/")


def is_origin(url: str) -> bool:
    """Whether ``url`` is an origin, ``http(s)://host[:port]`` with no path (how sites are named)."""
    return _ORIGIN.fullmatch(url) is not None


# -- the table of keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """One key of the table: OLD as data holds it, what replaces it, its form, and a site key's host."""

    old: str
    new: str
    form: str
    host: str = ""  # a site key's host, where a field is looked for it; empty for an explicit key
    host_at: int = -1  # where ``host`` starts in ``old``
    url_encoded: bool = False

    @property
    def goes_on(self) -> str:
        """The regex of what must not follow ``old`` for it to match (empty: anything may)."""
        if not self.host:
            return ""
        return HOST_GOES_ON_URL_ENCODED if self.url_encoded else HOST_GOES_ON

    @property
    def pattern(self) -> str:
        """``old`` as a regex with its boundary test (Python's ``re`` and MariaDB's PCRE read it alike)."""
        return re.escape(self.old) + (f"(?!{self.goes_on})" if self.host else "")


# Per encoding: the form of http(s)://host (None: named by its scheme), the form of //host, and how "://",
# "//" and a port's ":" are written.
_ENCODINGS = (
    (None, "protocol-relative", "://", "//", ":"),
    ("json", "json", ":\\/\\/", "\\/\\/", ":"),
    ("url-encoded", "url-encoded", "%3A%2F%2F", "%2F%2F", "%3A"),
    ("url-encoded", "url-encoded", "%3a%2f%2f", "%2f%2f", "%3a"),
)


def site_forms(old: str, new: str) -> list[Form]:
    """Every key a site pair makes (module docstring); both must be origins."""
    o, n = _ORIGIN.fullmatch(old), _ORIGIN.fullmatch(new)
    if o is None or n is None:
        raise ValueError(f"{old!r} and {new!r} must both be site URLs, http(s)://host[:port].")
    forms = []
    for schemed, relative, sep, slashes, colon in _ENCODINGS:
        host_old = o[2] + (colon + o[3] if o[3] else "")
        host_new = n[2] + (colon + n[3] if n[3] else "")
        encoded = colon != ":"
        for scheme in ("https", "http"):
            prefix = scheme + sep
            forms.append(
                Form(prefix + host_old, n[1] + sep + host_new, schemed or scheme, o[2], len(prefix), encoded)
            )
        forms.append(Form(slashes + host_old, slashes + host_new, relative, o[2], len(slashes), encoded))
    return [f for f in forms if f.old != f.new]


def replacement_table(pairs: Sequence[tuple[str, str]]) -> dict[str, Form]:
    """The keys of ``pairs`` by OLD: every form of each site pair, each explicit pair plain and in JSON."""
    if not pairs:
        raise ValueError("Give at least one OLD NEW pair to replace.")
    sites: dict[str, Form] = {}
    explicit: dict[str, Form] = {}
    for old, new in pairs:
        if not old:
            raise ValueError("An OLD value to replace must not be empty.")
        if is_origin(old) and is_origin(new):
            for form in site_forms(old, new):
                _add(sites, form)
        else:
            for o, n in dict.fromkeys(((old, new), (json_escaped(old), json_escaped(new)))):
                _add(explicit, Form(o, n, "explicit"))
    return {**sites, **explicit}  # an explicit key replaces the site key it equals


def _add(table: dict[str, Form], form: Form) -> None:
    if table.get(form.old, form).new != form.new:
        raise ValueError(f"{form.old!r} is given twice with different replacements.")
    table[form.old] = form


# -- replacement: strtr with host boundaries ---------------------------------------------------------------


@dataclass(eq=False)
class _Key:
    """A key in the bytes of one space (decoded values, or literal bodies as the dump escapes them)."""

    old: bytes
    new: bytes
    form: str
    host: bytes  # empty for an explicit key
    host_at: int
    regex: re.Pattern[bytes]  # old and its boundary test
    goes_on: re.Pattern[bytes]  # what must not follow old (explicit: a regex that never matches)
    behind: bytes  # its boundary test read on reversed text, after old reversed (lookbehinds)

    @classmethod
    def of(cls, form: Form, encode: Callable[[bytes], bytes]) -> _Key:
        old, new = encode(form.old.encode()), encode(form.new.encode())
        goes_on = form.goes_on.encode()
        behind = b""
        if form.host:
            ends = (*_GOES_ON_BACKWARDS, *((_URL_PORT_BACKWARDS,) if form.url_encoded else ()))
            behind = b"".join(b"(?<!" + e.encode() + re.escape(old[::-1]) + b")" for e in ends)
        return cls(
            old,
            new,
            form.form,
            form.host.encode(),
            len(encode(form.old[: form.host_at].encode())) if form.host else -1,
            re.compile(re.escape(old) + (b"(?!" + goes_on + b")" if goes_on else b"")),
            re.compile(goes_on or b"(?!)"),
            behind,
        )


def _touch(a: bytes, b: bytes) -> bool:
    """Whether one of ``a``, ``b`` holds the other or they overlap (a suffix of one begins the other)."""
    return (
        b in a or a in b or any(a.endswith(b[:i]) or b.endswith(a[:i]) for i in range(1, min(len(a), len(b))))
    )


def _chain_is_strtr(keys: Sequence[_Key]) -> bool:
    """Explicit keys: chained ``bytes.replace`` (longest first) equals strtr when no key can overlap another
    key, occur in another key, or occur in or across the edge of another key's replacement."""
    return all(
        not _touch(a.old, b.old) and not _touch(a.new, b.old) for a in keys for b in keys if a is not b
    )


def _sequential_is_strtr(keys: Sequence[_Key]) -> bool:
    """Site keys: whether applying them host by host (``Replacer._by_host``) equals one strtr pass.

    It does when no replacement can make a key match, inside it or across either of its edges with whatever
    text surrounds it (the text after a replacement starts where its key's boundary held), and every
    replacement starts like its key as far as any boundary test is concerned. Site pairs of valid hosts pass,
    unless one pair's NEW is another pair's OLD.
    """
    tests = {k.goes_on for k in keys}
    for e in keys:
        if any(bool(t.match(e.old)) != bool(t.match(e.new)) for t in tests):
            return False
        for k in keys:
            if k.regex.search(e.new):
                return False
            for i in range(1, len(k.old)):
                head, tail = k.old[:i], k.old[i:]
                if e.new.endswith(head) and not e.goes_on.match(tail):
                    return False
                if e.new.startswith(tail) and k.regex.match(head + e.new):
                    return False
    return True


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    then: bytes | None = None  # a key ends here: the regex that must follow it


def _trie(keys: dict[bytes, bytes]) -> bytes:
    """A regex matching any of ``keys`` (literal -> regex that must follow it), the longest that matches.

    Written as a trie, so that the regex engine compares each byte once however many keys share it.
    """
    root = _Node()
    for literal, then in keys.items():
        node = root
        for byte in literal:
            node = node.children.setdefault(byte, _Node())
        node.then = then

    def regex(node: _Node) -> bytes:
        alternatives = [re.escape(bytes([b])) + regex(child) for b, child in sorted(node.children.items())]
        if node.then is not None:
            alternatives.append(node.then)  # ending here is tried after every longer key
        return alternatives[0] if len(alternatives) == 1 else b"(?:" + b"|".join(alternatives) + b")"

    return regex(root)


def _fewest(anchors: Iterable[bytes]) -> tuple[bytes, ...]:
    """The anchors a text must hold one of, without any that holds another (finding that one suffices)."""
    kept: list[bytes] = []
    for anchor in sorted(set(anchors), key=len):
        if not any(k in anchor for k in kept):
            kept.append(anchor)
    return tuple(kept)


class Replacer:
    """PHP ``strtr`` over a table of keys, site keys only where the host ends; counts replacements per form.

    Three ways, chosen once (``mode``), all with the same result:

    * ``by-host``: site keys only (the usual table), one host at a time (``_host_replacer``). A text that
      holds the host once (a URL field, a serialized string) is told which key is there by the two bytes
      before the host, and the key's boundary test decides. Otherwise one pass over the text *reversed*:
      reversed, every key of a host starts with the same bytes (its host and port, backwards), so the regex
      engine looks for that literal, which is fast, and tries the keys (a trie, longest first) only where
      it is; each key's boundary test becomes a lookbehind. Keys of one host overlap only where one ends
      the other (``https://h``, ``//h``), so longest-first from their common end is strtr's choice too.
    * ``chain``: explicit keys only, independent of each other (``_chain_is_strtr``): chained bytes.replace.
    * ``alternation``: anything else (explicit and site keys together, or keys that interfere): one pass of
      an alternation of every key, longest first, each with its boundary test.
    """

    def __init__(self, keys: Sequence[_Key], counts: dict[str, int]) -> None:
        self.keys = sorted(keys, key=lambda k: len(k.old), reverse=True)
        self.table = {k.old: k.new for k in self.keys}
        self.counts = counts
        self.anchors = _fewest(k.host or k.old for k in self.keys)
        # Finds an anchor in text[start:end] (every key holds one: without one there is nothing to do).
        self.find_anchor = re.compile(b"|".join(re.escape(a) for a in self.anchors)).search
        self.longest = max(len(k.old) for k in self.keys)
        self._form = {k.old: k.form for k in self.keys}
        self.replace: Callable[[bytes], bytes]  # the chosen way (called with no call in between)
        if all(k.host for k in self.keys) and _sequential_is_strtr(self.keys):
            self.mode = "by-host"
            by_host: dict[bytes, list[_Key]] = {}
            for key in self.keys:
                by_host.setdefault(key.host, []).append(key)
            by_length = sorted(by_host.items(), key=lambda h: len(h[0]), reverse=True)
            hosts = [_host_replacer(host, keys, counts) for host, keys in by_length]
            self.replace = hosts[0] if len(hosts) == 1 else functools.partial(_each, hosts)
        elif not any(k.host for k in self.keys) and _chain_is_strtr(self.keys):
            self.mode, self.replace = "chain", self._chain
        else:
            self.mode, self.replace = "alternation", self._alternation

    def __call__(self, text: bytes) -> bytes:
        return self.replace(text)

    @functools.cached_property
    def raw(self) -> re.Pattern[bytes]:
        """Where a streamed literal may not be cut: at each position the longest key that starts there,
        without its boundary test (group 1), overlapping ones too."""
        return re.compile(b"(?=(" + b"|".join(re.escape(k.old) for k in self.keys) + b"))")

    @functools.cached_property
    def _alternation_re(self) -> re.Pattern[bytes]:
        return re.compile(b"(" + b"|".join(k.regex.pattern for k in self.keys) + b")")

    def _chain(self, text: bytes) -> bytes:
        for key in self.keys:
            new = text.replace(key.old, key.new)
            if new is not text:
                grew = len(key.new) - len(key.old)
                self.counts[key.form] += (len(new) - len(text)) // grew if grew else text.count(key.old)
                text = new
        return text

    def _alternation(self, text: bytes) -> bytes:
        parts = self._alternation_re.split(text)
        if len(parts) == 1:
            return text
        found = parts[1::2]
        for old, n in Counter(found).items():
            self.counts[self._form[old]] += n
        parts[1::2] = map(self.table.__getitem__, found)
        return b"".join(parts)


def _host_replacer(host: bytes, keys: Sequence[_Key], counts: dict[str, int]) -> Callable[[bytes], bytes]:
    """strtr over the keys of one host (``Replacer`` by-host): a function, everything it needs at hand."""
    # The keys by the two bytes before the host ("//", "\\/", "2F", "2f"), longest first, as tuples.
    before: dict[bytes, list[tuple[bytes, bytes, str, int, Callable[..., object]]]] = {}
    for key in keys:
        entry = (key.old, key.new, key.form, key.host_at, key.goes_on.match)
        before.setdefault(key.old[key.host_at - 2 : key.host_at], []).append(entry)
    backwards = re.compile(b"(" + _trie({k.old[::-1]: k.behind for k in keys}) + b")").split
    backwards_new = {k.old[::-1]: k.new[::-1] for k in keys}  # reversed key -> its replacement, reversed
    backwards_form = {k.old[::-1]: k.form for k in keys}

    def replace(text: bytes) -> bytes:
        at = text.find(host)
        if at < 0:
            return text
        if text.find(host, at + 1) < 0:  # the host once: the longest key that is there, if it ends there
            for old, new, form, host_at, goes_on in before.get(text[at - 2 : at], ()):
                start = at - host_at
                if start >= 0 and text.startswith(old, start):
                    end = start + len(old)
                    if goes_on(text, end) is None:  # shorter keys end at the same place
                        counts[form] += 1
                        return b"".join((text[:start], new, text[end:]))
                    return text
            return text
        parts = backwards(text[::-1])
        if len(parts) == 1:
            return text
        found = parts[1::2]
        for old, n in Counter(found).items():
            counts[backwards_form[old]] += n
        parts[1::2] = map(backwards_new.__getitem__, found)
        return b"".join(parts)[::-1]

    return replace


def _each(replacers: Sequence[Callable[[bytes], bytes]], text: bytes) -> bytes:
    for replace in replacers:
        text = replace(text)
    return text


def _starts_on_escape_boundary(key: bytes) -> bool:
    """Whether ``key`` (escaped as in the dump) can only match where the escaped text means the key too.

    A key starting with a byte that can end an escape could match mid-escape. Two such starts are harmless:
    ``\\\\/`` (a JSON-escaped slash) matched mid-escape still reads as the key, MySQL reading ``\\/`` as
    ``/``; and ``%`` stays ``%`` after a backslash in MySQL (``\\%`` reads as ``\\%``).
    """
    return key[0] not in _ESCAPE_SECOND or key.startswith((b"\\\\/", b"%"))


@dataclass
class RewriteStats:
    bytes_in: int = 0
    bytes_out: int = 0
    fields_rewritten: int = 0
    serialized_rebuilt: int = 0
    malformed_serialized: int = 0
    seconds: float = 0.0
    peak_rss_kib: int = 0
    replacements: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FORMS, 0))  # per form
    engine: str = "python"  # which engine ran (ENGINES)

    def summary(self) -> str:
        rate = self.bytes_in / self.seconds / 1e6 if self.seconds else 0.0
        forms = ", ".join(f"{form} {n}" for form, n in self.replacements.items())
        return (
            f"rewrite ({self.engine} engine): {self.bytes_in} bytes in, {self.bytes_out} bytes out, "
            f"{self.fields_rewritten} fields rewritten, {self.serialized_rebuilt} serialized values rebuilt, "
            f"{self.malformed_serialized} malformed serialized values left as plain text, "
            f"{self.seconds:.2f} s ({rate:.1f} MB/s), peak RSS {self.peak_rss_kib / 1024:.1f} MiB; "
            f"replacements per form: {forms}"
        )


def choose_engine(engine: str | None = None) -> str:
    """The engine to run: ``engine``, else ``WPCLONE_REWRITE_ENGINE``, else the compiled one if built."""
    wanted = engine or os.environ.get(ENGINE_ENV) or ("c" if _rewrite_core else "python")
    if wanted not in ENGINES:
        raise ValueError(f"The rewrite engine must be one of {', '.join(ENGINES)}, not {wanted!r}.")
    if wanted == "c" and _rewrite_core is None:
        raise ValueError(
            "The compiled rewrite engine is not built: run scripts/setup.sh, or choose the Python engine "
            f"({ENGINE_ENV}=python)."
        )
    return wanted


class Rewriter:
    """Replaces URL pairs inside the string literals of a mysqldump stream (see the module docstring)."""

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        stream_literal_over: int = STREAM_LITERAL_OVER,
        engine: str | None = None,
    ):
        self.pairs = list(pairs)
        self.forms = replacement_table(pairs)
        self.table = {f.old.encode(): f.new.encode() for f in self.forms.values()}
        self.stream_literal_over = stream_literal_over
        self.counts = dict.fromkeys(FORMS, 0)  # replacements per form, shared by both replacers
        # The keys over decoded values (serialized strings) and over literal bodies as the dump escapes them.
        self.plain = Replacer([_Key.of(f, bytes) for f in self.forms.values()], self.counts)
        self.encoded = Replacer([_Key.of(f, mysql_encode) for f in self.forms.values()], self.counts)
        self.replace_plain = self.plain.replace
        # Rewriting a literal in its escaped form is exact when no key can match mid-escape.
        self._encoded_is_exact = all(_starts_on_escape_boundary(k.old) for k in self.encoded.keys)
        self._replace_encoded: Callable[[bytes], bytes] = (
            self.encoded.replace if self._encoded_is_exact else self._replace_decoded
        )
        self.stats = RewriteStats()
        self.engine = choose_engine(engine)
        self._core: _rewrite_core.Engine | None = None
        if self.engine == "c":
            assert _rewrite_core is not None
            forms = list(self.forms.values())
            self._core = _rewrite_core.Engine(
                _core_keys(forms, bytes),
                self.plain.anchors,
                _core_keys(forms, mysql_encode),
                self.encoded.anchors,
                self._encoded_is_exact,
                stream_literal_over,
            )
            self.replace_plain = self._core.replace_plain

    # -- plain replacement -------------------------------------------------------------------------------

    def _replace_decoded(self, body: bytes) -> bytes:
        """strtr on a literal's encoded body by way of its value (when the encoded form is not exact)."""
        return mysql_encode(self.replace_plain(mysql_decode(body)))

    # -- serialized values -------------------------------------------------------------------------------

    def rewrite_value(self, value: bytes) -> bytes:
        """Apply the rule to one decoded field value."""
        if _SERIALIZED_START.match(value):
            counted = dict(self.counts)
            try:
                return self._rebuild_whole(value)
            except _Malformed:
                self.counts.update(counted)  # what the abandoned rebuild counted was not replaced
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
        anchors = self.plain.anchors
        anchor = anchors[0] if len(anchors) == 1 else None
        find_anchor = self.plain.find_anchor
        rewrite, replace, serialized = self.rewrite_value, self.replace_plain, _SERIALIZED_START.match
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
                    if value.find(anchor, start, end) >= 0 if anchor else find_anchor(value, start, end):
                        text = value[start:end]
                        new = rewrite(text) if serialized(text) else replace(text)
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
                    if payload.find(anchor) >= 0 if anchor else find_anchor(payload):
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
            counted = dict(self.counts)
            try:
                new_value = self._rebuild_whole(value)
            except _Malformed:
                self.counts.update(counted)
                stats.malformed_serialized += 1
            else:
                if new_value != value:
                    stats.serialized_rebuilt += 1
                    stats.fields_rewritten += 1
                    return mysql_encode(new_value)
                return body
        new = self._replace_encoded(body)
        if new is not body and new != body:
            stats.fields_rewritten += 1
        return new

    # -- streaming ---------------------------------------------------------------------------------------

    def _feed(self, buf: bytes, out: list[bytes]) -> int:
        """Rewrite what ``buf`` completes (it starts outside any literal); return where the carry starts.

        Escaped quotes are masked with same-length filler; where a quote follows two backslashes or more,
        escaped backslashes are masked first (a run of backslashes always starts on an escape boundary, so
        the leftmost pairs are the escapes). Every quote left in the mask is a literal's delimiter, so whether
        an anchor is inside a literal is the parity of the quotes before it, counted from a position known
        to be outside: C-speed counting, no tokenizing in Python.
        """
        mask = buf.replace(b"\\\\", b"\1\1") if b"\\\\'" in buf else buf
        mask = mask.replace(b"\\'", b"\1\1")
        anchors = self.encoded.anchors
        search: Callable[[int], int]
        if len(anchors) == 1:
            search = functools.partial(buf.find, anchors[0])
        else:
            upcoming = [buf.find(a) for a in anchors]  # the next occurrence of each anchor

            def search(look: int) -> int:
                first = -1
                for i, known in enumerate(upcoming):
                    at = upcoming[i] = buf.find(anchors[i], look) if 0 <= known < look else known
                    if at >= 0 and (first < 0 or at < first):
                        first = at
                return first

        rewrite = self._rewrite_literal
        emitted = pos = look = 0  # pos: a position known to be outside any literal
        while (at := search(look)) >= 0:
            if not mask.count(b"'", pos, at) & 1:  # the anchor lies outside any literal: leave it
                pos, look = at, at + 1
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
        """Rewrite a long non-serialized literal as it streams; return what follows its closing quote.

        ``carry`` starts with the literal's opening quote. The body is rewritten in pieces of at most
        CHUNK_SIZE bytes, each cut by ``_cut``; the last one ends at the closing quote.
        """
        body, start = carry, 1
        out.append(b"'")
        rewritten = False
        keep = self.encoded.longest + LOOKAHEAD
        while True:
            rest = _LITERAL_REST.match(body, start)
            if rest is not None:
                tail = body[start : rest.end() - 1]
                new = self._replace_encoded(tail)
                out.append(new + b"'")
                if rewritten or new != tail:
                    self.stats.fields_rewritten += 1
                return body[rest.end() :]
            while (cut := self._cut(body, start, min(len(body) - keep, start + CHUNK_SIZE))) > start:
                piece = body[start:cut]
                new = self._replace_encoded(piece)
                rewritten = rewritten or new != piece
                out.append(new)
                self._flush(out)
                start = cut
            data = read()
            if not data:  # unterminated literal at end of input: plain replacement, as an unstreamed one
                out.append(self._replace_encoded(body[start:]))
                return b""
            self.stats.bytes_in += len(data)
            body = body[start:] + data
            start = 0

    def _cut(self, body: bytes, start: int, end: int) -> int:
        """Where to cut a streamed literal body at or before ``end``: where no key crosses the cut, none ends
        so close before it that its boundary test would read past it, and not inside an escape. Moving the
        cut back can bring an earlier key too close to it, so the search goes on until none is."""
        cut = end
        while cut > start:
            run = cut  # a run of backslashes starts on an escape boundary: an odd one ends inside an escape
            while run > start and body[run - 1] == 0x5C:
                run -= 1
            if (cut - run) & 1:
                cut -= 1
                continue
            near = max(start, cut - self.encoded.longest - LOOKAHEAD)
            for m in self.encoded.raw.finditer(body, near, cut + self.encoded.longest):
                if m.start() < cut and m.end(1) + LOOKAHEAD > cut:
                    cut = m.start()
                    break
            else:
                return cut
        return start

    def _flush(self, out: list[bytes]) -> None:
        data = b"".join(out)
        out.clear()
        self.stats.bytes_out += len(data)
        self._write(data)

    def rewrite_stream(self, src: BinaryIO, dst: BinaryIO, chunk_size: int = CHUNK_SIZE) -> RewriteStats:
        """Rewrite the dump read from ``src`` into ``dst``; returns (and keeps in ``self.stats``) counters."""
        log.info("rewrite: the %s engine runs", self.engine)
        return self._rewrite_stream(src, dst, chunk_size)

    def rewrite_bytes(self, dump: bytes) -> bytes:
        """Rewrite a piece of dump held in memory (SQL text, its literals escaped as mysqldump escapes them);
        its counters in ``self.stats``."""
        out = io.BytesIO()
        self._rewrite_stream(io.BytesIO(dump), out, CHUNK_SIZE)
        return out.getvalue()

    def _rewrite_stream(self, src: BinaryIO, dst: BinaryIO, chunk_size: int) -> RewriteStats:
        if self._core is not None:
            started = time.monotonic()
            bytes_in, bytes_out, fields, rebuilt, malformed, counts = self._core.rewrite_stream(
                src, dst, chunk_size
            )
            self.counts.update(zip(FORMS, counts, strict=True))
            self.stats = RewriteStats(
                bytes_in,
                bytes_out,
                fields,
                rebuilt,
                malformed,
                time.monotonic() - started,
                peak_rss_kib(),
                dict(self.counts),
                "c",
            )
            return self.stats
        self.stats = stats = RewriteStats()
        self.counts.update(dict.fromkeys(FORMS, 0))
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
        stats.replacements = dict(self.counts)
        stats.seconds = time.monotonic() - started
        stats.peak_rss_kib = peak_rss_kib()
        return stats


def _core_keys(
    forms: Iterable[Form], encode: Callable[[bytes], bytes]
) -> list[tuple[bytes, bytes, int, int]]:
    """The keys as the compiled engine takes them: (OLD, NEW, form index, boundary: 0 none, 1 a host's,
    2 a host's in a URL-encoded form)."""
    return [
        (
            encode(f.old.encode()),
            encode(f.new.encode()),
            FORMS.index(f.form),
            (2 if f.url_encoded else 1) if f.host else 0,
        )
        for f in forms
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wpclone.rewrite OLD NEW [OLD NEW ...] < dump.sql > out.sql``"""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or len(args) % 2 or args[0] in ("-h", "--help"):
        print(
            "usage: python -m wpclone.rewrite OLD NEW [OLD NEW ...] < dump.sql > rewritten.sql\n"
            "Give OLD NEW pairs; the dump is read from stdin and written to stdout. A pair of site URLs\n"
            "(http(s)://host[:port]) covers http://, https://, // and their JSON-escaped and URL-encoded\n"
            "forms where the host ends; any other pair is replaced as given (and JSON-escaped).",
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
