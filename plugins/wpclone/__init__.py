"""wpclone: short-lived WordPress staging clones, run as Airflow DAGs."""

from __future__ import annotations

__version__ = "0.1.0"
