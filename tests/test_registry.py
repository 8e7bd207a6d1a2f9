"""The clone registry on the real local MariaDB, through both drivers: PyMySQL and mysqlclient (MySQLdb).

Every test gets its own throw-away control schema (dropped afterwards). The MySQLdb connections keep the
driver's default (autocommit off, as Airflow's MySqlHook hands them out); the PyMySQL ones autocommit.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import MySQLdb
import pytest

from wpclone.db import ConnectionPool, DbEndpoint, quote_identifier
from wpclone.errors import CloneTaken, ConfigError, RegistryError
from wpclone.models import ClonePlan, CloneStatus, CopyMode, SourceConfig, clone_db_name, url_spellings
from wpclone.registry import MIGRATIONS, SCHEMA_VERSION, CloneRecord, Connection, Registry

SOURCE = SourceConfig.model_validate(
    {
        "name": "source",
        "url": "http://source.localhost:8080",
        "db_host": "127.0.0.1",
        "db_name": "wp_source",
        "db_user": "wp_source",
    }
)
NOW = datetime.now(UTC)


def plan(clone_id: str, expires_at: datetime | None = None, ttl: int = 60) -> ClonePlan:
    return ClonePlan(
        clone_id=clone_id,
        source=SOURCE,
        url=f"http://{clone_id}.localhost:8080",
        db_name=clone_db_name(clone_id),
        ttl_minutes=ttl,
        copy_mode=CopyMode.EVERYTHING,
        expires_at=expires_at or NOW + timedelta(minutes=ttl),
    )


def pymysql_factory(admin: DbEndpoint) -> Callable[[], Connection]:
    return lambda: cast(Connection, admin.connect())


def mysqldb_factory(admin: DbEndpoint) -> Callable[[], Connection]:
    def connect() -> Connection:
        conn: Any = MySQLdb.connect(
            host=admin.host, port=admin.port, user=admin.user, password=admin.password, charset="utf8mb4"
        )
        return cast(Connection, conn)

    return connect


FACTORIES = {"pymysql": pymysql_factory, "mysqldb": mysqldb_factory}


def drop_schema(admin: DbEndpoint, schema: str) -> None:
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {quote_identifier(schema)}")


@pytest.fixture(params=sorted(FACTORIES))
def factory(request: pytest.FixtureRequest, admin_db: DbEndpoint) -> Callable[[], Connection]:
    return FACTORIES[request.param](admin_db)


@pytest.fixture
def schema(admin_db: DbEndpoint) -> Iterator[str]:
    name = f"wpclone_control_test_{secrets.token_hex(4)}"
    yield name
    drop_schema(admin_db, name)


@pytest.fixture
def registry(factory: Callable[[], Connection], schema: str) -> Registry:
    reg = Registry(factory, schema)
    assert reg.migrate() == [m.version for m in MIGRATIONS]
    return reg


def raw(admin: DbEndpoint, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with admin.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


# -- schema ----------------------------------------------------------------------------------------------


def test_migrate_twice_is_a_no_op(registry: Registry, admin_db: DbEndpoint) -> None:
    before = raw(admin_db, f"SELECT version, applied_at FROM {registry.schema}.schema_migrations")
    assert registry.migrate() == []
    assert raw(admin_db, f"SELECT version, applied_at FROM {registry.schema}.schema_migrations") == before
    assert registry.applied_versions() == [m.version for m in MIGRATIONS]


def test_a_schema_behind_this_wpclone_is_refused_naming_the_provision_command(
    factory: Callable[[], Connection], schema: str, admin_db: DbEndpoint
) -> None:
    """Tasks only check the version (provisioning migrates): a missing or older schema is one sentence."""
    reg = Registry(factory, schema)
    behind = r"is at version {} but this wpclone needs version {}: run `python -m wpclone.provision`"
    with pytest.raises(RegistryError, match=behind.format(0, SCHEMA_VERSION)):
        reg.check_schema()  # no schema at all
    assert not raw(admin_db, "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,))
    reg.migrate()
    reg.check_schema()
    raw(admin_db, f"DELETE FROM {schema}.schema_migrations WHERE version = %s", (SCHEMA_VERSION,))
    with pytest.raises(RegistryError, match=behind.format(SCHEMA_VERSION - 1, SCHEMA_VERSION)):
        reg.check_schema()
    assert reg.migrate() == [SCHEMA_VERSION] and reg.schema_version() == SCHEMA_VERSION
    reg.check_schema()


def test_schema_has_the_columns_indexes_and_statuses(registry: Registry, admin_db: DbEndpoint) -> None:
    columns = dict(
        raw(
            admin_db,
            "SELECT column_name, column_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'clones'",
            (registry.schema,),
        )
    )
    for name in ("created_at", "expires_at", "updated_at", "deleted_at"):
        assert columns[name] == "datetime(6)"
    assert columns["clone_id"] == "varchar(28)"
    # A new CloneStatus needs a new migration that extends the ENUM.
    assert columns["status"] == "enum(" + ",".join(f"'{s.value}'" for s in CloneStatus) + ")"
    indexed = {
        row[0]
        for row in raw(
            admin_db,
            "SELECT column_name FROM information_schema.statistics "
            "WHERE table_schema = %s AND table_name = 'clones' AND index_name <> 'PRIMARY'",
            (registry.schema,),
        )
    }
    assert indexed == {"status", "expires_at"}


def test_concurrent_migrate_from_four_threads(factory: Callable[[], Connection], schema: str) -> None:
    barrier = threading.Barrier(4)

    def run() -> list[int]:
        reg = Registry(factory, schema)
        barrier.wait()
        return reg.migrate()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(), range(4)))
    assert sorted(results, key=len) == [[], [], [], [m.version for m in MIGRATIONS]]
    assert Registry(factory, schema).applied_versions() == [m.version for m in MIGRATIONS]


@pytest.mark.parametrize("bad", ["wpclone;drop", "Wpclone", "a`b", "x y", "", "a" * 65, "../x"])
def test_bad_schema_names_are_refused(factory: Callable[[], Connection], bad: str) -> None:
    with pytest.raises(ConfigError, match=r"control schema name .* is not valid"):
        Registry(factory, bad)


# -- reserve ---------------------------------------------------------------------------------------------


def test_reserve_is_idempotent_for_its_job_and_refused_for_others(registry: Registry) -> None:
    record = registry.reserve(plan("alpha"), "job-1")
    assert record.status is CloneStatus.PROVISIONING
    assert record.lock_job_id == record.last_job_id == "job-1"
    assert record.db_name == "wpc_alpha"
    assert record.source_url == SOURCE.url
    assert record.created_at.tzinfo is UTC
    assert abs(record.expires_at - (NOW + timedelta(minutes=60))) < timedelta(milliseconds=1)

    again = registry.reserve(plan("alpha"), "job-1")
    assert again == record

    with pytest.raises(CloneTaken) as exc:  # the job fails at once: a retry cannot free the id
        registry.reserve(plan("alpha"), "job-2")
    assert str(exc.value) == (
        "clone alpha already exists (status provisioning); choose another clone id or delete it first."
    )
    registry.mark_ready("alpha", "job-1")
    with pytest.raises(RegistryError, match=r"^clone alpha already exists \(status ready\);"):
        registry.reserve(plan("alpha"), "job-3")
    assert registry.get("alpha") == registry.reserve(plan("alpha"), "job-1")  # a late retry: unchanged


def test_concurrent_reserves_of_one_id_have_one_winner(registry: Registry) -> None:
    barrier = threading.Barrier(8)

    def attempt(n: int) -> str:
        barrier.wait()
        try:
            return registry.reserve(plan("contested"), f"job-{n}").last_job_id
        except RegistryError:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1
    record = registry.get("contested")
    assert record is not None and record.lock_job_id == winners[0]


def test_invalid_clone_and_job_ids_are_refused(registry: Registry) -> None:
    for bad in ("a;drop", "../x", "$(id)", "Upper"):
        with pytest.raises(RegistryError, match="is not valid"):
            registry.reserve(plan("ok-id").model_copy(update={"clone_id": bad}), "job-1")
        with pytest.raises(RegistryError, match="is not valid"):
            registry.begin_delete(bad, "job-1")
    with pytest.raises(RegistryError, match="job id '' is not valid"):
        registry.reserve(plan("ok-id"), "")
    assert registry.list() == []


# -- locks and lifecycle -----------------------------------------------------------------------------------


def test_full_lifecycle(registry: Registry) -> None:
    registry.reserve(plan("life"), "clone-job")
    ready = registry.mark_ready("life", "clone-job")
    assert ready.status is CloneStatus.READY and ready.lock_job_id is None and ready.last_error is None
    assert registry.mark_ready("life", "clone-job") == ready  # retry
    assert registry.live_clone_ids() == {"life"}

    deleting = registry.begin_delete("life", "delete-job")
    assert deleting.status is CloneStatus.DELETING
    assert deleting.lock_job_id == deleting.last_job_id == "delete-job"
    assert registry.begin_delete("life", "delete-job").lock_job_id == "delete-job"  # retry re-takes its lock
    assert registry.live_clone_ids() == {"life"}

    deleted = registry.mark_deleted("life", "delete-job")
    assert deleted.status is CloneStatus.DELETED
    assert deleted.lock_job_id is None
    assert deleted.deleted_at is not None and deleted.deleted_at >= deleted.created_at
    assert registry.mark_deleted("life", "delete-job") == deleted  # retry
    assert registry.live_clone_ids() == set()

    with pytest.raises(RegistryError) as exc:
        registry.begin_delete("life", "another-delete")
    assert str(exc.value) == "clone life is already deleted."
    with pytest.raises(RegistryError) as exc:
        registry.begin_delete("nope", "delete-job")
    assert str(exc.value) == "clone nope does not exist."


def test_delete_is_refused_while_another_job_holds_the_lock(registry: Registry) -> None:
    registry.reserve(plan("busy"), "clone-job")
    with pytest.raises(RegistryError) as exc:
        registry.begin_delete("busy", "delete-job")
    assert str(exc.value) == (
        "clone busy is being worked on by job clone-job (status provisioning); try again when it finishes."
    )
    # The refused job changed nothing; the holder may re-take its own lock (its rollback deletes).
    record = registry.get("busy")
    assert record is not None
    assert (record.status, record.lock_job_id) == (CloneStatus.PROVISIONING, "clone-job")
    assert registry.begin_delete("busy", "clone-job").lock_job_id == "clone-job"

    # While the delete runs, nobody else gets in: not another delete, not the clone job's mark_ready.
    with pytest.raises(RegistryError, match="being worked on by job clone-job"):
        registry.begin_delete("busy", "delete-job")
    with pytest.raises(RegistryError, match="cannot be marked ready by job clone-job: it is deleting"):
        registry.mark_ready("busy", "clone-job")
    registry.mark_deleted("busy", "clone-job")


def test_concurrent_deletes_of_one_clone_have_one_winner(registry: Registry) -> None:
    registry.reserve(plan("twice"), "clone-job")
    registry.mark_ready("twice", "clone-job")
    barrier = threading.Barrier(6)

    def attempt(n: int) -> bool:
        barrier.wait()
        try:
            registry.begin_delete("twice", f"delete-{n}")
        except RegistryError as exc:
            assert "is being worked on by job delete-" in str(exc)
            return False
        return True

    with ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(attempt, range(6))) == [False] * 5 + [True]


def test_mark_failed_records_the_reason_and_releases_the_lock(registry: Registry) -> None:
    registry.reserve(plan("broken"), "clone-job")
    # Another job's rollback (e.g. its reserve was refused) must not touch the clone.
    assert registry.mark_failed("broken", "other-job", "nope") is None
    assert registry.mark_failed("unknown", "other-job", "nope") is None
    failed = registry.mark_failed("broken", "clone-job", "the source database is unreachable.")
    assert failed is not None
    assert failed.status is CloneStatus.FAILED and failed.lock_job_id is None
    assert failed.last_error == "the source database is unreachable."
    assert "broken" not in registry.live_clone_ids()
    # Another job may not reuse the id; the failing job may (a cleared, re-run DAG run).
    with pytest.raises(RegistryError, match=r"already exists \(status failed\)"):
        registry.reserve(plan("broken"), "job-2")
    again = registry.reserve(plan("broken"), "clone-job")
    assert again.status is CloneStatus.PROVISIONING and again.last_error is None
    assert again.lock_job_id == "clone-job"


def test_a_job_that_ended_holding_clones_releases_them(registry: Registry) -> None:
    """Its rollback never ran: a clone it was making fails (and is no longer live, so the sweep removes it),
    a ready clone it had locked is unlocked and stays ready; other jobs' clones are untouched."""
    registry.reserve(plan("half-made"), "timed-out")
    registry.reserve(plan("backed-up"), "made-it")
    registry.mark_ready("backed-up", "made-it")
    registry.lock("backed-up", "timed-out")
    registry.reserve(plan("bystander"), "another-job")
    released = {r.clone_id: r for r in registry.release_held("timed-out", "the job ran out of time.")}
    assert set(released) == {"half-made", "backed-up"}
    assert released["half-made"].status is CloneStatus.FAILED and released["half-made"].lock_job_id is None
    assert released["backed-up"].status is CloneStatus.READY and released["backed-up"].lock_job_id is None
    assert all(r.last_error == "the job ran out of time." for r in released.values())
    assert "half-made" not in registry.live_clone_ids()
    bystander = registry.get("bystander")
    assert bystander is not None and bystander.lock_job_id == "another-job"
    assert registry.release_held("timed-out", "again.") == []


