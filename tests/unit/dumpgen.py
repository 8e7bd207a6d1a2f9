"""Generators of very large dumps written to stdout, for the flat-memory tests (run in a subprocess)."""

from __future__ import annotations

import sys

from wpclone.rewrite import mysql_encode


def long_line(url: str, rows: int) -> None:
    """One extended INSERT line of ``rows`` rows of ~1 KB: a plain URL field and a serialized one."""
    serialized = b's:1:"u";s:%d:"%s";' % (len(url), url.encode())
    row = (
        b"(1,'"
        + url.encode()
        + b"/"
        + b"y" * 900
        + b"','"
        + mysql_encode(b"a:1:{" + serialized + b"}")
        + b"')"
    )
    write = sys.stdout.buffer.write
    write(b"INSERT INTO `wp_posts` VALUES ")
    for _ in range(rows - 1):
        write(row + b",")
    write(row + b";\n")


def long_field(url: str, megabytes: int) -> None:
    """One plain field of ``megabytes`` MB holding 100 URLs per MB."""
    block = (b"z" * 10_000 + url.encode() + b"\\n") * 100
    write = sys.stdout.buffer.write
    write(b"INSERT INTO `t` VALUES ('")
    for _ in range(megabytes):
        write(block)
    write(b"');\n")
