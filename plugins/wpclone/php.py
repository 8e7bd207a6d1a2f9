"""PHP data formats written from Python (seed data, tests, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PhpObject:
    """An object to serialize: ``O:<len>:"<class>":<n>:{...}``."""

    cls: str
    props: dict[str, Any] = field(default_factory=dict)


def php_serialize(value: Any) -> str:
    """PHP ``serialize()`` of a Python value; string lengths are UTF-8 byte lengths, as PHP counts them."""
    if value is None:
        return "N;"
    if isinstance(value, bool):
        return f"b:{int(value)};"
    if isinstance(value, int):
        return f"i:{value};"
    if isinstance(value, float):
        return f"d:{value!r};"
    if isinstance(value, str):
        return f's:{len(value.encode())}:"{value}";'
    if isinstance(value, list):
        value = dict(enumerate(value))
    if isinstance(value, dict):
        body = "".join(php_serialize(k) + php_serialize(v) for k, v in value.items())
        return f"a:{len(value)}:{{{body}}}"
    if isinstance(value, PhpObject):
        body = "".join(php_serialize(k) + php_serialize(v) for k, v in value.props.items())
        return f'O:{len(value.cls.encode())}:"{value.cls}":{len(value.props)}:{{{body}}}'
    raise TypeError(f"cannot serialize {type(value).__name__}")
