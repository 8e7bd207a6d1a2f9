"""The Airflow plugin (entry point ``airflow.plugins``): mounts the jobs API under ``/wpclone``, adds the
listener that writes each job's outcome as its run's note (wpclone.airflow.listener), the one that tags each
task's log lines and trace span with its job and clone (wpclone.airflow.telemetry), the API server's
middleware that says a refused trigger form field's rule in words (wpclone.api.form) and "New clone" in the
UI's navigation: the jobs API's new-clone page (wpclone.api.pages) as an external view.

The app is built on first use, so the components that load plugins but serve no HTTP (scheduler, DAG
processor, workers) never import FastAPI routes or Airflow's API security.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from wpclone.airflow import listener, telemetry

URL_PREFIX = "/wpclone"


class WpclonePlugin(AirflowPlugin):
    name = "wpclone"
    listeners = [listener, telemetry]  # noqa: RUF012 (AirflowPlugin's own attribute is a plain list)
    external_views = [  # noqa: RUF012 (as above)
        {
            "name": "New clone",
            "href": URL_PREFIX + "/ui/new-clone",
            "url_route": "new-clone",
            "destination": "nav",
            "nav_top_level": True,
        }
    ]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from wpclone.api.app import create_app  # noqa: PLC0415 (FastAPI: the API server only, not every component)

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "wpclone jobs API"}]

    @cached_property
    def fastapi_root_middlewares(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from wpclone.api.form import ParamErrorsMiddleware  # noqa: PLC0415 (the API server only)

        return [{"middleware": ParamErrorsMiddleware, "name": "wpclone trigger form errors"}]
