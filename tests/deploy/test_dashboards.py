"""The Grafana dashboard: every panel's query names something our code or Airflow really emits.

- Prometheus panels: each ``airflow_<name>`` must be a metric in the installed Airflow's metrics registry
  (``metrics_template.yaml``, the file Airflow's docs and its OTel names come from), as the collector
  exports it (``<otel_prefix>.<name>``, "." and "-" -> "_", no unit or type suffix). Airflow records its
  timers as OpenTelemetry exponential histograms, which the collector writes as Prometheus native
  histograms: one series under the bare name (no ``_bucket``/``_count``/``_sum``), read with
  ``histogram_quantile``/``histogram_count``, stored only by a Prometheus with native histograms on. Each
  label must be one of that metric's tags; the DAG ids a query filters on must be all our DAGs', the
  first-task ids their root tasks'. tests/system/test_telemetry.py checks the same names against what a
  real run sends.
- The Loki panel: the stream label is the clones' namespace, the fields it filters on are ones our step
  log lines carry (the formatter's own output, parsed).
- The registry panels: their SQL runs against a real migrated registry on MariaDB in
  tests/deploy/test_dashboards_registry.py (integration tier: it needs the local stack).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import yaml
from airflow._shared.observability.metrics.metrics_registry import YAML_REGISTRY_PATH, read_metrics_yaml

from tests.deploy.test_observability_logging import parse_logfmt
from wpclone.airflow.builders import (
    HEAVY_POOL,
    build_backup_dag,
    build_clone_dag,
    build_delete_dag,
    build_restore_dag,
    build_ttl_cleanup_dag,
)
from wpclone.settings import DEFAULT_CONTROL_SCHEMA as DEFAULT_SCHEMA
from wpclone.steps.common import LogfmtFormatter

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "helm-values" / "dashboards" / "wpclone.json"
GRAFANA = REPO / "helm-values" / "observability" / "grafana.yaml"
AIRFLOW_VALUES = REPO / "helm-values" / "airflow.yaml"
REQUIRED_PANELS = (
    "Jobs started per hour, by type",
    "Success rate (24 h), by DAG",
    "Job duration p50 / p95, by DAG",
    "Live clones",
    "Clones past expiry, not yet deleted",
    "Queued task instances, by pool",
    "Task duration p95 / p99, by task",
)
PROMQL_FUNCTIONS = {"sum", "by", "increase", "rate", "histogram_quantile", "histogram_count", "or"}
PROMETHEUS = REPO / "helm-values" / "observability" / "prometheus.yaml"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(ds_type: str | None = None) -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if ds_type is None or p["datasource"]["type"] == ds_type]


def provisioned() -> dict[str, dict[str, Any]]:
    values = yaml.safe_load(GRAFANA.read_text())
    return {ds["uid"]: ds for ds in values["datasources"]["datasources.yaml"]["datasources"]}


def airflow_metrics() -> dict[str, dict[str, Any]]:
    """Airflow's metric registry, keyed by the name Prometheus stores after the collector."""

    prefix = yaml.safe_load(AIRFLOW_VALUES.read_text())["config"]["metrics"]["otel_prefix"]
    return {
        re.sub(r"[.-]", "_", f"{prefix}.{metric['name']}"): metric
        for metric in read_metrics_yaml(str(YAML_REGISTRY_PATH))
        if "{" not in metric["name"]
    }


