"""Ready means right: when a clone's (or a restore's) site counts as serving what it should.

A site is ready only when both hold:

* its **front page** answers 200 (after at most a few redirects that stay on the clone's own origin) with a
  non-empty WordPress page that names the clone's URL: not a blank page (a missing theme renders nothing),
  not a PHP fatal error or WordPress's "critical error" page, not "Error establishing a database
  connection", not a redirect to the source or anywhere else;
* ``/wp-login.php`` shows WordPress's login form.

The checks are pure functions of what the site answered (:class:`Page`), so they are tested without a
site; the runtimes fetch the pages (``Runtime.fetch_page``) and :func:`await_ready` polls them. A site that
does not answer yet (no connection, 502/503/504) is waited for until the deadline; a site that answers
wrongly the same way a few times in a row fails at once with what it saw, so a blank page fails in
seconds rather than after the whole timeout. The looks start close together (:func:`poll_waits`: 0.1 s, then
doubling up to the poll interval), so a site that answers a moment after it is deployed is not waited past.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from wpclone.errors import SiteNotReady

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
WRONG_IN_A_ROW = 3  # the same definite problem this many polls in a row fails the wait early
BODY_LIMIT = 4 << 20  # bytes of a page read for the checks

# What a page WordPress rendered carries: its assets, its REST API link, its generator tag.
_WORDPRESS_MARKERS = (b"/wp-content/", b"/wp-includes/", b"api.w.org", b'content="WordPress')
_FATAL_PATTERNS = (
    (re.compile(rb"<b>(?:Fatal|Parse) error</b>|PHP (?:Fatal|Parse) error"), "a PHP fatal error"),
    (re.compile(rb"There has been a critical error on this website"), "WordPress's critical error page"),
    (re.compile(rb"Error establishing a database connection"), '"Error establishing a database connection"'),
    (re.compile(rb"Briefly unavailable for scheduled maintenance"), "WordPress's maintenance page"),
)
_LOGIN_FORM = re.compile(rb"<form[^>]+(?:name|id)=[\"']loginform[\"']", re.IGNORECASE)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
# A PHP error line in a site's log: "[06-Dec-2026 01:40:00 UTC] PHP Fatal error:  Uncaught ..."
PHP_ERROR_LINE = re.compile(r"PHP (?:Fatal|Parse|Warning|Recoverable fatal)[^:]*:")


@dataclass(frozen=True)
class Page:
    """What one request answered: status, the headers that matter, the body (at most BODY_LIMIT bytes)."""

    url: str
    status: int
    location: str | None = None
    body: bytes = b""


class NotAnswering(Exception):
    """The site did not answer (no connection, a timeout): something to wait for, not a verdict."""


@dataclass
class Verdict:
    """The last problem seen (None once the site is right) and whether it is worth waiting for."""

    problem: str | None = None
    transient: bool = True
    pages: list[Page] = field(default_factory=list)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _size(body: bytes) -> str:
    return f"{len(body)} byte{'s' if len(body) != 1 else ''}"


def _title(body: bytes) -> str:
    match = _TITLE.search(body)
    if not match:
        return ""
    text = " ".join(match.group(1).decode("utf-8", "replace").split())
    return f' (title "{text[:80]}")' if text else ""


def page_problem(page: Page, site_url: str, what: str) -> tuple[str | None, bool]:
    """Why ``page`` is not a right answer for ``what`` of the site at ``site_url`` (None if it is), and
    whether the problem may go away by itself (a site still starting)."""
    if page.status in (502, 503, 504):
        if b"Briefly unavailable for scheduled maintenance" in page.body:
            return f"the {what} shows WordPress's maintenance page (status {page.status})", False
        return f"the {what} answered {page.status} (the site is not up yet)", True
    for pattern, name in _FATAL_PATTERNS:
        if pattern.search(page.body):
            return f"the {what} answered {page.status} with {name}{_title(page.body)}", False
    if 300 <= page.status < 400:
        target = urljoin(page.url, page.location or "")
        if not page.location:
            return f"the {what} answered {page.status} with no Location", False
        return f"the {what} redirects to {target}, outside the site at {site_url}", False
    if page.status != 200:
        return f"the {what} answered {page.status}{_title(page.body)}", False
    if not page.body.strip():
        return f"the {what} answered 200 with {_size(page.body)} (a blank page: is the theme present?)", False
    return None, False


def front_page_problem(page: Page, site_url: str) -> tuple[str | None, bool]:
    """The front page: 200, a non-empty WordPress page that names the site's own URL."""
    problem, transient = page_problem(page, site_url, "front page")
    if problem:
        return problem, transient
    body = page.body
    if not any(marker in body for marker in _WORDPRESS_MARKERS):
        return (
            f"the front page answered 200 with {_size(body)} that is not a WordPress page{_title(body)}",
            False,
        )
    host = urlsplit(site_url).netloc.encode()
    if b"//" + host not in body and b"\\/\\/" + host not in body:
        return (
            f"the front page answered 200 with {_size(body)} that never links to {site_url}{_title(body)}",
            False,
        )
    return None, False


