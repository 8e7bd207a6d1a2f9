"""wp_ttl_cleanup's services on the real stack: expired clones are found, and the orphan sweep removes what
carries our prefix or marks but belongs to no live clone, and nothing else."""

from __future__ import annotations

from datetime import timedelta

from tests.fixtures.services import JOB, remove
from tests.fixtures.stack import leftovers
from wpclone.db import DbEndpoint
from wpclone.local.settings import StackSettings
from wpclone.models import ClonePlan
from wpclone.mysql_admin import MySqlAdmin
from wpclone.services import cleanup
from wpclone.services.common import Services

ORPHAN = "svc-orphan"
UNRELATED = "wp_svc_not_ours"


def _databases(admin_db: DbEndpoint, names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if MySqlAdmin.from_endpoint(admin_db).database_exists(n))


def test_expired_clones_are_found_unless_a_job_holds_them(svc: Services, made: ClonePlan) -> None:
    later = made.expires_at + timedelta(seconds=1)
    assert made.clone_id not in cleanup.find_expired(svc, made.expires_at - timedelta(seconds=1))
    assert made.clone_id in cleanup.find_expired(svc, later)
    svc.registry.lock(made.clone_id, JOB)
    assert made.clone_id not in cleanup.find_expired(svc, later)
    svc.registry.unlock(made.clone_id, JOB)
    report = cleanup.report_cleanup(svc, [made.clone_id], [ORPHAN])
    assert report == {
        "expired_deleted": [],
        "orphans_removed": [ORPHAN],
        "expired_not_deleted": [made.clone_id],
    }


def test_the_sweep_removes_orphans_and_keeps_live_clones_and_what_is_not_ours(
    svc: Services, made: ClonePlan, admin_db: DbEndpoint, stack: StackSettings
) -> None:
    mysql = MySqlAdmin.from_endpoint(admin_db)
    remove(svc, ORPHAN)
    host = svc.runtime.db_user_host  # where a clone's login connects from, as create_database makes it
    mysql.create_database_and_user("wpc_svc_orphan", "wpc_svc_orphan", "o" * 16, user_host=host)  # no row
    stack.secret(f"clone-{ORPHAN}-db-password")
    mysql.create_database_and_user(UNRELATED, UNRELATED, "u" * 16)
    planted = ("wpr_svc_made", "wpo_svc_made", "wpr_svc_gone")  # a restore's, left by a dead teardown
    with admin_db.connect() as conn, conn.cursor() as cur:
        for name in planted:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
    try:
        svc.registry.lock(made.clone_id, JOB)  # a job restoring the clone holds its restore databases
        swept = cleanup.sweep_orphans(svc)
        assert ORPHAN in swept and made.clone_id not in swept
        assert leftovers(admin_db, stack, ORPHAN) == []
        assert leftovers(admin_db, stack, made.clone_id)  # the live clone is untouched
        assert _databases(admin_db, planted) == ["wpo_svc_made", "wpr_svc_made"]
        assert mysql.database_exists(UNRELATED)
        svc.registry.unlock(made.clone_id, JOB)
        swept = cleanup.sweep_orphans(svc)  # (and whatever else the stack's other tests left)
        assert {"wpo_svc_made", "wpr_svc_made"} <= set(swept) and made.clone_id not in swept
        assert _databases(admin_db, planted) == [] and mysql.database_exists(made.db_name)
    finally:
        mysql.drop_database_and_user(UNRELATED, UNRELATED)
        for name in planted:
            mysql.drop_database_and_user(name, "wpr_svc_made")
