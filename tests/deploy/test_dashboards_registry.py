"""The dashboard's registry panels run against a real migrated registry (local MariaDB) and count right.

The panels query the registry table ``clones`` through Grafana's MySQL data source (database
``wpclone_control``, helm-values/observability/grafana.yaml). Here the same SQL runs in a throw-away control
schema filled through the Registry's own transitions, which proves the columns and states it names exist
and that each panel returns what its title promises.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.deploy.test_dashboards import panels
from tests.fixtures.registry import plan
from wpclone.db import DbEndpoint
from wpclone.models import ClonePlan
from wpclone.registry import Registry


def _plan(clone_id: str, expires_at: datetime) -> ClonePlan:
    return plan(clone_id).model_copy(update={"expires_at": expires_at})


def _sql(title: str) -> str:
    [panel] = [p for p in panels("mysql") if p["title"] == title]
    return str(panel["targets"][0]["rawSql"])


def test_the_registry_panels_count_what_their_titles_say(
    admin_db: DbEndpoint, scratch_registry: Registry
) -> None:
    registry = scratch_registry  # a throw-away control schema, migrated
    now = datetime.now(UTC)
    past, future = now - timedelta(minutes=5), now + timedelta(hours=1)
    registry.reserve(_plan("provisioning-1", future), "job-a")
    registry.reserve(_plan("ready-1", future), "job-b")
    registry.mark_ready("ready-1", "job-b")
    registry.reserve(_plan("expired-ready", past), "job-c")
    registry.mark_ready("expired-ready", "job-c")
    registry.reserve(_plan("expired-failed", past - timedelta(minutes=1)), "job-d")
    registry.mark_failed("expired-failed", "job-d", "copy-database: the load failed.")
    registry.reserve(_plan("expired-deleted", past), "job-e")
    registry.mark_ready("expired-deleted", "job-e")
    registry.begin_delete("expired-deleted", "job-f")
    registry.mark_deleted("expired-deleted", "job-f")

    def run(sql: str) -> list[dict[str, Any]]:
        with admin_db.with_database(registry.schema).connect() as conn, conn.cursor() as cur:
            cur.execute(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    assert run(_sql("Live clones")) == [{"live_clones": 3}]
    assert run(_sql("Clones past expiry, not yet deleted")) == [{"expired_not_deleted": 2}]
    rows = run(_sql("Expired clones still there"))
    assert [(r["clone_id"], r["status"]) for r in rows] == [
        ("expired-failed", "failed"),
        ("expired-ready", "ready"),
    ]
    assert rows[0]["last_error"] == "copy-database: the load failed."
    # Deleting the expired clone takes it off both panels.
    registry.begin_delete("expired-ready", "job-g")
    assert run(_sql("Live clones")) == [{"live_clones": 2}]
    registry.mark_deleted("expired-ready", "job-g")
    assert run(_sql("Clones past expiry, not yet deleted")) == [{"expired_not_deleted": 1}]
