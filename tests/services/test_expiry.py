"""A clone's expiry on the real stack: extending a ready clone moves it in the registry and in the notice its
site shows; a deleted or expired clone's URL answers a plain 410 page saying so (the local site host)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.services import JOB, ready_clone, remove
from wpclone.db import DbEndpoint
from wpclone.errors import BadRequest, CloneBusy, CloneNotFound
from wpclone.local.sitehost import SiteConfig, http_opener
from wpclone.models import ClonePlan
from wpclone.services import delete
from wpclone.services.common import Services
from wpclone.services.expiry import extend_clone
from wpclone.staging import EXPIRES_OPTION

pytestmark = pytest.mark.integration

DELETER = "manual__delete-job"


def fetch(url: str) -> tuple[int, str, dict[str, str]]:
    """Status, body and headers of a GET of ``url`` (an error status is an answer too)."""
    try:
        with http_opener().open(urllib.request.Request(url), timeout=30) as response:
            return int(response.status), response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def notice_expiry(url: str) -> str:
    """The expiry the clone's staging notice shows on its login page (the footer notice; the clones made
    here have no theme, so their front page is blank)."""
    status, body, _ = fetch(url + "/wp-login.php")
    assert status == 200
    found = re.search(
        r"Staging clone [a-z0-9-]+, (?:expires in [^(<]+|expired) \((\d{4}-\d\d-\d\d \d\d:\d\d) UTC\)", body
    )
    assert found is not None, body[-2000:]
    return found[1]


def option(admin_db: DbEndpoint, plan: ClonePlan) -> str | None:
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT option_value FROM `{plan.db_name}`.`wp_options` WHERE option_name = %s",
            (EXPIRES_OPTION,),
        )
        row = cur.fetchone()
    return None if row is None else str(row[0])


def test_a_ready_clone_is_extended_from_now_in_the_registry_and_its_notice(
    svc: Services, made: ClonePlan, admin_db: DbEndpoint
) -> None:
    assert notice_expiry(made.url) == made.expires_at.strftime("%Y-%m-%d %H:%M")  # the plugin's own
    now = datetime.now(UTC)
    record = extend_clone(svc, made.clone_id, 2 * 24 * 60, now)
    expected = now + timedelta(days=2)
    assert record.expires_at == expected and record.status == "ready"
    stored = svc.registry.get(made.clone_id)
    assert stored is not None and stored.expires_at == expected
    assert svc.registry.expired(now + timedelta(days=1)) == []  # the TTL cleanup waits for the new time
    assert option(admin_db, made) == expected.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert notice_expiry(made.url) == expected.strftime("%Y-%m-%d %H:%M")


def test_an_extension_out_of_bounds_or_of_a_clone_not_ready_changes_nothing(
    svc: Services, made: ClonePlan, admin_db: DbEndpoint
) -> None:
    before = svc.registry.get(made.clone_id)
    for minutes, says in ((9, "a time to live of 9m is out of bounds"), (10081, "at most 7d")):
        with pytest.raises(BadRequest, match=says):
            extend_clone(svc, made.clone_id, minutes)
    with pytest.raises(CloneNotFound, match=r"^clone never-made does not exist\.$"):
        extend_clone(svc, "never-made", 60)
    assert svc.registry.get(made.clone_id) == before and option(admin_db, made) is None
    delete.begin_delete(svc, made.clone_id, DELETER)
    with pytest.raises(CloneBusy, match=rf"^clone {made.clone_id} is deleting; only a ready clone can be"):
        extend_clone(svc, made.clone_id, 60)
    delete.delete_site(svc, made.clone_id)
    delete.drop_database(svc, made.clone_id)
    delete.mark_deleted(svc, made.clone_id, DELETER)
    with pytest.raises(
        CloneBusy, match=r"is deleted at \d{4}-\d\d-\d\d \d\d:\d\d UTC; .* ask for a new one\.$"
    ):
        extend_clone(svc, made.clone_id, 60)


def test_a_deleted_clone_answers_a_plain_410_page_until_its_name_serves_again(
    svc: Services, made: ClonePlan, source_site: SiteConfig, admin_db: DbEndpoint
) -> None:
    clone_id = made.clone_id
    delete.begin_delete(svc, clone_id, DELETER)
    delete.delete_site(svc, clone_id)
    deleted_at = datetime.now(UTC)
    status, body, headers = fetch(made.url + "/wp-admin/")
    assert status == 410 and headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-store"
    text = re.search(r"<p>(.*)</p>", body)
    assert text is not None
    sentence = rf"This staging clone \({clone_id}\) was deleted at (\d{{4}}-\d\d-\d\d \d\d:\d\d) UTC; "
    said = re.fullmatch(sentence + r"ask for a new one\.", text[1])
    assert said is not None, text[1]
    assert abs(datetime.strptime(said[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC) - deleted_at) < timedelta(
        minutes=2
    )
    assert "no site is registered" not in body
    # A host that never had a clone still gets the developer's 404.
    never = made.url.replace(clone_id, "never-had-one")
    assert fetch(never + "/")[0] == 404
    # The same name made again serves its site, not the page.
    delete.drop_database(svc, clone_id)
    delete.mark_deleted(svc, clone_id, DELETER)
    remove(svc, clone_id)
    again = ready_clone(svc, source_site, admin_db, clone_id)
    assert fetch(again.url + "/")[0] == 200


def test_a_clone_deleted_after_its_expiry_says_it_expired(svc: Services, made: ClonePlan) -> None:
    with svc.mysql.cursor() as cur:  # its time ran out (what the TTL cleanup finds)
        cur.execute(
            f"UPDATE `{svc.registry.schema}`.`clones` "
            "SET `expires_at` = UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE WHERE `clone_id` = %s",
            (made.clone_id,),
        )
    delete.begin_delete(svc, made.clone_id, DELETER)
    delete.delete_site(svc, made.clone_id)
    status, body, _ = fetch(made.url + "/")
    assert status == 410
    assert f"This staging clone ({made.clone_id}) expired and was deleted at " in body
    assert JOB  # the fixture's clone job made it
