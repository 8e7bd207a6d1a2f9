"""One builder per DAG shape (docs/dags.md). The DAG files call these; the tasks' work is in wpclone.services.

Each task builds its dependencies once (:func:`wpclone.airflow.services.services`), turns the plan it is
given back into a typed :class:`~wpclone.models.ClonePlan` and calls one service; a failure records its
sentence as XCom ``error`` first (:mod:`wpclone.airflow.xcom`). The data-plane steps are declared here
(:class:`~wpclone.runtimes.stepspec.Step`) and run by the operator of the runtime the environment names
(:func:`wpclone.airflow.steps.step_operator`). Nothing here does I/O at parse time.

Time limits (wpclone.settings.TimeLimits, docs/operations.md "A stuck job"): every task's
``execution_timeout`` is ``WPCLONE_TASK_TIMEOUT_S``, a task that waits a bounded wait of its own
(the site's readiness, a delete's wait for a rollback) gets that wait and :data:`WAIT_GRACE_S` more, and a
step's task its own (wpclone.airflow.steps); every DAG's ``dagrun_timeout`` is
``WPCLONE_RUN_TIMEOUT_MINUTES``. A try that overruns fails (and may retry); the rollback, a teardown, runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from airflow.sdk import DAG, Param, TriggerRule, task, task_group
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.exceptions import AirflowSkipException, DownstreamTasksSkipped

from wpclone.airflow import runparams
from wpclone.airflow.services import services
from wpclone.airflow.sources import connection_source_names
from wpclone.airflow.steps import step_operator
from wpclone.airflow.xcom import records_error, reported_errors
from wpclone.config import load_config
from wpclone.errors import ConfigError
from wpclone.models import (
    BACKUP_URL_PATTERN,
    CLONE_ID_PATTERN,
    FIELD_RULES,
    FIELD_TITLES,
    SOURCE_NAME_PATTERN,
    TTL_DEFAULT_MINUTES,
    TTL_MAX_MINUTES,
    TTL_MIN_MINUTES,
    URL_PATTERN,
    ClonePlan,
    CopyMode,
    SourceConfig,
)
from wpclone.registry import JobRecord
from wpclone.runtimes.stepspec import ContentRole, DbRole, PlanValue, Step
from wpclone.services import cleanup, clone, common, delete, restore
from wpclone.settings import (
    TimeLimits,
    delete_wait,
    jobs_retention_days,
    runtime_kind,
    site_ready_timeout,
    task_retries,
)

TAGS = ["wpclone"]
XCOM_RETURN_KEY = BaseXCom.XCOM_RETURN_KEY
HEAVY_POOL = "wpclone_heavy"  # bounds concurrent copy steps against the shared MySQL (wpclone.provision)
WAIT_GRACE_S = 60.0  # beyond a task's own bounded wait: its work before and after the wait


def default_args() -> dict[str, Any]:
    return {
        "owner": "platform",
        # From the environment only (no I/O at parse time); tests set 0 to see a failure at once.
        "retries": task_retries(),
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(seconds=TimeLimits.from_env().task_s),
    }


def waiting_limit(wait_s: float) -> timedelta:
    """The ``execution_timeout`` of a task that waits up to ``wait_s`` itself: that wait and a grace,
    never below every task's (WPCLONE_TASK_TIMEOUT_S)."""
    return timedelta(seconds=max(TimeLimits.from_env().task_s, wait_s + WAIT_GRACE_S))


PLAN = "validate_request"  # the task whose XCom is the job's ClonePlan