def test_deleted_id_can_be_reserved_again(registry: Registry) -> None:
    registry.reserve(plan("phoenix", ttl=30), "job-1")
    registry.mark_ready("phoenix", "job-1")
    registry.begin_delete("phoenix", "del-1")
    registry.mark_deleted("phoenix", "del-1")
    reborn = registry.reserve(plan("phoenix", ttl=120), "job-2")
    assert reborn.status is CloneStatus.PROVISIONING
    assert (reborn.lock_job_id, reborn.last_job_id, reborn.deleted_at) == ("job-2", "job-2", None)
    assert reborn.expires_at > NOW + timedelta(minutes=119)
    assert [r.clone_id for r in registry.list()] == ["phoenix"]


# -- queries ---------------------------------------------------------------------------------------------


def test_expired_returns_exactly_the_expired_unlocked_ready_or_failed_clones(
    registry: Registry, admin_db: DbEndpoint
) -> None:
    past, future = NOW - timedelta(minutes=5), NOW + timedelta(minutes=5)

    def make(clone_id: str, expires_at: datetime, state: str) -> None:
        registry.reserve(plan(clone_id, expires_at), f"job-{clone_id}")
        if state in ("ready", "deleting", "deleted"):
            registry.mark_ready(clone_id, f"job-{clone_id}")
        if state == "failed":
            registry.mark_failed(clone_id, f"job-{clone_id}", "boom")
        if state in ("deleting", "deleted"):
            registry.begin_delete(clone_id, f"del-{clone_id}")
        if state == "deleted":
            registry.mark_deleted(clone_id, f"del-{clone_id}")

    make("old-ready", past, "ready")
    make("old-failed", past - timedelta(minutes=1), "failed")
    make("old-provisioning", past, "provisioning")
    make("old-deleting", past, "deleting")
    make("old-deleted", past, "deleted")
    make("new-ready", future, "ready")
    make("new-failed", future, "failed")
    make("edge-ready", NOW, "ready")
    make("old-locked", past, "ready")
    # Planted: a ready clone still locked by a job (the API never leaves one; expired() must skip it).
    raw(admin_db, f"UPDATE {registry.schema}.clones SET lock_job_id = 'stuck' WHERE clone_id = 'old-locked'")

    assert registry.expired(NOW) == ["old-failed", "old-ready", "edge-ready"]
    # Naive datetimes are UTC; aware ones in any zone are converted.
    assert registry.expired(NOW.replace(tzinfo=None)) == ["old-failed", "old-ready", "edge-ready"]
    tokyo = timezone(timedelta(hours=9))
    assert registry.expired(NOW.astimezone(tokyo)) == ["old-failed", "old-ready", "edge-ready"]
    assert registry.expired(NOW - timedelta(minutes=5, microseconds=1)) == ["old-failed"]
    assert len(registry.expired(future)) == 5

    assert registry.live_clone_ids() == {
        "old-ready",
        "old-provisioning",
        "old-deleting",
        "new-ready",
        "edge-ready",
        "old-locked",
    }
    assert {r.clone_id for r in registry.list(CloneStatus.FAILED)} == {"old-failed", "new-failed"}
    assert registry.list(source_url="http://elsewhere.example") == []
    assert len(registry.list(source_url=SOURCE.url)) == 9
    assert registry.get("missing") is None


