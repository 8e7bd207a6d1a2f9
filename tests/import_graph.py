"""Our package's import graph, read from the source (no import runs): what each module imports when it runs.

Imports inside functions count (a lazy import still runs when its function does); those under
``if TYPE_CHECKING:`` do not. ``from a import b`` counts ``a.b`` when that is one of our modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def module_file(name: str) -> Path | None:
    base = PLUGINS.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of ``tree`` that run (not under ``if TYPE_CHECKING:``)."""
    typing_only = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for node in ast.walk(branch)
    }
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in typing_only
    ]


def imports(path: Path) -> set[str]:
    """Modules ``path`` imports when it runs (see the module docstring)."""
    found: set[str] = set()
    for node in runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return found


def our_modules() -> dict[str, Path]:
    """Every module of the wpclone package, by dotted name."""
    modules = {}
    for path in sorted(PLUGINS.joinpath("wpclone").rglob("*.py")):
        parts = list(path.relative_to(PLUGINS).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def package_graph() -> dict[str, set[str]]:
    """Our module -> the modules of ours it imports (itself left out)."""
    modules = our_modules()
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}
