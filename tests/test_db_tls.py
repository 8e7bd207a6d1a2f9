"""TLS to the shared server: the connection's extra mapped to the steps' settings, and how each runtime
hands them over (wpclone.db.DbTls, wpclone.runtimes.stepspec, wpclone.k8s.pod)."""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest

from tests.k8s.test_manifests import make_plan
from tests.k8s.test_pod import build, container_env
from tests.k8s.test_pod import runtime as k8s_runtime  # noqa: F401  (fixture)
from wpclone.airflow.services import MYSQL_CONN_ID, admin_tls
from wpclone.db import DbEndpoint, DbTls, TlsMode
from wpclone.errors import ConfigError
from wpclone.k8s.settings import DB_TLS_MOUNT, KubernetesSettings
from wpclone.models import RuntimeKind, WpcloneConfig
from wpclone.runtimes.kubernetes import KubernetesRuntime
from wpclone.runtimes.local import LocalRuntime
from wpclone.runtimes.stepspec import DbRole, Step

CA, CERT, KEY = "/etc/ssl/rds-ca.pem", "/etc/ssl/client.pem", "/etc/ssl/client-key.pem"
COPY = Step(
    task_id="copy_database",
    step="copy-database",
    db_env={"SOURCE_DB": DbRole.SOURCE, "TARGET_DB": DbRole.CLONE},
)
LOAD = Step(task_id="load_backup", step="restore-backup", db_env={"TARGET_DB": DbRole.RESTORE})


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, None),
        ({"charset": "utf8mb4"}, None),
        ({"ssl": {"ca": CA}}, DbTls(TlsMode.REQUIRED, ca=CA)),  # mysqlclient: ssl without ssl_mode
        (
            {"ssl": json.dumps({"ca": CA}), "ssl_mode": "verify_identity"},
            DbTls(TlsMode.VERIFY_IDENTITY, ca=CA),
        ),
        (
            {"ssl": {"ca": CA, "cert": CERT, "key": KEY}, "ssl_mode": "VERIFY_CA"},
            DbTls(TlsMode.VERIFY_CA, CA, CERT, KEY),
        ),
        ({"ssl_mode": "REQUIRED"}, DbTls(TlsMode.REQUIRED)),
        ({"ssl": {"ca": CA}, "ssl_mode": "DISABLED"}, None),
        ({"ssl_mode": "PREFERRED"}, None),
        # the other driver MySqlHook offers passes its own ssl_* keys
        ({"client": "mysql-connector-python"}, None),
        ({"client": "mysql-connector-python", "ssl_ca": CA}, DbTls(TlsMode.REQUIRED, ca=CA)),
        (
            {"client": "mysql-connector-python", "ssl_ca": CA, "ssl_verify_identity": True},
            DbTls(TlsMode.VERIFY_IDENTITY, ca=CA),
        ),
        ({"client": "mysql-connector-python", "ssl_ca": CA, "ssl_disabled": True}, None),
    ],
)
def test_the_connections_extra_maps_to_tls_settings(extra: dict[str, Any], expected: DbTls | None) -> None:
    assert DbTls.from_extra(extra) == expected


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"ssl_mode": "VERIFY_CA"}, "needs the CA"),
        ({"ssl_mode": "SOMETIMES"}, "is not one of"),
        ({"ssl": "{not json"}, "not a JSON object"),
        ({"ssl": ["ca"]}, "must be an object"),
        ({"client": "mysql-connector-python", "ssl_verify_cert": True}, "set 'ssl_ca'"),
    ],
)
def test_an_extra_that_cannot_work_is_one_sentence(extra: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        DbTls.from_extra(extra)


def test_a_login_with_tls_round_trips_through_the_environment() -> None:
    login = DbEndpoint(
        "db.example.com", 3306, "wpc_x", "s3cret", "wpc_x", DbTls(TlsMode.VERIFY_CA, CA, CERT, KEY)
    )
    env = login.to_env("TARGET_DB")
    assert env["TARGET_DB_SSL_MODE"] == "VERIFY_CA" and env["TARGET_DB_SSL_KEY"] == KEY
    assert DbEndpoint.from_env("TARGET_DB", env) == login
    assert login.with_database("other").tls == login.tls
    plain = DbEndpoint("db.example.com", 3306, "wpc_x", "s3cret", "wpc_x")
    assert not any("_SSL_" in name for name in plain.to_env("TARGET_DB"))
    assert DbEndpoint.from_env("TARGET_DB", plain.to_env("TARGET_DB")).tls is None
    with pytest.raises(ConfigError, match="TARGET_DB_SSL_MODE must be one of"):
        DbEndpoint.from_env("TARGET_DB", {**env, "TARGET_DB_SSL_MODE": "yes"})


def test_the_clients_and_pymysql_get_the_settings_and_no_secret() -> None:
    verify = DbEndpoint("db", 3306, "u", "s3cret", "d", DbTls(TlsMode.VERIFY_IDENTITY, ca=CA))
    args = verify.client_args()
    assert {"--ssl", f"--ssl-ca={CA}", "--ssl-verify-server-cert"} <= set(args)
    assert not any("s3cret" in arg for arg in args)
    assert verify.tls is not None and verify.tls.pymysql_ssl() == {
        "ca": CA,
        "verify_mode": ssl.CERT_REQUIRED,
        "check_hostname": True,
    }
    required = DbTls(TlsMode.REQUIRED, cert=CERT, key=KEY)
    assert required.client_args() == ["--ssl", f"--ssl-cert={CERT}", f"--ssl-key={KEY}"]
    assert required.pymysql_ssl()["verify_mode"] == ssl.CERT_NONE
    assert DbEndpoint("db", 3306, "u", "p").client_args()[-1] == "--protocol=TCP"  # no TLS asked: as before


def test_the_local_steps_get_the_tls_of_the_clones_server_for_its_logins_only() -> None:
    runtime = LocalRuntime(WpcloneConfig(runtime=RuntimeKind.LOCAL))
    tls = DbTls(TlsMode.VERIFY_IDENTITY, ca=CA)
    env = runtime.step_env(make_plan(), COPY, db_tls=tls)
    assert (env["TARGET_DB_SSL_MODE"], env["TARGET_DB_SSL_CA"]) == ("VERIFY_IDENTITY", CA)
    assert not any(name.startswith("SOURCE_DB_SSL") for name in env)  # the source's server is its own
    assert runtime.step_env(make_plan(), LOAD, db_tls=tls)["TARGET_DB_SSL_CA"] == CA  # the restore's login
    assert not any("_SSL_" in name for name in runtime.step_env(make_plan(), COPY))


def test_the_kubernetes_steps_read_the_files_from_the_mounted_secret(
    k8s_runtime: KubernetesRuntime,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra = {"ssl": {"ca": CA, "cert": CERT, "key": KEY}, "ssl_mode": "VERIFY_IDENTITY"}
    connection = {"conn_type": "mysql", "host": "db.example.com", "login": "admin", "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{MYSQL_CONN_ID.upper()}", json.dumps(connection))
    assert admin_tls() == DbTls(TlsMode.VERIFY_IDENTITY, CA, CERT, KEY)

    with pytest.raises(ConfigError, match="WPCLONE_K8S_DB_TLS_SECRET"):
        build(k8s_runtime, COPY)  # files named, nowhere to mount them from

    with_secret = KubernetesRuntime(k8s_runtime.config, KubernetesSettings(db_tls_secret="rds-ca"))
    _, _, pod = build(with_secret, COPY)
    env = container_env(pod)
    assert env["TARGET_DB_SSL_MODE"]["value"] == "VERIFY_IDENTITY"
    assert env["TARGET_DB_SSL_CA"]["value"] == f"{DB_TLS_MOUNT}/ca.crt"
    assert env["TARGET_DB_SSL_KEY"]["value"] == f"{DB_TLS_MOUNT}/tls.key"
    assert "SOURCE_DB_SSL_MODE" not in env
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["db-tls"]["secret"] == {"secretName": "rds-ca", "defaultMode": 0o440}
    mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["db-tls"] == {"name": "db-tls", "mountPath": DB_TLS_MOUNT, "readOnly": True}


def test_no_tls_no_secret_mount(k8s_runtime: KubernetesRuntime) -> None:  # noqa: F811
    with_secret = KubernetesRuntime(k8s_runtime.config, KubernetesSettings(db_tls_secret="rds-ca"))
    _, _, pod = build(with_secret, COPY)  # the unit tier's wpclone_mysql asks for no TLS
    assert "db-tls" not in {v["name"] for v in pod["spec"]["volumes"]}
    assert not any("_SSL_" in name for name in container_env(pod))