def test_sql_metacharacters_in_values_are_stored_verbatim(registry: Registry, admin_db: DbEndpoint) -> None:
    job = "manual__2026-01-01T00:00:00+00:00'; DROP TABLE clones; -- \\ \" `x` %s %(a)s"
    error = 'it\'s "broken"; DROP DATABASE mysql; -- \\n\\ \u00e9\u6f22\U0001f600 %s\n' * 3
    registry.reserve(plan("quoted"), job)
    failed = registry.mark_failed("quoted", job, error)
    assert failed is not None
    assert (failed.last_job_id, failed.last_error) == (job, error)
    record = registry.get("quoted")
    assert record is not None and (record.last_job_id, record.last_error) == (job, error)
    assert raw(admin_db, f"SELECT COUNT(*) FROM {registry.schema}.clones")[0][0] == 1
    # Job ids compare exactly (binary collation): a different case is a different job.
    with pytest.raises(RegistryError, match="already exists"):
        registry.reserve(plan("quoted"), job.upper())


def test_record_as_json(registry: Registry) -> None:
    record = registry.reserve(plan("jsonish"), "job-1")
    data = record.as_json()
    assert data["status"] == "provisioning"
    assert data["copy_mode"] == "everything"
    assert data["expires_at"].endswith("Z")
    assert data["deleted_at"] is None
    assert CloneRecord.model_validate(data) == record


