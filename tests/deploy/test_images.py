"""The images install through scripts/setup.sh, the script `make setup` runs, with package sets that exist.

No Docker here: the Dockerfiles are read as text. What CI exercises is the script itself (``make setup``
runs it for every test run); these tests hold the images to it: each install step calls it, each named set
exists in it, the toolbox set provides the programs the steps start and every third-party module the
pods' Python imports (derived from the import graph of the modules the pods run, not a hand list), and
the Airflow image's base is the Airflow our requirements pin.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.import_graph import PLUGINS, imports, module_file
from wpclone.db import DbEndpoint
from wpclone.steps.copy_database import dump_command, load_command

REPO = Path(__file__).resolve().parents[2]
# The modules the toolbox image runs: the steps CLI (every step module) and the restore's content switch.
TOOLBOX_ENTRY_PACKAGES = ("wpclone.steps",)
TOOLBOX_ENTRY_MODULES = ("wpclone.k8s.content",)
SETUP = REPO / "scripts" / "setup.sh"
DOCKERFILES = {name: REPO / "images" / name / "Dockerfile" for name in ("toolbox", "airflow")}
SETUP_CALL = re.compile(r"scripts/setup\.sh(?P<args>(?:\s+--?[a-z-]+(?:\s+[a-z]+)*)?)")


def run_setup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SETUP), *args], capture_output=True, text=True, timeout=60, check=False
    )


def apt_set(name: str) -> list[str]:
    done = run_setup("--list", name)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def setup_calls(dockerfile: Path) -> list[list[str]]:
    calls = []
    for word, rest in instructions(dockerfile):
        if word == "RUN":
            calls += [m.group("args").split() for m in SETUP_CALL.finditer(rest)]
    return calls


def pinned(package: str) -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.split("#")[0].strip()
    raise AssertionError(f"{package} is not pinned in requirements.txt")


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_every_install_step_of_an_image_is_the_setup_script(image: str) -> None:
    dockerfile = DOCKERFILES[image]
    calls = setup_calls(dockerfile)
    assert [c[0] for c in calls] == ["--apt", "--pip"], calls
    apt, pip = calls
    assert apt[1:] == [image] and pip[1:] == [image]
    assert apt_set(image), f"the apt set {image} is empty"
    # No package manager is called except through the script.
    for word, rest in instructions(dockerfile):
        if word == "RUN":
            assert not re.search(r"\b(apt-get|apt|pip|pip3)\s+install\b", rest), rest


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_the_image_copies_what_the_script_installs_from(image: str) -> None:
    copied = " ".join(rest for word, rest in instructions(DOCKERFILES[image]) if word == "COPY")
    for needed in ("scripts/setup.sh", "requirements.txt", "pyproject.toml", "setup.py", "plugins"):
        assert needed in copied, f"{image} does not COPY {needed}"
        assert (REPO / needed).exists()
    if image == "airflow":
        assert "dags /opt/airflow/dags" in copied  # the chart's default DAGs folder (dags.* off)


def test_the_airflow_image_is_the_airflow_we_pin() -> None:
    froms = [rest for word, rest in instructions(DOCKERFILES["airflow"]) if word == "FROM"]
    assert froms == [f"apache/airflow:{pinned('apache-airflow')}"]


def test_the_toolbox_runs_as_www_data_and_its_python_matches_ours() -> None:
    steps = dict(instructions(DOCKERFILES["toolbox"]))
    assert steps["USER"] == "33:33"  # KubernetesSettings.run_as_user / fs_group default
    assert re.fullmatch(r"python:3\.11-slim-bookworm", steps["FROM"]), steps["FROM"]


def _owner(program: str) -> str:
    path = shutil.which(program)
    assert path, f"{program} is not installed here (make setup installs it)"
    done = subprocess.run(
        ["dpkg", "-S", str(Path(path).resolve())], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split(":", 1)[0]


def _depends(package: str) -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Depends}", package], capture_output=True, text=True, check=False
    )
    return done.stdout


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs a Debian machine (make setup's target)")
def test_the_toolbox_set_provides_every_program_the_steps_start() -> None:
    endpoint = DbEndpoint("db", 3306, "u", "p", "d")
    programs = {dump_command(endpoint)[0], load_command(endpoint)[0], "php"}
    toolbox = apt_set("toolbox")
    for program in sorted(programs):
        owner = _owner(program)
        assert owner in toolbox or any(owner in _depends(p) for p in toolbox), (program, owner, toolbox)


def test_the_images_can_build_the_compiled_rewrite_engine() -> None:
    """Installing the package (``--pip``) compiles wpclone/_rewrite_core.c (setup.py): each image's apt set
    holds a C compiler and the C library's headers; the Python headers come with the image's Python."""
    assert "wpclone._rewrite_core" in (REPO / "setup.py").read_text()
    for image in sorted(DOCKERFILES):
        assert {"gcc", "libc6-dev"} <= set(apt_set(image)), image


def test_the_sets_nest_and_bad_names_fail() -> None:
    dev = set(apt_set("dev"))
    assert set(apt_set("toolbox")) <= dev and set(apt_set("airflow")) <= dev  # make setup covers the images
    for args in (("--list", "nope"), ("--apt", "nope"), ("--pip", "nope"), ("--bogus",)):
        done = run_setup(*args)
        assert done.returncode == 2 and "setup:" in done.stderr, (args, done.stderr)


def test_make_setup_still_runs_the_whole_script() -> None:
    """``make setup`` = ``dev`` (the whole script without arguments) + ``kube-build`` (its ``--cluster``)."""
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^setup: dev kube-build\b", makefile, re.M)
    assert re.search(r"^dev:.*\n\t@scripts/setup\.sh\n", makefile, re.M)
    assert re.search(r"^kube-build:.*\n\t@scripts/setup\.sh --cluster\n", makefile, re.M)
    assert re.search(r"^test: setup\b", makefile, re.M) and re.search(r"^demo: dev\b", makefile, re.M)
    text = SETUP.read_text()
    assert re.search(r'^\s*""\)\s*install_dev\s*;;', text, re.M)  # no arguments: apt dev set + .venv + -e .


# -- the toolbox's Python packages: derived from what the pods' modules import ----------------------------


def toolbox_import_graph() -> tuple[set[str], dict[str, set[str]]]:
    """Our modules the toolbox reaches from its entry points; third-party top-level module -> importers."""
    todo = list(TOOLBOX_ENTRY_MODULES)
    for package in TOOLBOX_ENTRY_PACKAGES:
        todo += [package] + [
            f"{package}.{p.stem}" for p in sorted(PLUGINS.joinpath(*package.split(".")).glob("*.py"))
        ]
    seen: set[str] = set()
    third_party: dict[str, set[str]] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        for imported in imports(path):
            top = imported.split(".")[0]
            if top == "wpclone":
                todo.append(imported)
            elif top not in sys.stdlib_module_names:
                third_party.setdefault(top, set()).add(name)
    return {n for n in seen if module_file(n)}, third_party


def toolbox_pip() -> dict[str, str]:
    """The toolbox pip set as the script installs it: normalised distribution name -> pinned line."""
    done = run_setup("--list-pip", "toolbox")
    assert done.returncode == 0, done.stderr
    return {_normalise(line.split("==")[0]): line for line in done.stdout.split()}


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def test_the_toolbox_set_installs_every_module_the_pods_import() -> None:
    modules, third_party = toolbox_import_graph()
    assert {"wpclone.steps.backup", "wpclone.fetch", "wpclone.archive", "wpclone.k8s.content"} <= modules
    assert not any(
        m.startswith(("wpclone.services", "wpclone.airflow", "wpclone.k8s.pod", "wpclone.runtimes"))
        for m in modules
    )
    assert {"pymysql", "httpx", "zstandard", "pydantic"} <= set(third_party), third_party
    assert "airflow" not in third_party and "kubernetes" not in third_party, third_party
    distributions = importlib.metadata.packages_distributions()
    installed = toolbox_pip()
    for module, importers in sorted(third_party.items()):
        names = {_normalise(d) for d in distributions.get(module, [])}
        assert names, f"{module} (imported by {sorted(importers)}) is installed by no distribution here"
        assert names & set(installed), (
            f"{module} (imported by {sorted(importers)}) comes from {sorted(names)}, which the toolbox pip "
            f"set does not install: add it to TOOLBOX_PIP in scripts/setup.sh"
        )
    # Each at the pin of requirements.txt (the Airflow image's too), nothing the pods do not import.
    for line in installed.values():
        assert line.split("==")[1] == pinned(line.split("==")[0].lower()), line
    imported = {_normalise(d) for m in third_party for d in distributions.get(m, [])}
    assert set(installed) <= imported, set(installed) - imported


def test_the_import_graph_sees_lazy_imports_and_skips_typing_only_ones(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import airflow\n"
        "def f():\n    import httpx\n    from wpclone import steps\n"
    )
    assert imports(module) == {"__future__", "typing", "httpx", "wpclone", "wpclone.steps"}


def test_the_pip_sets_are_pinned_and_bad_names_fail() -> None:
    assert set(toolbox_pip()) >= {"pymysql", "httpx", "zstandard", "pydantic"}
    done = run_setup("--list-pip", "nope")
    assert done.returncode == 2 and "setup:" in done.stderr
