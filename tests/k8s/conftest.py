"""What every unit module shares: the Airflow connection every worker has."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from wpclone.airflow.services import MYSQL_CONN_ID


@pytest.fixture(autouse=True)
def wpclone_mysql(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Airflow's connection ``wpclone_mysql`` as a worker has it (no TLS), for the step operators that read
    its TLS settings when they render; never connected to in this tier."""
    connection = {"conn_type": "mysql", "host": "mysql.example.com", "port": 3306, "login": "admin"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{MYSQL_CONN_ID.upper()}", json.dumps(connection))
    yield
