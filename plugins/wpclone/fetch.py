"""Fetch a restore's ``source_backup_url`` safely: the SSRF guard (issue 5).

:func:`check_url` refuses, before any byte is fetched: a scheme the policy does not allow, userinfo in the
URL, a host outside the policy's host patterns, and a host that resolves to *any* address that is not
public (loopback, link-local and the cloud metadata address 169.254.169.254, RFC 1918 and ULA ranges,
CGNAT, multicast, reserved, unspecified; IPv4 inside IPv6 is unwrapped first) unless the policy allows
private addresses or the address is in one of its ``allowed_networks``. ``file://`` is refused unless the
policy names ``file_roots`` (only the local runtime does) and the path lies under one of them, as written
(nothing elsewhere is even looked at) and with every symlink resolved.

:func:`fetch` connects to the very address that was checked (the URL's host goes in the Host header and TLS
SNI, so certificates are still verified against the name), then checks the address the socket is actually
connected to, which together defeat DNS rebinding. Redirects are followed by hand, each hop checked again,
never to ``file://``; a refused redirect is named by the URL that redirected and why, never by where it
pointed (that is the server's answer, like its body, which no error quotes). The body streams to
``dest.partial`` with a size cap (Content-Length above the cap is refused before reading; a body longer
than announced or unannounced stops at cap + 1 bytes), hashed as it is written, then renamed into place.

URLs appear in logs and errors only without userinfo, query and fragment: presigned URLs carry their
credentials in the query string.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from wpclone.errors import FetchError
from wpclone.steps.common import sentence

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DEFAULT_PORTS = {"http": 80, "https": 443}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Why a download failed, by httpx exception: our words, never the exception's text or the server's answer.
TRANSPORT_FAILURES = {
    "ConnectError": "the connection or its TLS handshake failed",
    "ReadError": "the connection broke while the backup was read",
    "WriteError": "the connection broke while the request was sent",
    "RemoteProtocolError": "the server hung up early or broke the HTTP protocol",
    "DecodingError": "the response could not be decoded",
    "TooManyRedirects": "too many redirects",
}


@dataclass(frozen=True)
class FetchPolicy:
    schemes: tuple[str, ...] = ("https",)
    allowed_hosts: tuple[str, ...] = ()  # host glob patterns (``*.s3.amazonaws.com``); empty: any host
    file_roots: tuple[Path, ...] = ()  # where file:// may read; empty: file:// refused
    allow_private: bool = False
    allowed_networks: tuple[str, ...] = ()  # CIDRs allowed although private (an in-cluster object store)
    max_bytes: int = 20 << 30
    max_redirects: int = 5
    timeout_s: float = 60.0


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    scheme: str
    host: str  # lower-case, no brackets; "" for file://
    port: int
    addresses: tuple[str, ...]  # every address the host resolves to, all allowed
    path: Path | None = None  # file:// only: the resolved path


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    sha256: str
    final_url: str  # redacted (see :func:`redact`)


def redact(url: str) -> str:
    """``url`` without userinfo, query or fragment (``?…`` marks a dropped query)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(an unparsable URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    return shown + ("?…" if parts.query else "")


def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), as getaddrinfo returns them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _unwrap(addr: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, NAT64, 6to4 or Teredo IPv6 address."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if addr.sixtofour is not None:
            return addr.sixtofour
        if addr.teredo is not None:
            return addr.teredo[1]
    return addr


def address_problem(address: str, policy: FetchPolicy) -> str | None:
    """Why ``address`` may not be connected to under ``policy``, or None."""
    try:
        addr = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    except ValueError:
        return "not an IP address"
    inner = _unwrap(addr)
    for net in policy.allowed_networks:
        network = ipaddress.ip_network(net, strict=False)
        if addr in network or inner in network:
            return None
    if policy.allow_private:
        return None
    for a in (inner, addr):
        if a.is_loopback:
            return "a loopback address"
        if a.is_link_local:
            return "a link-local address (cloud metadata lives there)"
        if a.is_multicast:
            return "a multicast address"
        if a.is_unspecified:
            return "the unspecified address"
        if not a.is_global or a.is_reserved:
            return "a private or reserved address"
    return None


def _host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(host, p.lower().rstrip(".")) for p in patterns)


