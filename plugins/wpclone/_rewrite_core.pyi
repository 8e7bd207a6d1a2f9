"""Types of the compiled rewrite engine (_rewrite_core.c); wpclone.rewrite is its only caller."""

from typing import BinaryIO

# (OLD, NEW, form index in wpclone.rewrite.FORMS, boundary: 0 none, 1 a host's, 2 a host's URL-encoded)
Key = tuple[bytes, bytes, int, int]

class Engine:
    def __init__(
        self,
        plain_keys: list[Key],
        plain_anchors: tuple[bytes, ...],
        encoded_keys: list[Key],
        encoded_anchors: tuple[bytes, ...],
        encoded_is_exact: bool,
        stream_literal_over: int,
    ) -> None: ...
    def rewrite_stream(
        self, src: BinaryIO, dst: BinaryIO, chunk_size: int, /
    ) -> tuple[int, int, int, int, int, tuple[int, int, int, int, int, int]]:
        """(bytes in, bytes out, fields rewritten, serialized rebuilt, malformed, counts per form)"""
    def replace_plain(self, value: bytes, /) -> bytes: ...
    def counts(self) -> tuple[int, int, int, int, int, int]: ...