# The data-plane steps (python -m wpclone.steps <step>), their arguments from the plan when the task runs.
COPY_DATABASE = Step(
    task_id="copy_database",
    step="copy-database",
    arguments=(
        PlanValue.SOURCE_URL,
        PlanValue.CLONE_URL,
        "--copy-mode",
        PlanValue.COPY_MODE,
        "--table-prefix",
        PlanValue.TABLE_PREFIX,
        "--aliases",
        PlanValue.ALIASES,
    ),
    db_env={"SOURCE_DB": DbRole.SOURCE, "TARGET_DB": DbRole.CLONE},
)
COPY_CONTENT = Step(
    task_id="copy_content",
    step="copy-content",
    arguments=("--copy-mode", PlanValue.COPY_MODE),
    content={"SOURCE_CONTENT_DIR": ContentRole.SOURCE, "TARGET_CONTENT_DIR": ContentRole.CLONE},
)
# Archive the clone (its own login, its wp-content) into the backup directory.
BACKUP_CLONE = Step(
    task_id="backup_clone",
    step="backup-clone",
    arguments=(PlanValue.CLONE_ID, PlanValue.CLONE_URL, "--table-prefix", PlanValue.TABLE_PREFIX),
    db_env={"SOURCE_DB": DbRole.CLONE},
    content={"SOURCE_CONTENT_DIR": ContentRole.CLONE},
)
# Fetch, verify and load a backup into the restore's fresh database, its wp-content staged beside the clone's.
LOAD_BACKUP = Step(
    task_id="load_backup",
    step="restore-backup",
    arguments=(PlanValue.CLONE_URL, "--table-prefix", PlanValue.TABLE_PREFIX),
    db_env={"TARGET_DB": DbRole.RESTORE},
    content={"TARGET_CONTENT_DIR": ContentRole.CLONE},
    param_env={"WPCLONE_BACKUP_URL": "source_backup_url"},
)


def plan_of(value: Any) -> ClonePlan:
    """The ClonePlan a task is given (the JSON the first task returned, through XCom)."""
    return ClonePlan.model_validate(value)


def plan_or_none(value: Any) -> ClonePlan | None:
    """For a teardown: the plan, or None when the first task refused the request (no plan was made)."""
    return plan_of(value) if value else None


def plan_task(task_id: str, service: Callable[..., Any], /, **task_kwargs: Any) -> Any:
    """A task given the job's plan that calls ``service(<its services>, <the typed plan>)`` and returns
    what it returns; ``task_kwargs`` go to ``@task`` (``retries``, ...)."""

    @task(task_id=task_id, **task_kwargs)
    @records_error
    def run(plan: dict[str, Any]) -> Any:
        return service(services(), plan_of(plan))

    return run


def skip_teardowns(ti: Any, result: Any, teardowns: list[str]) -> NoReturn:
    """End a good run's last task with ``result`` as its return value and its run's ``teardowns`` skipped.

    A teardown that only skips itself after a good run (a rollback) would still be scheduled and started,
    and its "skipped" reaches Airflow only after its process exited (the task SDK's supervisor looks for
    that exit up to ``[workers] min_heartbeat_interval`` late): the run would end ~1.5 s after its result.
    Skipped from here (Airflow's skip of downstream tasks, as its short-circuit operator does), it ends at
    the scheduler's next look. The result is pushed first: the skip ends the task before Airflow would."""
    ti.xcom_push(key=XCOM_RETURN_KEY, value=result)
    raise DownstreamTasksSkipped(tasks=teardowns)  # type: ignore[no-untyped-call]


def _start_date() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC)


def _dag(dag_id: str, doc_md: str | None, **kwargs: Any) -> DAG:
    """A DAG with what all of ours share: no catch-up, tags, docs, retries with backoff."""
    return DAG(
        dag_id,
        start_date=_start_date(),
        catchup=False,
        tags=TAGS,
        doc_md=doc_md,
        default_args=default_args(),
        dagrun_timeout=timedelta(minutes=TimeLimits.from_env().run_minutes),
        **kwargs,
    )


def configured_sources() -> list[SourceConfig]:
    """The sources of the wpclone configuration, read at parse time for the trigger form (a file or an
    environment variable: no network); none when wpclone is not configured here. Connections' sources
    cannot be listed at parse time (Airflow 3's DAG processor has no access to connections)."""
    try:
        return list(load_config().sources)
    except ConfigError:
        return []


