"""PHP itself as the test oracle: a persistent ``php`` process answering batched JSON requests.

* ``reserialize(values)`` -> ``serialize(unserialize(v))`` for each value, or None where unserialize fails;
* ``strtr(values, pairs)`` -> PHP's ``strtr(v, pairs)`` for each value.

Also a small PHP serializer for test structures (``serialize``), checked against PHP by the tests.
"""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

_WORKER = r"""
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
    }
    echo json_encode($out), "\n";
}
"""


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

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


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
