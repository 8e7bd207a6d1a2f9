"""helm-values/airflow.yaml against the chart's documented structure and against our own code.

The chart side: the values validate (jsonschema) against the chart's values schema (vendored extract, see
tests/fixtures/deploy/SOURCE.md) and every key we set is a documented property there. Our side: every
wpclone setting names a setting our code reads, the configuration parses with our model, the connections
parse as Airflow connections, the Airflow options exist in Airflow's own configuration, the pool is created
by the migration job, and the worker slots fit the concurrency we promise (20 clones).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from airflow.configuration import conf
from airflow.models.connection import Connection

from tests.k8s.test_manifests import K8S_VERSIONS
from wpclone import provision
from wpclone.airflow.builders import HEAVY_POOL
from wpclone.airflow.services import MYSQL_CONN_ID, REGISTRY_CONN_ID
from wpclone.config import parse_config
from wpclone.k8s.settings import KubernetesSettings
from wpclone.local.airflow import otel_env
from wpclone.models import RuntimeKind
from wpclone.settings import CONFIG as CONFIG_ENV
from wpclone.settings import K8S_OVERRIDES as ENV_OVERRIDES
from wpclone.settings import K8S_PREFIX as ENV_PREFIX
from wpclone.settings import RUNTIME as RUNTIME_ENV

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "helm-values" / "airflow.yaml"
CHART_SCHEMA = REPO / "tests" / "fixtures" / "deploy" / "airflow-chart-values.schema.extract.json"
CHART_VERSION = "1.22.0"
CONCURRENT_CLONES = 20  # the values are sized for 20 concurrent clones (docs/deploy.md)


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return loaded


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(CHART_SCHEMA.read_text())
    return loaded


def env() -> dict[str, str]:
    return {item["name"]: item["value"] for item in values()["env"]}


def errors(instance: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


# -- the chart's documented structure -------------------------------------------------------------------


def test_the_values_validate_against_the_chart_schema() -> None:
    assert errors(values()) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("workers", "replica"), 2),  # misspelt
        (("scheduler", "podDisruptionBudget", "config", "maxUnavail"), 1),
        (("wpclone",), {}),  # not a chart key
        (("executor",), "celery"),  # not an executor class name
        (("images", "airflow", "pullPolicy"), "Sometimes"),
        (("config", "metrics", "otel_on"), ["yes"]),
    ],
)
def test_the_schema_check_catches_a_wrong_key_or_type(path: tuple[str, ...], value: object) -> None:
    broken = copy.deepcopy(values())
    node = broken
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    assert errors(broken), path


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"].removeprefix("#/definitions/")
        node = {**{k: v for k, v in node.items() if k != "$ref"}, **root["definitions"][ref]}
    return node


def leaf_paths(value: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        return [p for key, item in value.items() for p in leaf_paths(item, (*path, str(key)))]
    return [path]


def documented(path: tuple[str, ...], root: dict[str, Any]) -> bool:
    """Whether ``path`` is a property the schema names (or a free-form map it documents as such)."""
    node = root
    for key in path:
        node = _resolve(node, root)
        props = node.get("properties", {})
        if key in props:
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]  # documented maps: config sections, ConfigMap names
        else:
            return False
    return True


def test_every_key_we_set_is_documented_by_the_chart() -> None:
    root = schema()
    missing = [".".join(p) for p in leaf_paths(values()) if not documented(p, root)]
    assert missing == []
    assert not documented(("workers", "podDisruptionBudget"), root)  # the walk can say no


def test_the_chart_version_is_pinned_and_named() -> None:
    text = VALUES.read_text()
    assert f"version {CHART_VERSION}" in text and f"--version {CHART_VERSION}" in text
    deploy_doc = (REPO / "docs" / "deploy.md").read_text()
    assert f"--version {CHART_VERSION}" in deploy_doc


def test_the_airflow_version_and_image_are_ours() -> None:
    v = values()
    pin = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)
    assert pin and v["airflowVersion"] == pin.group(1)
    assert v["images"]["airflow"]["repository"] == v["defaultAirflowRepository"]
    assert v["images"]["airflow"]["tag"] == v["defaultAirflowTag"]
    assert (REPO / "images" / "airflow" / "Dockerfile").read_text().count(
        f"apache/airflow:{pin.group(1)}"
    ) >= 1


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_env_volumes_and_mounts_are_valid_kubernetes(version: str) -> None:
    v = values()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "airflow-worker"},
        "spec": {
            "containers": [
                {"name": "worker", "image": "airflow", "env": v["env"], "volumeMounts": v["volumeMounts"]}
            ],
            "volumes": v["volumes"],
        },
    }
    kubernetes_validate.validate(pod, version, strict=True)


# -- our side ------------------------------------------------------------------------------------------


def _read_by_our_code(name: str) -> bool:
    sources = "\n".join(p.read_text() for p in (REPO / "plugins" / "wpclone").rglob("*.py"))
    return f'"{name}"' in sources


def test_every_wpclone_setting_is_one_our_code_reads() -> None:
    names = [name for name in env() if name.startswith("WPCLONE_")]
    assert {RUNTIME_ENV, CONFIG_ENV, "WPCLONE_HEAVY_SLOTS"} <= set(names)
    fields = set(KubernetesSettings.model_fields)
    for name in names:
        if name.startswith(ENV_PREFIX):
            assert name.removeprefix(ENV_PREFIX).lower() in fields, (
                f"{name} is not a KubernetesSettings field"
            )
        elif name in ENV_OVERRIDES.values():
            continue
        else:
            assert _read_by_our_code(name), f"nothing in plugins/wpclone reads {name}"
    assert env()[RUNTIME_ENV] == RuntimeKind.KUBERNETES.value


def test_the_kubernetes_settings_parse() -> None:
    settings = KubernetesSettings.from_env(env())
    assert settings.namespace == "wpclone-clones"
    assert settings.toolbox_image == env()["WPCLONE_TOOLBOX_IMAGE"]
    assert settings.deferrable is False  # the pool already bounds the waiting slots (docs/deploy.md)


def test_the_wpclone_configuration_is_mounted_and_parses() -> None:
    v = values()
    path = Path(env()[CONFIG_ENV])
    [mount] = [m for m in v["volumeMounts"] if Path(m["mountPath"]) == path.parent]
    [volume] = [vol for vol in v["volumes"] if vol["name"] == mount["name"]]
    configmap = v["extraConfigMaps"][volume["configMap"]["name"]]
    data = yaml.safe_load(configmap["data"])
    config = parse_config(data[path.name], "helm-values/airflow.yaml")
    assert config.runtime is RuntimeKind.KUBERNETES and config.clone_domain
    assert config.sources
    for source in config.sources:  # what the kubernetes runtime needs of each source
        assert source.db_password_secret and source.content_claim, source.name


def _connection(uri_or_json: str) -> Any:

    return Connection.from_json(uri_or_json, conn_id="x")


def test_the_connections_come_from_secrets_and_the_environment() -> None:
    v = values()
    secret_env = {item["envName"]: item for item in v["secret"]}
    assert f"AIRFLOW_CONN_{MYSQL_CONN_ID.upper()}" in secret_env
    assert secret_env[f"AIRFLOW_CONN_{MYSQL_CONN_ID.upper()}"]["secretKey"] == "connection"
    registry_login = secret_env[f"AIRFLOW_CONN_{REGISTRY_CONN_ID.upper()}"]  # least privilege: its own Secret
    assert registry_login["secretKey"] == "connection"
    assert registry_login["secretName"] != secret_env[f"AIRFLOW_CONN_{MYSQL_CONN_ID.upper()}"]["secretName"]
    conn_id = KubernetesSettings.from_env(env()).conn_id
    k8s = _connection(env()[f"AIRFLOW_CONN_{conn_id.upper()}"])
    assert k8s.conn_type == "kubernetes" and k8s.extra_dejson == {"in_cluster": True}
    # No password, key or token anywhere in the values.
    assert not re.search(
        r"(password|secret|token)\s*[:=]\s*['\"]?[A-Za-z0-9+/]{12,}", VALUES.read_text(), re.I
    )


def test_the_pool_is_provisioned_by_every_install_and_upgrade(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = values()["migrateDatabaseJob"]
    assert job["args"][:2] == ["bash", "-c"]
    assert job["args"][2] == "airflow db migrate && exec python -m wpclone.provision"
    # WPCLONE_HEAVY_SLOTS and the connection wpclone_mysql (a `secret` entry: custom env too) reach it.
    assert job["applyCustomEnv"] is True

    with pytest.raises(SystemExit) as done:
        provision.main(["--help"])
    assert done.value.code == 0 and "--heavy-slots" in capsys.readouterr().out
    assert HEAVY_POOL == "wpclone_heavy"
    monkeypatch.setenv("WPCLONE_HEAVY_SLOTS", env()["WPCLONE_HEAVY_SLOTS"])
    assert provision.build_parser().parse_args([]).heavy_slots == int(env()["WPCLONE_HEAVY_SLOTS"])


def clones_carried(workers: int) -> int:
    """Concurrent clones ``workers`` Celery workers carry: each clone runs one task at a time except its two
    copy steps, and the heavy pool bounds those (docs/deploy.md, "Sizing")."""
    v = values()
    slots = workers * int(v["config"]["celery"]["worker_concurrency"])
    return slots - int(env()["WPCLONE_HEAVY_SLOTS"])


def test_the_worker_slots_fit_twenty_concurrent_clones_at_rest() -> None:
    v = values()
    assert v["workers"]["keda"]["minReplicaCount"] == v["workers"]["replicas"]
    assert clones_carried(v["workers"]["keda"]["minReplicaCount"]) >= CONCURRENT_CLONES
    assert v["executor"] == "CeleryExecutor"


def test_workers_scale_with_queued_work_and_airflow_admits_what_they_carry() -> None:
    keda = values()["workers"]["keda"]
    assert keda["enabled"] and "query" not in keda  # the chart's: (queued + running) / worker_concurrency
    assert keda["maxReplicaCount"] > keda["minReplicaCount"]
    most = clones_carried(keda["maxReplicaCount"])
    heavy = int(env()["WPCLONE_HEAVY_SLOTS"])
    core = values()["config"]["core"]
    assert core["parallelism"] >= most + heavy
    assert core["max_active_tasks_per_dag"] >= most + heavy and core["max_active_runs_per_dag"] >= most
    # A worker scaled away finishes its tasks: the grace period outlasts the cool-down's decision.
    assert values()["workers"]["terminationGracePeriodSeconds"] >= 600


def test_the_docs_state_the_capacity_the_values_give() -> None:
    keda = values()["workers"]["keda"]
    text = " ".join((REPO / "docs" / "deploy.md").read_text().split())
    least, most = clones_carried(keda["minReplicaCount"]), clones_carried(keda["maxReplicaCount"])
    workers = f"{keda['minReplicaCount']}-{keda['maxReplicaCount']} workers"
    said = f"{workers} carry {least}-{most} concurrent clones"
    assert said in text
    assert said in " ".join((REPO / "README.md").read_text().split())


def test_every_airflow_option_we_set_exists() -> None:

    described = conf.configuration_description  # Airflow's config.yml plus the installed providers'
    missing = []
    for section, options in values()["config"].items():
        if section == "celery" and importlib.util.find_spec("airflow.providers.celery") is None:
            continue  # the Celery provider ships in the apache/airflow image, not in our dev venv
        for option in options:
            if option not in described.get(section, {}).get("options", {}):
                missing.append(f"{section}.{option}")
    assert missing == []
    assert (
        "otel_on" in described["traces"]["options"] and "no_such_option" not in described["core"]["options"]
    )


def test_opentelemetry_metrics_and_traces_go_to_the_collector() -> None:
    config = values()["config"]
    collector = yaml.safe_load((REPO / "helm-values" / "observability" / "otel-collector.yaml").read_text())
    http = collector["config"]["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    for section in ("metrics", "traces"):
        assert config[section]["otel_on"] is True
        assert "otel_host" not in config[section]  # deprecated; traces would go out over gRPC
    # The variables the local stack sets for the real run of tests/system/test_telemetry.py, the collector's
    # address and a 30 s interval aside; <release otel-collector>-<chart>.<namespace observability>.
    endpoint = "http://otel-collector-opentelemetry-collector.observability.svc.cluster.local:4318"
    assert http.endswith(":4318")
    wanted = {k: v for k, v in otel_env(endpoint, 30000).items() if not k.startswith("AIRFLOW__")}
    assert {k: v for k, v in env().items() if k in wanted} == wanted
    assert config["metrics"]["statsd_on"] is False and values()["statsd"]["enabled"] is False
    pipelines = collector["config"]["service"]["pipelines"]
    assert pipelines["metrics"]["exporters"] == ["prometheusremotewrite"]
    assert pipelines["traces"]["exporters"] == ["otlphttp/tempo"]
