"""wp_delete's services on the real stack: a ready clone's site, content, secrets, database and user go,
the registry says so, and deleting again changes nothing."""

from __future__ import annotations

import pytest

from tests.fixtures.services import JOB
from tests.fixtures.stack import leftovers
from wpclone.db import DbEndpoint
from wpclone.errors import BadRequest, RegistryError, StepFailed
from wpclone.local.settings import StackSettings
from wpclone.models import ClonePlan, CloneStatus
from wpclone.services import delete
from wpclone.services.common import Services

DELETER = "manual__delete-job"


def test_a_clone_is_deleted_entirely(
    svc: Services, made: ClonePlan, admin_db: DbEndpoint, stack: StackSettings
) -> None:
    clone_id = made.clone_id
    assert leftovers(admin_db, stack, clone_id)  # database, user, site, secret files
    assert delete.validate_delete(svc, {"clone_id": clone_id}) == [clone_id]
    delete.begin_delete(svc, clone_id, DELETER)
    with pytest.raises(RegistryError, match="being worked on by job"):
        delete.begin_delete(svc, clone_id, "manual__another")
    removed = delete.delete_site(svc, clone_id)
    assert any(clone_id in what for what in removed)
    delete.drop_database(svc, clone_id)
    assert delete.mark_deleted(svc, clone_id, DELETER) == clone_id
    assert leftovers(admin_db, stack, clone_id) == []
    record = svc.registry.get(clone_id)
    assert record is not None and record.status is CloneStatus.DELETED and record.lock_job_id is None
    assert delete.validate_delete(svc, {"clone_id": clone_id}) == []  # again: nothing to do
    assert delete.delete_site(svc, clone_id) == [] and delete.drop_database(svc, clone_id) is None


def test_a_failed_deletion_frees_the_clone_with_its_reason(svc: Services, made: ClonePlan) -> None:
    delete.begin_delete(svc, made.clone_id, DELETER)
    with pytest.raises(StepFailed, match=r"^the site would not go\.$"):
        delete.record_delete_failure(svc, [made.clone_id], DELETER, ["the site would not go."])
    record = svc.registry.get(made.clone_id)
    assert record is not None and record.status is CloneStatus.FAILED and record.lock_job_id is None
    assert record.last_error == "deletion failed: the site would not go."


def test_a_clone_being_made_is_waited_for_then_refused_and_an_unknown_one_refused(
    svc: Services, made: ClonePlan
) -> None:
    with pytest.raises(BadRequest, match="clone nobody-here does not exist"):
        delete.validate_delete(svc, {"clone_id": "nobody-here"})
    svc.registry.begin_delete(made.clone_id, JOB)  # locked by its (clone) job: not "being made"
    svc.registry.mark_failed(made.clone_id, JOB, "cancelled")
    svc.registry.reserve(made, JOB)  # the clone job took it again: provisioning, locked
    with pytest.raises(StepFailed, match=f"still being made by job {JOB}"):
        delete.validate_delete(svc, {"clone_id": made.clone_id}, timeout=1.5)
