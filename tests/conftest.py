"""Shared fixtures: the local stack (real MariaDB + PHP site host) and the seeded source site.

The stack is brought up through the same Python API as ``python -m wpclone.local up`` and is left running
at the end of a pytest session, so re-runs are fast and other sessions may share it; ``make test`` stops it
when the tests are done (``WPCLONE_KEEP_STACK=1`` keeps it), as does ``make down``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The tests get a stack of their own (own MariaDB, site host, ports, Airflow home), so they never touch
# the clones of a developer's demo stack in .local/ — the TTL tests sweep orphans, for one.
os.environ.setdefault("WPCLONE_STATE_DIR", str(REPO / ".local" / "test"))
_STATE = Path(os.environ["WPCLONE_STATE_DIR"])
# Airflow reads its configuration when first imported: point it at a test home (SQLite, under the state
# dir) and our DAGs before any test module imports it.
os.environ.setdefault("AIRFLOW_HOME", str(_STATE / "airflow-test"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")

import pytest

from tests.fixtures.othersite import OtherSite
from tests.fixtures.othersite import other_site as build_other_site
from tests.php_oracle import PhpOracle
from wpclone.config import load_config
from wpclone.db import DbEndpoint
from wpclone.local.__main__ import up
from wpclone.local.mariadb import LOCAL_USER_HOST, LocalMariaDB
from wpclone.local.seed import seed_source
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig, content_dir, register_site, site_dir, unregister_site
from wpclone.models import clone_db_name
from wpclone.mysql_admin import MySqlAdmin
from wpclone.registry import Registry
from wpclone.rewrite import ENGINE_ENV, ENGINES
from wpclone.rewrite import _rewrite_core as compiled
from wpclone.runtimes.local import LocalRuntime
from wpclone.services.common import Services
from wpclone.settings import DEFAULT_CONTROL_SCHEMA, Settings

log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The test Airflow home with its metadata database migrated (SQLite; a no-op when up to date)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return home


@pytest.fixture(scope="session")
def php() -> Iterator[PhpOracle]:
    """PHP itself, answering batched strtr/unserialize questions (tests/php_oracle.py)."""
    oracle = PhpOracle()
    yield oracle
    oracle.close()


@pytest.fixture(scope="module", params=ENGINES)
def rewrite_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each rewrite engine in turn (wpclone.rewrite.ENGINES), chosen through WPCLONE_REWRITE_ENGINE so that
    ``Rewriter(pairs)`` and ``python -m wpclone.rewrite`` in a subprocess both run it. The compiled one must
    be built, from the source as it is (``scripts/setup.sh`` builds it)."""
    if request.param == "c":
        assert compiled is not None, "The compiled rewrite engine is not built: run scripts/setup.sh."
        built = Path(compiled.__file__)
        source = built.with_name("_rewrite_core.c")
        assert not source.exists() or built.stat().st_mtime >= source.stat().st_mtime, (
            f"{built.name} is older than {source.name}: rebuild it (scripts/setup.sh)."
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENGINE_ENV, request.param)
        yield request.param


@pytest.fixture(scope="session")
def settings() -> StackSettings:
    """The stack's settings (state dir, ports) as the CLI would load them."""
    return StackSettings.load()


@pytest.fixture(scope="session")
def stack(settings: StackSettings) -> Iterator[StackSettings]:
    """MariaDB and the site host, running (started if needed; idempotent)."""
    up(settings)
    yield settings


@pytest.fixture(scope="session")
def source_site(stack: StackSettings) -> SiteConfig:
    """The realistic source site, seeded at the default size (a no-op when it already is)."""
    return seed_source(stack)


@pytest.fixture(scope="session")
def other_site(stack: StackSettings) -> Iterator[OtherSite]:
    """A second site unlike the seeded source, on a second MariaDB (tests/fixtures/othersite.py)."""
    with build_other_site(stack) as site:
        yield site


@pytest.fixture(scope="session")
def admin_db(stack: StackSettings) -> DbEndpoint:
    """The local MariaDB's admin login (may create databases and users), like the shared server's."""
    return LocalMariaDB(stack).admin


def local_services(
    admin_db: DbEndpoint, stack: StackSettings, schema: str = DEFAULT_CONTROL_SCHEMA, **settings: float
) -> Services:
    """The services' dependencies on the local stack: what a task builds from Airflow's connection, built
    from the stack's admin login (the registry in ``schema``, the configuration as the stack wrote it)."""
    return Services(
        registry=Registry.from_endpoint(admin_db, schema),
        mysql=MySqlAdmin.from_endpoint(admin_db),
        runtime=LocalRuntime(load_config(), stack),
        settings=Settings(**settings),
    )


HAND_CLONE = "hand-clone"


@dataclasses.dataclass(frozen=True)
class HandClone:
    site: SiteConfig
    copy_database: dict[str, object]  # the steps' JSON results
    copy_content: dict[str, object]


def run_step(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``python -m wpclone.steps`` as the local runtime does; return its JSON result line."""
    result = subprocess.run(
        [sys.executable, "-m", "wpclone.steps", *args, "--json"],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{args[0]} failed: {result.stderr[-2000:]}"
    parsed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


@pytest.fixture(scope="session")
def hand_clone(stack: StackSettings, source_site: SiteConfig, admin_db: DbEndpoint) -> Iterator[HandClone]:
    """A clone of the source made by hand with the steps CLI: its own database, user, content and URL."""
    url = stack.site_url(HAND_CLONE)
    database = user = "wp_hand_clone"
    password_file = stack.secrets_dir / f"site-{HAND_CLONE}-db"
    stack.secret(password_file.name)
    site = dataclasses.replace(
        source_site, name=HAND_CLONE, url=url, db_name=database, db_user=user, db_password_file=password_file
    )
    MySqlAdmin.from_endpoint(admin_db).create_database_and_user(
        database, user, site.db_password(), user_host=LOCAL_USER_HOST
    )
    source_db = admin_db.with_database(source_site.db_name)
    target_db = DbEndpoint(site.db_host, site.db_port, user, site.db_password(), database)
    copied_db = run_step(
        "copy-database",
        source_site.url,
        url,
        env={**source_db.to_env("SOURCE_DB"), **target_db.to_env("TARGET_DB")},
    )
    copied_content = run_step(
        "copy-content", str(content_dir(stack, source_site.name)), str(content_dir(stack, HAND_CLONE))
    )
    register_site(stack, site, default_content=False)
    yield HandClone(site, copied_db, copied_content)
    unregister_site(stack, HAND_CLONE)
    MySqlAdmin.from_endpoint(admin_db).drop_database_and_user(database, user, user_host=LOCAL_USER_HOST)
    password_file.unlink(missing_ok=True)


def leftovers(admin_db: DbEndpoint, stack: StackSettings, clone_id: str) -> list[str]:
    """Everything of a clone that still exists: database, user, site, content, secret files."""
    found = []
    name = clone_db_name(clone_id)
    with admin_db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))
        if cur.fetchone():
            found.append(f"database {name}")
        cur.execute("SELECT 1 FROM mysql.user WHERE user = %s", (name,))
        if cur.fetchone():
            found.append(f"user {name}")
    if site_dir(stack, clone_id).exists():
        found.append(f"site dir {clone_id}")
    found += [p.name for p in stack.secrets_dir.glob(f"clone-{clone_id}-*")]
    return found
