"""The SSRF guard of source_backup_url: every refusal before a byte is fetched, redirects, caps, rebinding."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from wpclone.errors import FetchError
from wpclone.fetch import CheckedUrl, FetchPolicy, _check_peer, address_problem, check_url, fetch, redact
from wpclone.local.settings import free_port

BODY = b"backup-bytes " * 1000
PUBLIC = "93.184.216.34"  # a public address; nothing ever connects to it in these tests
SECRET = "X-Amz-Signature=supersecret"


def dns(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    """An injected resolver: host -> addresses; records what it was asked."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return table[host]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hosts: ClassVar[list[str]] = []  # Host headers seen
    requests = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        Handler.requests += 1
        Handler.hosts.append(self.headers["Host"])
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/file":
            self._send(200, BODY, length=True)
        elif url.path == "/nolength":  # no Content-Length: the body ends when the connection closes
            size = int(query["size"][0])
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for _ in range(size // 65536 + 1):
                self.wfile.write(b"z" * 65536)
        elif url.path == "/big":  # announces more than the cap, sends nothing of it
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        elif url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/denied":  # an error page that says more than it should
            self._send(403, b"<html>internal token TOPSECRET at 10.9.8.7</html>", length=True)
        elif url.path == "/cut":  # announces more than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"TOPSECRET partial body")
            self.close_connection = True
        elif url.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"no", length=True)

    def _send(self, status: int, body: bytes, length: bool) -> None:
        self.send_response(status)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    """A local threaded HTTP server; yields its base URL on 127.0.0.1."""
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    Handler.hosts, Handler.requests = [], 0
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()


# The local server is reachable only as loopback: policies allow exactly that network, nothing else.
LOCAL = FetchPolicy(schemes=("http", "https"), allowed_networks=("127.0.0.1/32",), timeout_s=5)


# -- check_url: refused before any byte is fetched ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://example.com/b.tar", "scheme 'http'"),
        ("ftp://example.com/b.tar", "scheme 'ftp'"),
        ("gopher://example.com/", "scheme 'gopher'"),
        ("https://user:pw@example.com/b.tar", "user name or password"),
        ("https://user@example.com/b.tar", "user name or password"),
        ("https:///b.tar", "no host"),
        ("https://example.com:99999/b", "is not valid"),
    ],
)
def test_check_url_refuses_bad_urls(url: str, needle: str) -> None:
    resolve = dns({"example.com": [PUBLIC]})
    with pytest.raises(FetchError, match=needle) as err:
        check_url(url, FetchPolicy(), resolve)
    assert "pw" not in str(err.value)


def test_https_to_a_public_address_is_allowed() -> None:
    checked = check_url(
        "https://backups.example.com/b.tar?" + SECRET, FetchPolicy(), dns({"backups.example.com": [PUBLIC]})
    )
    assert checked.addresses == (PUBLIC,) and checked.port == 443 and checked.host == "backups.example.com"


def test_host_patterns() -> None:
    policy = FetchPolicy(allowed_hosts=("*.s3.example.com", "backups.example.org"))
    resolve = dns({"b.s3.example.com": [PUBLIC], "backups.example.org": [PUBLIC], "evil.example": [PUBLIC]})
    check_url("https://b.s3.example.com/x", policy, resolve)
    check_url("https://BACKUPS.example.org./x", policy, resolve)
    with pytest.raises(FetchError, match=r"host evil\.example, which is not one of the allowed"):
        check_url("https://evil.example/x", policy, resolve)
    assert "evil.example" not in resolve.asked  # type: ignore[attr-defined]  # refused before resolving


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.5.5.5", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "private"),  # CGNAT
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_public_looking_host_resolving_to_a_private_address_is_refused(address: str, why: str) -> None:
    resolve = dns({"backups.example.com": [address]})
    with pytest.raises(FetchError, match=why) as err:
        check_url("https://backups.example.com/b.tar", FetchPolicy(), resolve)
    assert "backups.example.com" in str(err.value) and address in str(err.value)
    # The same address as a literal host is refused too.
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(FetchError, match=why):
        check_url(f"https://{literal}/b.tar", FetchPolicy(), resolve)
    # And everything passes when private addresses are allowed (the local runtime).
    check_url("https://backups.example.com/b.tar", FetchPolicy(allow_private=True), resolve)


