"""wp_clone's services on the real stack: a request is checked against the configuration and what exists
before anything is created, and a clone id is reserved by one job only."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tests.fixtures.services import JOB, SCHEMA, remove
from wpclone.db import DbEndpoint
from wpclone.errors import BadRequest, CloneBusy
from wpclone.local.sitehost import SiteConfig
from wpclone.models import CloneStatus
from wpclone.mysql_admin import MySqlAdmin
from wpclone.services import clone
from wpclone.services.common import Services

CLONE = "svc-clone"


@pytest.fixture
def fresh(svc: Services) -> str:
    remove(svc, CLONE)
    yield CLONE
    remove(svc, CLONE)


def test_a_good_request_is_planned_and_creates_nothing(
    svc: Services, source_site: SiteConfig, fresh: str
) -> None:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    params = {"source_url": source_site.url.upper(), "clone_id": fresh, "ttl_minutes": 30, "unknown": "x"}
    plan = clone.validate_request(svc, params, start, JOB)
    assert (plan.clone_id, plan.db_name, plan.url) == (fresh, "wpc_svc_clone", svc.runtime.clone_url(fresh))
    assert plan.source.url == source_site.url and plan.expires_at == start.replace(minute=30)
    assert svc.registry.get(fresh) is None and not svc.mysql.database_exists(plan.db_name)
    generated = clone.validate_request(svc, {"source_url": source_site.url}, start)
    assert generated.clone_id.startswith(f"{plan.source.name}-")


@pytest.mark.parametrize(
    ("params", "refusal", "sentence"),
    [
        ({"source_url": "https://elsewhere.example.com"}, BadRequest, "is not a registered source site"),
        ({"clone_id": "mysql"}, ValidationError, "reserved"),
        ({"ttl_minutes": 5}, ValidationError, "greater than or equal to 10"),
        ({"clone_id": "source"}, BadRequest, "named source already exists"),  # the source's own site
    ],
)
def test_a_bad_request_is_refused_with_its_sentence(
    svc: Services, source_site: SiteConfig, params: dict[str, object], refusal: type, sentence: str
) -> None:
    with pytest.raises(refusal, match=sentence):
        clone.validate_request(svc, {"source_url": source_site.url, **params}, datetime.now(UTC))


def test_a_database_of_that_name_is_not_taken_over(
    svc: Services, source_site: SiteConfig, admin_db: DbEndpoint, fresh: str
) -> None:
    MySqlAdmin.from_endpoint(admin_db).create_database_and_user("wpc_svc_clone", "wpc_svc_clone", "p" * 16)
    with pytest.raises(BadRequest, match="database wpc_svc_clone already exists"):
        clone.validate_request(svc, {"source_url": source_site.url, "clone_id": fresh}, datetime.now(UTC))


def test_one_job_reserves_a_clone_id_and_another_is_refused(
    svc: Services, source_site: SiteConfig, fresh: str
) -> None:
    plan = clone.validate_request(
        svc, {"source_url": source_site.url, "clone_id": fresh}, datetime.now(UTC), JOB
    )
    clone.reserve_clone(svc, plan, JOB)
    clone.reserve_clone(svc, plan, JOB)  # a retry of the same task
    record = svc.registry.get(fresh)
    assert record is not None and (record.status, record.lock_job_id) == (CloneStatus.PROVISIONING, JOB)
    with pytest.raises(BadRequest, match=f"clone {fresh} already exists"):
        clone.reserve_clone(svc, plan, "manual__another-job")
    with pytest.raises(CloneBusy, match="already exists"):
        clone.validate_request(svc, {"source_url": source_site.url, "clone_id": fresh}, datetime.now(UTC))


def test_a_refused_request_gives_back_the_id_the_api_accepted_for_its_job(
    svc: Services, source_site: SiteConfig, fresh: str
) -> None:
    plan = clone.validate_request(svc, {"source_url": source_site.url, "clone_id": fresh}, datetime.now(UTC))
    svc.registry.accept(plan, JOB, "wp_clone", {"clone_id": fresh}, "tester")
    with pytest.raises(ValidationError):
        clone.validate_request(
            svc, {"source_url": source_site.url, "clone_id": fresh, "ttl_minutes": 1}, plan.expires_at, JOB
        )
    record = svc.registry.get(fresh)
    assert record is not None and record.status is CloneStatus.FAILED and record.lock_job_id is None
    assert "ttl_minutes" in (record.last_error or "")
    assert svc.registry.schema == SCHEMA


def test_the_first_task_reserves_last_and_its_retry_takes_its_own_reservation(
    svc: Services, source_site: SiteConfig, fresh: str
) -> None:
    """request_clone (wp_clone's validate_request): a refusal reserves nothing, so the rollback (whose setup
    it is) has nothing to undo; a retry after a reservation finds the row its job holds."""
    good = {"source_url": source_site.url, "clone_id": fresh}
    with pytest.raises(ValidationError, match="ttl_minutes"):
        clone.request_clone(svc, {**good, "ttl_minutes": 5}, datetime.now(UTC), JOB)
    assert svc.registry.get(fresh) is None
    plan = clone.request_clone(svc, good, datetime.now(UTC), JOB)
    assert clone.request_clone(svc, good, datetime.now(UTC), JOB).clone_id == plan.clone_id  # a retry
    record = svc.registry.get(fresh)
    assert record is not None and (record.status, record.lock_job_id) == (CloneStatus.PROVISIONING, JOB)
    with pytest.raises(CloneBusy, match="status provisioning"):
        clone.request_clone(svc, good, datetime.now(UTC), "manual__another-job")
    assert svc.registry.get(fresh).lock_job_id == JOB  # type: ignore[union-attr]


@pytest.mark.parametrize("same_server", [True, False])
def test_a_clone_on_its_sources_server_may_read_the_source_only_when_same_server_copy_is_on(
    svc: Services, source_site: SiteConfig, admin_db: DbEndpoint, fresh: str, same_server: bool
) -> None:
    """WPCLONE_SAME_SERVER_COPY=off: no read of the source for the clone's login, so every copy dumps."""
    svc = dataclasses.replace(svc, settings=dataclasses.replace(svc.settings, same_server_copy=same_server))
    plan = clone.validate_request(
        svc, {"source_url": source_site.url, "clone_id": fresh}, datetime.now(UTC), JOB
    )
    clone.create_database(svc, plan)
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SHOW GRANTS FOR '{plan.db_name}'@'{svc.runtime.db_user_host}'")
        grants = " ".join(str(row[0]) for row in cur.fetchall())
    assert (f"`{source_site.db_name}`." in grants) is same_server, grants
