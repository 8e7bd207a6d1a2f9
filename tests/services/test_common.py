"""Serving a clone on the real stack: its database is safe as staging before its site first serves."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from typing import Any, cast

from tests.fixtures.services import JOB, copy_tables, remove
from tests.local.test_seed import _get
from wpclone.db import DbEndpoint
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, content_dir
from wpclone.models import ClonePlan
from wpclone.runtimes.base import Runtime
from wpclone.services import clone, common
from wpclone.services.common import Services
from wpclone.staging import EXPIRES_OPTION

CLONE = "svc-serve"


class ReadsAtDeploy:
    """The stack's runtime, reading the clone's database at the moment it is asked to serve the site."""

    def __init__(self, runtime: Runtime, read: Any) -> None:
        self.runtime, self.read, self.seen = runtime, read, None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runtime, name)

    def deploy_site(self, plan: ClonePlan, *args: Any) -> None:
        self.seen = self.read()
        self.runtime.deploy_site(plan, *args)


def test_the_clone_database_is_safe_before_its_site_first_serves(
    svc: Services, source_site: SiteConfig, admin_db: DbEndpoint, stack: StackSettings
) -> None:
    remove(svc, CLONE)
    try:
        plan = clone.request_clone(
            svc, {"source_url": source_site.url, "clone_id": CLONE}, datetime.now(UTC), JOB
        )
        clone.create_database(svc, plan)
        copy_tables(admin_db, source_site.db_name, plan.db_name, plan.url)
        shutil.copytree(content_dir(stack, source_site.name), content_dir(stack, CLONE), symlinks=True)
        database = admin_db.with_database(plan.db_name)

        def state() -> dict[str, Any]:
            with database.connect() as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT option_name, option_value FROM wp_options WHERE option_name IN (%s, %s)",
                    ("blog_public", EXPIRES_OPTION),
                )
                options = dict(cur.fetchall())
                cur.execute("SELECT COUNT(*) FROM wp_usermeta WHERE meta_key = 'session_tokens'")
                return {**options, "sessions": cur.fetchone()[0]}

        with database.connect() as conn, conn.cursor() as cur:  # as a live source has them
            cur.execute("UPDATE wp_options SET option_value = '1' WHERE option_name = 'blog_public'")
            cur.execute(
                "INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES (1, 'session_tokens', 'x')"
            )
            conn.commit()
        before = state()  # the source's own sessions (a test may have logged in to it) came along too
        assert before["blog_public"] == "1" and before["sessions"] >= 1
        runtime = ReadsAtDeploy(svc.runtime, state)
        admin_user = common.serve_site(dataclasses.replace(svc, runtime=cast(Runtime, runtime)), plan)
        assert admin_user == "admin"
        assert runtime.seen == {
            "blog_public": "0",
            EXPIRES_OPTION: plan.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sessions": 0,
        }
        status, headers, _ = _get(f"{plan.url}/")  # it serves, and as staging
        assert status == 200 and headers["X-Robots-Tag"] == "noindex, nofollow"
    finally:
        remove(svc, CLONE)