def login_page_problem(page: Page, site_url: str) -> tuple[str | None, bool]:
    """``/wp-login.php``: 200 with WordPress's login form."""
    problem, transient = page_problem(page, site_url, "login page")
    if problem:
        return problem, transient
    if not _LOGIN_FORM.search(page.body):
        return (
            f"the login page answered 200 with {_size(page.body)} but no login form{_title(page.body)}",
            False,
        )
    return None, False


Fetch = Callable[[str], Page]  # path ("/", "/wp-login.php") -> what the site answered


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http_fetcher(
    site_url: str,
    base: str | None = None,
    headers: Mapping[str, str] | None = None,
    opener: urllib.request.OpenerDirector | None = None,
) -> Fetch:
    """GETs of ``base + path`` (default: the site's own URL) with ``headers``, redirects not followed; each
    Page is reported at ``site_url + path`` (where the user would have asked) so redirects are judged
    against the site's origin. ``opener`` must not follow redirects either."""
    opener = opener or urllib.request.build_opener(_NoRedirect())
    base = base or site_url
    extra = dict(headers or {})

    def fetch(path: str) -> Page:
        shown = site_url + path
        request = urllib.request.Request(base + path, headers=extra)
        try:
            with opener.open(request, timeout=30) as answer:
                return Page(
                    shown, int(answer.status), answer.headers.get("Location"), answer.read(BODY_LIMIT)
                )
        except urllib.error.HTTPError as exc:
            with exc:
                return Page(shown, exc.code, exc.headers.get("Location"), exc.read(BODY_LIMIT))
        except OSError as exc:  # refused, reset, timed out, no such host: not answering (yet)
            raise NotAnswering(str(getattr(exc, "reason", exc))) from exc

    return fetch


def follow(fetch: Fetch, path: str, site_url: str) -> Page:
    """GET ``path``, following redirects that stay on the site's own origin (at most MAX_REDIRECTS)."""
    origin = _origin(site_url)
    page = fetch(path)
    for _ in range(MAX_REDIRECTS):
        if not (300 <= page.status < 400 and page.location):
            break
        target = urljoin(page.url, page.location)
        if _origin(target) != origin:
            break
        parts = urlsplit(target)
        page = fetch((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    return page


def check_once(fetch: Fetch, site_url: str) -> Verdict:
    """One look at the site: its front page, then its login page."""
    verdict = Verdict()
    for path, check in (("/", front_page_problem), ("/wp-login.php", login_page_problem)):
        try:
            page = follow(fetch, path, site_url)
        except NotAnswering as exc:
            verdict.problem, verdict.transient = f"the site does not answer ({exc})", True
            return verdict
        verdict.pages.append(page)
        verdict.problem, verdict.transient = check(page, site_url)
        if verdict.problem:
            return verdict
    return verdict


FIRST_POLL_S = 0.1  # the first wait between two looks; each next one doubles, up to the poll interval


def poll_waits(longest: float) -> Iterator[float]:
    """The waits between looks at something that is coming: 0.1 s, 0.2 s, 0.4 s, ... up to ``longest``."""
    wait = min(FIRST_POLL_S, longest)
    while True:
        yield wait
        wait = min(wait * 2, longest)


def await_ready(
    fetch: Fetch,
    site_url: str,
    *,
    timeout: float,
    poll: float = 1.0,
    errors: Callable[[], Sequence[str]] = tuple,
    what: str = "the clone's site",
) -> Verdict:
    """Poll until the site is right (waits of :func:`poll_waits` up to ``poll``); SiteNotReady with what it
    saw (and the site's first PHP error line, from ``errors``) once the deadline passes or the same definite
    problem repeats WRONG_IN_A_ROW times."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    waits = poll_waits(poll)
    while True:
        verdict = check_once(fetch, site_url)
        if verdict.problem is None:
            return verdict
        seen = [*seen, verdict.problem] if seen and seen[-1] == verdict.problem else [verdict.problem]
        definite = not verdict.transient and len(seen) >= WRONG_IN_A_ROW
        wait = next(waits)
        if definite or time.monotonic() + wait > deadline:
            lines = [line for line in errors() if PHP_ERROR_LINE.search(line)]
            cause = f"; its log says: {lines[0][:300]}" if lines else ""
            waited = "" if definite else f" within {timeout:.0f} s"
            raise SiteNotReady(f"{what} at {site_url}/ is not ready{waited}: {verdict.problem}{cause}.")
        log.info("waiting for %s: %s", site_url, verdict.problem)
        time.sleep(wait)