def test_every_resolved_address_is_checked() -> None:
    resolve = dns({"backups.example.com": [PUBLIC, "169.254.169.254"]})
    with pytest.raises(FetchError, match=r"169\.254\.169\.254"):
        check_url("https://backups.example.com/b.tar", FetchPolicy(), resolve)


def test_allowed_networks_open_one_private_range_only() -> None:
    policy = FetchPolicy(allowed_networks=("10.0.0.0/24",))
    check_url("https://minio.internal/b", policy, dns({"minio.internal": ["10.0.0.5"]}))
    with pytest.raises(FetchError, match="private"):
        check_url("https://minio.internal/b", policy, dns({"minio.internal": ["10.0.1.5"]}))


def test_address_problem_is_none_for_public_addresses() -> None:
    assert address_problem(PUBLIC, FetchPolicy()) is None
    assert address_problem("2606:4700::1111", FetchPolicy()) is None


def test_redact_drops_query_userinfo_and_fragment() -> None:
    assert redact(f"https://u:p@h.example:8443/a/b.tar?{SECRET}#frag") == "https://h.example:8443/a/b.tar?…"
    assert redact("https://h.example/b.tar") == "https://h.example/b.tar"


# -- file:// -----------------------------------------------------------------------------------------------


def test_file_urls_only_under_roots(tmp_path: Path) -> None:
    root = tmp_path / "backups"
    root.mkdir()
    good = root / "b.tar"
    good.write_bytes(BODY)
    with pytest.raises(FetchError, match="file:// URL, which this runtime refuses"):
        check_url(good.as_uri(), FetchPolicy())
    policy = FetchPolicy(file_roots=(root,))
    assert check_url(good.as_uri(), policy).path == good.resolve()
    with pytest.raises(FetchError, match="outside the allowed directories"):
        check_url("file:///etc/passwd", policy)
    with pytest.raises(FetchError, match="outside the allowed directories"):
        check_url(f"file://{root}" + "/.." * len(root.parts) + "/etc/passwd", policy)
    link = root / "escape.tar"
    link.symlink_to("/etc/passwd")
    with pytest.raises(FetchError, match="really /etc/passwd"):
        check_url(link.as_uri(), policy)
    with pytest.raises(FetchError, match="names a host"):
        check_url(f"file://otherhost{good}", policy)
    # Outside the roots as written: refused before the disk is looked at (no probing for other files).
    for path in ("/etc/passwd", "/no/such/file", f"{root}/../elsewhere"):
        with pytest.raises(FetchError) as err:
            check_url(f"file://{path}", policy)
        assert str(err.value).endswith("is outside the allowed directories.")
    with pytest.raises(FetchError, match="does not exist"):
        check_url((root / "missing.tar").as_uri(), policy)


def test_fetch_file_copies_and_hashes(tmp_path: Path) -> None:
    root = tmp_path / "backups"
    root.mkdir()
    (root / "b.tar").write_bytes(BODY)
    got = fetch((root / "b.tar").as_uri(), tmp_path / "out", FetchPolicy(file_roots=(root,)))
    assert (tmp_path / "out").read_bytes() == BODY
    assert got.sha256 == hashlib.sha256(BODY).hexdigest() and got.size == len(BODY)
    with pytest.raises(FetchError, match="larger than"):
        fetch((root / "b.tar").as_uri(), tmp_path / "o2", FetchPolicy(file_roots=(root,), max_bytes=10))
    assert not list(tmp_path.glob("o2*"))


# -- fetch over HTTP ---------------------------------------------------------------------------------------