def check_url(
    url: str, policy: FetchPolicy, resolve: Resolver = system_resolve, *, redirected_from: str | None = None
) -> CheckedUrl:
    """Refuse ``url`` under ``policy`` with a :class:`FetchError`, or return where it may be fetched from.

    ``redirected_from``: the URL whose server redirected to ``url``. Then the sentence names that URL and
    says why the redirect is refused, but nothing of ``url`` itself: it is what the server answered.
    """
    shown = redact(url)

    def refused(generic: str, detail: str | None = None) -> FetchError:
        if redirected_from is not None:
            return FetchError(
                sentence(f"The backup URL {redact(redirected_from)} redirects to a URL that {generic}")
            )
        return FetchError(sentence(f"The backup URL {shown} {detail or generic}"))

    try:
        parts = urlsplit(url)
        port_given = parts.port
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        raise refused("is not valid (its host or port cannot be read)") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        if redirected_from is not None:
            raise refused("is a file:// URL")
        return _check_file(url, parts.netloc, parts.path, policy, shown)
    if scheme not in policy.schemes or scheme not in DEFAULT_PORTS:
        allowed = ", ".join(policy.schemes) or "none"
        raise refused(f"uses the scheme {scheme!r}; allowed: {allowed}")
    if "@" in parts.netloc:
        raise refused("has a user name or password in it, refused")
    if not host:
        raise refused("has no host")
    if not _host_allowed(host, policy.allowed_hosts):
        raise refused(
            "names a host that is not one of the allowed backup hosts",
            f"names the host {host}, which is not one of the allowed backup hosts",
        )
    port = port_given or DEFAULT_PORTS[scheme]
    addresses = _allowed_addresses(host, port, policy, resolve, refused)
    return CheckedUrl(url, scheme, host, port, tuple(addresses))


def _allowed_addresses(
    host: str, port: int, policy: FetchPolicy, resolve: Resolver, refused: Callable[..., FetchError]
) -> list[str]:
    """Every address ``host`` resolves to, each one allowed by ``policy``; else ``refused(...)``."""
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = list(resolve(host, port))
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise refused(
                "names a host that does not resolve", f"names the host {host}, which does not resolve ({why})"
            ) from None
    if not addresses:
        raise refused("names a host that does not resolve", f"names the host {host}, which does not resolve")
    for address in addresses:
        problem = address_problem(address, policy)
        if problem:
            raise refused(
                f"names a host that resolves to {problem}",
                f"names the host {host}, which resolves to {address}, {problem}",
            )
    return addresses


def _check_file(url: str, netloc: str, path: str, policy: FetchPolicy, shown: str) -> CheckedUrl:
    """A file under one of the policy's roots: checked as written before the disk is looked at (nothing
    outside the roots is probed), then again with every symlink resolved."""
    if not policy.file_roots:
        raise FetchError(sentence(f"The backup URL {shown} is a file:// URL, which this runtime refuses"))
    if netloc not in ("", "localhost"):
        raise FetchError(sentence(f"The backup URL {shown} names a host in a file:// URL"))
    given = Path(os.path.normpath(unquote(path)))
    roots = [Path(root).resolve() for root in policy.file_roots]
    as_configured = [Path(os.path.normpath(root)) for root in policy.file_roots]
    if not given.is_absolute() or not any(given.is_relative_to(root) for root in roots + as_configured):
        raise FetchError(sentence(f"The backup file {given} is outside the allowed directories"))
    try:
        resolved = given.resolve(strict=True)
    except (OSError, RuntimeError):
        raise FetchError(sentence(f"The backup file {given} does not exist")) from None
    if not any(resolved.is_relative_to(root) for root in roots):
        raise FetchError(
            sentence(f"The backup file {given} (really {resolved}) is outside the allowed directories")
        )
    if not resolved.is_file():
        raise FetchError(sentence(f"The backup file {resolved} is not a regular file"))
    return CheckedUrl(url, "file", "", 0, (), resolved)


def _check_peer(response: Any, policy: FetchPolicy, checked: CheckedUrl) -> None:
    """Refuse a connection that ended up at an address the policy does not allow (DNS rebinding)."""
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        raise FetchError(sentence(f"Cannot tell which address {checked.host} was fetched from"))
    address = str(peer[0])
    problem = address_problem(address, policy)
    if problem:
        raise FetchError(sentence(f"The connection for {checked.host} went to {address}, {problem}"))


class _Sink:
    """Writes ``dest.partial`` with a cap, a hash and progress; renames it into place when done."""

    def __init__(self, dest: Path, policy: FetchPolicy, progress: Callable[[int, int | None], None] | None):
        self.dest = dest
        self.partial = dest.with_name(dest.name + ".partial")
        self.policy = policy
        self.progress = progress
        self.hash = hashlib.sha256()
        self.size = 0
        self.file = open(self.partial, "wb")  # noqa: SIM115

    def write(self, chunk: bytes, total: int | None, shown: str) -> None:
        self.size += len(chunk)
        if self.size > self.policy.max_bytes:
            raise FetchError(sentence(f"The backup at {shown} is larger than {self.policy.max_bytes} bytes"))
        self.file.write(chunk)
        self.hash.update(chunk)
        if self.progress is not None:
            self.progress(self.size, total)

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.partial, self.dest)

    def discard(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)


