"""The backup archive: a round trip, reading the site from a bare dump, and every refusal of a hostile one."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from wpclone.archive import Backup, Limits, Manifest, content_digest, open_backup, read_site, write_backup
from wpclone.errors import ArchiveError, SqlRefused, StepError

URL = "https://blog.example.com"
DUMP = (
    b"-- dump\n/*!40101 SET NAMES utf8mb4 */;\n"
    b"DROP TABLE IF EXISTS `wpx_options`;\n"
    b"CREATE TABLE `wpx_options` (\n  `option_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n"
    b"  `option_name` varchar(191) NOT NULL DEFAULT '',\n  `option_value` longtext NOT NULL,\n"
    b"  `autoload` varchar(20) NOT NULL DEFAULT 'yes',\n  PRIMARY KEY (`option_id`)\n"
    b") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
    b"INSERT INTO `wpx_options` VALUES (1,'cron','a:1:{s:3:\\\"x,y\\\";i:1;}','yes'),"
    b"(2,'siteurl','https://blog.example.com','yes'),(3,'home','https://home.example.com','yes');\n"
    b"INSERT INTO `wpx_posts` VALUES (1,'INSERT INTO `wpx_options` VALUES (9,\\'siteurl\\',\\'http://evil\\')');\n"
)


def tree(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """path -> (mode, bytes, or a link's target, or None for a directory), no symlinks followed."""
    out: dict[str, tuple[int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = (0, os.readlink(path))
            else:
                out[rel] = (stat.S_IMODE(st.st_mode), path.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return out


@pytest.fixture
def content(tmp_path: Path) -> Path:
    """A wp-content with links inside (relative, absolute, to a directory) and a parent theme linked out of
    it into ``<tmp>/core`` (Debian's layout), which the backups below allow (``ROOTS``)."""
    root = tmp_path / "site" / "wp-content"
    (root / "uploads" / "2026" / "11").mkdir(parents=True)
    (root / "plugins" / "hello").mkdir(parents=True)
    (root / "themes" / "child").mkdir(parents=True)
    (root / "uploads" / "2026" / "11" / "photo.jpg").write_bytes(os.urandom(300_000))
    (root / "plugins" / "hello" / "hello.php").write_text("<?php // hello\n")
    (root / "plugins" / "hello" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "plugins" / "hello" / "run.sh", 0o750)
    os.chmod(root / "uploads" / "2026", 0o751)
    (root / "index.php").write_text("<?php // Silence is golden.\n")
    (root / "themes" / "child" / "style.css").write_text("/* Template: parent */\n")
    (root / "empty").mkdir()
    (root / "link-in").symlink_to("index.php")
    (root / "link-abs").symlink_to(root / "plugins" / "hello" / "hello.php")
    (root / "uploads" / "current").symlink_to("2026/11")
    parent = tmp_path / "core" / "themes" / "parent"
    (parent / "assets").mkdir(parents=True)
    (parent / "style.css").write_text("/* Theme Name: Parent */\n")
    (parent / "assets" / "logo.svg").write_text("<svg/>")
    os.chmod(parent / "assets", 0o750)
    (parent / "logo.svg").symlink_to("assets/logo.svg")  # inside the followed tree: stays a link
    (root / "themes" / "parent").symlink_to(parent)
    os.mkfifo(root / "a-fifo")
    return root


def roots(tmp_path: Path) -> list[str]:
    return [str(tmp_path / "core")]


def backup(
    tmp_path: Path,
    content: Path | None,
    compression: str = "gzip",
    dump: bytes = DUMP,
    link_roots: list[str] | None = None,
) -> Path:
    dest = tmp_path / "out" / "backup.tar.gz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_backup(
        dest,
        dump=io.BytesIO(dump),
        content_dir=content,
        site_url=URL,
        table_prefix="wpx_",
        wordpress_version="6.8.3",
        clone_id="c-1",
        compression=compression,  # type: ignore[arg-type]
        link_roots=roots(tmp_path) if link_roots is None else link_roots,
    )
    return dest


# -- round trip ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_round_trip_keeps_dump_content_and_modes(
    tmp_path: Path, content: Path, compression: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        dest = backup(tmp_path, content, compression)
    assert "skipped the special file wp-content/a-fifo" in caplog.text
    assert sorted(p.name for p in dest.parent.iterdir()) == ["backup.tar.gz", "backup.tar.gz.sha256"]
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    assert (dest.parent / "backup.tar.gz.sha256").read_text() == f"{digest}  backup.tar.gz\n"
    magic = dest.read_bytes()[:4]
    assert magic.startswith(b"\x1f\x8b") if compression == "gzip" else magic == b"\x28\xb5\x2f\xfd"

    opened = open_backup(dest, tmp_path / "work")
    assert isinstance(opened, Backup)
    assert (opened.site_url, opened.table_prefix, opened.sql_gzipped) == (URL, "wpx_", True)
    assert gzip.decompress(opened.sql_path.read_bytes()) == DUMP
    assert opened.manifest is not None and opened.manifest.clone_id == "c-1"
    assert opened.manifest.wordpress_version == "6.8.3" and opened.manifest.content is not None
    assert opened.content_dir == tmp_path / "work" / "wp-content"
    # Links inside come back as relative links; the parent theme, linked out of wp-content under an allowed
    # root, comes back as the directory it points to (its own inner link still a link); the FIFO is gone.
    want = {k: v for k, v in tree(content).items() if k != "a-fifo"}
    want["link-abs"] = (0, "plugins/hello/hello.php")
    del want["themes/parent"]
    want.update({f"themes/parent/{k}": v for k, v in tree(tmp_path / "core" / "themes" / "parent").items()})
    want["themes/parent"] = (stat.S_IMODE(os.stat(content / "themes" / "parent").st_mode), None)
    assert tree(opened.content_dir) == want
    assert (opened.content_dir / "themes" / "parent" / "logo.svg").read_text() == "<svg/>"
    assert (opened.manifest.content.files, opened.manifest.content.links) == (7, 4)


def test_a_link_out_of_wp_content_to_no_allowed_root_fails_the_backup(tmp_path: Path, content: Path) -> None:
    with pytest.raises(StepError) as err:
        backup(tmp_path, content, link_roots=[])
    message = str(err.value)
    assert "wp-content/themes/parent" in message and str(tmp_path / "core" / "themes" / "parent") in message
    assert "content_link_roots" in message and message.endswith(".")
    assert list((tmp_path / "out").iterdir()) == []  # no archive, no partial file


def test_content_digest_is_order_independent_and_sensitive() -> None:
    a = [("a", 0o644, 1, "x"), ("b/c", 0o600, 2, "y")]
    assert content_digest(a) == content_digest(list(reversed(a)))
    assert content_digest(a) != content_digest([("a", 0o600, 1, "x"), ("b/c", 0o600, 2, "y")])
    links = [("l", "a"), ("m", "b/c")]
    assert content_digest(a, links) == content_digest(a, list(reversed(links)))
    assert content_digest(a, links) != content_digest(a, [("l", "b/c"), ("m", "a")])
    assert content_digest(a, links) != content_digest(a)
    # Without links, the digest is what archives written before links were allowed carry.
    old = hashlib.sha256(b"".join(json.dumps(list(e)).encode() + b"\n" for e in sorted(a))).hexdigest()
    assert content_digest(a) == old


def test_database_only_backup(tmp_path: Path) -> None:
    opened = open_backup(backup(tmp_path, None), tmp_path / "work")
    assert opened.content_dir is None and opened.manifest is not None and opened.manifest.content is None


def test_write_is_atomic_when_the_dump_fails(tmp_path: Path, content: Path) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: memoryview) -> int:  # type: ignore[override]
            raise OSError(5, "dump died")

    dest = tmp_path / "out" / "b.tar.gz"
    dest.parent.mkdir()
    with pytest.raises(ArchiveError, match="Cannot write the backup"):
        write_backup(
            dest,
            dump=Broken(),  # type: ignore[arg-type]
            content_dir=content,
            site_url=URL,
            table_prefix="wp_",
            wordpress_version=None,
            clone_id=None,
        )
    assert list(dest.parent.iterdir()) == []


def test_kind_is_told_by_magic_bytes_not_name(tmp_path: Path, content: Path) -> None:
    dest = backup(tmp_path, content)
    disguised = dest.with_name("backup.sql")
    dest.rename(disguised)
    assert open_backup(disguised, tmp_path / "work").manifest is not None


# -- bare dumps and archives without a manifest --------------------------------------------------------------


def test_bare_sql_and_sql_gz_read_the_site_from_the_dump(tmp_path: Path) -> None:
    plain = tmp_path / "dump.bin"
    plain.write_bytes(DUMP)
    packed = tmp_path / "dump.tar"  # the name lies
    packed.write_bytes(gzip.compress(DUMP))
    for src, gz in ((plain, False), (packed, True)):
        opened = open_backup(src, tmp_path / f"w-{gz}")
        assert (opened.site_url, opened.table_prefix, opened.sql_gzipped) == (URL, "wpx_", gz)
        assert opened.sql_path == src and opened.manifest is None and opened.content_dir is None


def test_home_is_the_fallback_and_no_row_is_a_sentence(tmp_path: Path) -> None:
    no_siteurl = DUMP.replace(b"'siteurl'", b"'blogname'")
    assert read_site(io.BytesIO(no_siteurl)) == ("https://home.example.com", "wpx_")
    nothing = no_siteurl.replace(b"'home'", b"'other'")
    with pytest.raises(ArchiveError, match="no siteurl or home row"):
        read_site(io.BytesIO(nothing))


def test_site_is_read_from_long_extended_inserts_and_stops_early() -> None:
    rows = b",".join(b"(%d,'opt_%d','%s','yes')" % (i, i, b"v" * 200) for i in range(10, 20_000))
    dump = DUMP.replace(b"VALUES (1,'cron'", b"VALUES " + rows + b",(1,'cron'")
    big_tail = b"INSERT INTO `wpx_posts` VALUES " + b",".join([b"(1,'x')"] * 100_000) + b";\n"

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, n: int | None = -1) -> bytes:
            data = super().read(n)
            self.read_bytes += len(data)
            return data

    src = Counting(dump + big_tail * 30)
    assert read_site(src) == (URL, "wpx_")
    assert src.read_bytes < len(dump) + (2 << 20)


def test_multisite_prefers_the_network_options_table() -> None:
    sub = DUMP.replace(b"wpx_options", b"wpx_2_options").replace(URL.encode(), b"https://sub.example.com")
    assert read_site(io.BytesIO(sub + DUMP)) == (URL, "wpx_")


def test_reading_the_site_also_refuses_a_hostile_dump() -> None:
    with pytest.raises(SqlRefused, match="switches to another database"):
        read_site(io.BytesIO(b"USE mysql;\n" + DUMP))


def test_zip_without_manifest(tmp_path: Path) -> None:
    src = tmp_path / "b.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("database.sql", DUMP)
        zf.writestr("wp-content/", b"")
        zf.writestr("wp-content/uploads/a.txt", b"hello")
    opened = open_backup(src, tmp_path / "work")
    assert (opened.site_url, opened.sql_gzipped, opened.manifest) == (URL, False, None)
    assert (
        opened.content_dir is not None and (opened.content_dir / "uploads" / "a.txt").read_bytes() == b"hello"
    )


# -- hostile archives ----------------------------------------------------------------------------------------


def member(name: str, data: bytes | None = b"x", kind: bytes = tarfile.REGTYPE, **kw: object) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if data is not None and kind == tarfile.REGTYPE else 0
    for key, value in kw.items():
        setattr(info, key, value)
    return info, data


def make_tar(path: Path, members: list[tuple], compression: str = "gz") -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE and data else None)
    body = raw.getvalue()
    if compression == "gz":
        body = gzip.compress(body)
    elif compression == "zst":
        body = zstandard.ZstdCompressor().compress(body)
    path.write_bytes(body)
    return path


