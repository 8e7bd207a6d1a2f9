"""``python -m wpclone.provision`` checks the registry login after migrating: a login that cannot read the
control schema fails the deployment with one sentence naming what to grant. Real MariaDB (the local stack's).
"""

from __future__ import annotations

import pytest

from tests.fixtures.stack import PRIVS_SCHEMA as SCHEMA
from wpclone.db import DbEndpoint
from wpclone.mysql_admin import REGISTRY_PRIVILEGES
from wpclone.provision import check_registry_login, migrate_registry

UNGRANTED = "wpclone_control_privs_ungranted"


def test_a_granted_registry_login_passes(split_connections: DbEndpoint) -> None:
    assert migrate_registry() == []  # the fixture migrated it; the provisioning login finds it current
    check_registry_login()


def test_a_registry_login_without_grants_is_one_sentence(
    split_connections: DbEndpoint, admin_db: DbEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WPCLONE_CONTROL_SCHEMA", UNGRANTED)
    try:
        assert migrate_registry()  # as the provisioning login: the registry login could not
        with pytest.raises(ValueError) as refused:
            check_registry_login()
    finally:
        with admin_db.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {UNGRANTED}")
    assert str(refused.value) == (
        f"the registry login (wpclone_registry) cannot read control schema {UNGRANTED}: grant it "
        f"{REGISTRY_PRIVILEGES} on {UNGRANTED} and on the clones' databases (docs/deploy.md)."
    )
    assert SCHEMA != UNGRANTED