def clone_params(sources: list[SourceConfig] | None = None) -> dict[str, Param]:
    """The trigger form of wp_clone. Each field's rule is its description, in words (FIELD_RULES): the
    form checks none of them itself, Airflow's trigger refuses a value before a run is created and the
    plugin's middleware says which rule it broke (wpclone.api.form). The TTL's bounds are exclusive ones,
    which the form's number field does not clamp: a TTL out of range is refused, never silently changed."""
    sources = configured_sources() if sources is None else sources
    urls = [source.url for source in sources]
    names = [source.name for source in sources] + connection_source_names()
    default = {"default": urls[0]} if urls else {}  # else required: no default to fall back on
    return {
        "source_url": Param(
            **default,
            type="string",
            pattern=URL_PATTERN.replace("[a-z0-9.-]", "[A-Za-z0-9.-]"),
            title=FIELD_TITLES["source_url"],
            description=(
                "The site to clone: pick a configured source from the list, or type the URL of a source "
                "registered as an Airflow connection (and its name below). It "
                + FIELD_RULES["source_url"]
                + "."
            ),
            **({"examples": urls} if urls else {}),
        ),
        "ttl_minutes": Param(
            TTL_DEFAULT_MINUTES,
            type="integer",
            exclusiveMinimum=TTL_MIN_MINUTES - 1,
            exclusiveMaximum=TTL_MAX_MINUTES + 1,
            title=FIELD_TITLES["ttl_minutes"],
            description="The clone is deleted this long after the job starts. It "
            + FIELD_RULES["ttl_minutes"]
            + ".",
        ),
        "clone_id": Param(
            None,
            type=["null", "string"],
            pattern=CLONE_ID_PATTERN,
            title=FIELD_TITLES["clone_id"],
            description=f"The clone's name, in its URL and database; leave empty to generate one. It "
            f"{FIELD_RULES['clone_id']}.",
        ),
        "copy_mode": Param(
            CopyMode.EVERYTHING.value,
            type="string",
            enum=[mode.value for mode in CopyMode],
            title=FIELD_TITLES["copy_mode"],
            description=(
                "everything: database and wp-content; database: the database, wp-content without uploads; "
                "files: wp-content, and of the database only settings and users (no posts or comments)."
            ),
        ),
        "source": source_param(names),
    }


def source_param(names: list[str] | None = None) -> Param:
    """The optional ``source`` (a source's name): how a task finds a source registered as an Airflow
    connection, which it cannot find by URL (wpclone.sources); the jobs API fills it in."""
    return Param(
        None,
        type=["null", "string"],
        pattern=SOURCE_NAME_PATTERN,
        title=FIELD_TITLES["source"],
        description=(
            "Only for a source registered as an Airflow connection (wpclone_source_<name>): its name. "
            "Leave empty for a source in the wpclone configuration; the jobs API fills it in. It "
            + FIELD_RULES["source"]
            + "."
        ),
        **({"examples": names} if names else {}),
    )


def _waits_for_site() -> dict[str, Any]:
    """The ``@task`` arguments of a task that waits for a site itself (up to ``WPCLONE_SITE_READY_TIMEOUT``):
    that wait and a grace as its limit, one retry at most (made when a DAG is built: the retries come from the
    environment then)."""
    return {"retries": _await_retries(), "execution_timeout": waiting_limit(site_ready_timeout())}


def _waiting_task(task_id: str, service: Callable[..., Any]) -> Any:
    """A plan task that waits for a site itself (:func:`_waits_for_site`)."""
    return plan_task(task_id, service, **_waits_for_site())


def _await_retries() -> int:
    """A task that waits its own timeout: one retry at most (for a hiccup), not one more timeout per retry."""
    return min(1, int(default_args()["retries"]))


