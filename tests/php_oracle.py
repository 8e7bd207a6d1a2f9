"""PHP itself as the test oracle: a persistent ``php`` process answering batched JSON requests.

* ``reserialize(values)`` -> ``serialize(unserialize(v))`` for each value, or None where unserialize fails;
* ``strtr(values, pairs)`` -> PHP's ``strtr(v, pairs)`` for each value;
* ``rule(values, pairs)`` -> the URL rule (docs/rewrite.md) applied to each value as plain text, by
  ``PHP_RULE``: an implementation of its own, written in PHP from the rule's text (the forms a pair of site
  URLs makes, the host boundary as a PCRE lookahead, explicit pairs), applied with one
  ``preg_replace_callback`` over an alternation of every key, longest first (strtr's choice at each position);
* ``rule_counts(values, pairs)`` -> per value, how many replacements of each form the rule makes.

Also a small PHP serializer for test structures (``serialize``), checked against PHP by the tests.
"""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

# The rule in PHP: rule_keys($pairs) makes the table [OLD => [NEW, form, lookahead]]; rule_apply() applies it.
PHP_RULE = r"""
function rule_site($url) {
    // An origin: http(s)://host[:port], host in DNS labels; null for anything else.
    $label = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?';
    if (!preg_match("~^(https?)://((?:$label\.)*$label)(?::([0-9]{1,5}))?\z~", $url, $m)) { return null; }
    return ['scheme' => $m[1], 'host' => $m[2], 'port' => $m[3] ?? ''];
}
function rule_keys($pairs) {
    $goes_on = '[A-Za-z0-9_-]|\.[A-Za-z0-9]|:[0-9]';
    $site = []; $explicit = [];
    foreach ($pairs as [$old, $new]) {
        $o = rule_site($old); $n = rule_site($new);
        if ($o === null || $n === null) {
            $explicit[$old] = [$new, 'explicit', ''];
            $explicit[str_replace('/', '\/', $old)] = [str_replace('/', '\/', $new), 'explicit', ''];
            continue;
        }
        // [form of http(s)://, form of //, "://", "//", the port's ":", lookahead]
        $encodings = [
            [null, 'protocol-relative', '://', '//', ':', $goes_on],
            ['json', 'json', ':\/\/', '\/\/', ':', $goes_on],
            ['url-encoded', 'url-encoded', '%3A%2F%2F', '%2F%2F', '%3A', "$goes_on|%3[Aa][0-9]"],
            ['url-encoded', 'url-encoded', '%3a%2f%2f', '%2f%2f', '%3a', "$goes_on|%3[Aa][0-9]"],
        ];
        foreach ($encodings as [$schemed, $relative, $sep, $slashes, $colon, $look]) {
            $h = $o['host'] . ($o['port'] !== '' ? $colon . $o['port'] : '');
            $nh = $n['host'] . ($n['port'] !== '' ? $colon . $n['port'] : '');
            foreach (['https', 'http'] as $scheme) {
                $site[$scheme . $sep . $h] = [$n['scheme'] . $sep . $nh, $schemed ?? $scheme, $look];
            }
            $site[$slashes . $h] = [$slashes . $nh, $relative, $look];
        }
    }
    $keys = array_merge($site, $explicit);
    foreach ($keys as $k => $v) { if ((string) $k === $v[0]) { unset($keys[$k]); } }
    return $keys;
}
function rule_apply($value, $keys, &$counts = null) {
    if (!$keys) { return $value; }
    $olds = array_map('strval', array_keys($keys));
    usort($olds, fn($a, $b) => strlen($b) <=> strlen($a));
    $alts = array_map(
        fn($k) => preg_quote($k, '~') . ($keys[$k][2] !== '' ? '(?!' . $keys[$k][2] . ')' : ''), $olds
    );
    return preg_replace_callback('~' . implode('|', $alts) . '~s', function ($m) use ($keys, &$counts) {
        $key = $keys[$m[0]];
        if (is_array($counts)) { $counts[$key[1]] = ($counts[$key[1]] ?? 0) + 1; }
        return $key[0];
    }, $value);
}
"""

