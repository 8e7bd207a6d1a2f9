"""The images install through scripts/setup.sh, the script `make setup` runs, with package sets that exist.

No Docker here: the Dockerfiles are read as text. What CI exercises is the script itself (``make setup``
runs it for every test run); these tests hold the images to it: each install step calls it, each named set
exists in it, the toolbox set provides the programs the steps start, and the Airflow image's base is the
Airflow our requirements pin.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from wpclone.db import DbEndpoint
from wpclone.steps.copy_database import dump_command, load_command

REPO = Path(__file__).resolve().parents[2]
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
    for needed in ("scripts/setup.sh", "requirements.txt", "pyproject.toml", "plugins"):
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


def test_the_sets_nest_and_bad_names_fail() -> None:
    dev = set(apt_set("dev"))
    assert set(apt_set("toolbox")) <= dev and set(apt_set("airflow")) <= dev  # make setup covers the images
    for args in (("--list", "nope"), ("--apt", "nope"), ("--pip", "nope"), ("--bogus",)):
        done = run_setup(*args)
        assert done.returncode == 2 and "setup:" in done.stderr, (args, done.stderr)


def test_make_setup_still_runs_the_whole_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^setup:.*\n\t@scripts/setup\.sh\n", makefile, re.M)
    text = SETUP.read_text()
    assert re.search(r'^\s*""\)\s*install_dev\s*;;', text, re.M)  # no arguments: apt dev set + .venv + -e .