def build_clone_dag(dag_id: str = "wp_clone", doc_md: str | None = None) -> DAG:
    kind = runtime_kind()
    with _dag(dag_id, doc_md, schedule=None, params=clone_params()) as dag:
        # Bad input fails at once (AirflowFailException): no retry. The task then reserves the clone, its
        # last side effect: its success means something was reserved (it is the rollback's setup).
        @task(task_id="validate_request")
        @records_error
        def validate_request(**context: Any) -> dict[str, Any]:
            params, run_after = context["params"], context["dag_run"].run_after
            plan = clone.request_clone(services(), params, run_after, context["run_id"])
            return plan.model_dump(mode="json")

        create_database = plan_task("create_database", clone.create_database)

        # The staging safety onto the copied database, the site served and waited for until it is right,
        # then the clone marked ready: the job's result. One task (one hop less on every clone's critical
        # path); a retry serves again (idempotent) before it marks the clone ready.
        @records_error
        def finalize(plan: dict[str, Any], context: Any) -> dict[str, Any]:
            admin_user = clone.serve_site(services(), plan_of(plan))
            ti = context["ti"]
            copied = (ti.xcom_pull(task_ids="copy_database"), ti.xcom_pull(task_ids="copy_content"))
            return clone.finalize_clone(services(), plan_of(plan), context["run_id"], admin_user, copied)

        @task(task_id="finalize_clone", **_waits_for_site())
        def finalize_clone(plan: dict[str, Any], **context: Any) -> None:
            skip_teardowns(context["ti"], finalize(plan, context), ["rollback_clone"])

        @task(task_id="rollback_clone", retries=3)
        def rollback_clone(**context: Any) -> dict[str, Any]:
            """Teardown of validate_request (the reservation): does not decide the run's state. After a good
            run finalize_clone skips it; should it start anyway (a cleared run), it skips itself."""

            ti = context["ti"]
            errors = reported_errors(context)
            if not errors and ti.xcom_pull(task_ids="finalize_clone") is not None:
                raise AirflowSkipException("the clone is ready: nothing to roll back.")
            plan = plan_or_none(ti.xcom_pull(task_ids=PLAN))
            return clone.rollback_clone(services(), plan, context["run_id"], errors)

        plan = validate_request()
        copy_db = step_operator(kind, COPY_DATABASE, plan_xcom=PLAN, pool=HEAVY_POOL)
        copy_content = step_operator(kind, COPY_CONTENT, plan_xcom=PLAN, pool=HEAVY_POOL)
        created = create_database(plan)
        result = finalize_clone(plan)  # safe, served and right, then ready
        created >> [copy_db, copy_content] >> result
        # Rollback is the teardown of the reservation: it runs once everything after it is done, unless
        # the reservation itself never happened (then nothing exists to undo).
        rollback = rollback_clone().as_teardown(setups=plan)
        [created, copy_db, copy_content, result] >> rollback
    return dag


@task_group(group_id="delete_clone")
def delete_clone_group(clone_id: str) -> Any:
    """The one way a clone is deleted: used by wp_delete (one clone) and wp_ttl_cleanup (mapped)."""

    @task(task_id="begin_delete")
    @records_error
    def begin_delete(clone_id: str, **context: Any) -> str:
        delete.begin_delete(services(), clone_id, context["run_id"])
        return clone_id

    @task(task_id="delete_site")
    @records_error
    def delete_site(clone_id: str) -> list[str]:
        return delete.delete_site(services(), clone_id)

    @task(task_id="drop_database")
    @records_error
    def drop_database(clone_id: str) -> None:
        delete.drop_database(services(), clone_id)

    @task(task_id="mark_deleted")
    @records_error
    def mark_deleted(clone_id: str, **context: Any) -> str:
        return delete.mark_deleted(services(), clone_id, context["run_id"])

    began = begin_delete(clone_id)
    site = delete_site(began)
    database = drop_database(began)
    done = mark_deleted(began)
    site >> database >> done
    return done


