"""What the services share: their dependencies (:class:`Services`) and the steps of serving a clone.

Serving a clone is the same in a clone and a restore: :func:`apply_staging_safety` (on the database: no
indexing, a fresh admin password, no sessions of the source, the expiry), :func:`deploy_site` (the site
with the staging must-use plugin: no mail, no visitor cron, noindex), :func:`await_site_ready` (deployed,
then answering as a right WordPress site: wpclone.readiness). :func:`serve_site` is the three in that order
as the clone DAG's one task, so a clone never serves before its database is safe; :func:`remove_clone` is
what a clone's rollback and the orphan sweep remove.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

from wpclone.errors import SiteNotReady, StepFailed
from wpclone.models import ClonePlan, WpcloneConfig, restore_db_name
from wpclone.mysql_admin import MySqlAdmin
from wpclone.readiness import await_ready, poll_waits
from wpclone.registry import Registry
from wpclone.runtimes.base import Runtime
from wpclone.settings import Settings
from wpclone.sources import SourceCatalog
from wpclone.staging import STAGING_CONSTANTS, apply_staging_sql, mu_plugin_php

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often a service looks again while it waits (a site, a clone job's rollback)


@dataclass(frozen=True)
class Services:
    """What a service function works with, built once per task (wpclone.airflow.services.services())."""

    registry: Registry
    mysql: MySqlAdmin
    runtime: Runtime
    settings: Settings
    # Where sources are looked up (wpclone.sources); None: the configuration's sources only.
    catalog: SourceCatalog | None = None

    @property
    def config(self) -> WpcloneConfig:
        """The deployment configuration (the runtime's: one configuration per task)."""
        return self.runtime.config

    @property
    def sources(self) -> SourceCatalog:
        """The registered sources: :attr:`catalog`, or the configuration's."""
        return self.catalog or SourceCatalog(self.config.sources)


def deploy_site(svc: Services, plan: ClonePlan) -> None:
    """Serve the clone at its URL with the staging constants and must-use plugin (apply semantics)."""
    svc.runtime.deploy_site(plan, STAGING_CONSTANTS, mu_plugin_php(plan.clone_id, plan.expires_at))


def serve_site(svc: Services, plan: ClonePlan) -> str:
    """Make the clone's database safe as staging, deploy its site, wait until it serves a right WordPress
    site; returns the admin login. One task of the clone DAG: the safety is in place before the site first
    answers, and a deploy is only done when the site answers (three tasks would cost a clone two hops)."""
    admin_user = apply_staging_safety(svc, plan)
    deploy_site(svc, plan)
    await_site_ready(svc, plan)
    return admin_user


def await_site_ready(
    svc: Services, plan: ClonePlan, timeout: float | None = None, *, preview: bool = False
) -> None:
    """Until the clone's site (or its restore preview) is deployed and serves a right WordPress site (front
    page and login form: wpclone.readiness); StepFailed with what it saw otherwise. ``timeout``: the
    settings' ``site_ready_timeout`` by default."""
    timeout = timeout or svc.settings.site_ready_timeout
    runtime = svc.runtime
    what = "the restored site's preview" if preview else "the clone's site"
    deadline = time.monotonic() + timeout
    waits = poll_waits(POLL_S)
    while not runtime.site_ready(plan, preview=preview):
        if time.monotonic() > deadline:
            raise StepFailed(f"{what} at {plan.url}/ was not deployed within {timeout:.0f} s.")
        time.sleep(next(waits))
    try:
        await_ready(
            runtime.page_fetcher(plan, preview=preview),
            plan.url,
            timeout=max(1.0, deadline - time.monotonic()),
            poll=POLL_S,
            errors=runtime.site_errors(plan),
            what=what,
        )
    except SiteNotReady as exc:
        raise StepFailed(str(exc)) from exc
    log.info("%s answers at %s/ with its front page and login form", what, plan.url)


def apply_staging_safety(svc: Services, plan: ClonePlan, *, restored: bool = False) -> str:
    """No indexing, no mail, no visitor cron, a fresh admin password, the expiry the staging banner shows;
    returns the admin login. With ``restored``, on the database a restore loaded (before it is previewed and
    switched in)."""
    database = restore_db_name(plan.clone_id) if restored else plan.db_name
    prefix = plan.source.table_prefix
    admin_user = svc.mysql.first_administrator(database, prefix)
    if admin_user is None:
        raise StepFailed(f"the database {database} has no administrator in {prefix}users.")
    secrets = svc.runtime.prepare_clone(plan)  # reads back the secrets made by create_database
    connect = functools.partial(svc.mysql.connect, database)
    apply_staging_sql(
        connect, database, prefix, admin_user, secrets.admin_password, expires_at=plan.expires_at
    )
    return admin_user


def remove_clone(svc: Services, clone_id: str, db_name: str) -> list[str]:
    """Remove everything of a clone: its runtime objects, database and database user; what was removed."""
    runtime = svc.runtime
    removed = runtime.delete_clone_objects(clone_id)
    if svc.mysql.database_exists(db_name):
        removed.append(f"database {db_name}")
    svc.mysql.drop_database_and_user(db_name, db_name, user_host=runtime.db_user_host)
    return removed