GOOD = [member("database.sql", DUMP), member("wp-content", None, tarfile.DIRTYPE)]


@pytest.fixture
def refuse(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Open ``members`` as an archive, expect a refusal holding ``needle``; the work dir must be gone."""

    def check(members: list[tuple], needle: str, limits: Limits = Limits(), compression: str = "gz") -> str:  # noqa: B008
        src = make_tar(tmp_path / "evil.tar.gz", members, compression)
        work = tmp_path / "work"
        with pytest.raises(ArchiveError) as err:
            open_backup(src, work, limits)
        assert needle in str(err.value), str(err.value)
        assert not work.exists()
        assert str(err.value).endswith(".") and "\n" not in str(err.value)
        return str(err.value)

    yield check
    assert not list(tmp_path.rglob("escaped*"))  # nothing was written outside the work dir


def test_absolute_path(refuse) -> None:  # type: ignore[no-untyped-def]
    refuse([*GOOD, member("/tmp/wpclone-evil-abs")], "has an absolute path")
    assert not Path("/tmp/wpclone-evil-abs").exists()


def test_dot_dot(refuse) -> None:  # type: ignore[no-untyped-def]
    refuse([*GOOD, member("wp-content/../../escaped")], "'..' in its path")
    refuse([*GOOD, member("../escaped")], "'..' in its path")


def link(name: str, target: str) -> tuple:  # type: ignore[type-arg]
    return member(name, None, tarfile.SYMTYPE, linkname=target)


def test_links_inside_wp_content_are_made_last(tmp_path: Path) -> None:
    """Relative links that stay inside are extracted as links, after the files they point to exist."""
    members = [
        *GOOD,
        link("wp-content/uploads/current", "2026/11"),  # before its target's directory exists
        link("wp-content/self", "."),
        link("wp-content/themes/t/up", "../../index.php"),
        member("wp-content/uploads/2026/11/a.jpg", b"jpg"),
        member("wp-content/index.php", b"<?php"),
        link("wp-content/dangling", "gone.php"),
    ]
    opened = open_backup(make_tar(tmp_path / "l.tar.gz", members), tmp_path / "work")
    assert opened.content_dir is not None
    found = tree(opened.content_dir)
    assert found["uploads/current"] == (0, "2026/11") and found["self"] == (0, ".")
    assert found["themes/t/up"] == (0, "../../index.php") and found["dangling"] == (0, "gone.php")
    assert (opened.content_dir / "uploads" / "current" / "a.jpg").read_bytes() == b"jpg"
    assert (opened.content_dir / "themes" / "t" / "up").read_bytes() == b"<?php"


def test_hardlinks_and_symlinks_outside_wp_content(refuse) -> None:  # type: ignore[no-untyped-def]
    refuse([*GOOD, member("wp-content/hard", None, tarfile.LNKTYPE, linkname="/etc/passwd")], "is a hardlink")
    refuse([*GOOD, member("wp-content/hard", None, tarfile.LNKTYPE, linkname="wp-content")], "is a hardlink")
    refuse([member("database.sql", DUMP), link("wp-content", "/var/www")], "symlink outside wp-content")
    refuse([*GOOD, link("manifest.json", "wp-content/x")], "symlink outside wp-content")


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        ([link("wp-content/a", "..")], "which leaves wp-content"),
        ([link("wp-content/uploads/a", "../..")], "which leaves wp-content"),
        ([link("wp-content/a", "/etc")], "points to the absolute path '/etc'"),
        ([link("wp-content/a", "b/../../x")], "which leaves wp-content"),
        ([link("wp-content/a", "")], "empty or malformed target"),
        ([link("wp-content/a", "x\\..\\..")], "empty or malformed target"),
        # A link, then a file under it: refused before the file is written.
        ([link("wp-content/up", "uploads"), member("wp-content/up/escaped")], "lies below the symlink"),
        ([link("wp-content/up", "uploads"), link("wp-content/up/l", "x")], "lies below the symlink"),
        # A file, then a link where its directory is.
        ([member("wp-content/up/escaped"), link("wp-content/up", "uploads")], "where other members have"),
        # Each link stays inside on its own; resolved by the kernel, the second one escapes through the first.
        (
            [link("wp-content/p/q/r", "../../s"), link("wp-content/x", "p/q/r/../../../escaped")],
            "through the symlink 'wp-content/p/q/r'",
        ),
        (  # the same with the links in the other order
            [link("wp-content/x", "p/q/r/../../../escaped"), link("wp-content/p/q/r", "../../s")],
            "through the symlink 'wp-content/p/q/r'",
        ),
        (
            [link("wp-content/a", "b/c"), link("wp-content/b", "uploads")],
            "through the symlink 'wp-content/b'",
        ),
    ],
)
def test_hostile_symlinks(refuse, members: list[tuple], needle: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    message = refuse([*GOOD, *members], needle)
    assert message.startswith(("The symlink", "The archive member"))


def test_devices_and_fifos(refuse) -> None:  # type: ignore[no-untyped-def]
    refuse([*GOOD, member("wp-content/null", None, tarfile.CHRTYPE, devmajor=1, devminor=3)], "is a device")
    refuse([*GOOD, member("wp-content/sda", None, tarfile.BLKTYPE, devmajor=8)], "is a device")
    refuse([*GOOD, member("wp-content/pipe", None, tarfile.FIFOTYPE)], "is a fifo")


def test_members_outside_the_layout(refuse) -> None:  # type: ignore[no-untyped-def]
    for name in ("wp-config.php", "etc/passwd", "database.sql/x", "manifest.json.bak", "wp-contentx/a"):
        refuse([*GOOD, member(name)], "is not part of a backup")
    refuse([*GOOD, member("manifest.json", None, tarfile.DIRTYPE)], "is not part of a backup")


def test_duplicates_and_two_dumps(refuse) -> None:  # type: ignore[no-untyped-def]
    refuse([*GOOD, member("wp-content/a"), member("./wp-content//a")], "twice")
    refuse([*GOOD, member("database.sql.gz", gzip.compress(DUMP))], "two SQL dumps")


def test_missing_dump(refuse) -> None:  # type: ignore[no-untyped-def]
    refuse([member("wp-content/a")], "holds no database.sql")


def test_too_many_members(refuse) -> None:  # type: ignore[no-untyped-def]
    members = [*GOOD, *(member(f"wp-content/f{i}") for i in range(10))]
    refuse(members, "more than 5 members", Limits(max_files=5))


def test_too_many_bytes_counted_while_writing(refuse) -> None:  # type: ignore[no-untyped-def]
    limits = Limits(max_bytes=len(DUMP) + 4000)
    refuse([*GOOD, member("wp-content/big", b"z" * 5000)], "claims 5000 bytes, above the limit", limits)
    three = [member(f"wp-content/f{i}", b"z" * 2000) for i in range(3)]
    refuse([*GOOD, *three], f"unpacks to more than {len(DUMP) + 4000} bytes", limits)


def test_compression_bomb_ratio(refuse) -> None:  # type: ignore[no-untyped-def]
    bomb = [*GOOD, member("wp-content/zeros", bytes(2 << 20))]
    refuse(bomb, "more than 20 times its size", Limits(max_ratio=20, ratio_floor=1 << 20))


def test_zip_bomb_with_lying_sizes(tmp_path: Path) -> None:
    """A zip whose headers declare a small size: the bytes really written are what is counted."""
    src = tmp_path / "bomb.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("database.sql", DUMP)
        zf.writestr("wp-content/zeros", bytes(3 << 20))
    with pytest.raises(ArchiveError, match="times its size"):
        open_backup(src, tmp_path / "w1", Limits(max_ratio=20, ratio_floor=1 << 20))
    assert not (tmp_path / "w1").exists()


def test_zip_with_a_lying_size_header(tmp_path: Path) -> None:
    src = tmp_path / "liar.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("database.sql", DUMP)
        zf.writestr("wp-content/zeros", bytes(1 << 20))
    body = bytearray(src.read_bytes())
    declared = (1 << 20).to_bytes(4, "little")
    body[:] = body.replace(declared, (100).to_bytes(4, "little"))  # local and central headers say 100 bytes
    src.write_bytes(bytes(body))
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        open_backup(src, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_huge_pax_header(refuse) -> None:  # type: ignore[no-untyped-def]
    info, data = member("wp-content/a")
    info.pax_headers = {"comment": "c" * (2 << 20)}
    refuse([*GOOD, (info, data)], "pax header")


@pytest.mark.parametrize("compression", ["gz", "zst", ""])
def test_truncated_archive(tmp_path: Path, compression: str) -> None:
    src = make_tar(tmp_path / "t", [*GOOD, member("wp-content/big", os.urandom(200_000))], compression)
    body = src.read_bytes()
    src.write_bytes(body[: len(body) // 2])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        open_backup(src, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_zstd_frame_cut_after_the_end_of_the_tar(tmp_path: Path) -> None:
    """The tar is whole, the zstd frame is not: refused once the stream is read to its end."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info, data = member("database.sql", DUMP)
        tar.addfile(info, io.BytesIO(data))
        big, payload = member("wp-content/noise", os.urandom(2 << 20))
        tar.addfile(big, io.BytesIO(payload))
    body = zstandard.ZstdCompressor(write_checksum=True).compress(raw.getvalue() + bytes(1 << 20))
    src = tmp_path / "cut.tar.zst"
    src.write_bytes(body[:-3])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        open_backup(src, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_corrupt_gzip_crc(tmp_path: Path) -> None:
    src = make_tar(tmp_path / "t", [*GOOD, member("wp-content/a", b"hello" * 1000)])
    body = bytearray(src.read_bytes())
    body[-6] ^= 0xFF  # in the CRC-32 of the gzip trailer
    src.write_bytes(bytes(body))
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        open_backup(src, tmp_path / "work")


def test_corrupt_zip_crc(tmp_path: Path) -> None:
    src = tmp_path / "b.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("database.sql", DUMP)
    body = bytearray(src.read_bytes())
    at = body.index(b"wpx_options")
    body[at] ^= 0x01
    src.write_bytes(bytes(body))
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        open_backup(src, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_zip_symlink_and_absolute(tmp_path: Path) -> None:
    for name, mode, data, needle in (
        ("wp-content/l", stat.S_IFLNK | 0o777, b"/etc/passwd", "points to the absolute path '/etc/passwd'"),
        ("wp-content/l", stat.S_IFLNK | 0o777, b"../../x", "which leaves wp-content"),
        ("/etc/cron.d/x", stat.S_IFREG | 0o644, b"x", "absolute path"),
        ("wp-content/../../x", stat.S_IFREG | 0o644, b"x", "'..'"),
    ):
        src = tmp_path / "b.zip"
        with zipfile.ZipFile(src, "w") as zf:
            zf.writestr("database.sql", DUMP)
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
        with pytest.raises(ArchiveError, match=needle):
            open_backup(src, tmp_path / "work")
        assert not (tmp_path / "work").exists()
    with zipfile.ZipFile(src, "w") as zf:  # a zip's link inside wp-content is a link
        zf.writestr("database.sql", DUMP)
        zf.writestr("wp-content/index.php", b"<?php")
        info = zipfile.ZipInfo("wp-content/l")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, b"index.php")
    opened = open_backup(src, tmp_path / "work")
    assert opened.content_dir is not None and os.readlink(opened.content_dir / "l") == "index.php"


def test_truncated_dump_inside_the_archive(refuse) -> None:  # type: ignore[no-untyped-def]
    dump = gzip.compress(DUMP * 50)
    refuse([member("database.sql.gz", dump[: len(dump) // 2])], "truncated or corrupt gzip")


def test_bare_truncated_sql_gz(tmp_path: Path) -> None:
    packed = gzip.compress(DUMP + b"INSERT INTO `wpx_posts` VALUES (1,'x');\n" * 5000)
    src = tmp_path / "b.sql.gz"
    src.write_bytes(packed[: len(packed) - 200])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        open_backup(src, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def _manifest(tmp_path: Path, content: Path | None) -> tuple[Manifest, list[tuple]]:
    """A good archive's manifest and members, to tamper with."""
    dest = backup(tmp_path, content, link_roots=[str(content.parents[1] / "core")] if content else [])
    members = []
    with tarfile.open(dest) as tar:
        for info in tar:
            f = tar.extractfile(info)
            members.append((info, f.read() if f else None))
    raw = next(d for i, d in members if i.name == "manifest.json")
    return Manifest.model_validate_json(raw), [m for m in members if m[0].name != "manifest.json"]


def _with_manifest(members: list[tuple], manifest: dict[str, object]) -> list[tuple]:
    return [*members, member("manifest.json", json.dumps(manifest).encode())]


def test_manifest_checksums_are_verified(tmp_path: Path, content: Path, refuse) -> None:  # type: ignore[no-untyped-def]
    manifest, members = _manifest(tmp_path / "m", content)
    good = manifest.model_dump(mode="json")
    assert open_backup(make_tar(tmp_path / "ok.tar.gz", _with_manifest(members, good)), tmp_path / "ok-work")
    (tmp_path / "ok.tar.gz").unlink()

    shutil.rmtree(tmp_path / "ok-work")
    shutil.rmtree(tmp_path / "m")
    shutil.rmtree(tmp_path / "site")

    bad_db = {**good, "database": {**good["database"], "sha256": "0" * 64}}
    refuse(_with_manifest(members, bad_db), "does not match the checksum in its manifest")
    bad_content = {**good, "content": {**good["content"], "sha256": "0" * 64}}
    refuse(_with_manifest(members, bad_content), "does not match its manifest")
    fewer = [m for m in members if not m[0].name.endswith("hello.php")]
    refuse(_with_manifest(fewer, good), "does not match its manifest")
    # The digest covers links: one pointing elsewhere, or one more or fewer, is a mismatch.
    moved = [link(i.name, "uploads") if i.name.endswith("link-in") else (i, d) for i, d in members]
    refuse(_with_manifest(moved, good), "does not match its manifest")
    no_link = [m for m in members if not m[0].name.endswith("link-in")]
    refuse(_with_manifest(no_link, good), "3 links) does not match its manifest")
    more = [*members, link("wp-content/extra", "index.php")]
    refuse(_with_manifest(more, good), "5 links) does not match its manifest")
    refuse(_with_manifest(members, {**good, "content": None}), "wp-content that its manifest does not list")
    refuse(_with_manifest(members, {**good, "extra": 1}), "is not a wpclone manifest: extra")
    refuse(_with_manifest(members, {**good, "version": 2}), "is not a wpclone manifest: version")


def test_workdir_must_be_empty_and_is_emptied_not_removed(tmp_path: Path) -> None:
    src = make_tar(tmp_path / "e.tar.gz", [member("wp-content/a")])
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ArchiveError, match=r"holds no database\.sql"):
        open_backup(src, work)
    assert work.is_dir() and list(work.iterdir()) == []
    (work / "x").write_text("x")
    with pytest.raises(ArchiveError, match="is not empty"):
        open_backup(src, work)


def test_not_an_archive(tmp_path: Path) -> None:
    src = tmp_path / "b"
    src.write_bytes(b"\x7fELF\x00\x00binary")
    with pytest.raises(ArchiveError, match="neither a backup archive nor an SQL dump"):
        open_backup(src, tmp_path / "work")
    src.write_bytes(zstandard.ZstdCompressor().compress(DUMP))
    with pytest.raises(ArchiveError, match="holds no tar archive"):
        open_backup(src, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_our_own_backup_of_a_very_repetitive_table_opens(tmp_path: Path) -> None:
    """A gzipped dump inside a gzipped tar compresses far beyond one deflate layer (~1000x): a queue or log
    table of identical rows must not look like a bomb (it did at a 200x limit)."""
    row = b"(%d,'cron','" + b"cron event ok " * 70 + b"','no')"
    rows = b",".join(row % i for i in range(1, 1001))
    dump = DUMP + b"".join(b"INSERT INTO `wpx_queue` VALUES " + rows + b";\n" for _ in range(70))
    src = backup(tmp_path, None, dump=dump)
    assert len(dump) > Limits().ratio_floor and len(dump) > 200 * src.stat().st_size
    opened = open_backup(src, tmp_path / "w")
    with gzip.open(opened.sql_path) if opened.sql_gzipped else opened.sql_path.open("rb") as sql:
        assert sql.read() == dump


# -- free space while unpacking: a real small filesystem (a tmpfs in a private mount namespace) -------------

SMALL_FS_SCRIPT = """
import json, os, subprocess, sys
from pathlib import Path
from wpclone.archive import ArchiveError, Limits, open_backup

src, mount, options, margin = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
try:
    opened = open_backup(src, mount / "work", Limits(min_free_bytes=margin))
    error = None
    files = sorted(str(p.relative_to(mount)) for p in (mount / "work").rglob("*"))
except ArchiveError as exc:
    error, files = str(exc), sorted(os.listdir(mount))
st = os.statvfs(mount)
print(json.dumps({"error": error, "files": files, "used": (st.f_blocks - st.f_bfree) * st.f_frsize}))
"""


def unpack_on_small_fs(tmp_path: Path, src: Path, options: str, margin: int = 1 << 20) -> dict[str, object]:
    """Open ``src`` into a work directory on a fresh tmpfs mounted with ``options``; what happened there.

    The tmpfs lives in a private mount namespace (``unshare``: root, or a user namespace otherwise), so it
    disappears with the process whatever happens."""
    mount = tmp_path / "mnt"
    mount.mkdir(exist_ok=True)
    proc = subprocess.run(
        [
            *("unshare", "--mount", "--map-root-user", sys.executable, "-c", SMALL_FS_SCRIPT),
            *(str(src), str(mount), options, str(margin)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_unpacking_stops_before_a_member_that_would_fill_the_disk(tmp_path: Path) -> None:
    src = make_tar(tmp_path / "big.tar.gz", [*GOOD, member("wp-content/big.mp4", os.urandom(6 << 20))])
    got = unpack_on_small_fs(tmp_path, src, "size=6m")
    error = str(got["error"])
    # Refused on the member's declared size (6 MiB), before a byte of it was written; nothing left.
    assert error.startswith("Unpacking wp-content/big.mp4 would leave less than 1.0 MiB free"), error
    assert "6.0 MiB more to write" in error and error.endswith(".") and "\n" not in error
    assert got["files"] == [] and got["used"] == 0


def test_unpacking_stops_partway_when_the_disk_fills(tmp_path: Path) -> None:
    """Each member fits; together they do not: caught partway, at the member that would cross the margin
    (the free space is read again as it writes), and what was written before it is removed."""
    members = [member(f"wp-content/uploads/f{i:02}.jpg", os.urandom(700_000)) for i in range(12)]
    src = make_tar(tmp_path / "many.tar.gz", [*GOOD, *members])
    got = unpack_on_small_fs(tmp_path, src, "size=8m")
    error = str(got["error"])
    assert error.startswith("Unpacking wp-content/uploads/f"), error
    assert int(error.split("/f")[1][:2]) >= 8  # eight members (5.3 MiB) were written first
    assert "would leave less than 1.0 MiB free" in error and "MiB more to write" in error
    assert got["files"] == [] and got["used"] == 0
    # The same archive on a filesystem with room opens, every member written.
    roomy = unpack_on_small_fs(tmp_path, src, "size=16m")
    assert roomy["error"] is None and len([f for f in roomy["files"] if f.endswith(".jpg")]) == 12  # type: ignore[union-attr]


def test_a_zip_is_refused_up_front_on_its_declared_sizes(tmp_path: Path) -> None:
    src = tmp_path / "b.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("database.sql", DUMP)
        zf.writestr("wp-content/zeros", bytes(8 << 20))  # 8 MiB declared, a few KB compressed
    got = unpack_on_small_fs(tmp_path, src, "size=6m")
    assert str(got["error"]).startswith("Unpacking b.zip would leave less than 1.0 MiB free"), got
    assert got["files"] == [] and got["used"] == 0


def test_running_out_of_inodes_is_a_sentence_and_leaves_nothing(tmp_path: Path) -> None:
    members = [member(f"wp-content/uploads/f{i:03}.txt", b"x") for i in range(200)]
    src = make_tar(tmp_path / "inodes.tar.gz", [*GOOD, *members])
    got = unpack_on_small_fs(tmp_path, src, "size=16m,nr_inodes=64", margin=0)
    assert str(got["error"]).startswith("The filesystem of the work directory"), got
    assert "filled up while inodes.tar.gz was unpacked" in str(got["error"])
    assert got["files"] == []
