"""wp_restore's services on the real stack: a loaded database is checked before anything is served, the
switch is one atomic swap the clone then serves, and a rollback puts back what the clone served and
leaves nothing of the restore."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.services import JOB, copy_tables
from wpclone.db import DbEndpoint
from wpclone.errors import BadRequest, CloneBusy, CloneNotFound, StepFailed
from wpclone.local.sitehost import SiteConfig
from wpclone.models import ClonePlan, old_db_name, restore_db_name
from wpclone.services import restore
from wpclone.services.common import Services


def _blogname(admin_db: DbEndpoint, database: str) -> str:
    with admin_db.with_database(database).connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT option_value FROM wp_options WHERE option_name = 'blogname'")
        return str(cur.fetchone()[0])


@pytest.fixture
def loaded(svc: Services, made: ClonePlan, source_site: SiteConfig, admin_db: DbEndpoint) -> ClonePlan:
    """``made``, locked by a restore job, with a backup "loaded" into its fresh database: the source's rows,
    its URL the clone's (as the step rewrites it), its blog name marking it restored."""
    restore.lock_clone(svc, made, JOB)
    restore.prepare_restore(svc, made)
    database = restore_db_name(made.clone_id)
    assert svc.mysql.tables(database) == []  # fresh and empty
    copy_tables(admin_db, source_site.db_name, database, made.url)
    with admin_db.with_database(database).connect() as conn, conn.cursor() as cur:
        cur.execute("UPDATE wp_options SET option_value = 'Restored' WHERE option_name = 'blogname'")
    return made


def test_only_a_ready_clone_no_job_holds_is_backed_up_or_restored(svc: Services, made: ClonePlan) -> None:
    assert restore.validate_backup(svc, {"clone_id": made.clone_id}) == made.model_copy(
        update={"ttl_minutes": restore.plan_of_clone(svc, svc.registry.get(made.clone_id)).ttl_minutes}
    )
    with pytest.raises(CloneNotFound, match="clone nobody-here does not exist"):
        restore.ready_clone(svc, "nobody-here")
    restore.lock_clone(svc, made, JOB)
    with pytest.raises(CloneBusy, match=f"being worked on by job {JOB}"):
        restore.check_restore_request(svc, made.clone_id, "https://backups.example.com/a.tar.gz")
    with pytest.raises(BadRequest):
        restore.lock_clone(svc, made, "manual__another")
    svc.registry.unlock(made.clone_id, JOB)
    with pytest.raises(BadRequest, match="/etc/passwd is outside the allowed directories"):
        restore.check_restore_request(svc, made.clone_id, "file:///etc/passwd")


def test_a_verified_restore_is_switched_in_and_finished(
    svc: Services, loaded: ClonePlan, admin_db: DbEndpoint
) -> None:
    checked = restore.verify_restore(svc, loaded)
    assert checked["tables"] >= 12 and checked["posts"] > 0 and checked["administrator"]
    before = _blogname(admin_db, loaded.db_name)
    restore.switch_restore(svc, loaded)
    assert _blogname(admin_db, loaded.db_name) == "Restored"
    assert _blogname(admin_db, old_db_name(loaded.clone_id)) == before  # kept aside until it answers
    restore.switch_restore(svc, loaded)  # a retry: already switched
    assert _blogname(admin_db, loaded.db_name) == "Restored"
    restore.finish_restore(svc, loaded)
    for name in (old_db_name(loaded.clone_id), restore_db_name(loaded.clone_id)):
        assert not svc.mysql.database_exists(name)
    result = restore.release_clone(svc, loaded, JOB, [], backup={"backup_url": "file:///b"}, restore=checked)
    assert result == {
        "clone_id": loaded.clone_id,
        "url": loaded.url + "/",
        "expires_at": loaded.expires_at.isoformat(),  # the run's note says it (wpclone.summary.run_note)
        "safety_backup_url": "file:///b",
        **checked,
    }
    record = svc.registry.get(loaded.clone_id)
    assert record is not None and record.lock_job_id is None and record.last_error is None


def test_an_incomplete_backup_is_refused_before_anything_is_served(
    svc: Services, loaded: ClonePlan, admin_db: DbEndpoint
) -> None:
    with admin_db.with_database(restore_db_name(loaded.clone_id)).connect() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE wp_options SET option_value = 'http://elsewhere.example' WHERE option_name = 'home'"
        )
    with pytest.raises(
        StepFailed, match=re.escape("the backup's home is 'http://elsewhere.example' after the URL rewrite")
    ):
        restore.verify_restore(svc, loaded)
    with admin_db.with_database(restore_db_name(loaded.clone_id)).connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE wp_usermeta")
    with pytest.raises(StepFailed, match="it lacks wp_usermeta"):
        restore.verify_restore(svc, loaded)


def test_a_failed_restore_is_rolled_back_after_its_switch(
    svc: Services, loaded: ClonePlan, admin_db: DbEndpoint
) -> None:
    before = _blogname(admin_db, loaded.db_name)
    restore.switch_restore(svc, loaded)
    assert _blogname(admin_db, loaded.db_name) == "Restored"
    result = restore.release_clone(
        svc, loaded, JOB, [None, "the restored site never answered."], backup=None, restore={}
    )
    assert result == {"clone_id": loaded.clone_id, "error": "the restored site never answered."}
    assert _blogname(admin_db, loaded.db_name) == before  # the clone serves what it served
    for name in (old_db_name(loaded.clone_id), restore_db_name(loaded.clone_id)):
        assert not svc.mysql.database_exists(name)
    record = svc.registry.get(loaded.clone_id)
    assert record is not None and record.lock_job_id is None
    assert record.last_error == "the restored site never answered."