def record_delete_failure(clone_ids_from: str) -> Any:
    """A leaf that runs when a deletion failed: frees the clone for the next attempt, then fails the run."""

    @task(task_id="record_delete_failure", trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def record(**context: Any) -> None:
        clone_ids = context["ti"].xcom_pull(task_ids=clone_ids_from) or []
        delete.record_delete_failure(services(), list(clone_ids), context["run_id"], reported_errors(context))

    return record()


def build_delete_dag(dag_id: str = "wp_delete", doc_md: str | None = None) -> DAG:
    with _dag(
        dag_id,
        doc_md,
        schedule=None,
        params={
            "clone_id": Param(
                type="string",
                pattern=CLONE_ID_PATTERN,
                title="Clone id",
                description="The clone to delete: its site, database, database user and content.",
            )
        },
    ) as dag:
        # Bad input fails at once (AirflowFailException): no retry; a clone still being made is waited for.
        @task(task_id="validate_request", execution_timeout=waiting_limit(delete_wait()))
        @records_error
        def validate_request(**context: Any) -> list[str]:
            return delete.validate_delete(services(), context["params"])

        clone_ids = validate_request()
        deleted = delete_clone_group.expand(clone_id=clone_ids)
        deleted >> record_delete_failure("validate_request")
    return dag


def build_ttl_cleanup_dag(
    dag_id: str = "wp_ttl_cleanup", doc_md: str | None = None, schedule: str = "*/5 * * * *"
) -> DAG:
    with _dag(dag_id, doc_md, schedule=schedule, max_active_runs=1) as dag:

        @task(task_id="find_expired")
        def find_expired(**context: Any) -> list[str]:
            return cleanup.find_expired(services(), context["dag_run"].run_after)

        @task(task_id="sweep_orphans", trigger_rule=TriggerRule.ALL_DONE)
        def sweep_orphans() -> list[str]:
            return cleanup.sweep_orphans(services())

        @task(task_id="purge_old_jobs")
        def purge_old_jobs(**context: Any) -> list[str]:
            ti = context["ti"]

            def run_has_ended(job: JobRecord) -> bool:
                """Its run has ended, or is gone (Airflow's own cleanup): asked through the task execution
                API, as a task must (it may not read the metadata database)."""
                if ti.get_dr_count(job.dag_id, run_ids=[job.job_id], states=["success", "failed"]):
                    return True
                return not ti.get_dr_count(job.dag_id, run_ids=[job.job_id])

            run_after = context["dag_run"].run_after
            return cleanup.purge_jobs(services(), run_after, jobs_retention_days(), run_has_ended)

        @task(task_id="report", trigger_rule=TriggerRule.ALL_DONE)
        def report(**context: Any) -> dict[str, Any]:
            ti = context["ti"]
            expired, orphans, purged = (
                ti.xcom_pull(task_ids="find_expired") or [],
                ti.xcom_pull(task_ids="sweep_orphans"),
                ti.xcom_pull(task_ids="purge_old_jobs"),
            )
            return cleanup.report_cleanup(services(), expired, orphans, purged)

        expired = find_expired()
        deleted = delete_clone_group.expand(clone_id=expired)
        orphans = sweep_orphans()
        deleted >> orphans
        deleted >> record_delete_failure("find_expired")
        [orphans, purge_old_jobs()] >> report()
    return dag


def _clone_id_param(description: str) -> Param:
    return Param(type="string", pattern=CLONE_ID_PATTERN, title="Clone id", description=description)


@task(task_id="lock_clone")
@records_error
def lock_clone(plan: dict[str, Any], **context: Any) -> None:
    restore.lock_clone(services(), plan_of(plan), context["run_id"])


@task(task_id="release_clone", retries=3)
def release_clone(**context: Any) -> dict[str, Any]:
    """Teardown of lock_clone: undoes a failed restore, releases the lock, returns the job's result."""
    ti = context["ti"]
    runparams.forget(context["params"], "source_backup_url")  # a presigned URL outlives no job
    return restore.release_clone(
        services(),
        plan_or_none(ti.xcom_pull(task_ids=PLAN)),
        context["run_id"],
        reported_errors(context),
        backup=ti.xcom_pull(task_ids="backup_clone"),
        restore=ti.xcom_pull(task_ids="load_backup") if "load_backup" in context["dag"].task_ids else None,
    )


def build_backup_dag(dag_id: str = "wp_backup", doc_md: str | None = None) -> DAG:
    kind = runtime_kind()
    params = {
        "clone_id": _clone_id_param("The clone to back up: its database and wp-content."),
        "source": source_param(),
    }
    with _dag(dag_id, doc_md, schedule=None, params=params) as dag:

        @task(task_id="validate_request")  # bad input fails at once (AirflowFailException): no retry
        @records_error
        def validate_request(**context: Any) -> dict[str, Any]:
            return restore.validate_backup(services(), context["params"]).model_dump(mode="json")

        plan = validate_request()
        locked = lock_clone(plan)
        backup = step_operator(kind, BACKUP_CLONE, plan_xcom=PLAN, pool=HEAVY_POOL)
        locked >> backup >> release_clone().as_teardown(setups=locked)
    return dag


def build_restore_dag(dag_id: str = "wp_restore", doc_md: str | None = None) -> DAG:
    kind = runtime_kind()
    params = {
        "clone_id": _clone_id_param(
            "The clone to restore; it keeps serving until the restored site answers."
        ),
        "source_backup_url": Param(
            type="string",
            pattern=BACKUP_URL_PATTERN,
            title="Backup URL",
            description=(
                "Where the archive is (https://; file:// and http:// on the local runtime). Anyone who can "
                "see this DAG's runs can read it here: give a presigned URL through the wpclone jobs API, "
                "which keeps its token out of the run."
            ),
        ),
        "source_backup_url_ref": Param(
            None,
            type=["null", "string"],
            pattern=runparams.KEY_PATTERN,
            title="Backup URL reference (set by the jobs API)",
            description="The Airflow Variable holding the full backup URL; leave empty.",
        ),
        "source": source_param(),
    }
    with _dag(dag_id, doc_md, schedule=None, params=params) as dag:

        @task(task_id="validate_request")  # bad input fails at once (AirflowFailException): no retry
        @records_error
        def validate_request(**context: Any) -> dict[str, Any]:
            params = context["params"]
            url = runparams.resolve(params, "source_backup_url")
            clone_id, source = params.get("clone_id", ""), params.get("source")
            return restore.validate_restore(services(), clone_id, url, source).model_dump(mode="json")

        prepare_restore = plan_task("prepare_restore", restore.prepare_restore)
        verify_restore = plan_task("verify_restore", restore.verify_restore)
        deploy_preview = plan_task("deploy_preview", restore.deploy_preview)
        await_preview = functools.partial(common.await_site_ready, preview=True)
        await_preview_ready = _waiting_task("await_preview_ready", await_preview)
        switch_site = plan_task("switch_site", restore.switch_restore)
        await_site_ready = _waiting_task("await_site_ready", common.await_site_ready)
        # Staging safety goes onto the restored database before its preview.
        apply_staging_safety = plan_task(
            "apply_staging_safety", functools.partial(common.apply_staging_safety, restored=True)
        )

        finish_restore = plan_task("finish_restore", restore.finish_restore)

        plan = validate_request()
        locked = lock_clone(plan)
        load = step_operator(kind, LOAD_BACKUP, plan_xcom=PLAN, pool=HEAVY_POOL)
        # The safety backup of what the clone serves is taken only once the archive was fetched, loaded
        # and proven a working site (a broken archive costs no backup); the switch comes last.
        backup = step_operator(kind, BACKUP_CLONE, plan_xcom=PLAN, pool=HEAVY_POOL)
        prepared = prepare_restore(plan)
        verified = verify_restore(plan)
        safe = apply_staging_safety(plan)
        preview = deploy_preview(plan)
        previewed = await_preview_ready(plan)
        switched = switch_site(plan)
        ready = await_site_ready(plan)
        finished = finish_restore(plan)
        locked >> prepared >> load >> verified >> safe >> preview >> previewed >> backup >> switched
        switched >> ready >> finished >> release_clone().as_teardown(setups=locked)
    return dag
