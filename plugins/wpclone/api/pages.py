"""The new-clone page: a form in Airflow's UI (the plugin's external view, "New clone" in its navigation)
that offers the registered sources as a closed choice, says each field's rule beside it before anything
runs, starts the clone through the jobs API and follows it to the clone's URL and a one-time login.

Airflow's own trigger form for ``wp_clone`` cannot do this: its DAG is parsed where connections cannot be
listed (a source registered as an Airflow connection cannot be one of its choices) and it shows a refused
param in the dialog's error box, not beside the field. This page runs in the API server's origin, so its
requests carry the Airflow UI's session cookie: the jobs API authenticates and authorizes them like any
other (``GET /sources``, ``POST /clones/check``, ``POST /clones``, ``GET /jobs/{id}``,
``POST /clones/{id}/login``). One HTML file with its script (``new_clone.html``), no build step and no
asset from outside the package; the fields' titles, rules and choices come from wpclone.models.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from wpclone.models import (
    FIELD_RULES,
    FIELD_TITLES,
    TTL_DEFAULT_MINUTES,
    TTL_MAX_MINUTES,
    TTL_MIN_MINUTES,
    CopyMode,
)

PAGE_PATH = "/ui/new-clone"
COPY_MODE_WORDS = {
    CopyMode.EVERYTHING: "Everything: the database and all of wp-content",
    CopyMode.DATABASE: "The database, and wp-content without uploads",
    CopyMode.FILES: "All of wp-content, and of the database only settings and users",
}


def page_config(api_prefix: str) -> dict[str, object]:
    """What the page's script needs: where the API is (relative to the page) and each field's words."""
    return {
        "api": ".." + api_prefix,
        "airflow": "../..",
        "titles": FIELD_TITLES,
        "rules": FIELD_RULES,
        "ttl": {"min": TTL_MIN_MINUTES, "max": TTL_MAX_MINUTES, "default": TTL_DEFAULT_MINUTES},
        "copy_modes": [{"value": mode.value, "label": COPY_MODE_WORDS[mode]} for mode in CopyMode],
    }


@cache
def _template() -> str:
    return files("wpclone.api").joinpath("new_clone.html").read_text(encoding="utf-8")


def render(api_prefix: str) -> str:
    """The page with its configuration (JSON safe inside a script element: no ``</``)."""
    config = json.dumps(page_config(api_prefix)).replace("</", "<\\/")
    return _template().replace("{{CONFIG}}", config)


def add_page_routes(app: FastAPI, api_prefix: str) -> None:
    """``GET /ui/new-clone``: the page (no data in it; what it shows comes from the authenticated API)."""

    @app.get(PAGE_PATH, include_in_schema=False)
    def new_clone_page() -> HTMLResponse:
        return HTMLResponse(render(api_prefix), headers={"Cache-Control": "no-cache"})
