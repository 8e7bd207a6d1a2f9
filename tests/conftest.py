"""The tests' layout, their tiers, and the fixtures every test can use.

Layout: ``tests/`` mirrors the package ``plugins/wpclone/``. The tests of ``wpclone/<folder>/<module>.py`` are
``tests/<folder>/test_<module>.py`` and, when one file is not enough, ``test_<module>_<aspect>.py`` beside it
(``steps/test_copy_database.py`` and ``steps/test_copy_database_rule.py``; a module's tests on the local stack
are ``test_<module>_integration.py`` when it also has fast ones). A test of a package as a whole mirrors the
package (``test_staging.py``; ``steps/test_main.py`` for ``steps/__main__.py``). Outside the package:

- ``tests/dags/`` mirrors the repository's ``dags/`` folder (``test_wp_clone.py`` runs ``dags/wp_clone.py``
  with ``dag.test()``; ``test_dag_integrity.py`` loads every DAG file);
- ``tests/deploy/`` mirrors the deployment folders ``helm-values/`` and ``images/`` (``test_manifests.py``
  for ``helm-values/manifests/``, ``test_airflow_values.py`` for ``helm-values/airflow.yaml``);
- ``tests/system/`` keeps the whole-system tests: each drives a running ``airflow standalone`` (scheduler, API
  server, our plugin, the local stack) over HTTP through the jobs API, the CLI, the UI or ``make demo``, so
  no single package folder is what they test;
- ``tests/fixtures/`` holds shared fixtures and helpers, never tests (the ``pytest_plugins`` below);
- ``test_import_graph.py`` and ``test_layout.py`` check the package's and the tests' shape.

``tests/test_layout.py`` fails when a test file mirrors nothing, and when a test is not marked as below.

Tiers: a test is marked by what it needs, here, from the fixtures it uses (directly or through other
fixtures), so a new test cannot forget its marker (``pytest_collection_modifyitems``; the heaviest tier wins,
one marker per test):

- ``system``: a running Airflow (the ``airflow`` fixture), or any test under ``tests/system/``;
- ``kube``: a real Kubernetes cluster (its fixture goes into ``TIERS`` with the cluster tests);
- ``dags``: Airflow in this process with its metadata database (``airflow_home``, hence ``airflow_env``,
  ``dags``: DagBag and ``dag.test()``);
- ``integration``: the local stack (``stack``, ``mariadb``, ``private_stack``, hence ``admin_db``,
  ``source_site``, ``svc`` ...);
- no marker: a unit test, fast, no server (PHP as an oracle and kmock are in-process or one subprocess).

A module whose slow part is none of these fixtures marks itself (``test_plugin_folder.py``: Airflow's CLI).
Selections: ``make unit`` (``-m "not integration and not dags and not system and not kube"``),
``pytest -m integration``, ``pytest -m dags``, ``pytest -m system``; ``make test`` runs everything.

Fixtures: the local stack's (``tests/fixtures/stack.py``), Airflow's and ``dag.test()``'s
(``tests/fixtures/dagtest.py``) and the services' (``tests/fixtures/services.py``) are registered here for
every folder; they are session- or module-scoped and start nothing until a test asks for them. The tests
get a stack of their own (state dir ``.local/test``: own MariaDB, site host, ports, Airflow home), so they
never touch the clones of a developer's demo stack in ``.local/``. The system tests' running Airflow is
``tests/system/conftest.py``'s (package-scoped: stopped when the system tests are done).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("WPCLONE_STATE_DIR", str(REPO / ".local" / "test"))
_STATE = Path(os.environ["WPCLONE_STATE_DIR"])
# Airflow reads its configuration when first imported: point it at a test home (SQLite, under the state
# dir) and our DAGs before any test module imports it.
os.environ.setdefault("AIRFLOW_HOME", str(_STATE / "airflow-test"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")

import pytest

from tests.fixtures.php_oracle import PhpOracle
from wpclone.airflow.services import MYSQL_CONN_ID
from wpclone.rewrite import ENGINE_ENV, ENGINES
from wpclone.rewrite import _rewrite_core as compiled

pytest_plugins = [
    "tests.fixtures.stack",
    "tests.fixtures.dagtest",
    "tests.fixtures.services",
    "tests.fixtures.registry",
]

SYSTEM = Path(__file__).resolve().parent / "system"
# Each tier's marker and the fixtures that put a test in it, heaviest first.
TIERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("system", frozenset({"airflow"})),
    ("kube", frozenset({"cluster"})),  # the local control plane (tests/kube/conftest.py)
    ("dags", frozenset({"airflow_home"})),
    ("integration", frozenset({"stack", "mariadb", "private_stack"})),
)


def tier_of(item: pytest.Item) -> str | None:
    """The tier ``item`` belongs to: a marker it carries itself, its folder (system), or its fixtures."""
    for name, _ in TIERS:
        if item.get_closest_marker(name):
            return name
    if item.path.is_relative_to(SYSTEM):
        return "system"
    used = set(getattr(item, "fixturenames", ()))
    return next((name for name, fixtures in TIERS if used & fixtures), None)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if tier and not item.get_closest_marker(tier):
            item.add_marker(tier)


@pytest.fixture(scope="session")
def php() -> Iterator[PhpOracle]:
    """PHP itself, answering batched strtr/unserialize questions (tests/fixtures/php_oracle.py)."""
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


@pytest.fixture(autouse=True)
def wpclone_mysql_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's connection ``wpclone_mysql`` as every worker has it (no TLS), for code that reads it without
    connecting (a step pod operator rendering reads its TLS settings); a fixture that sets the real one (the
    DAG tiers' ``airflow_env``, at module scope, hence earlier) is left alone."""
    key = f"AIRFLOW_CONN_{MYSQL_CONN_ID.upper()}"
    if key not in os.environ:
        connection = {"conn_type": "mysql", "host": "mysql.example.com", "port": 3306, "login": "admin"}
        monkeypatch.setenv(key, json.dumps(connection))