def test_accepted_jobs_are_kept_until_triggered_and_then_forget_their_conf(registry: Registry) -> None:
    conf = {"source_url": "http://source.localhost:8080", "clone_id": "job-a", "note": "it's `quoted`"}
    job = registry.record_job("clone-1", "wp_clone", conf, "admin", "job-a")
    assert registry.get_job("clone-1") == job
    assert job.conf == conf and job.triggered_at is None and job.error is None
    registry.record_job("delete-2", "wp_delete", {"clone_id": "job-b"}, "viewer", "job-b")

    later = datetime.now(UTC) + timedelta(seconds=1)
    assert [j.job_id for j in registry.untriggered_jobs(later)] == ["clone-1", "delete-2"]
    assert registry.untriggered_jobs(job.created_at) == []  # only jobs created before the cutoff

    registry.mark_job_triggered("clone-1")
    registry.mark_job_triggered("delete-2", "the job could not be started: Dag id wp_delete not found.")
    assert registry.untriggered_jobs(later) == []
    started, refused = registry.get_job("clone-1"), registry.get_job("delete-2")
    assert started is not None and started.triggered_at is not None and started.conf is None
    assert refused is not None and refused.triggered_at is None and refused.conf is None
    assert refused.error == "the job could not be started: Dag id wp_delete not found."
    with pytest.raises(Exception, match="Duplicate entry"):  # a job id is recorded once
        registry.record_job("clone-1", "wp_clone", conf, "admin", "job-a")
    assert registry.get_job("nope") is None