def promql_names(expr: str) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """(metric names, labels used, label -> values matched) of one PromQL expression."""
    metrics = set(re.findall(r"\b(airflow_[a-z0-9_]+)\b", expr))
    labels: set[str] = set()
    matched: dict[str, set[str]] = {}
    for selector in re.findall(r"\{([^}]*)\}", expr):
        for label, _op, value in re.findall(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
            labels.add(label)
            matched.setdefault(label, set()).update(value.split("|"))
    for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        labels.update(label.strip() for label in group.split(","))
    return metrics, labels, matched


def test_the_dashboard_has_every_panel_the_issue_asks_for() -> None:
    titles = [p["title"] for p in panels()]
    assert set(REQUIRED_PANELS) <= set(titles)
    assert len({p["id"] for p in panels()}) == len(titles)
    assert dashboard()["uid"] == "wpclone"


def test_every_panel_uses_a_provisioned_data_source() -> None:
    sources = provisioned()
    for panel in panels():
        ds = panel["datasource"]
        assert ds["uid"] in sources and sources[ds["uid"]]["type"] == ds["type"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == ds
    grafana = yaml.safe_load(GRAFANA.read_text())
    assert grafana["dashboardsConfigMaps"] == {"wpclone": "wpclone-dashboards"}
    assert sources["wpclone-registry"]["jsonData"]["database"] == DEFAULT_SCHEMA


def test_every_prometheus_metric_and_label_is_one_airflow_emits() -> None:
    registry = airflow_metrics()
    seen = set()
    for panel in panels("prometheus"):
        for target in panel["targets"]:
            expr = target["expr"]
            metrics, labels, _ = promql_names(expr)
            assert metrics, expr
            assert expr.count("(") == expr.count(")"), expr
            for name in metrics:
                assert name in registry, f"{name} is not emitted"
                seen.add(name)
                # A timer is a native histogram: only the histogram functions read it.
                assert (registry[name]["type"] == "timer") == ("histogram_" in expr), (panel["title"], name)
                allowed = set(registry[name].get("name_variables") or [])
                assert labels <= allowed | PROMQL_FUNCTIONS, (panel["title"], name, labels - allowed)
    assert {
        "airflow_ti_start",
        "airflow_dagrun_duration_success",
        "airflow_dagrun_duration_failed",
        "airflow_task_duration",
        "airflow_pool_queued_slots",
    } <= seen


def test_prometheus_stores_the_native_histograms_the_collector_writes() -> None:
    flags = yaml.safe_load(PROMETHEUS.read_text())["server"]["extraFlags"]
    assert "enable-feature=native-histograms" in flags and "web.enable-remote-write-receiver" in flags
    [per_task] = [p for p in panels("prometheus") if p["title"] == "Task duration p95 / p99, by task"]
    quantiles = [re.match(r"histogram_quantile\((0\.\d+), ", t["expr"]) for t in per_task["targets"]]
    assert [q.group(1) for q in quantiles if q] == ["0.95", "0.99"]
    assert all("by (dag_id, task_id)" in t["expr"] for t in per_task["targets"])


def test_a_misspelt_metric_would_be_caught() -> None:
    registry = airflow_metrics()
    assert "airflow_dagrun_duration_success" in registry and "airflow_dagrun_duration_sucess" not in registry
    assert registry["airflow_ti_start"]["name_variables"] == ["dag_id", "task_id"]


def test_the_dag_and_task_ids_the_queries_filter_on_are_ours() -> None:

    dags = [
        build_clone_dag(),
        build_delete_dag(),
        build_backup_dag(),
        build_restore_dag(),
        build_ttl_cleanup_dag(),
    ]
    dag_ids = {dag.dag_id for dag in dags}
    roots = {dag.dag_id: {t.task_id for t in dag.roots} for dag in dags}
    for panel in panels("prometheus"):
        for target in panel["targets"]:
            _, _, matched = promql_names(target["expr"])
            if "dag_id" in matched:
                assert matched["dag_id"] == dag_ids, panel["title"]
            if "task_id" in matched:
                # "jobs started" counts each DAG's first task: every DAG has exactly one root among them.
                for dag_id, dag_roots in roots.items():
                    assert len(dag_roots & matched["task_id"]) == 1, (dag_id, dag_roots)
                assert matched["task_id"] <= set().union(*roots.values())
            if "pool_name" in matched:
                assert matched["pool_name"] == {HEAVY_POOL}


def test_the_log_panel_filters_on_fields_our_steps_log() -> None:
    [panel] = panels("loki")
    expr = panel["targets"][0]["expr"]
    stream = re.match(r"\{([^}]*)\}", expr)
    assert stream and stream.group(1) == 'k8s_namespace_name="wpclone-clones"'
    assert "| logfmt |" in expr
    filtered = set(re.findall(r"\|\s*([a-z_]+)\s*=~", expr))
    line = LogfmtFormatter("job-1", "clone-1").format(
        logging.LogRecord("wpclone.steps", logging.INFO, __file__, 1, "step=x event=y", None, None)
    )
    assert filtered == {"job_id", "clone_id"} and filtered <= set(parse_logfmt(line))
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    assert variables == filtered
    loki = provisioned()["loki"]
    assert loki["jsonData"]["derivedFields"][0]["matcherRegex"] == "job_id=(\\S+)"
