"""Airflow's trigger form, its refusals in words: a root middleware of Airflow's API server (the plugin's).

Airflow 3.3's form checks no field's pattern or bounds itself; its trigger (``POST
/api/v2/dags/<dag>/dagRuns``) validates the params against their JSON schema before a run is created and,
for a bad value, answers 400 ``Invalid input for param clone_id: 'Bad' does not match '^[a-z]…'`` followed
by the schema. For our DAGs' params, this middleware replaces that answer's ``detail`` with the field's
title and rule in words (wpclone.models.FIELD_RULES), e.g. ``Clone id (clone_id) must be 3-28 lowercase
letters, digits or '-', ... e.g. qa-checkout.``; the form shows it in its dialog, the values still there to
correct. Every other request and answer passes through untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from wpclone.jobs import TYPE_OF_DAG
from wpclone.models import FIELD_RULES, FIELD_TITLES

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[None]]

TRIGGER_PATH = re.compile(r"/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns")
PARAM_ERROR = re.compile(r"Invalid input for param (?P<param>\w+):")


def param_sentence(detail: str) -> str | None:
    """Airflow's refusal of a param of ours as its rule in words (None when it is not one)."""
    found = PARAM_ERROR.match(detail)
    if found is None or found["param"] not in FIELD_RULES:
        return None
    param = found["param"]
    return f"{FIELD_TITLES[param]} ({param}) {FIELD_RULES[param]}."


class ParamErrorsMiddleware:
    """ASGI middleware: a 400 to a trigger of one of our DAGs gets ``param_sentence`` as its detail."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        path = TRIGGER_PATH.fullmatch(str(scope.get("path", "")))
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not path
            or path["dag_id"] not in TYPE_OF_DAG
        ):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = b""

        async def rewrite(message: Message) -> None:
            nonlocal start, body
            if message["type"] == "http.response.start" and message["status"] == 400:
                start = message  # held back until the body is known
                return
            if start is None:
                await send(message)
                return
            body += message.get("body", b"")
            if message.get("more_body"):
                return
            body = _rewritten(body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


def _rewritten(body: bytes) -> bytes:
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    said = param_sentence(answer.get("detail", "")) if isinstance(answer, dict) else None
    return body if said is None else json.dumps({**answer, "detail": said}).encode()
