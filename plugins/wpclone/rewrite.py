"""Serialization-safe URL rewrite over mysqldump output (DESIGN §6). Implementation in progress."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO


@dataclass
class RewriteStats:
    bytes_in: int = 0
    bytes_out: int = 0
    fields_rewritten: int = 0
    serialized_rebuilt: int = 0
    malformed_serialized: int = 0


class Rewriter:
    """Replaces URL pairs inside the string literals of a mysqldump stream."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    def rewrite_stream(self, src: BinaryIO, dst: BinaryIO) -> RewriteStats:
        raise NotImplementedError
