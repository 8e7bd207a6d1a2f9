"""The package's shape: no import cycle (imports inside functions count), lazy imports only where marked
with their reason, every ``WPCLONE_*`` setting read in wpclone.settings, and DAG parsing that loads no
heavy optional dependency."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

from tests.fixtures.import_graph import PLUGINS, our_modules, package_graph, runtime_imports

REPO = PLUGINS.parent
LAZY_REASON = re.compile(r"#\s*noqa: PLC0415 \((?P<why>[^)]{10,})\)")
# The steps' and the content pod's input contract: what a runtime hands them, read where they run.
ENV_CONTRACT_MODULES = ("wpclone.steps", "wpclone.k8s.content")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_our_package_has_no_import_cycle() -> None:
    graph = package_graph()
    assert {"wpclone.services.clone", "wpclone.airflow.builders", "wpclone.k8s.pod"} <= set(graph)
    assert "wpclone.k8s.pod" in graph["wpclone.airflow.steps"]  # imports inside functions are edges too
    found = cycles(graph)
    described = [" -> ".join(c) + " (each imports the next, in some order)" for c in found]
    assert found == [], described


def test_the_layers_import_downwards() -> None:
    """The data plane and the services know nothing of Airflow; nothing below the adapters imports them."""
    graph = package_graph()
    adapters = ("wpclone.airflow", "wpclone.api", "wpclone.plugin", "wpclone.provision", "wpclone.k8s.pod")
    for module, imported in graph.items():
        if module.startswith(("wpclone.services", "wpclone.runtimes", "wpclone.steps", "wpclone.local")):
            below = [m for m in imported if m.startswith(adapters)]
            assert below == [], f"{module} imports the Airflow adapters {below}"


def module_level(tree: ast.Module) -> list[ast.stmt]:
    """The module's own statements, and those of its top-level ``try`` (an optional module's idiom)."""
    found: list[ast.stmt] = []
    for node in tree.body:
        found.append(node)
        if isinstance(node, ast.Try):
            found += node.body + [n for handler in node.handlers for n in handler.body]
    return found


def test_a_lazy_import_says_why() -> None:
    """Imports inside functions only for heavy optional dependencies, each marked with its reason."""
    unmarked = []
    for name, path in our_modules().items():
        tree = ast.parse(path.read_text())
        top = {id(node) for node in module_level(tree)}
        lines = path.read_text().splitlines()
        for node in runtime_imports(tree):
            if id(node) not in top and not LAZY_REASON.search(lines[node.lineno - 1]):
                unmarked.append(f"{name}:{node.lineno}")
    assert unmarked == []


def test_every_wpclone_setting_is_read_in_the_settings_module() -> None:
    """No module but wpclone.settings (and the steps' own input contract) reads a WPCLONE_* variable."""
    readers = []
    for name, path in our_modules().items():
        if name == "wpclone.settings" or name.startswith(ENV_CONTRACT_MODULES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            key = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in ("get", "getenv") and node.args:
                    key = node.args[0]
            elif isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value):
                key = node.slice
            if isinstance(key, ast.Constant) and str(key.value).startswith("WPCLONE_"):
                readers.append(f"{name}:{node.lineno} reads {key.value}")
    assert readers == []


def test_parsing_the_dags_loads_no_heavy_optional_dependency() -> None:
    """The local runtime's DAG files parse without the kubernetes client and provider, the MySQL provider
    and its driver, or FastAPI: those load where they are used (a task, the API server)."""
    heavy = (  # (Airflow itself reads each installed provider's info at start: that is not ours)
        "kubernetes.",
        "airflow.providers.cncf.kubernetes.operators",
        "airflow.providers.cncf.kubernetes.hooks",
        "airflow.providers.mysql.hooks",
        "MySQLdb",
        "fastapi",
        "wpclone.api.app",
        "wpclone.k8s.pod",
    )
    code = (
        "import glob, runpy, sys\n"
        "for path in sorted(glob.glob('dags/*.py')):\n"
        "    runpy.run_path(path)\n"
        f"print(sorted(m for m in sys.modules if (m + '.').startswith({heavy!r})))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PLUGINS), "WPCLONE_RUNTIME": "local"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