def test_fetch_streams_to_dest_and_reports_progress(server: str, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    got = fetch(
        f"{server}/file?{SECRET}", tmp_path / "b.tar", LOCAL, progress=lambda d, t: seen.append((d, t))
    )
    assert (tmp_path / "b.tar").read_bytes() == BODY
    assert got.sha256 == hashlib.sha256(BODY).hexdigest()
    assert SECRET not in got.final_url and got.final_url.endswith("/file?…")
    assert seen[-1] == (len(BODY), len(BODY))
    assert not (tmp_path / "b.tar.partial").exists()


def test_fetch_connects_to_the_checked_address_keeping_the_host_name(server: str, tmp_path: Path) -> None:
    """The injected resolver's answer is what is connected to (the system cannot resolve this name)."""
    port = urlsplit(server).port
    resolve = dns({"backups.wpclone.test": ["127.0.0.1"]})
    fetch(f"http://backups.wpclone.test:{port}/file", tmp_path / "b", LOCAL, resolve=resolve)
    assert Handler.hosts == [f"backups.wpclone.test:{port}"]


def test_redirect_to_metadata_address_is_refused_before_it_is_fetched(server: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as err:
        fetch(f"{server}/redirect?to=http://169.254.169.254/latest/meta-data/", tmp_path / "b", LOCAL)
    assert str(err.value) == (
        f"The backup URL {server}/redirect?… redirects to a URL that names a host that resolves to a "
        "link-local address (cloud metadata lives there)."
    )
    assert not list(tmp_path.iterdir())


def test_a_refused_redirect_never_shows_where_it_pointed(server: str, tmp_path: Path) -> None:
    """The Location is the server's answer: the sentence names the URL that redirected and why, nothing of
    the target (its host, path or query could be anything the server chose to say)."""
    resolve = dns({"internal.example": ["10.0.0.7"]})
    target = "http://internal.example/private-path?session=leaked"
    with pytest.raises(FetchError) as err:
        fetch(f"{server}/redirect?to={target}", tmp_path / "b", LOCAL, resolve=resolve)
    message = str(err.value)
    assert message.startswith(f"The backup URL {server}/redirect?… redirects to a URL that")
    assert "a private or reserved address" in message
    for leaked in ("internal.example", "10.0.0.7", "private-path", "leaked"):
        assert leaked not in message
    with pytest.raises(FetchError) as err:
        fetch(f"{server}/redirect?to=gopher://internal.example/secret", tmp_path / "b", LOCAL)
    assert "redirects to a URL that uses the scheme 'gopher'" in str(err.value)
    assert "secret" not in str(err.value) and "internal.example" not in str(err.value)
    # An error answer after a redirect names the URL given, not the one redirected to.
    with pytest.raises(FetchError) as err:
        fetch(f"{server}/redirect?to=/missing-secret-path", tmp_path / "b", LOCAL)
    assert str(err.value) == f"The backup URL {server}/redirect?… (after 1 redirect) answered HTTP 404."


def test_redirect_to_file_url_is_refused_without_looking_at_the_file(server: str, tmp_path: Path) -> None:
    root = tmp_path / "backups"
    root.mkdir()
    (root / "b.tar").write_bytes(BODY)
    policy = FetchPolicy(schemes=("http",), allowed_networks=("127.0.0.1/32",), file_roots=(root,))
    # One answer for a file that exists and one that does not: no probing of the worker's files.
    messages = set()
    for target in ((root / "b.tar").as_uri(), "file:///etc/passwd", "file:///no/such/file"):
        with pytest.raises(FetchError, match="redirects to a URL that is a file:// URL") as err:
            fetch(f"{server}/redirect?to={target}", tmp_path / "b", policy)
        messages.add(str(err.value))
    assert len(messages) == 1
    with pytest.raises(FetchError, match="redirects to a URL that is a file:// URL"):
        fetch(f"{server}/redirect?to=file:///etc/passwd", tmp_path / "b", LOCAL)


def test_relative_redirect_is_followed_and_rechecked(server: str, tmp_path: Path) -> None:
    got = fetch(f"{server}/redirect?to=/file", tmp_path / "b", LOCAL)
    assert got.size == len(BODY) and got.final_url.endswith("/file")


def test_too_many_redirects(server: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="redirects more than 5 times"):
        fetch(f"{server}/loop", tmp_path / "b", LOCAL)
    assert Handler.requests == 6


def test_content_length_above_the_cap_is_refused_before_reading(server: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="is 1000000000000 bytes, larger than"):
        fetch(f"{server}/big", tmp_path / "b", LOCAL)
    assert not list(tmp_path.iterdir())


def test_body_without_length_stops_at_the_cap(server: str, tmp_path: Path) -> None:
    cap = 200_000
    policy = FetchPolicy(schemes=("http",), allowed_networks=("127.0.0.1/32",), max_bytes=cap)
    with pytest.raises(FetchError, match=f"larger than {cap} bytes"):
        fetch(f"{server}/nolength?size={cap * 10}", tmp_path / "b", policy)
    assert not list(tmp_path.iterdir())
    got = fetch(f"{server}/nolength?size=1000", tmp_path / "ok", LOCAL)
    assert got.size >= 1000


def test_http_error_status_is_a_sentence_without_secrets(server: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as err:
        fetch(f"{server}/missing?{SECRET}", tmp_path / "b", LOCAL)
    assert "answered HTTP 404" in str(err.value) and "supersecret" not in str(err.value)
    assert str(err.value).endswith(".")


def test_a_failed_download_never_quotes_what_the_server_sent(server: str, tmp_path: Path) -> None:
    expected = {
        "denied": f"The backup URL {server}/denied?… answered HTTP 403.",
        "cut": f"Fetching {server}/cut?… failed: the server hung up early or broke the HTTP protocol.",
    }
    for path, sentence in expected.items():
        with pytest.raises(FetchError) as err:
            fetch(f"{server}/{path}?{SECRET}", tmp_path / "b", LOCAL)
        assert str(err.value) == sentence
        assert not list(tmp_path.iterdir())


def test_a_download_that_cannot_be_stored_is_a_sentence(server: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as err:
        fetch(f"{server}/file?{SECRET}", tmp_path / "missing" / "b", LOCAL)
    assert str(err.value) == f"Cannot store the backup in {tmp_path / 'missing'} (No such file or directory)."


def test_timeout_is_a_sentence(tmp_path: Path) -> None:
    """A server that accepts the connection and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        policy = FetchPolicy(schemes=("http",), allowed_networks=("127.0.0.1/32",), timeout_s=0.3)
        with pytest.raises(FetchError, match=r"timed out after 0\.3 s"):
            fetch(f"http://127.0.0.1:{port}/b?{SECRET}", tmp_path / "b", policy)
    assert not list(tmp_path.iterdir())


def test_peer_address_is_checked_after_connecting() -> None:
    """DNS rebinding: the name checked public, but the socket ended up at a private address."""
    checked = CheckedUrl("https://b.example.com/x", "https", "b.example.com", 443, (PUBLIC,))

    def response(peer: str) -> SimpleNamespace:
        stream = SimpleNamespace(get_extra_info=lambda key: (peer, 443) if key == "server_addr" else None)
        return SimpleNamespace(extensions={"network_stream": stream})

    _check_peer(response(PUBLIC), FetchPolicy(), checked)
    with pytest.raises(FetchError, match=r"went to 169\.254\.169\.254, a link-local address"):
        _check_peer(response("169.254.169.254"), FetchPolicy(), checked)
    with pytest.raises(FetchError, match="Cannot tell which address"):
        _check_peer(SimpleNamespace(extensions={}), FetchPolicy(), checked)


def test_private_server_refused_without_policy_exception(server: str, tmp_path: Path) -> None:
    """The production policy never fetches from the local server at all."""
    with pytest.raises(FetchError, match="loopback"):
        fetch(f"{server}/file", tmp_path / "b", FetchPolicy(schemes=("http", "https")))
    assert Handler.requests == 0