def test_a_pooled_registry_reuses_its_connections_and_replaces_a_dropped_one(
    admin_db: DbEndpoint, schema: str
) -> None:

    pool = ConnectionPool(mysqldb_factory(admin_db), keep=2, ping_after_s=0)  # pinged whenever taken

    def connection_id() -> int:
        conn = pool()
        try:
            cur = conn.cursor()
            cur.execute("SELECT CONNECTION_ID()")
            return int(cur.fetchone()[0])
        finally:
            conn.close()

    first = connection_id()
    assert connection_id() == first  # handed back on close, taken again
    raw(admin_db, f"KILL CONNECTION {first}")
    replaced = connection_id()
    assert replaced != first and connection_id() == replaced
    reg = Registry(pool, schema)  # the registry works the same over it, rows committed as before
    reg.migrate()
    # A connection switched out of autocommit is rolled back and switched back when handed back: its
    # open transaction does not leak to the next user, whose statements are committed as they run.
    conn = pool()
    conn.autocommit(False)
    conn.cursor().execute(f"CREATE TABLE IF NOT EXISTS `{schema}`.`pool_probe` (`n` INT)")
    conn.cursor().execute(f"INSERT INTO `{schema}`.`pool_probe` VALUES (1)")
    conn.close()
    again = pool()
    assert again.get_autocommit()
    again.cursor().execute(f"INSERT INTO `{schema}`.`pool_probe` VALUES (2)")
    again.close()
    assert raw(admin_db, f"SELECT `n` FROM `{schema}`.`pool_probe`") == [(2,)]
    reg.reserve(plan("pooled-one"), "job-1")
    assert Registry(mysqldb_factory(admin_db), schema).get("pooled-one") is not None
    assert reg.get_with_database("pooled-one", schema) == (reg.get("pooled-one"), True)
    assert reg.get_with_database("pooled-none", "wpc_no_such_db") == (None, False)

    # Taken again at once, a connection is not pinged: one the server dropped fails a call, and is then
    # discarded rather than handed back, so the next call gets a new one.
    lazy = ConnectionPool(mysqldb_factory(admin_db), keep=2, ping_after_s=60)
    lazy_reg = Registry(lazy, schema)
    conn = lazy()
    cur = conn.cursor()
    cur.execute("SELECT CONNECTION_ID()")
    dropped = int(cur.fetchone()[0])
    conn.close()
    raw(admin_db, f"KILL CONNECTION {dropped}")
    with pytest.raises(Exception, match=r"gone away|Lost connection"):
        lazy_reg.get("pooled-one")
    assert lazy_reg.get("pooled-one") == reg.get("pooled-one")


