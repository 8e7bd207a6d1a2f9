"""The clone registry: one row per clone in a control schema on the shared MySQL server.

The registry is the source of truth for TTL cleanup and the orphan sweep, and it enforces the one
concurrency rule of wpclone:

**Two jobs never work on one clone at once.** A job works on a clone only while it holds the clone's lock
(``lock_job_id``). ``reserve`` creates a clone locked by its clone job; ``begin_delete`` takes the lock for a
delete job; ``mark_ready``, ``mark_failed`` and ``mark_deleted`` release it. A job may re-take its own lock
(a task retry, or a clone job's rollback reusing the delete steps); any other job is refused at once with
one sentence ("clone X is being worked on by job Y (status provisioning); try again when it finishes.") —
it never waits. The TTL cleanup skips locked clones (``expired``), so it never competes with a running job.

States and transitions (each one a single ``UPDATE ... WHERE`` guarded by the expected state and lock; the
affected row count says who won, so concurrent callers cannot both succeed)::

    (none | deleted) --accept--> accepted --reserve (same job)--> provisioning --mark_ready--> ready
    (none | deleted) --reserve--> provisioning            (a run triggered from Airflow itself)
    accepted | provisioning | deleting --mark_failed--> failed
    ready | failed | (own lock) --begin_delete--> deleting --mark_deleted--> deleted

``accept`` is the jobs API's: it takes the clone id for the job it records in the same request, so the id is
taken from the moment the request is answered 202 (a second request for it gets 409, a delete finds it).

A clone id is unique among non-deleted rows: ``reserve`` refuses an id that exists in any other state for
another job; a ``deleted`` row is overwritten by the new reservation (history is not kept). A retry of the
same job is idempotent everywhere: ``reserve`` returns the row it made, ``mark_*`` accept a transition that
this job already made, and a clone job may re-reserve its own ``failed`` clone (a cleared, re-run DAG run).

Outside the lock, ``set_expiry`` moves a ``ready`` clone's ``expires_at`` (wpclone.services.expiry: the one
caller), and ``requested_by`` keeps the jobs API user whose request ``accept``-ed the clone (NULL for a run
triggered elsewhere). ``list(live=True)`` leaves out deleted rows (what ``wpclone list`` shows by default).

The ``jobs`` table holds the jobs the API accepted (``record_job``, ``accept``); ``unstarted_jobs`` is the
jobs listing's part of them (those whose run was never created), and ``purge_jobs`` their retention: it
deletes old rows of jobs that have ended, never one still to start, holding a clone's lock, or whose run
the caller says has not ended (wp_ttl_cleanup, ``WPCLONE_JOBS_RETENTION_DAYS``).

Live clones (``live_clone_ids``, the orphan sweep's keep-list) are those in ``accepted``, ``provisioning``,
``ready`` or ``deleting``, plus any clone locked by a job. An unlocked ``failed`` clone is not live: its job's
rollback already removed what it created, so anything left with its id is an orphan. To avoid racing a clone
being created, the sweep must list existing objects *first* and read the live ids *after*.

Times: columns are ``DATETIME(6)`` holding UTC. In Python every timestamp this module returns is a
timezone-aware UTC ``datetime``; arguments may be aware (converted to UTC) or naive (taken as UTC).
``expires_at`` comes from the plan and ``now`` from the caller, so a retry computes nothing differently;
``created_at``/``updated_at``/``deleted_at`` are the server's ``UTC_TIMESTAMP(6)``.

Connections: any DB-API 2 connection with the ``%s`` paramstyle — mysqlclient (``MySQLdb``, what Airflow's
``MySqlHook(...).get_conn()`` returns) or PyMySQL — from a zero-argument factory. Each operation opens its own
connection, commits after every statement (unless it is in autocommit mode) and closes it; tables are always
schema-qualified, so the connection's default database does not matter; tuple and dict cursors both work.
The schema is created and migrated by ``migrate()`` under ``GET_LOCK``, each migration applied once and
recorded in ``schema_migrations``: at deploy time, by ``python -m wpclone.provision`` (the Helm chart's
migration job, the local stack's start, the tests' fixtures), never by a task. A task's registry only
checks, once per process (wpclone.airflow.services), that the schema is at :data:`SCHEMA_VERSION`
(:meth:`Registry.check_schema`: a sentence naming that command when it is behind).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from wpclone.db import DbEndpoint, check_identifier, quote_identifier
from wpclone.errors import CloneTaken, RegistryError
from wpclone.models import ClonePlan, CloneStatus, CopyMode, check_clone_id
from wpclone.settings import DEFAULT_CONTROL_SCHEMA

log = logging.getLogger(__name__)

MIGRATION_LOCK_TIMEOUT_S = 60
MAX_JOB_ID = 250  # Airflow's run_id limit
MAX_URL = 255
MAX_ERROR_CHARS = 8000
ER_DUP_FIELDNAME = 1060  # MySQL and MariaDB: "Duplicate column name"


class Cursor(Protocol):
    """The part of a DB-API 2 cursor we use."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...

    def execute(self, query: str, args: Any = ..., /) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...

    def close(self) -> Any: ...


