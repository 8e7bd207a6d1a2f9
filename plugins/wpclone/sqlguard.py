"""Confine a restored SQL dump to the clone's own database (issue 5, first line of defence).

:func:`guard` passes a plain SQL dump through unchanged and raises :class:`SqlRefused` at the first statement
that is not one a database dump of a single WordPress database needs. It is an **allow-list**: what
``mariadb-dump``/``mysqldump`` (and phpMyAdmin, UpdraftPlus, ``wp db export``) write for one database, and
nothing else:

* comments, and ``/*!NNNNN ... */`` / ``/*M!NNNNNN ... */`` executable comments, whose content is checked as
  code (the server runs it);
* ``SET`` of user variables and of a few session variables (character sets, time zone, sql_mode, checks,
  autocommit) to values that cannot change how the rest is parsed: no ``NO_BACKSLASH_ESCAPES`` or
  ``ANSI_QUOTES`` sql_mode, no character set in which ``\\`` can end a multi-byte character, nothing global;
* ``DROP TABLE``, ``CREATE TABLE`` (no ``DATA/INDEX DIRECTORY``, ``CONNECTION``, ``UNION``, ``SELECT``, and
  only the InnoDB, MyISAM, Aria and MEMORY engines), ``ALTER TABLE`` (same rules; ``DISABLE/ENABLE KEYS``),
  ``LOCK TABLES``/``UNLOCK TABLES``, ``START TRANSACTION``/``BEGIN``/``COMMIT``;
* ``INSERT``/``REPLACE ... VALUES`` whose values are literals only (no function calls, no sub-queries).

Nothing may name another database: a ``.`` between names is refused everywhere (``@@session.x`` aside).

The ``mariadb`` command-line client runs *client commands* found in its input (``\\! cmd``, ``system cmd``,
``\\. file``, ``source``, ``connect``, ``\\u db``, ``tee``, ``pager``, ``delimiter``, ``\\C charset``...),
even inside a dump. The scanner follows the client's own reading (``client/mysql.cc``, ``add_line``): where
a statement starts, how ``#``, ``--`` and ``/* */`` comments and quotes are read, and where it splits
statements (``;`` outside quotes and plain comments, *also* inside ``/*! */``). A backslash outside quotes
and comments is refused (it is how client commands are written), and so is any statement whose first word
is a client command; the only exception is the exact first line recent ``mariadb-dump`` writes,
``/*M!999999\\- enable the sandbox mode */``, which turns the client's sandbox mode on. Where the client and
the server could read the same bytes differently the dump is refused rather than guessed: control bytes
outside quotes, ``#``, ``-- `` and ``/*`` inside an executable comment, ``*/`` inside a quoted string within
one, an executable comment left open at the end of a statement, raw NUL bytes.

Loader contract (the second line of defence is the clone user's privileges, see the integration test): run
``mariadb --batch --binary-mode --sandbox --default-character-set=utf8mb4`` with a max-allowed-packet above
:data:`MAX_LINE`, in the target database, without ``NO_BACKSLASH_ESCAPES``/``ANSI_QUOTES`` in the server's
default sql_mode. On :class:`SqlRefused` kill the client instead of closing its input: what was yielded is
a prefix made of whole checked statements plus, for an ``INSERT``, a checked part of its values.

Memory stays flat: quoted strings and comments are scanned as they stream; only a statement that is not an
``INSERT`` is held until it is complete (at most :data:`MAX_HELD` bytes), and an ``INSERT``'s values are
passed on as they are checked.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from wpclone.errors import SqlRefused
from wpclone.rewrite import mysql_decode
from wpclone.steps.common import sentence

# The client's line buffer is max-allowed-packet: the loader must allow longer lines than we do.
MAX_LINE = 512 << 20
MAX_HELD = 16 << 20  # a statement other than INSERT held until it is complete
MAX_TOKEN = 64 << 10  # a word, number or variable (quoted strings stream)
MAX_TOKENS = 200_000  # tokens of one statement other than INSERT
KEEP_STRING = 4096  # bytes of a quoted string kept for the checks (SET values, engine names)
LOOKAHEAD = 256  # bytes a token (other than a string) needs after its start before it is read
SAFE_AT_END = frozenset({"ws", "quote", "semi"})
HEAD = 100  # characters of a statement shown in an error

SANDBOX_LINE = b"/*M!999999\\- enable the sandbox mode */"

_IDENT_CHARS = rb"0-9A-Za-z_$\x80-\xff"
_TOKEN = re.compile(
    rb"(?P<ws>[ \t\n\r\x0b\x0c]+)"
    rb"|(?P<quote>['\"`])"
    rb"|(?P<num>(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-][0-9]+)(?!["
    + _IDENT_CHARS
    + rb".]))"
    rb"|(?P<word>[" + _IDENT_CHARS + rb"]+)"
    rb"|(?P<svar>@@[" + _IDENT_CHARS + rb".]*)"
    rb"|(?P<uvar>@[" + _IDENT_CHARS + rb".]*)"
    rb"|(?P<xcom>/\*M?![0-9]*)"
    rb"|(?P<com>/\*)"
    rb"|(?P<dash>--)"
    rb"|(?P<hash>\#)"
    rb"|(?P<xend>\*/)"
    rb"|(?P<semi>;)"
    rb"|(?P<bslash>\\)"
    rb"|(?P<punct>[!-~])"
    rb"|(?P<ctrl>[\x00-\x1f\x7f])"
)
_IDENT_BYTE = re.compile(rb"[" + _IDENT_CHARS + rb"`'\"]")  # a dot after one of these names something
_INTEGER = re.compile(rb"[0-9]+(?:e[0-9]+)?")
_BODY = {
    ord("'"): re.compile(rb"[^'\\]*+(?:\\[\s\S][^'\\]*+)*+"),
    ord('"'): re.compile(rb'[^"\\]*+(?:\\[\s\S][^"\\]*+)*+'),
    ord("`"): re.compile(rb"[^`]*+"),
}
_SVAR = re.compile(rb"@@(?:(global|session|local)\.)?([A-Za-z_][0-9A-Za-z_$]*)", re.IGNORECASE)
_HEX = re.compile(rb"0x[0-9a-f]+|0b[01]+|[xbn]|_[a-z0-9]+")

# A run of INSERT values that needs no look at single tokens (the bulk of a dump). Every alternative that
# could continue past the end of the buffer demands a following byte, so a run never ends mid-token.
_VALUES_RUN = re.compile(
    rb"(?:[ \t\n\r\x0b\x0c(),+]++"
    rb"|-(?=[^-])"
    rb"|'[^'\\]*+(?:(?:\\[\s\S]|'')[^'\\]*+)*+'(?=[^'])"
    rb"|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?(?=[^" + _IDENT_CHARS + rb".'\"`@])"
    rb"|(?i:null|true|false|default)(?=[^" + _IDENT_CHARS + rb".'\"`@])"
    rb"|0x[0-9A-Fa-f]++(?=[^" + _IDENT_CHARS + rb".'\"`@])"
    rb")*+"
)


def _words(text: str) -> frozenset[bytes]:
    return frozenset(text.encode().split())


CLIENT_COMMANDS = _words(
    "? help clear connect delimiter edit ego exit go nopager notee pager print prompt quit rehash source"
    " status system tee use charset warnings nowarning sandbox"
)
CHARSETS = _words("utf8mb4 utf8mb3 utf8 latin1 ascii binary")
ENGINES = _words("innodb myisam aria memory heap")
SQL_MODES = _words(
    "NO_AUTO_VALUE_ON_ZERO STRICT_TRANS_TABLES STRICT_ALL_TABLES ERROR_FOR_DIVISION_BY_ZERO"
    " NO_ENGINE_SUBSTITUTION NO_ZERO_DATE NO_ZERO_IN_DATE ONLY_FULL_GROUP_BY NO_AUTO_CREATE_USER TRADITIONAL"
    " NO_UNSIGNED_SUBTRACTION NO_DIR_IN_CREATE PAD_CHAR_TO_FULL_LENGTH REAL_AS_FLOAT HIGH_NOT_PRECEDENCE"
    " NO_FIELD_OPTIONS NO_KEY_OPTIONS NO_TABLE_OPTIONS ALLOW_INVALID_DATES IGNORE_BAD_TABLE_OPTIONS"
    " SIMULTANEOUS_ASSIGNMENT TIME_ROUND_FRACTIONAL IGNORE_SPACE"
)
_FLAG_VARS = _words(
    "unique_checks foreign_key_checks sql_notes autocommit sql_quote_show_create check_constraint_checks"
    " sql_warnings"
)
_CHARSET_VARS = _words("character_set_client character_set_results character_set_connection")
SESSION_VARS = _FLAG_VARS | _CHARSET_VARS | _words("collation_connection time_zone sql_mode")
# Words that have no business in a table definition of a dump (files, other servers, queries).
_TABLE_DENY = {
    b"directory": "places table files outside the database's directory",
    b"connection": "connects a table to another server",
    b"union": "merges tables that may live in other databases",
    b"select": "runs a query",
    b"tablespace": "uses a tablespace outside the database",
    b"load_file": "reads a file on the database server",
    b"into": "writes outside the database",
}

_DB_WORDS = _words("database schema databases schemas")
_USER_WORDS = _words("user role users")
_PROGRAM_WORDS = _words("definer procedure function trigger event view algorithm sql aggregate or")
_INSERT_MODIFIERS = _words("low_priority delayed high_priority ignore into")
_FIRST_WORDS = _words("set drop create alter insert replace lock unlock start begin commit")
_FIRST_WORD_REASONS = {
    "use": "switches to another database",
    "grant": "changes privileges",
    "revoke": "changes privileges",
    "load": "reads a file on the database server",
    "install": "installs a server plugin",
    "uninstall": "removes a server plugin",
    "shutdown": "shuts the database server down",
    "kill": "kills database connections",
    "flush": "administers the database server",
    "reset": "administers the database server",
    "purge": "administers the database server",
    "change": "administers replication",
    "stop": "administers replication",
    "call": "calls a stored procedure",
    "select": "runs a query, which may read other databases or write files",
    "prepare": "runs dynamic SQL",
    "execute": "runs dynamic SQL",
    "handler": "reads tables directly",
    "rename": "renames tables or users",
}


@dataclass
class Token:
    kind: str  # word (lower-cased), num, str, ident (backticked), svar, uvar, punct
    value: bytes
    long: bool = False  # a string longer than KEEP_STRING (only a prefix kept)


@dataclass
class _Stmt:
    line: int = 0
    first: int = -1  # absolute offset of the first significant byte
    head: bytes = b""  # saved when the bytes are passed on before the statement is finished
    in_exec: bool = False  # inside /*! ... */
    client_started: bool = False  # the client's buffer holds something we do not treat as a token
    words: list[bytes] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)
    kind: str = ""  # "", "insert-head", "insert-values", "held"
    streaming: bool = False  # an INSERT whose values may be passed on as they are checked
    observe: bool = False  # on_value wants this INSERT's values


def _refuse(stmt: _Stmt, reason: str) -> SqlRefused:
    head = " ".join(stmt.head.decode("utf-8", "replace").split())
    if len(head) > HEAD:
        head = head[:HEAD] + "…"
    return SqlRefused(sentence(f"The dump's statement at line {stmt.line} {reason}: {head}"))


class Scanner:
    """The client's and the server's reading of a dump, one buffer at a time (see the module docstring).

    Subclasses may watch what passes (archive.py reads the site URL this way) through the ``on_*`` hooks;
    the checks run first, so a hook only ever sees allowed statements.
    """

    def __init__(self) -> None:
        self.buf = b""
        self.base = 0  # absolute offset of buf[0]
        self.pos = 0  # scan position in buf
        self.state = "code"  # code, str, com, line
        self.quote = 0  # the open quote byte in state "str"
        self.str_keep = bytearray()
        self.str_long = False
        self.str_last = 0  # the byte before the current string piece (for "*/" split across pieces)
        self.str_has_end = False  # the string holds "*/"
        self.lines = 1  # line number at self.nl_pos
        self.nl_pos = 0  # absolute offset up to which newlines are counted
        self.stmt = _Stmt()
        self.line_length = 0
        self.prev_byte = 0x20
        self.user_vars: dict[bytes, tuple[str, bytes]] = {}
        self.started = False

    # -- bookkeeping -------------------------------------------------------------------------------------

    def _line_at(self, pos: int) -> int:
        absolute = self.base + pos
        if absolute > self.nl_pos:
            self.lines += self.buf.count(b"\n", self.nl_pos - self.base, pos)
            self.nl_pos = absolute
        return self.lines

    def _mark_first(self, pos: int) -> None:
        stmt = self.stmt
        if stmt.first < 0:
            stmt.first = self.base + pos
            stmt.line = self._line_at(pos)

    def _fail(self, reason: str) -> SqlRefused:
        stmt = self.stmt
        if stmt.first >= self.base:
            start = stmt.first - self.base
            end = self.buf.find(b";", max(start, self.pos - 1))
            end = len(self.buf) if end < 0 else end + 1
            stmt.head = self.buf[start : min(end, start + 4 * HEAD)]
        elif stmt.first < 0:
            stmt.line = self._line_at(self.pos)
            stmt.head = self.buf[self.pos : self.pos + 4 * HEAD]
        return _refuse(stmt, reason)

    # -- the scan ----------------------------------------------------------------------------------------

    def feed(self, data: bytes, final: bool) -> bytes:
        """Scan ``data`` (after what came before); return the bytes that may be passed on now."""
        if b"\0" in data:
            raise SqlRefused(
                "The dump holds a raw NUL byte, which no SQL dump writes (was a binary file given?)."
            )
        self._count_line_length(data)
        self.buf = self.buf + data if self.buf else data
        if not self.started:
            if len(self.buf) < len(SANDBOX_LINE) and not final:
                return b""
            self.started = True
            if self.buf.startswith(SANDBOX_LINE):
                # The client runs "\-" (sandbox on) and sends the rest as the start of the first statement.
                self.pos = len(SANDBOX_LINE)
                self.stmt.client_started = True
        self._scan(final)
        return self._release(final)

    def _count_line_length(self, data: bytes) -> None:
        eol = data.find(b"\n")
        if eol < 0:
            self.line_length += len(data)
        else:
            self.line_length += eol
            if self.line_length <= MAX_LINE:
                self.line_length = len(data) - data.rfind(b"\n") - 1
        if self.line_length > MAX_LINE:
            raise self._fail(f"is on a line longer than {MAX_LINE >> 20} MiB")

    def _release(self, final: bool) -> bytes:
        """Pass on what is checked; keep the rest (unscanned bytes and a held statement)."""
        stmt = self.stmt
        if final or stmt.streaming or stmt.first < 0:
            upto = len(self.buf) if final else self.pos
        else:
            upto = stmt.first - self.base
        if stmt.first >= self.base and upto > stmt.first - self.base and not stmt.head:
            start = stmt.first - self.base
            stmt.head = self.buf[start : start + 4 * HEAD]
        if len(self.buf) - max(upto, 0) > MAX_HELD + MAX_TOKEN:
            raise self._fail(f"is longer than {MAX_HELD >> 20} MiB without being an INSERT")
        if upto <= 0:
            return b""
        out = self.buf[:upto]
        self._line_at(upto)
        self.prev_byte = self.buf[upto - 1]
        self.buf = self.buf[upto:]
        self.base += upto
        self.pos -= upto
        return out

    def _scan(self, final: bool) -> None:
        buf = self.buf
        end = len(buf)
        while self.pos < end:
            if self.state == "str":
                if not self._scan_string(final):
                    return
            elif self.state == "com":
                close = buf.find(b"*/", self.pos)
                if close < 0:
                    self.pos = max(self.pos, end - 1) if not final else end
                    return
                self.pos = close + 2
                self.state = "code"
            elif self.state == "line":
                eol = buf.find(b"\n", self.pos)
                if eol < 0:
                    self.pos = end
                    return
                self.pos = eol + 1
                self.state = "code"
            else:
                if self.stmt.kind == "insert-values" and not self.stmt.in_exec and not self.stmt.observe:
                    run = _VALUES_RUN.match(buf, self.pos)
                    if run is not None and run.end() > self.pos:
                        self.pos = run.end()
                        continue
                if not self._scan_token(final):
                    return
        if final:
            self._end_of_input()

    def _scan_string(self, final: bool) -> bool:
        """Go on inside a quoted string; False when more input is needed."""
        buf = self.buf
        q = self.quote
        body = _BODY[q].match(buf, self.pos)
        assert body is not None
        piece = buf[self.pos : body.end()]
        self._keep_string(piece)
        at = body.end()
        if at >= len(buf) or (buf[at] == 0x5C and at + 1 >= len(buf)):  # the string goes on (or \ at end)
            self.pos = at
            if final:
                raise self._fail("ends inside a quoted string")
            return False
        # at the closing quote (a backslash here would have been consumed with its escaped byte)
        if at + 1 >= len(buf) and not final:
            self.pos = at
            return False
        if at + 1 < len(buf) and buf[at + 1] == q:  # a doubled quote stands for itself
            self._keep_string(buf[at : at + 2])
            self.pos = at + 2
            return True
        self.pos = at + 1
        self.state = "code"
        self._string_done()
        return True

    def _keep_string(self, piece: bytes) -> None:
        if not piece:
            return
        if b"*/" in piece or (self.str_last == 0x2A and piece[0] == 0x2F):
            self.str_has_end = True
        self.str_last = piece[-1]
        room = KEEP_STRING - len(self.str_keep)
        if room > 0:
            self.str_keep += piece[:room]
        if len(piece) > room:
            self.str_long = True

    def _string_done(self) -> None:
        stmt = self.stmt
        if stmt.in_exec and self.str_has_end:
            raise self._fail("has a quoted string holding */ inside an executable comment")
        kind = "ident" if self.quote == 0x60 else "str"
        self._token(Token(kind, bytes(self.str_keep), self.str_long))

    def _scan_token(self, final: bool) -> bool:  # noqa: C901, PLR0912, PLR0915
        """Read one token in code; False when more input is needed."""
        buf = self.buf
        pos = self.pos
        m = _TOKEN.match(buf, pos)
        assert m is not None
        kind = m.lastgroup
        stop = m.end()
        # A token is only read with enough bytes after it to know it is whole (1.5e-3 cut after 1.5e).
        if not final and (stop >= len(buf) or len(buf) - pos < LOOKAHEAD) and kind not in SAFE_AT_END:
            if stop - pos > MAX_TOKEN:
                self._mark_first(pos)
                raise self._fail(f"has a word longer than {MAX_TOKEN >> 10} KiB")
            return False  # the token may go on in the next buffer
        stmt = self.stmt
        if kind == "ws":
            self.pos = stop
            return True
        if kind == "hash" or (kind == "dash" and self._dash_is_comment(stop, final)):
            if stmt.in_exec:
                raise self._fail("has a line comment inside an executable comment")
            self.state = "line"
            self.pos = stop
            return True
        if kind == "com":
            if stmt.in_exec:
                raise self._fail("opens a comment inside an executable comment")
            self.state = "com"
            self.pos = stop
            return True
        self._mark_first(pos)
        self.pos = stop
        if kind == "quote":
            self.state = "str"
            self.quote = buf[pos]
            self.str_keep = bytearray()
            self.str_long = self.str_has_end = False
            self.str_last = 0
            return True
        if kind == "semi":
            self._end_statement()
            return True
        if kind == "xcom":
            if stmt.in_exec:
                raise self._fail("nests executable comments")
            stmt.in_exec = True
            return True
        if kind == "xend" and stmt.in_exec:
            stmt.in_exec = False
            return True
        if kind == "bslash":
            raise self._fail("holds a mariadb client command (a backslash outside quotes)")
        if kind == "ctrl":
            raise self._fail(f"has the control byte 0x{buf[pos]:02x} outside quotes")
        text = buf[pos:stop]
        if kind == "num":
            before = buf[pos - 1] if pos else self.prev_byte
            if _IDENT_BYTE.match(bytes([before])):  # a.1 or `a`.1: a name, then a dot
                raise self._fail("names an object in another database")
        elif kind == "word" and _INTEGER.fullmatch(text.lower()):
            kind = "num"
        if kind == "word":
            self._token(Token("word", text.lower()))
        elif kind == "num":
            self._token(Token("num", text))
        elif kind in ("svar", "uvar"):
            self._token(Token(kind, text.lower()))
        elif text == b".":
            raise self._fail("names an object in another database")
        else:
            self._token(Token("punct", text))
        return True

    def _dash_is_comment(self, stop: int, final: bool) -> bool:
        """``--`` starts a comment before whitespace or the end of a line (server and client), and anywhere
        at the start of a statement (the client drops such lines: ``--x``)."""
        if self.stmt.first < 0 and not self.stmt.client_started:
            return True
        nxt = self.buf[stop : stop + 1]
        return not nxt or nxt in b" \t\n\r\x0b\x0c"

    # -- statements --------------------------------------------------------------------------------------

    def _token(self, tok: Token) -> None:
        stmt = self.stmt
        if stmt.kind == "insert-values":
            self._check_value(tok)
            if stmt.observe:
                self.on_value(tok)
            return
        if len(stmt.words) < 3 and tok.kind == "word":
            stmt.words.append(tok.value)
        if not stmt.tokens and tok.kind != "word":
            raise self._fail("does not start with a statement a dump needs")
        stmt.tokens.append(tok)
        if len(stmt.tokens) > MAX_TOKENS:
            raise self._fail(f"has more than {MAX_TOKENS} words")
        if len(stmt.tokens) == 1:
            self._classify_first(tok.value)
        if (
            stmt.tokens[0].value in (b"insert", b"replace")
            and tok.kind == "word"
            and tok.value
            in (
                b"values",
                b"value",
            )
        ):
            table, columns = self._check_insert_head(stmt.tokens)
            stmt.kind = "insert-values"
            stmt.streaming = True
            stmt.observe = self.on_insert(table, columns)

    def _classify_first(self, word: bytes) -> None:
        name = word.decode("ascii", "replace")
        if name in _FIRST_WORD_REASONS:
            raise self._fail(_FIRST_WORD_REASONS[name])
        if word in CLIENT_COMMANDS:
            raise self._fail(f"is the mariadb client command {name!r}, which the client would run")
        if word not in _FIRST_WORDS:
            raise self._fail("is not a statement a database dump needs")

    def _check_value(self, tok: Token) -> None:
        if tok.kind in ("str", "num"):
            return
        if tok.kind == "punct" and tok.value in (b"(", b")", b",", b"+", b"-"):
            return
        if tok.kind == "word" and (
            tok.value in (b"null", b"true", b"false", b"default") or _HEX.fullmatch(tok.value)
        ):
            return
        raise self._fail("has INSERT values that are not literal values")

    def _end_statement(self) -> None:
        stmt = self.stmt
        if stmt.in_exec:
            raise self._fail("leaves an executable comment open")
        if self.state == "str":
            raise self._fail("ends inside a quoted string")
        if stmt.tokens and stmt.kind != "insert-values":
            self._check_statement(stmt.tokens)
            self.on_statement(stmt.tokens)
        self.stmt = _Stmt()

    def _end_of_input(self) -> None:
        if self.state == "str":
            raise self._fail("ends inside a quoted string")
        if self.stmt.first >= 0 or self.stmt.tokens:
            self._end_statement()

    def _check_statement(self, toks: list[Token]) -> None:  # noqa: C901, PLR0912
        words = [t.value if t.kind == "word" else b"" for t in toks[:3]]
        first, second = words[0], words[1] if len(words) > 1 else b""
        if first == b"set":
            self._check_set(toks[1:])
        elif first in (b"insert", b"replace"):
            raise self._fail("is not a plain INSERT ... VALUES")
        elif first == b"drop":
            if second in _DB_WORDS:
                raise self._fail("drops a database")
            if second in _USER_WORDS:
                raise self._fail("drops a user or role")
            if second != b"table":
                raise self._fail("drops something other than a table")
            self._check_names(toks[2:], skip=(b"if", b"exists", b"restrict", b"cascade"))
        elif first in (b"create", b"alter"):
            verb = first.decode()
            if second in _DB_WORDS:
                raise self._fail(f"{verb}s a database")
            if second in _USER_WORDS:
                raise self._fail(f"{verb}s a user or role")
            if second in _PROGRAM_WORDS:
                raise self._fail(f"{verb}s a stored program or view, which runs with other privileges")
            if second == b"server":
                raise self._fail(f"{verb}s a link to another server")
            if second != b"table":
                raise self._fail(f"{verb}s something other than a table")
            self._check_table_body(toks[2:])
        elif first == b"lock":
            if second != b"tables":
                raise self._fail("is not LOCK TABLES")
            self._check_names(toks[2:], skip=(b"read", b"write", b"local", b"low_priority", b"as"))
        elif first == b"unlock":
            self._expect(toks, [b"unlock", b"tables"])
        elif first == b"start":
            self._expect(toks, [b"start", b"transaction"])
        elif first in (b"begin", b"commit"):
            if len(toks) > 2 or (len(toks) == 2 and toks[1].value != b"work"):
                raise self._fail("is not a plain BEGIN or COMMIT")
        else:  # classified on the first word already; kept as a safety net
            raise self._fail("is not a statement a database dump needs")

    def _expect(self, toks: list[Token], words: list[bytes]) -> None:
        if [t.value if t.kind == "word" else None for t in toks] != words:
            raise self._fail("is not a statement a database dump needs")

    def _check_names(self, toks: list[Token], skip: tuple[bytes, ...]) -> None:
        for t in toks:
            if t.kind == "ident" or (t.kind == "punct" and t.value == b","):
                continue
            if t.kind == "word":
                continue  # a name or one of ``skip``; a name can only be of this database (no dots)
            raise self._fail("is not a plain statement on tables of this database")
        del skip

    def _check_insert_head(self, toks: list[Token]) -> tuple[bytes, list[bytes]]:
        """Check ``INSERT [modifiers] [INTO] name [(columns)] VALUES``; return the name and the columns."""
        table = b""
        columns: list[bytes] = []
        depth = 0
        for t in toks[1:-1]:
            if t.kind == "punct" and t.value in (b"(", b")", b","):
                depth += {b"(": 1, b")": -1, b",": 0}[t.value]
                if table and depth in (0, 1):
                    continue
            elif t.kind == "word" and not table and t.value in _INSERT_MODIFIERS:
                continue
            elif t.kind in ("word", "ident"):
                if not table:
                    table = t.value
                elif depth == 1:
                    columns.append(t.value)
                else:
                    raise self._fail("is not a plain INSERT ... VALUES")
                continue
            raise self._fail("is not a plain INSERT ... VALUES")
        if not table or depth:
            raise self._fail("is not a plain INSERT ... VALUES")
        return table, columns

    # -- hooks for subclasses --------------------------------------------------------------------------------

    def on_statement(self, tokens: list[Token]) -> None:
        """A complete allowed statement other than an INSERT."""

    def on_insert(self, table: bytes, columns: list[bytes]) -> bool:
        """An INSERT into ``table`` starts its values; return True to get them through :meth:`on_value`."""
        return False

    def on_value(self, tok: Token) -> None:
        """One token of the values of an INSERT that :meth:`on_insert` asked for."""

    def _check_table_body(self, toks: list[Token]) -> None:
        for i, t in enumerate(toks):
            if t.kind in ("svar", "uvar"):
                raise self._fail("uses a variable in a table definition")
            if t.kind != "word":
                continue
            if t.value in _TABLE_DENY:
                raise self._fail(_TABLE_DENY[t.value])
            if t.value in (b"engine", b"type") and i + 1 < len(toks):
                j = i + 1
                if toks[j].kind == "punct" and toks[j].value == b"=":
                    j += 1
                if j < len(toks) and toks[j].kind in ("word", "str", "ident"):
                    engine = toks[j].value.lower()
                    if engine not in ENGINES:
                        raise self._fail(f"uses the storage engine {engine.decode('utf-8', 'replace')}")

    # -- SET -----------------------------------------------------------------------------------------------

    def _check_set(self, toks: list[Token]) -> None:  # noqa: C901, PLR0912
        i = 0
        n = len(toks)

        def word(k: int) -> bytes:
            return toks[k].value if k < n and toks[k].kind == "word" else b""

        if word(0) in (b"global", b"persist", b"persist_only"):
            raise self._fail("changes a global server setting")
        if word(0) in (b"password", b"role", b"default"):
            raise self._fail("changes passwords or roles")
        if word(0) in (b"session", b"local"):
            i = 1
        while True:
            if i >= n:
                raise self._fail("is an incomplete SET")
            w = word(i)
            if w == b"names" or (w == b"character" and word(i + 1) == b"set") or w == b"charset":
                i += 2 if w == b"character" else 1
                if i >= n:
                    raise self._fail("is an incomplete SET")
                self._check_charset(toks[i])
                i += 1
                if word(i) == b"collate":
                    if i + 1 >= n:
                        raise self._fail("is an incomplete SET")
                    self._check_collation(toks[i + 1])
                    i += 2
            else:
                target = self._set_target(toks, i)
                i = target[1]
                if i < n and toks[i].kind == "punct" and toks[i].value == b":":
                    i += 1
                if i >= n or toks[i].kind != "punct" or toks[i].value != b"=":
                    raise self._fail("is not a simple SET of a variable")
                i += 1
                if i < n and toks[i].kind == "punct" and toks[i].value == b"-":
                    i += 1
                    if i >= n or toks[i].kind != "num":
                        raise self._fail("is not a simple SET of a variable")
                if i >= n or toks[i].kind not in ("word", "str", "num", "uvar", "svar"):
                    raise self._fail("sets a variable to an expression")
                self._assign(target[0], toks[i])
                i += 1
            if i == n:
                return
            if toks[i].kind != "punct" or toks[i].value != b",":
                raise self._fail("sets a variable to an expression")
            i += 1

    def _set_target(self, toks: list[Token], i: int) -> tuple[tuple[str, bytes], int]:
        t = toks[i]
        if t.kind == "uvar":
            if len(t.value) < 2:
                raise self._fail("uses a quoted user variable name")
            return ("user", t.value[1:]), i + 1
        if t.kind == "svar":
            return ("sys", self._sysvar(t.value)), i + 1
        if t.kind == "word":
            if t.value == b"global":
                raise self._fail("changes a global server setting")
            if t.value in (b"session", b"local") and i + 1 < len(toks) and toks[i + 1].kind == "word":
                t = toks[i + 1]
                i += 1
            return ("sys", t.value), i + 1
        raise self._fail("is not a simple SET of a variable")

    def _sysvar(self, text: bytes) -> bytes:
        m = _SVAR.fullmatch(text)
        if m is None:
            raise self._fail("uses a system variable this guard does not know")
        if m.group(1) and m.group(1).lower() == b"global":
            raise self._fail("reads or changes a global server setting")
        return m.group(2).lower()

    def _assign(self, target: tuple[str, bytes], value: Token) -> None:
        scope, name = target
        if scope == "user":
            if value.kind == "svar":
                self.user_vars[name] = ("sys", self._sysvar(value.value))
            elif value.kind == "uvar":
                self.user_vars[name] = self.user_vars.get(value.value[1:], ("unset", b""))
            else:
                self.user_vars[name] = ("lit", value.kind.encode() + b":" + value.value)
            return
        if name not in SESSION_VARS:
            raise self._fail(
                f"sets the variable {name.decode('utf-8', 'replace')}, which a dump does not need"
            )
        # Restoring what the session had (saved with SET @x=@@name) is always fine.
        if value.kind == "svar" and self._sysvar(value.value) == name:
            return
        if value.kind == "uvar":
            origin = self.user_vars.get(value.value[1:], ("unset", b""))
            if origin == ("sys", name):
                return
            if origin[0] != "lit":
                raise self._fail(f"sets {name.decode()} from a variable that does not hold its saved value")
            kind, _, raw = origin[1].partition(b":")
            value = Token(kind.decode(), raw)
        self._check_session_value(name, value)

    def _check_session_value(self, name: bytes, value: Token) -> None:
        if name in _CHARSET_VARS:
            self._check_charset(value)
        elif name == b"collation_connection":
            self._check_collation(value)
        elif name == b"sql_mode":
            modes = value.value.upper() if value.kind == "str" else b"?"
            bad = [m for m in modes.split(b",") if m and m.strip() not in SQL_MODES]
            if value.kind != "str" or bad:
                raise self._fail("sets an sql_mode that changes how the dump is read")
        elif name == b"time_zone":
            if value.kind not in ("str", "word"):
                raise self._fail("sets an invalid time zone")
        elif value.kind not in ("num", "word") or value.value.lower() not in (
            b"0",
            b"1",
            b"on",
            b"off",
            b"true",
            b"false",
            b"default",
        ):
            raise self._fail(f"sets {name.decode()} to a value a dump does not need")

    def _check_charset(self, tok: Token) -> None:
        name = mysql_decode(tok.value).lower() if tok.kind == "str" else tok.value.lower()
        if tok.kind not in ("word", "str", "ident") or name not in CHARSETS:
            raise self._fail("switches to a character set in which quotes could be read differently")

    def _check_collation(self, tok: Token) -> None:
        name = mysql_decode(tok.value).lower() if tok.kind == "str" else tok.value.lower()
        if tok.kind not in ("word", "str", "ident") or name.split(b"_")[0] not in CHARSETS:
            raise self._fail("switches to a collation of a character set this guard does not allow")


def guard(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Pass a plain SQL dump through unchanged; raise :class:`SqlRefused` at the first refused statement.

    Every byte yielded is checked; a statement other than an INSERT is yielded only once it is complete.
    """
    scanner = Scanner()
    for chunk in chunks:
        if not chunk:
            continue
        out = scanner.feed(chunk, final=False)
        if out:
            yield out
    out = scanner.feed(b"", final=True)
    if out:
        yield out


class GuardedReader(io.RawIOBase):
    """A readable stream of ``src`` checked by :func:`guard` (for code that reads a file object)."""

    def __init__(self, src: BinaryIO, chunk_size: int = 1 << 20) -> None:
        super().__init__()
        self._chunks = guard(iter(lambda: src.read(chunk_size), b""))
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._pending = nxt
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def check_dump(src: BinaryIO, chunk_size: int = 1 << 20) -> int:
    """Read a whole dump through :func:`guard`; return its size in bytes (raises :class:`SqlRefused`)."""
    return sum(len(piece) for piece in guard(iter(lambda: src.read(chunk_size), b"")))