def test_accept_takes_the_id_at_once_and_only_once(registry: Registry) -> None:
    job = registry.accept(plan("early"), "clone-1", "wp_clone", {"clone_id": "early"}, "ann")
    assert job.job_id == "clone-1" and job.clone_id == "early"
    record = registry.get("early")
    assert record is not None and record.status is CloneStatus.ACCEPTED
    assert record.lock_job_id == record.last_job_id == "clone-1"
    assert "early" in registry.live_clone_ids()  # the orphan sweep keeps whatever it already has

    with pytest.raises(CloneTaken) as exc:  # a second request for the id is refused at once
        registry.accept(plan("early"), "clone-2", "wp_clone", {"clone_id": "early"}, "bob")
    assert str(exc.value) == (
        "clone early already exists (status accepted by job clone-1); "
        "choose another clone id or delete it first."
    )
    assert registry.get_job("clone-2") is None  # the refused request recorded no job
    with pytest.raises(CloneTaken):  # nor may another job reserve it
        registry.reserve(plan("early"), "clone-3")

    taken = registry.reserve(plan("early"), "clone-1")  # the accepted job's own reservation takes it over
    assert taken.status is CloneStatus.PROVISIONING and taken.lock_job_id == "clone-1"


def test_concurrent_accepts_of_one_id_have_one_winner(registry: Registry) -> None:
    barrier = threading.Barrier(8)

    def attempt(n: int) -> str:
        barrier.wait()
        try:
            return registry.accept(plan("rushed"), f"clone-{n}", "wp_clone", {}, "user").job_id
        except CloneTaken:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1
    record = registry.get("rushed")
    assert record is not None and record.lock_job_id == winners[0] and record.status is CloneStatus.ACCEPTED


def test_accept_reuses_a_deleted_id_but_not_a_failed_one(registry: Registry) -> None:
    registry.reserve(plan("reused"), "job-1")
    registry.mark_failed("reused", "job-1", "it broke.")
    with pytest.raises(CloneTaken, match=r"status failed\)"):
        registry.accept(plan("reused"), "clone-2", "wp_clone", {}, "user")
    registry.begin_delete("reused", "delete-1")
    registry.mark_deleted("reused", "delete-1")
    registry.accept(plan("reused"), "clone-3", "wp_clone", {}, "user")
    record = registry.get("reused")
    assert record is not None and record.status is CloneStatus.ACCEPTED and record.lock_job_id == "clone-3"
    assert record.deleted_at is None and record.last_error is None


