"""``plugins/`` as Airflow's plugins folder (the layout of Airflow's docker-compose file, Astro projects and
most Helm deployments): Airflow's own folder loader finds exactly one wpclone plugin, runs nothing of ours at
import, and leaves ``airflow`` and ``kubernetes`` the real modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags  # Airflow's plugin loader and CLI: none of the tier fixtures

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"

# Airflow's folder loader in a fresh interpreter (it registers modules in sys.modules by file name).
_PROBE = r"""
import json, sys
from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory
plugins, errors = _load_plugins_from_plugin_directory(sys.argv[1])
import airflow, kubernetes
print(json.dumps({
    "plugins": [[p.name, str(p.source)] for p in plugins],
    "errors": errors,
    "airflow": airflow.__file__,
    "kubernetes": getattr(kubernetes, "__file__", None),
    "listeners": [getattr(l, "__name__", str(l)) for p in plugins for l in p.listeners],
    "top_level_modules_of_ours": sorted(
        name for name, module in sys.modules.items()
        if "." not in name and str(getattr(module, "__file__", "") or "").startswith(sys.argv[1])
    ),
}))
"""


def test_airflows_folder_loader_finds_exactly_one_plugin_and_runs_nothing_of_ours() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(PLUGINS)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert [name for name, _ in found["plugins"]] == ["wpclone"]
    assert found["plugins"][0][1].endswith("wpclone_plugin.py")
    assert found["listeners"] == ["wpclone.airflow.listener", "wpclone.airflow.telemetry"]
    # Top-level modules from the folder: the plugin module and the package it imports (as a package), not
    # each of the package's files under its own name (steps/__main__.py would run the steps CLI).
    assert found["top_level_modules_of_ours"] == ["wpclone", "wpclone_plugin"]
    assert "site-packages/airflow/" in found["airflow"]
    assert found["kubernetes"] and "site-packages/kubernetes/" in found["kubernetes"]


def test_airflow_plugins_lists_one_wpclone_plugin_with_the_folder_set(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "plugins", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    listed = json.loads(result.stdout)
    assert [p["name"] for p in listed] == ["wpclone"]