class Connection(Protocol):
    """The part of a DB-API 2 connection we use (MySQLdb and PyMySQL both fit)."""

    def cursor(self) -> Any: ...

    def commit(self) -> Any: ...

    def close(self) -> Any: ...


ConnectionFactory = Callable[[], Connection]


# -- schema --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One schema change: statements run in order, then the version is recorded.

    Statements must be idempotent on their own (``IF NOT EXISTS``), because DDL is not transactional: a
    crash between a statement and the version row makes the next ``migrate()`` run them again. MySQL has no
    ``ADD COLUMN IF NOT EXISTS``: an ``ADD COLUMN`` whose column exists (error 1060) counts as done.
    ``{schema}`` is replaced by the quoted control schema. Never edit a released migration; append a new one.
    """

    version: int
    name: str
    statements: tuple[str, ...]


# The ENUM lists CloneStatus (version 3 added 'accepted'); a new status needs a new migration (a test checks).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create clones",
        (
            """CREATE TABLE IF NOT EXISTS {schema}.`clones` (
                `clone_id` VARCHAR(28) NOT NULL,
                `status` ENUM('provisioning', 'ready', 'failed', 'deleting', 'deleted') NOT NULL,
                `source_url` VARCHAR(255) NOT NULL,
                `url` VARCHAR(255) NOT NULL,
                `db_name` VARCHAR(64) NOT NULL,
                `copy_mode` VARCHAR(16) NOT NULL,
                `created_at` DATETIME(6) NOT NULL,
                `expires_at` DATETIME(6) NOT NULL,
                `updated_at` DATETIME(6) NOT NULL,
                `deleted_at` DATETIME(6) NULL,
                `last_job_id` VARCHAR(250) NOT NULL,
                `last_error` TEXT NULL,
                `lock_job_id` VARCHAR(250) NULL,
                PRIMARY KEY (`clone_id`),
                KEY `idx_clones_status` (`status`),
                KEY `idx_clones_expires_at` (`expires_at`)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        ),
    ),
    Migration(
        2,
        "create jobs",
        (
            # Jobs the API accepted: kept until they are triggered as DAG runs (see Registry.record_job).
            """CREATE TABLE IF NOT EXISTS {schema}.`jobs` (
                `job_id` VARCHAR(250) NOT NULL,
                `dag_id` VARCHAR(250) NOT NULL,
                `clone_id` VARCHAR(28) NULL,
                `conf` TEXT NULL,
                `requested_by` VARCHAR(250) NOT NULL,
                `created_at` DATETIME(6) NOT NULL,
                `triggered_at` DATETIME(6) NULL,
                `error` TEXT NULL,
                PRIMARY KEY (`job_id`),
                KEY `idx_jobs_untriggered` (`triggered_at`, `created_at`)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        ),
    ),
    Migration(
        3,
        "clones: accepted status",
        (
            """ALTER TABLE {schema}.`clones` MODIFY `status`
                ENUM('accepted', 'provisioning', 'ready', 'failed', 'deleting', 'deleted') NOT NULL""",
        ),
    ),
    Migration(
        4,
        "clones: requested_by",
        (
            # Who asked for the clone (the jobs API's authenticated user); NULL for a run started elsewhere.
            "ALTER TABLE {schema}.`clones` ADD COLUMN `requested_by` VARCHAR(250) NULL",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version  # what this wpclone needs
PROVISION_COMMAND = "python -m wpclone.provision"

COLUMNS = (
    "clone_id",
    "status",
    "source_url",
    "url",
    "db_name",
    "copy_mode",
    "created_at",
    "expires_at",
    "updated_at",
    "deleted_at",
    "last_job_id",
    "last_error",
    "lock_job_id",
    "requested_by",
)
_SELECT = ", ".join(f"`{c}`" for c in COLUMNS)
_SELECT_C = ", ".join(f"c.`{c}`" for c in COLUMNS)  # the same, of a table aliased ``c``


def utc_naive(value: datetime) -> datetime:
    """``value`` as a naive UTC datetime, the form stored in DATETIME columns (naive input is UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def utc_aware(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive input, as read from DATETIME columns, is UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class CloneRecord(BaseModel):
    """One row of the ``clones`` table; datetimes are aware UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clone_id: str
    status: CloneStatus
    source_url: str
    url: str
    db_name: str
    copy_mode: CopyMode
    created_at: datetime
    expires_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    last_job_id: str
    last_error: str | None
    lock_job_id: str | None
    requested_by: str | None = None  # the jobs API's user who asked for the clone

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CloneRecord:
        return cls(
            clone_id=row["clone_id"],
            status=CloneStatus(row["status"]),
            source_url=row["source_url"],
            url=row["url"],
            db_name=row["db_name"],
            copy_mode=CopyMode(row["copy_mode"]),
            created_at=utc_aware(row["created_at"]),
            expires_at=utc_aware(row["expires_at"]),
            updated_at=utc_aware(row["updated_at"]),
            deleted_at=utc_aware(row["deleted_at"]) if row["deleted_at"] else None,
            last_job_id=row["last_job_id"],
            last_error=row["last_error"],
            lock_job_id=row["lock_job_id"],
            requested_by=row.get("requested_by"),
        )

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (ISO 8601 times with ``Z``/offset) for the jobs API and the CLI."""
        return self.model_dump(mode="json")


class JobRecord(BaseModel):
    """A job the jobs API accepted (one row of ``jobs``): its DAG run may not exist yet.

    ``conf`` is the run's conf until the run is triggered, then cleared (it may name a backup URL with a
    token); ``error`` says why triggering failed, if it did.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    dag_id: str
    clone_id: str | None
    conf: dict[str, Any] | None
    requested_by: str
    created_at: datetime
    triggered_at: datetime | None
    error: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobRecord:
        return cls(
            job_id=row["job_id"],
            dag_id=row["dag_id"],
            clone_id=row["clone_id"],
            conf=json.loads(row["conf"]) if row["conf"] else None,
            requested_by=row["requested_by"],
            created_at=utc_aware(row["created_at"]),
            triggered_at=utc_aware(row["triggered_at"]) if row["triggered_at"] else None,
            error=row["error"],
        )


_JOB_COLUMNS = "`job_id`, `dag_id`, `clone_id`, `conf`, `requested_by`, `created_at`, `triggered_at`, `error`"


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes | bytearray) else value


def _check_job_id(job_id: str) -> str:
    if not job_id or len(job_id) > MAX_JOB_ID:
        raise RegistryError(f"job id {job_id!r} is not valid: use 1-{MAX_JOB_ID} characters.")
    return job_id


def _check_clone_id(clone_id: str) -> str:
    try:
        return check_clone_id(clone_id)
    except ValueError as exc:
        raise RegistryError(str(exc)) from exc


def _migration_lock_name(schema: str) -> str:
    name = f"wpclone.migrate.{schema}"
    return name if len(name) <= 64 else "wpclone.migrate." + hashlib.sha1(schema.encode()).hexdigest()


def _plan_row(plan: ClonePlan, job_id: str) -> tuple[Any, ...]:
    """A clone row's values from its plan, in the order accept and reserve insert them: source URL, URL,
    database, copy mode, expiry, then ``job_id`` as the last job and the lock."""
    return (
        plan.source.url,
        plan.url,
        plan.db_name,
        CopyMode(plan.copy_mode).value,
        utc_naive(plan.expires_at),
        job_id,
        job_id,
    )


class Registry:
    """The clone registry in ``schema`` (default ``wpclone_control``) reached through ``connect``."""

    def __init__(self, connect: ConnectionFactory, schema: str = DEFAULT_CONTROL_SCHEMA) -> None:
        self._connect = connect
        self.schema = check_identifier(schema, "control schema name")
        self._clones = f"{quote_identifier(self.schema)}.`clones`"
        self._migrations = f"{quote_identifier(self.schema)}.`schema_migrations`"
        self._jobs = f"{quote_identifier(self.schema)}.`jobs`"

    @classmethod
    def from_endpoint(cls, endpoint: DbEndpoint, schema: str = DEFAULT_CONTROL_SCHEMA) -> Registry:
        """A registry over PyMySQL connections to ``endpoint`` (local runtime, tests)."""
        return cls(endpoint.connect, schema)

    # -- plumbing ------------------------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[_Session]:
        conn = self._connect()
        try:
            yield _Session(conn)
        except BaseException:
            discard = getattr(conn, "discard", None)  # a pooled connection that failed is not reused
            if discard is not None:
                discard()
            raise
        finally:
            conn.close()

    def current_user(self) -> str:
        """The login the registry's connections use, as the server sees it (``user@host``)."""
        with self._session() as s:
            return str(s.scalar("SELECT CURRENT_USER()"))

    # -- schema --------------------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Create the control schema and apply pending migrations; returns the versions applied now.

        Safe to call from many workers at once: the work runs under ``GET_LOCK`` and each version is
        applied once. Needs CREATE privileges only when the schema does not exist yet.
        """
        lock = _migration_lock_name(self.schema)
        applied_now: list[int] = []
        with self._session() as s:
            got = s.scalar("SELECT GET_LOCK(%s, %s)", (lock, MIGRATION_LOCK_TIMEOUT_S))
            if got != 1:
                raise RegistryError(
                    f"could not get the migration lock of control schema {self.schema} within "
                    f"{MIGRATION_LOCK_TIMEOUT_S} s; another migration may be stuck."
                )
            try:
                exists = s.scalar(
                    "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = %s", (self.schema,)
                )
                if not exists:
                    s.execute(
                        f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.schema)} "
                        "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                    )
                    log.info("created control schema %s", self.schema)
                s.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._migrations} ("
                    "`version` INT NOT NULL PRIMARY KEY, `name` VARCHAR(200) NOT NULL, "
                    "`applied_at` DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
                )
                done = {int(r["version"]) for r in s.query(f"SELECT `version` FROM {self._migrations}")}
                for migration in MIGRATIONS:
                    if migration.version in done:
                        continue
                    for statement in migration.statements:
                        try:
                            s.execute(statement.format(schema=quote_identifier(self.schema)))
                        except Exception as exc:
                            if not (exc.args and exc.args[0] == ER_DUP_FIELDNAME):
                                raise
                            log.info("migration %s: its column exists already", migration.version)
                    s.execute(
                        f"INSERT INTO {self._migrations} (`version`, `name`, `applied_at`) "
                        "VALUES (%s, %s, UTC_TIMESTAMP(6))",
                        (migration.version, migration.name),
                    )
                    applied_now.append(migration.version)
                    log.info(
                        "control schema %s: applied migration %s (%s)",
                        self.schema,
                        migration.version,
                        migration.name,
                    )
            finally:
                s.scalar("SELECT RELEASE_LOCK(%s)", (lock,))
        return applied_now

    def schema_version(self) -> int:
        """The newest migration recorded in the control schema; 0 when it has none (or no schema yet)."""
        with self._session() as s:
            recorded = s.scalar(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name = 'schema_migrations'",
                (self.schema,),
            )
            if not recorded:
                return 0
            return int(s.scalar(f"SELECT COALESCE(MAX(`version`), 0) FROM {self._migrations}") or 0)

    def check_schema(self) -> None:
        """RegistryError with one sentence naming the command that migrates it when the control schema is
        behind this wpclone (one query; a newer schema is fine: migrations only add)."""
        version = self.schema_version()
        if version < SCHEMA_VERSION:
            raise RegistryError(
                f"the clone registry in control schema {self.schema} is at version {version} but this "
                f"wpclone needs version {SCHEMA_VERSION}: run `{PROVISION_COMMAND}` (it migrates the "
                "registry)."
            )

    def applied_versions(self) -> list[int]:
        with self._session() as s:
            rows = s.query(f"SELECT `version` FROM {self._migrations} ORDER BY `version`")
        return [int(r["version"]) for r in rows]

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, clone_id: str) -> CloneRecord | None:
        with self._session() as s:
            return self._get(s, clone_id)

    def _get(self, s: _Session, clone_id: str) -> CloneRecord | None:
        rows = s.query(f"SELECT {_SELECT} FROM {self._clones} WHERE `clone_id` = %s", (clone_id,))
        return CloneRecord.from_row(rows[0]) if rows else None

    def list(
        self,
        status: CloneStatus | None = None,
        source_url: str | Sequence[str] | None = None,
        *,
        live: bool = False,
    ) -> builtins.list[CloneRecord]:
        """Clones, oldest first, optionally only those with ``status`` and/or from ``source_url`` (one URL,
        or any of several spellings of it); with ``live``, none that is deleted."""
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("`status` = %s")
            args.append(CloneStatus(status).value)
        if source_url is not None:
            urls = [source_url] if isinstance(source_url, str) else list(source_url)
            where.append(f"`source_url` IN ({', '.join(['%s'] * len(urls))})")
            args.extend(urls)
        if live:
            where.append("`status` <> 'deleted'")
        sql = f"SELECT {_SELECT} FROM {self._clones}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY `created_at`, `clone_id`"
        with self._session() as s:
            return [CloneRecord.from_row(r) for r in s.query(sql, args)]

    def set_expiry(self, clone_id: str, expires_at: datetime) -> CloneRecord | None:
        """A ``ready`` clone's new ``expires_at`` (wpclone.services.expiry.extend_clone); returns the row
        after, whose unchanged ``expires_at`` says the clone was not ready (None: it does not exist)."""
        _check_clone_id(clone_id)
        with self._session() as s:
            s.execute(
                f"UPDATE {self._clones} SET `expires_at` = %s, `updated_at` = UTC_TIMESTAMP(6) "
                "WHERE `clone_id` = %s AND `status` = 'ready'",
                (utc_naive(expires_at), clone_id),
            )
            return self._get(s, clone_id)

    def expired(self, now: datetime) -> builtins.list[str]:
        """Ids of unlocked ``ready``/``failed`` clones whose ``expires_at`` <= ``now``, earliest first."""
        with self._session() as s:
            rows = s.query(
                f"SELECT `clone_id` FROM {self._clones} WHERE `expires_at` <= %s "
                "AND `status` IN ('ready', 'failed') AND `lock_job_id` IS NULL "
                "ORDER BY `expires_at`, `clone_id`",
                (utc_naive(now),),
            )
        return [str(r["clone_id"]) for r in rows]

    def live_clone_ids(self) -> set[str]:
        """Ids whose objects must be kept: provisioning, ready, deleting, or locked by a job."""
        with self._session() as s:
            rows = s.query(
                f"SELECT `clone_id` FROM {self._clones} WHERE `lock_job_id` IS NOT NULL "
                "OR `status` IN ('accepted', 'provisioning', 'ready', 'deleting')"
            )
        return {str(r["clone_id"]) for r in rows}

    def get_with_database(self, clone_id: str, db_name: str) -> tuple[CloneRecord | None, bool]:
        """The clone's record (None if it has none) and whether a database ``db_name`` exists on the
        server the registry lives on (the clones' server): one round trip, for the jobs API's checks."""
        with self._session() as s:
            rows = s.query(
                f"SELECT {_SELECT_C}, "
                "EXISTS(SELECT 1 FROM information_schema.schemata WHERE schema_name = %s) AS `_db_exists` "
                f"FROM (SELECT 1) AS one LEFT JOIN {self._clones} AS c ON c.`clone_id` = %s",
                (db_name, clone_id),
            )
        row = rows[0]
        db_exists = bool(row.pop("_db_exists"))
        return (CloneRecord.from_row(row) if row["clone_id"] is not None else None), db_exists

    # -- accepted jobs -------------------------------------------------------------------------------------

    def record_job(
        self, job_id: str, dag_id: str, conf: Mapping[str, Any], requested_by: str, clone_id: str | None
    ) -> JobRecord:
        """Record a job the API accepted, before its DAG run exists; returns the row."""
        _check_job_id(job_id)
        if clone_id is not None:
            _check_clone_id(clone_id)
        record = JobRecord(
            job_id=job_id,
            dag_id=dag_id,
            clone_id=clone_id,
            conf=dict(conf),
            requested_by=requested_by[:250],
            created_at=datetime.now(UTC),
            triggered_at=None,
            error=None,
        )
        with self._session() as s:
            s.execute(
                f"INSERT INTO {self._jobs} (`job_id`, `dag_id`, `clone_id`, `conf`, `requested_by`, "
                "`created_at`) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    job_id,
                    dag_id,
                    clone_id,
                    json.dumps(record.conf, sort_keys=True),
                    record.requested_by,
                    utc_naive(record.created_at),
                ),
            )
        return record

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._session() as s:
            return self._get_job(s, job_id)

    def _get_job(self, s: _Session, job_id: str) -> JobRecord | None:
        rows = s.query(f"SELECT {_JOB_COLUMNS} FROM {self._jobs} WHERE `job_id` = %s", (job_id,))
        return JobRecord.from_row(rows[0]) if rows else None

    def untriggered_jobs(self, created_before: datetime) -> builtins.list[JobRecord]:
        """Accepted jobs whose run was never triggered (nor refused), created before ``created_before``."""
        with self._session() as s:
            rows = s.query(
                f"SELECT {_JOB_COLUMNS} FROM {self._jobs} WHERE `triggered_at` IS NULL AND `error` IS NULL "
                "AND `created_at` < %s ORDER BY `created_at`",
                (utc_naive(created_before),),
            )
        return [JobRecord.from_row(r) for r in rows]

    def mark_job_triggered(self, job_id: str, error: str | None = None) -> None:
        """The job's run exists now (or could not be created: ``error``); its conf is no longer kept."""
        with self._session() as s:
            if error is None:
                s.execute(
                    f"UPDATE {self._jobs} SET `triggered_at` = UTC_TIMESTAMP(6), `conf` = NULL "
                    "WHERE `job_id` = %s AND `triggered_at` IS NULL",
                    (job_id,),
                )
            else:
                s.execute(
                    f"UPDATE {self._jobs} SET `error` = %s, `conf` = NULL WHERE `job_id` = %s",
                    (error[:MAX_ERROR_CHARS], job_id),
                )

    def cancel_untriggered_job(self, job_id: str, reason: str) -> bool:
        """Refuse an accepted job whose run was not created yet (its error becomes ``reason``, so no
        dispatcher starts it) and give back the clone id it holds; returns whether it was untriggered."""
        with self._session() as s:
            changed = s.execute(
                f"UPDATE {self._jobs} SET `error` = %s, `conf` = NULL "
                "WHERE `job_id` = %s AND `triggered_at` IS NULL AND `error` IS NULL",
                (reason[:MAX_ERROR_CHARS], job_id),
            )
            job = self._get_job(s, job_id)
        if changed and job is not None and job.clone_id:
            self.mark_failed(job.clone_id, job_id, reason)
        return bool(changed)

    def unstarted_jobs(
        self,
        dag_ids: Sequence[str],
        *,
        ended: bool | None = None,
        cancelled: bool | None = None,
        clone_id: str | None = None,
        requested_by: str | None = None,
        since: datetime | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> builtins.list[JobRecord]:
        """Accepted jobs whose run was never created, newest first (the jobs listing's part of them):
        ``ended`` False: still to start; True: refused (``cancelled``: True those cancelled, False the
        others); ``before``: only those after (created_at, job_id) in that order."""
        where = [f"`dag_id` IN ({', '.join(['%s'] * len(dag_ids))})", "`triggered_at` IS NULL"]
        args: list[Any] = list(dag_ids)
        if ended is not None:
            where.append("`error` IS NOT NULL" if ended else "`error` IS NULL")
        if cancelled is not None:
            where.append(("" if cancelled else "NOT ") + "`error` LIKE 'cancelled%%'")
        for column, value in (("clone_id", clone_id), ("requested_by", requested_by)):
            if value is not None:
                where.append(f"`{column}` = %s")
                args.append(value)
        if since is not None:
            where.append("`created_at` >= %s")
            args.append(utc_naive(since))
        if before is not None:
            where.append("(`created_at` < %s OR (`created_at` = %s AND `job_id` < %s))")
            args.extend([utc_naive(before[0]), utc_naive(before[0]), before[1]])
        if not dag_ids:
            return []
        sql = (
            f"SELECT {_JOB_COLUMNS} FROM {self._jobs} WHERE {' AND '.join(where)} "
            "ORDER BY `created_at` DESC, `job_id` DESC LIMIT %s"
        )
        with self._session() as s:
            return [JobRecord.from_row(r) for r in s.query(sql, [*args, limit])]

    def purge_jobs(
        self, created_before: datetime, is_final: Callable[[JobRecord], bool], batch: int = 1000
    ) -> builtins.list[str]:
        """Delete the rows of jobs accepted before ``created_before`` that have ended (retention); returns
        their ids. A job that has not ended keeps its row: one still to start, one that holds a clone's
        lock, and one whose run ``is_final`` (the caller reads Airflow) says is not final. A refused job
        (its ``error``) has ended. At most ``batch`` rows a call, oldest first."""
        with self._session() as s:
            rows = s.query(
                f"SELECT {_JOB_COLUMNS} FROM {self._jobs} j WHERE `created_at` < %s "
                "AND (`triggered_at` IS NOT NULL OR `error` IS NOT NULL) "
                f"AND NOT EXISTS (SELECT 1 FROM {self._clones} c WHERE c.`lock_job_id` = j.`job_id`) "
                "ORDER BY `created_at` LIMIT %s",
                (utc_naive(created_before), batch),
            )
        ended = [
            job.job_id for job in map(JobRecord.from_row, rows) if job.error is not None or is_final(job)
        ]
        if ended:
            with self._session() as s:
                s.execute(
                    f"DELETE FROM {self._jobs} WHERE `created_at` < %s "
                    f"AND `job_id` IN ({', '.join(['%s'] * len(ended))})",
                    (utc_naive(created_before), *ended),
                )
        return ended

    # -- transitions ---------------------------------------------------------------------------------------

    def accept(
        self, plan: ClonePlan, job_id: str, dag_id: str, conf: Mapping[str, Any], requested_by: str
    ) -> JobRecord:
        """Take ``plan.clone_id`` for the clone job ``job_id`` and record that job (the jobs API's accept).

        The clone's row is written ``accepted``, locked by the job, by the one statement that checks the id
        is free (absent, or ``deleted`` with no lock); CloneTaken with one sentence when it is not. The job
        is recorded after; should that fail, the row is given back.
        """
        clone_id = _check_clone_id(plan.clone_id)
        _check_job_id(job_id)
        free = "(`status` = 'deleted' AND `lock_job_id` IS NULL)"
        # A duplicate key takes the new values only when the row is free; `lock_job_id` and then `status`
        # are assigned last, as MySQL evaluates the assignments in order against the row being updated.
        taken = {c: f"VALUES(`{c}`)" for c in ("source_url", "url", "db_name", "copy_mode", "expires_at")}
        taken.update(last_job_id="VALUES(`last_job_id`)", created_at="UTC_TIMESTAMP(6)")
        taken.update(updated_at="UTC_TIMESTAMP(6)", deleted_at="NULL", last_error="NULL")
        taken["requested_by"] = "VALUES(`requested_by`)"
        taken["lock_job_id"] = "VALUES(`lock_job_id`)"
        updates = ", ".join(f"`{c}` = IF({free}, {v}, `{c}`)" for c, v in taken.items())
        took = "`lock_job_id` = VALUES(`lock_job_id`) AND `status` = 'deleted'"
        with self._session() as s:
            s.execute(
                f"INSERT INTO {self._clones} (`clone_id`, `status`, `source_url`, `url`, `db_name`, "
                "`copy_mode`, `created_at`, `expires_at`, `updated_at`, `last_job_id`, `lock_job_id`, "
                "`requested_by`) VALUES (%s, 'accepted', %s, %s, %s, %s, UTC_TIMESTAMP(6), %s, "
                "UTC_TIMESTAMP(6), %s, %s, %s) "
                f"ON DUPLICATE KEY UPDATE {updates}, `status` = IF({took}, 'accepted', `status`)",
                (clone_id, *_plan_row(plan, job_id), requested_by[:MAX_JOB_ID]),
            )
            record = self._get(s, clone_id)
        if record is None or record.lock_job_id != job_id:
            status = record.status.value if record else "unknown"
            by = f" by job {record.lock_job_id}" if record and record.lock_job_id else ""
            raise CloneTaken(
                f"clone {clone_id} already exists (status {status}{by}); choose another clone id or "
                "delete it first."
            )
        try:
            return self.record_job(job_id, dag_id, conf, requested_by, clone_id)
        except BaseException:
            with self._session() as s:
                s.execute(
                    f"UPDATE {self._clones} SET `status` = 'deleted', `lock_job_id` = NULL, "
                    "`deleted_at` = UTC_TIMESTAMP(6) WHERE `clone_id` = %s AND `status` = 'accepted' "
                    "AND `lock_job_id` = %s",
                    (clone_id, job_id),
                )
            raise

    def reserve(self, plan: ClonePlan, job_id: str) -> CloneRecord:
        """Create the clone's row as ``provisioning``, locked by ``job_id`` (or take the row the jobs API
        ``accept``-ed for this job); idempotent for that job.

        Refuses (RegistryError) when the id exists in any state but ``deleted`` for another job.
        """
        clone_id = _check_clone_id(plan.clone_id)
        _check_job_id(job_id)
        for value, what in ((plan.url, "clone URL"), (plan.source.url, "source URL")):
            if len(value) > MAX_URL:
                raise RegistryError(f"the {what} is longer than {MAX_URL} characters.")
        check_identifier(plan.db_name, "database name")
        values = _plan_row(plan, job_id)
        with self._session() as s:
            # Insert unless the id exists (no-op update on the primary key; strict mode stays in force).
            s.execute(
                f"INSERT INTO {self._clones} (`clone_id`, `status`, `source_url`, `url`, `db_name`, "
                "`copy_mode`, `created_at`, `expires_at`, `updated_at`, `last_job_id`, `lock_job_id`) "
                "VALUES (%s, 'provisioning', %s, %s, %s, %s, UTC_TIMESTAMP(6), %s, UTC_TIMESTAMP(6), %s, %s) "
                "ON DUPLICATE KEY UPDATE `clone_id` = `clone_id`",
                (clone_id, *values),
            )
            # Overwrite a deleted row, or re-take this job's own failed clone (a re-run of the job).
            s.execute(
                f"UPDATE {self._clones} SET `status` = 'provisioning', `source_url` = %s, `url` = %s, "
                "`db_name` = %s, `copy_mode` = %s, `created_at` = UTC_TIMESTAMP(6), `expires_at` = %s, "
                "`updated_at` = UTC_TIMESTAMP(6), `deleted_at` = NULL, `last_job_id` = %s, "
                "`last_error` = NULL, `lock_job_id` = %s WHERE `clone_id` = %s AND ("
                "(`status` = 'deleted' AND `lock_job_id` IS NULL) OR (`status` = 'failed' "
                "AND `last_job_id` = %s AND (`lock_job_id` IS NULL OR `lock_job_id` = %s)) "
                "OR (`status` = 'accepted' AND `lock_job_id` = %s))",
                (*values, clone_id, job_id, job_id, job_id),
            )
            record = self._get(s, clone_id)
        if (
            record is not None
            and record.last_job_id == job_id
            and record.status in (CloneStatus.PROVISIONING, CloneStatus.READY)
        ):
            log.info("clone %s reserved by job %s (status %s)", clone_id, job_id, record.status.value)
            return record
        status = record.status.value if record else "unknown"
        raise CloneTaken(
            f"clone {clone_id} already exists (status {status}); choose another clone id or delete it first."
        )

    def lock(self, clone_id: str, job_id: str) -> CloneRecord:
        """Take a ``ready`` clone's lock for a job that changes it in place (backup, restore): the clone stays
        ``ready`` and keeps serving; delete, TTL cleanup and other jobs wait. Idempotent for the job."""
        return self._transition(
            clone_id,
            job_id,
            assignments="`lock_job_id` = %s",
            guard="`status` = 'ready' AND (`lock_job_id` IS NULL OR `lock_job_id` = %s)",
            target=CloneStatus.READY,
            verb="locked",
            set_args=(job_id,),
            lock_after=job_id,
        )

    def unlock(self, clone_id: str, job_id: str, error: str | None = None) -> CloneRecord | None:
        """Release the lock ``job_id`` holds on a ``ready`` clone, recording ``error`` (or clearing it)."""
        _check_clone_id(clone_id)
        with self._session() as s:
            s.execute(
                f"UPDATE {self._clones} SET `lock_job_id` = NULL, `last_error` = %s, `last_job_id` = %s, "
                "`updated_at` = UTC_TIMESTAMP(6) WHERE `clone_id` = %s AND `lock_job_id` = %s",
                (error[:MAX_ERROR_CHARS] if error else None, job_id, clone_id, job_id),
            )
            return self._get(s, clone_id)

    def mark_ready(self, clone_id: str, job_id: str) -> CloneRecord:
        """provisioning (locked by ``job_id``) -> ready, lock released."""
        return self._transition(
            clone_id,
            job_id,
            assignments="`status` = 'ready', `last_error` = NULL, `lock_job_id` = NULL",
            guard="`status` = 'provisioning' AND `lock_job_id` = %s",
            target=CloneStatus.READY,
            verb="marked ready",
        )

    def mark_failed(
        self, clone_id: str, job_id: str, error: str, *, only_accepted: bool = False
    ) -> CloneRecord | None:
        """accepted/provisioning/deleting (locked by ``job_id``) -> failed with ``error``, lock released;
        with ``only_accepted``, only a clone its job never reserved (a reserved clone is released by its
        job's rollback, never from outside).

        Returns None, changing nothing, when ``job_id`` does not hold the clone (e.g. the rollback of a job
        whose reserve was refused): a rollback must never touch another job's clone, nor fail for it.
        """
        states = "'accepted'" if only_accepted else "'accepted', 'provisioning', 'deleting'"
        try:
            return self._transition(
                clone_id,
                job_id,
                assignments="`status` = 'failed', `last_error` = %s, `lock_job_id` = NULL",
                set_args=(error[:MAX_ERROR_CHARS],),
                guard=f"`status` IN ({states}) AND `lock_job_id` = %s",
                target=CloneStatus.FAILED,
                verb="marked failed",
            )
        except RegistryError as exc:
            log.info("not recording the failure of job %s on clone %s: %s", job_id, clone_id, exc)
            return None

    def begin_delete(self, clone_id: str, job_id: str) -> CloneRecord:
        """Take the lock for a delete: any non-deleted clone not locked by another job -> deleting."""
        return self._transition(
            clone_id,
            job_id,
            assignments="`status` = 'deleting', `lock_job_id` = %s",
            set_args=(job_id,),
            guard="`status` <> 'deleted' AND (`lock_job_id` IS NULL OR `lock_job_id` = %s)",
            target=CloneStatus.DELETING,
            verb="deleted",
        )

    def mark_deleted(self, clone_id: str, job_id: str) -> CloneRecord:
        """deleting (locked by ``job_id``) -> deleted, ``deleted_at`` set, lock released."""
        return self._transition(
            clone_id,
            job_id,
            assignments="`status` = 'deleted', `deleted_at` = UTC_TIMESTAMP(6), `lock_job_id` = NULL",
            guard="`status` = 'deleting' AND `lock_job_id` = %s",
            target=CloneStatus.DELETED,
            verb="marked deleted",
        )

    def release_held(self, job_id: str, error: str) -> builtins.list[CloneRecord]:
        """The clones ``job_id`` still holds once its run has ended, released with ``error``: its rollback
        never ran (the run's time limit skips it) or failed. A clone being made or deleted becomes ``failed``
        (no longer live: the TTL cleanup's sweep removes what is left of it); a ready one (a backup's or a
        restore's) is unlocked and stays ready. Returns them as they are now."""
        _check_job_id(job_id)
        with self._session() as s:
            held = [
                str(r["clone_id"])
                for r in s.query(f"SELECT `clone_id` FROM {self._clones} WHERE `lock_job_id` = %s", (job_id,))
            ]
            s.execute(
                f"UPDATE {self._clones} SET `status` = IF(`status` = 'ready', 'ready', 'failed'), "
                "`lock_job_id` = NULL, `last_error` = %s, `last_job_id` = %s, "
                "`updated_at` = UTC_TIMESTAMP(6) WHERE `lock_job_id` = %s",
                (error[:MAX_ERROR_CHARS], job_id, job_id),
            )
            released = [record for clone_id in held if (record := self._get(s, clone_id)) is not None]
        for record in released:
            log.warning(
                "clone %s: released from job %s, which ended holding it (%s)",
                record.clone_id,
                job_id,
                record.status.value,
            )
        return released

    def _transition(
        self,
        clone_id: str,
        job_id: str,
        *,
        assignments: str,
        guard: str,
        target: CloneStatus,
        verb: str,
        set_args: tuple[Any, ...] = (),
        lock_after: str | None = None,
    ) -> CloneRecord:
        """One guarded UPDATE; on no match, succeed only if this job already made the same transition."""
        _check_clone_id(clone_id)
        _check_job_id(job_id)
        with self._session() as s:
            changed = s.execute(
                f"UPDATE {self._clones} SET {assignments}, `last_job_id` = %s, "
                f"`updated_at` = UTC_TIMESTAMP(6) WHERE `clone_id` = %s AND {guard}",
                (*set_args, job_id, clone_id, job_id),
            )
            record = self._get(s, clone_id)
        if record is None:
            raise RegistryError(f"clone {clone_id} does not exist.")
        # Our UPDATE won; or it matched nothing because this job already made this transition (a retry).
        lock_after = job_id if target is CloneStatus.DELETING else lock_after
        if changed or (
            record.status is target and record.last_job_id == job_id and record.lock_job_id == lock_after
        ):
            log.info("clone %s: %s by job %s", clone_id, target.value, job_id)
            return record
        if record.lock_job_id is not None and record.lock_job_id != job_id:
            raise RegistryError(
                f"clone {clone_id} is being worked on by job {record.lock_job_id} "
                f"(status {record.status.value}); try again when it finishes."
            )
        if record.status is CloneStatus.DELETED:
            raise RegistryError(f"clone {clone_id} is already deleted.")
        raise RegistryError(
            f"clone {clone_id} cannot be {verb} by job {job_id}: it is {record.status.value} "
            f"and {'not locked' if record.lock_job_id is None else 'locked by that job'}."
        )


class _Session:
    """Statements on one connection, each committed at once; rows as dicts whatever the cursor class."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> int:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, tuple(args) if args is not None else None)
            count = int(cur.rowcount)
            if cur.description is not None:
                cur.fetchall()
        finally:
            cur.close()
        self._commit()
        return count

    def query(self, sql: str, args: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, tuple(args) if args is not None else None)
            names = [str(_text(d[0])) for d in cur.description or ()]
            rows = [
                {k: _text(v) for k, v in row.items()}
                if isinstance(row, Mapping)
                else dict(zip(names, (_text(v) for v in row), strict=True))
                for row in cur.fetchall()
            ]
        finally:
            cur.close()
        self._commit()  # ends the read snapshot when autocommit is off
        return rows

    def _commit(self) -> None:
        autocommit = getattr(self.conn, "get_autocommit", None)  # MySQLdb and PyMySQL: a local flag
        if autocommit is None or not autocommit():  # under autocommit there is nothing to commit
            self.conn.commit()

    def scalar(self, sql: str, args: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, args)
        return next(iter(rows[0].values())) if rows else None
