"""The tests' layout (tests/conftest.py's docstring): every test file mirrors what it tests, and every test
carries the marker of the tier its fixtures need, so ``make unit`` (no marker) starts no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, TIERS

TESTS = REPO / "tests"
PACKAGE = REPO / "plugins" / "wpclone"
# Test folders that mirror a folder of the repository rather than the package.
ELSEWHERE = {"dags": (REPO / "dags",), "deploy": (REPO / "helm-values", REPO / "images")}
UNMIRRORED = {"system", "kube", "fixtures"}  # the whole system through a running Airflow; the kubernetes
# runtime end to end against a real control plane (its own node agent and fixtures); shared helpers, no tests
WHOLE = {  # tests of more than one module or file, with the reason
    "test_import_graph.py": "the package's import graph",
    "test_layout.py": "the tests' layout",
    "dags/test_dag_integrity.py": "every DAG file",
}


def names_in(folder: Path) -> set[str]:
    """What a test file in the mirror of ``folder`` may be named after: its modules, packages and other
    files, without suffix (``__main__`` as ``main``, ``-`` as ``_``)."""
    names = set()
    for entry in folder.iterdir():
        if entry.name.startswith(".") or entry.name in ("__init__.py", "__pycache__"):
            continue
        stem = entry.name.split(".", 1)[0] if entry.is_file() else entry.name
        names.add("main" if stem == "__main__" else stem.replace("-", "_"))
    return names


def mirrors(test_file: Path) -> bool:
    rel = test_file.relative_to(TESTS)
    if rel.parts[0] in UNMIRRORED or rel.as_posix() in WHOLE:
        return True
    if len(rel.parts) > 1 and rel.parts[0] in ELSEWHERE:
        roots = ELSEWHERE[rel.parts[0]]
        names = set().union(*(names_in(root) for root in roots)) | {r.name.replace("-", "_") for r in roots}
    else:
        folder = PACKAGE.joinpath(*rel.parts[:-1])
        if not (folder / "__init__.py").is_file():
            return False
        names = names_in(folder)
    stem = rel.stem.removeprefix("test_")
    return any(stem == name or stem.startswith(f"{name}_") for name in names)


def test_every_test_file_mirrors_a_module_or_folder() -> None:
    files = sorted(TESTS.rglob("test_*.py"))
    assert len(files) > 50  # the walk finds the tests
    assert [f.relative_to(TESTS).as_posix() for f in files if not mirrors(f)] == []


def test_the_mirror_rule_refuses_what_mirrors_nothing() -> None:
    assert mirrors(TESTS / "steps" / "test_copy_database.py")
    assert mirrors(TESTS / "steps" / "test_copy_database_rule.py")
    assert mirrors(TESTS / "steps" / "test_main.py")  # steps/__main__.py
    assert mirrors(TESTS / "deploy" / "test_manifests_rbac.py")  # helm-values/manifests/
    assert not mirrors(TESTS / "test_copy_database.py")  # a steps module, outside tests/steps/
    assert not mirrors(TESTS / "unit" / "test_rewrite.py")  # a tier folder, not a package folder
    assert not mirrors(TESTS / "steps" / "test_copying.py")
    assert not mirrors(TESTS / "dags" / "test_wp_cloning.py")


def test_fixtures_hold_no_tests_and_every_test_folder_is_a_package() -> None:
    assert list((TESTS / "fixtures").rglob("test_*.py")) == []
    folders = {f.parent for f in TESTS.rglob("test_*.py")}
    assert [str(d) for d in sorted(folders) if not (d / "__init__.py").is_file()] == []


_REPORT = """
import json, os
def pytest_collection_finish(session):
    with open(os.environ["TIERS_REPORT"], "w") as out:
        json.dump([[i.nodeid, sorted(i.fixturenames), sorted(m.name for m in i.iter_markers())]
                   for i in session.items], out)
"""


def test_every_test_carries_the_tier_its_fixtures_need(tmp_path: Path) -> None:
    """Collects the whole suite in a subprocess (as ``pytest`` does) and checks each test's marker."""
    (tmp_path / "tiers_report.py").write_text(_REPORT)
    report = tmp_path / "items.json"
    env = {
        **os.environ,
        "TIERS_REPORT": str(report),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    collect = ["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "tiers_report", str(TESTS)]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *collect],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    items = json.loads(report.read_text())
    order = [name for name, _ in TIERS]
    wrong, used = [], set()
    for nodeid, fixtures, markers in items:
        tiers = [order.index(m) for m in markers if m in order]
        needed = [i for i, (_, names) in enumerate(TIERS) if names & set(fixtures)]
        used |= set(fixtures)
        if nodeid.startswith("tests/system/"):
            needed.append(order.index("system"))
        if len(tiers) > 1 or (needed and (not tiers or tiers[0] > min(needed))):
            wrong.append(f"{nodeid}: marked {markers}, fixtures {fixtures}")
    assert len(items) > 1000
    assert wrong == []
    # A tier fixture that no test uses any more (renamed, say) would mark nothing: each is in use.
    assert [name for _, names in TIERS for name in names if name not in used] == []
    unit = [nodeid for nodeid, _, markers in items if not set(markers) & set(order)]
    assert unit and all(not nodeid.startswith("tests/system/") for nodeid in unit)