_WORKER = (
    PHP_RULE
    + r"""
while (($line = fgets(STDIN)) !== false) {
    $req = json_decode($line, true);
    $values = array_map('base64_decode', $req['values']);
    $out = [];
    if ($req['op'] === 'reserialize') {
        foreach ($values as $v) {
            $x = @unserialize($v);
            $out[] = ($x === false && $v !== 'b:0;') ? null : base64_encode(serialize($x));
        }
    } elseif ($req['op'] === 'strtr') {
        $pairs = [];
        foreach ($req['pairs'] as $p) { $pairs[base64_decode($p[0])] = base64_decode($p[1]); }
        foreach ($values as $v) { $out[] = base64_encode(strtr($v, $pairs)); }
    } elseif ($req['op'] === 'rule' || $req['op'] === 'rule_counts') {
        $keys = rule_keys(array_map(fn($p) => [base64_decode($p[0]), base64_decode($p[1])], $req['pairs']));
        foreach ($values as $v) {
            $counts = [];
            $r = rule_apply($v, $keys, $counts);
            $out[] = $req['op'] === 'rule' ? base64_encode($r) : base64_encode(json_encode((object) $counts));
        }
    }
    echo json_encode($out), "\n";
}
"""
)


class PhpOracle:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["php", "-d", "memory_limit=1G", "-r", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _ask(self, op: str, values: list[bytes], **extra: Any) -> list[Any]:
        assert self.proc.stdin and self.proc.stdout
        request = {"op": op, "values": [base64.b64encode(v).decode() for v in values], **extra}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return [None if a is None else base64.b64decode(a) for a in answer]

    def reserialize(self, values: list[bytes]) -> list[bytes | None]:
        return self._ask("reserialize", values)

    def strtr(self, values: list[bytes], pairs: list[tuple[bytes, bytes]]) -> list[bytes]:
        encoded = [[base64.b64encode(o).decode(), base64.b64encode(n).decode()] for o, n in pairs]
        return self._ask("strtr", values, pairs=encoded)

    def rule(self, values: list[bytes], pairs: list[tuple[str, str]]) -> list[bytes]:
        return self._ask("rule", values, pairs=_encode_pairs(pairs))

    def rule_counts(self, values: list[bytes], pairs: list[tuple[str, str]]) -> list[dict[str, int]]:
        return [json.loads(c) for c in self._ask("rule_counts", values, pairs=_encode_pairs(pairs))]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def _encode_pairs(pairs: list[tuple[str, str]]) -> list[list[str]]:
    return [[base64.b64encode(o.encode()).decode(), base64.b64encode(n.encode()).decode()] for o, n in pairs]


# -- PHP values as Python structures -----------------------------------------------------------------------


@dataclass(frozen=True)
class PhpObject:
    class_name: bytes
    props: tuple[tuple[bytes, Any], ...] = field(default=())


@dataclass(frozen=True)
class Nested:
    """A string whose content is itself serialized ``inner``."""

    inner: Any


@dataclass(frozen=True)
class Raw:
    """Serialized text written as is (references, floats)."""

    text: bytes


def serialize(value: Any) -> bytes:
    if value is None:
        return b"N;"
    if isinstance(value, bool):
        return b"b:%d;" % value
    if isinstance(value, int):
        return b"i:%d;" % value
    if isinstance(value, bytes):
        return b's:%d:"%s";' % (len(value), value)
    if isinstance(value, Nested):
        return serialize(serialize(value.inner))
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, list):
        return serialize(dict(enumerate(value)))
    if isinstance(value, dict):
        body = b"".join(serialize(k) + serialize(v) for k, v in value.items())
        return b"a:%d:{%s}" % (len(value), body)
    if isinstance(value, PhpObject):
        body = b"".join(serialize(k) + serialize(v) for k, v in value.props)
        return b'O:%d:"%s":%d:{%s}' % (len(value.class_name), value.class_name, len(value.props), body)
    raise TypeError(value)


def map_strings(value: Any, f: Any) -> Any:
    """The structure with ``f`` applied to every string, array keys included (the rewrite rule)."""
    if isinstance(value, bytes):
        return f(value)
    if isinstance(value, Nested):
        return Nested(map_strings(value.inner, f))
    if isinstance(value, list):
        return [map_strings(v, f) for v in value]
    if isinstance(value, dict):
        return {map_strings(k, f): map_strings(v, f) for k, v in value.items()}
    if isinstance(value, PhpObject):
        return PhpObject(
            value.class_name, tuple((map_strings(k, f), map_strings(v, f)) for k, v in value.props)
        )
    return value