def _fetch_file(checked: CheckedUrl, dest: Path, policy: FetchPolicy, sink: _Sink) -> None:
    assert checked.path is not None
    shown = str(checked.path)
    try:
        fd = os.open(checked.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise FetchError(sentence(f"Cannot read the backup file {shown} ({exc.strerror or exc})")) from None
    with os.fdopen(fd, "rb") as f:
        total = os.fstat(f.fileno()).st_size
        if total > policy.max_bytes:
            raise FetchError(sentence(f"The backup file {shown} is larger than {policy.max_bytes} bytes"))
        while chunk := f.read(CHUNK):
            sink.write(chunk, total, shown)


def _pinned_url(checked: CheckedUrl) -> str:
    """The checked URL with its host replaced by the checked address (Host and SNI keep the name)."""
    parts = urlsplit(checked.url)
    address = checked.addresses[0]
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{checked.port}"
    return parts._replace(netloc=netloc, fragment="").geturl()


def fetch(
    url: str,
    dest: Path,
    policy: FetchPolicy,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    resolve: Resolver = system_resolve,
) -> Fetched:
    """Download ``url`` to ``dest`` under ``policy`` (module docstring); raises :class:`FetchError`."""
    import httpx  # noqa: PLC0415 (httpx: a download only; the control plane checks URLs)

    current, shown = url, redact(url)
    try:
        sink = _Sink(dest, policy, progress)
    except OSError as exc:
        raise FetchError(
            sentence(f"Cannot store the backup in {dest.parent} ({exc.strerror or exc})")
        ) from None
    try:
        for hop in range(policy.max_redirects + 1):
            checked = check_url(current, policy, resolve, redirected_from=url if hop else None)
            if checked.path is not None:  # file:// (never after a redirect: check_url refuses it)
                _fetch_file(checked, dest, policy, sink)
                break
            if hop:  # what the server redirected to is not shown: it is the server's answer
                shown = f"{redact(url)} (after {hop} redirect{'s' if hop > 1 else ''})"
            log.info("fetching %s (%s)", redact(current), checked.addresses[0])
            location = _fetch_http(httpx, checked, policy, sink, shown)
            if location is None:
                break
            current = urljoin(current, location)
        else:
            raise FetchError(
                sentence(f"The backup URL {redact(url)} redirects more than {policy.max_redirects} times")
            )
        sink.commit()
    except OSError as exc:  # this side's disk (a full one, say), not the server
        sink.discard()
        raise FetchError(sentence(f"Cannot store the backup from {shown} ({exc.strerror or exc})")) from None
    except BaseException:
        sink.discard()
        raise
    log.info("fetched %s: %d bytes, sha256 %s", redact(current), sink.size, sink.hash.hexdigest())
    return Fetched(dest, sink.size, sink.hash.hexdigest(), redact(current))


def _fetch_http(httpx: Any, checked: CheckedUrl, policy: FetchPolicy, sink: _Sink, shown: str) -> str | None:
    """One request; the redirect target, or None once the body is in ``sink``."""
    default = DEFAULT_PORTS[checked.scheme]
    host_header = checked.host if ":" not in checked.host else f"[{checked.host}]"
    if checked.port != default:
        host_header += f":{checked.port}"
    headers = {"Host": host_header, "Accept-Encoding": "identity"}
    extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
    try:
        with (
            httpx.Client(follow_redirects=False, timeout=policy.timeout_s, trust_env=False) as client,
            client.stream("GET", _pinned_url(checked), headers=headers, extensions=extensions) as resp,
        ):
            _check_peer(resp, policy, checked)
            if resp.is_redirect:
                location = resp.headers.get("location")
                if not location:
                    raise FetchError(sentence(f"The backup URL {shown} redirects without a Location"))
                return str(location)
            if not 200 <= resp.status_code < 300:
                raise FetchError(sentence(f"The backup URL {shown} answered HTTP {resp.status_code}"))
            length = resp.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > policy.max_bytes:
                raise FetchError(
                    sentence(f"The backup at {shown} is {total} bytes, larger than {policy.max_bytes} bytes")
                )
            for chunk in resp.iter_bytes(CHUNK):
                sink.write(chunk, total, shown)
            return None
    except httpx.TimeoutException as exc:
        raise FetchError(sentence(f"Fetching {shown} timed out after {policy.timeout_s:g} s")) from exc
    except httpx.HTTPError as exc:
        why = TRANSPORT_FAILURES.get(type(exc).__name__, f"a transport error ({type(exc).__name__})")
        raise FetchError(sentence(f"Fetching {shown} failed: {why}")) from exc