def test_cancelling_an_accepted_job_gives_the_id_back(registry: Registry) -> None:
    registry.accept(plan("given-back"), "clone-1", "wp_clone", {"clone_id": "given-back"}, "user")
    assert registry.cancel_untriggered_job("clone-1", "cancelled by ann.")
    assert not registry.cancel_untriggered_job("clone-1", "cancelled twice.")  # once only
    job = registry.get_job("clone-1")
    assert job is not None and job.error == "cancelled by ann." and job.conf is None
    later = datetime.now(UTC) + timedelta(days=1)
    assert [j.job_id for j in registry.untriggered_jobs(later)] == []  # no dispatcher will start it
    record = registry.get("given-back")
    assert record is not None and record.status is CloneStatus.FAILED and record.lock_job_id is None
    assert record.last_error == "cancelled by ann."


# -- expiry, who asked, live lists ----------------------------------------------------------------------


def test_accept_records_who_asked_and_a_reuse_of_the_id_takes_the_new_asker(registry: Registry) -> None:
    registry.accept(plan("asked"), "clone-1", "wp_clone", {"clone_id": "asked"}, "ann")
    record = registry.reserve(plan("asked"), "clone-1")
    assert record.requested_by == "ann"
    registry.mark_ready("asked", "clone-1")
    assert (registry.get("asked") or record).requested_by == "ann"  # kept through the transitions
    registry.begin_delete("asked", "delete-1")
    registry.mark_deleted("asked", "delete-1")
    registry.accept(plan("asked"), "clone-2", "wp_clone", {"clone_id": "asked"}, "bob")
    assert (registry.get("asked") or record).requested_by == "bob"
    # A run triggered outside the jobs API (reserve alone) has nobody recorded.
    assert registry.reserve(plan("by-airflow"), "manual-1").requested_by is None


def test_set_expiry_changes_only_a_ready_clone(registry: Registry) -> None:
    registry.reserve(plan("ext"), "clone-1")
    later = NOW + timedelta(days=2, microseconds=123456)
    provisioning = registry.set_expiry("ext", later)
    assert provisioning is not None and provisioning.expires_at != later  # not ready yet: unchanged
    registry.mark_ready("ext", "clone-1")
    ready = registry.set_expiry("ext", later)
    assert ready is not None and ready.expires_at == later and ready.status is CloneStatus.READY
    assert registry.expired(NOW + timedelta(days=1)) == []  # the TTL cleanup reads the new expiry
    assert registry.expired(later) == ["ext"]
    registry.begin_delete("ext", "delete-1")
    registry.mark_deleted("ext", "delete-1")
    deleted = registry.set_expiry("ext", NOW + timedelta(days=5))
    assert deleted is not None and deleted.expires_at == later
    assert registry.set_expiry("never-was", later) is None


def test_list_is_live_unless_asked_and_matches_every_spelling_given(registry: Registry) -> None:
    for clone_id in ("live-one", "gone-one"):
        registry.reserve(plan(clone_id), "clone-" + clone_id)
        registry.mark_ready(clone_id, "clone-" + clone_id)
    registry.begin_delete("gone-one", "delete-1")
    registry.mark_deleted("gone-one", "delete-1")
    assert [r.clone_id for r in registry.list(live=True)] == ["live-one"]
    assert [r.clone_id for r in registry.list()] == ["live-one", "gone-one"]
    spellings = url_spellings("HTTP://Source.localhost:8080/")
    assert [r.clone_id for r in registry.list(source_url=spellings, live=True)] == ["live-one"]
    assert registry.list(source_url=url_spellings("http://source.localhost")) == []


def test_the_requested_by_migration_is_done_when_its_column_exists(
    registry: Registry, admin_db: DbEndpoint
) -> None:
    """A crash between the ALTER and its version row: the next migrate counts the column as added."""
    raw(admin_db, f"DELETE FROM {registry.schema}.schema_migrations WHERE version = 4")
    assert registry.migrate() == [4]
    assert registry.schema_version() == SCHEMA_VERSION
