"""wpclone.readiness on answers built here: which answers count as a right site, which are waited for."""

from __future__ import annotations

import itertools
import time

import pytest

from wpclone.errors import SiteNotReady
from wpclone.readiness import (
    Page,
    await_ready,
    check_once,
    front_page_problem,
    login_page_problem,
    poll_waits,
)

SITE = "http://shop-1.localhost:8081"
FRONT = (
    b'<html><head><link rel="stylesheet" href="http://shop-1.localhost:8081/wp-content/x.css"></head></html>'
)
LOGIN = b'<html><form name="loginform" id="loginform" action="x"></form></html>'


def _site(pages: dict[str, Page]):  # type: ignore[no-untyped-def]
    asked: list[str] = []

    def fetch(path: str) -> Page:
        asked.append(path)
        return pages[path]

    return fetch, asked


def test_a_wordpress_front_page_and_login_form_are_right() -> None:
    fetch, asked = _site(
        {"/": Page(SITE + "/", 200, None, FRONT), "/wp-login.php": Page(SITE, 200, None, LOGIN)}
    )
    assert check_once(fetch, SITE).problem is None
    assert asked == ["/", "/wp-login.php"]


def test_redirects_on_the_site_itself_are_followed() -> None:
    fetch, asked = _site(
        {
            "/": Page(SITE + "/", 301, SITE + "/home/"),
            "/home/": Page(SITE + "/home/", 200, None, FRONT),
            "/wp-login.php": Page(SITE + "/wp-login.php", 200, None, LOGIN),
        }
    )
    assert check_once(fetch, SITE).problem is None
    assert asked == ["/", "/home/", "/wp-login.php"]


@pytest.mark.parametrize(
    ("page", "problem"),
    [
        (Page(SITE + "/", 200, None, b""), "the front page answered 200 with 0 bytes (a blank page"),
        (Page(SITE + "/", 200, None, b"  \n"), "the front page answered 200 with 3 bytes (a blank page"),
        (Page(SITE + "/", 302, "https://www.example.com/"), "redirects to https://www.example.com/, outside"),
        (
            Page(SITE + "/", 302, "http://shop-1.localhost:9999/"),
            "redirects to http://shop-1.localhost:9999/",
        ),
        (Page(SITE + "/", 200, None, b"<b>Fatal error</b>: x"), "answered 200 with a PHP fatal error"),
        (Page(SITE + "/", 200, None, b"<html>hello</html>"), "that is not a WordPress page"),
        (
            Page(SITE + "/", 200, None, FRONT.replace(b"shop-1.localhost:8081", b"www.example.com")),
            f"never links to {SITE}",
        ),
        (Page(SITE + "/", 404, None, b"<title>Not found</title>"), 'answered 404 (title "Not found")'),
    ],
)
def test_wrong_front_pages_are_definite_problems(page: Page, problem: str) -> None:
    found, transient = front_page_problem(page, SITE)
    assert found is not None and problem in found
    assert not transient


def test_a_page_that_names_the_site_only_json_escaped_is_of_the_site() -> None:
    body = (
        b'<script>var x = {"url":"http:\\/\\/shop-1.localhost:8081\\/"};</script><link href="/wp-includes/a">'
    )
    assert front_page_problem(Page(SITE + "/", 200, None, body), SITE) == (None, False)


def test_a_site_still_starting_is_waited_for() -> None:
    assert front_page_problem(Page(SITE + "/", 503, None, b"upstream"), SITE)[1] is True
    maintenance = Page(SITE + "/", 503, None, b"Briefly unavailable for scheduled maintenance.")
    assert front_page_problem(maintenance, SITE)[1] is False


def test_a_login_page_needs_the_login_form() -> None:
    found, _ = login_page_problem(Page(SITE + "/wp-login.php", 200, None, b"<form id='search'>"), SITE)
    assert found is not None and "no login form" in found
    assert login_page_problem(Page(SITE + "/wp-login.php", 200, None, LOGIN), SITE) == (None, False)


def test_await_ready_waits_through_transient_answers_then_passes() -> None:
    answers = iter([Page(SITE + "/", 502), Page(SITE + "/", 503), Page(SITE + "/", 200, None, FRONT)])

    def fetch(path: str) -> Page:
        return next(answers) if path == "/" else Page(SITE + path, 200, None, LOGIN)

    assert await_ready(fetch, SITE, timeout=10, poll=0.01).problem is None


def test_the_looks_start_close_together_and_slow_down_to_the_poll_interval() -> None:
    assert list(itertools.islice(poll_waits(1.0), 7)) == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert list(itertools.islice(poll_waits(0.05), 2)) == [0.05, 0.05]


def test_await_ready_looks_again_soon_after_a_site_that_does_not_answer_yet() -> None:
    looks: list[float] = []

    def fetch(path: str) -> Page:
        if path == "/":
            looks.append(time.monotonic())
            return Page(SITE + "/", 502) if len(looks) < 3 else Page(SITE + "/", 200, None, FRONT)
        return Page(SITE + path, 200, None, LOGIN)

    assert await_ready(fetch, SITE, timeout=10, poll=1.0).problem is None
    # Two waits of 0.1 s and 0.2 s, not two of the poll interval's 1 s.
    assert len(looks) == 3 and looks[-1] - looks[0] < 0.9


def test_await_ready_fails_on_a_repeated_definite_problem_with_the_log_line() -> None:
    calls = 0

    def fetch(path: str) -> Page:
        nonlocal calls
        calls += 1
        return Page(SITE + path, 500, None, b"There has been a critical error on this website.")

    def errors() -> list[str]:
        return ["a notice", "PHP Fatal error: Uncaught Error: boom in /x.php on line 3"]

    with pytest.raises(SiteNotReady) as failure:
        await_ready(fetch, SITE, timeout=60, poll=0.01, errors=errors)
    assert calls == 3
    assert str(failure.value) == (
        f"the clone's site at {SITE}/ is not ready: the front page answered 500 with WordPress's critical "
        "error page; its log says: PHP Fatal error: Uncaught Error: boom in /x.php on line 3."
    )


def test_await_ready_gives_up_at_the_deadline_on_a_site_that_never_answers() -> None:
    def fetch(path: str) -> Page:
        return Page(SITE + path, 502)

    with pytest.raises(SiteNotReady, match=r"is not ready within 0 s: the front page answered 502"):
        await_ready(fetch, SITE, timeout=0.05, poll=0.01)
