"""One-time login links on a real clone (wpclone.login and the staging must-use plugin): the link logs in
once, through the page that posts its fragment, with a cookie that reaches wp-admin; a second use, an
expired link and a wrong token get a plain 403; the clone's database holds only the token's hash."""

from __future__ import annotations

import html
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.services import JOB, remove
from wpclone import login
from wpclone.errors import CloneBusy, CloneNotFound
from wpclone.local.sitehost import SiteConfig, http_opener
from wpclone.models import ClonePlan
from wpclone.services import clone
from wpclone.services.common import Services

pytestmark = pytest.mark.integration


def _open(
    opener: urllib.request.OpenerDirector, url: str, form: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str], str]:
    """(status, final URL, headers, body) of a GET, or of a POST of ``form``."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=60) as response:
            return response.status, response.geturl(), dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.geturl(), dict(exc.headers), exc.read().decode()


def _login_records(svc: Services, plan: ClonePlan) -> list[tuple[str, str]]:
    with svc.mysql.cursor(plan.db_name) as cur:
        cur.execute(
            "SELECT option_name, option_value FROM wp_options WHERE option_name LIKE 'wpclone\\_login\\_%'"
        )
        return [(str(name), str(value)) for name, value in cur.fetchall()]


def _use(link: login.LoginLink, jar: http.cookiejar.CookieJar) -> tuple[int, str, dict[str, str], str]:
    """What a browser does with the link: GET the page, then POST the fragment to the page's form."""
    page_url, token = link.url.split("#", 1)
    opener = http_opener(jar)
    status, _, headers, page = _open(opener, page_url)
    assert status == 200, page
    assert "no-store" in headers["Cache-Control"] and headers["Referrer-Policy"] == "no-referrer"
    assert token not in page and "location.hash" in page  # the page reads the fragment; never sees it here
    action = html.unescape(re.search(r'<form id="wpclone-login" method="post" action="([^"]+)"', page)[1])
    assert action == page_url
    return _open(opener, action, {"token": token})


def test_a_link_logs_in_once_and_only_its_hash_is_stored(svc: Services, made: ClonePlan) -> None:
    link = login.clone_login_link(svc, made.clone_id)
    token = link.url.split("#", 1)[1]
    assert link.url == f"{made.url}/wp-login.php?action=wpclone-login#{token}" and len(token) >= 40
    assert (
        link.user == "admin" and timedelta(minutes=4) < link.expires_at - datetime.now(UTC) <= login.LINK_TTL
    )
    ((name, value),) = _login_records(svc, made)
    assert name == login.option_name(token) and token not in name
    assert value == f"{int(link.expires_at.timestamp())}:admin"

    jar = http.cookiejar.CookieJar()
    status, final_url, _, body = _use(link, jar)
    assert (status, final_url) == (200, f"{made.url}/wp-admin/")
    assert "<title>[STAGING] Dashboard" in body  # logged in: the dashboard, with the staging title
    assert any(cookie.name.startswith("wordpress_logged_in_") for cookie in jar)
    assert _login_records(svc, made) == []  # used up
    # The cookie alone keeps working: a new request reaches wp-admin.
    status, final_url, _, body = _open(http_opener(jar), f"{made.url}/wp-admin/profile.php")
    assert (status, final_url) == (200, f"{made.url}/wp-admin/profile.php") and "Profile" in body
    # The staging look: a red admin bar, the clone and its expiry in words.
    assert "#wpadminbar{background:#b32d2e!important}" in body
    assert re.search(
        rf"Staging clone {made.clone_id}, expires in \d+ min \(\d{{4}}-\d\d-\d\d \d\d:\d\d UTC\)", body
    )

    other = http.cookiejar.CookieJar()
    status, _, headers, body = _use(link, other)
    assert status == 403 and headers["Content-Type"].startswith("text/plain")
    assert body == (
        "wpclone: this login link was used already, or is not valid. "
        f"Ask for a new link with `wpclone login {made.clone_id}`.\n"
    )
    assert not any(cookie.name.startswith("wordpress_logged_in_") for cookie in other)


def test_an_expired_or_wrong_link_is_refused(svc: Services, made: ClonePlan) -> None:
    past = datetime.now(UTC) - timedelta(minutes=10)
    expired = login.create_link(svc.mysql, made.clone_id, made.db_name, "wp_", made.url, now=past)
    jar = http.cookiejar.CookieJar()
    status, _, _, body = _use(expired, jar)
    assert status == 403 and "this login link has expired" in body
    assert not any(cookie.name.startswith("wordpress_logged_in_") for cookie in jar)
    assert _login_records(svc, made) == []  # an expired link is used up too

    wrong = expired.model_copy(update={"url": expired.url.split("#")[0] + "#" + "x" * 43})
    status, _, _, body = _use(wrong, jar)
    assert status == 403 and "used already, or is not valid" in body
    status, _, _, body = _open(http_opener(jar), wrong.url.split("#")[0], {"token": "<script>"})
    assert status == 403 and body.startswith("wpclone: this login link is not valid.")

    # Making a link removes the records of earlier ones that expired, never a live one.
    stale = login.create_link(svc.mysql, made.clone_id, made.db_name, "wp_", made.url, now=past)
    live = login.clone_login_link(svc, made.clone_id)
    fresh = login.clone_login_link(svc, made.clone_id)
    names = {name for name, _ in _login_records(svc, made)}
    assert names == {login.option_name(link.url.split("#")[1]) for link in (live, fresh)}
    assert login.option_name(stale.url.split("#")[1]) not in names


def test_only_a_ready_clone_gets_a_link(svc: Services, source_site: SiteConfig) -> None:
    with pytest.raises(CloneNotFound, match=r"^clone no-such-clone does not exist\.$"):
        login.clone_login_link(svc, "no-such-clone")
    remove(svc, "svc-unready")
    request, source, clone_id = clone.check_clone_request(
        svc, {"source_url": source_site.url, "clone_id": "svc-unready"}
    )
    svc.registry.reserve(clone.clone_plan(svc, request, source, clone_id, datetime.now(UTC)), JOB)
    try:
        with pytest.raises(CloneBusy, match=r"^clone svc-unready is provisioning; only a ready clone can be"):
            login.clone_login_link(svc, "svc-unready")
    finally:
        remove(svc, "svc-unready")
