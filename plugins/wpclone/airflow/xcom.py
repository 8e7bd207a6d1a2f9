"""The error protocol between a job's tasks: a failing task records one sentence as XCom ``error``.

Every task of ours that can fail pushes its sentence (:func:`wpclone.errors.describe` of what it raised, a
step's own ``error:`` line) before it fails; the teardowns (a clone's rollback, a backup's or restore's
release, a delete's failure record) read them back (:func:`reported_errors`) to record why the job failed,
and the jobs API shows the first as the job's ``error``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException
from pydantic import ValidationError

from wpclone.errors import BadRequest, describe

ERROR_KEY = "error"

F = TypeVar("F", bound=Callable[..., Any])


def push_error(ti: Any, sentence: str) -> None:
    ti.xcom_push(key=ERROR_KEY, value=sentence)


def records_error(func: F) -> F:
    """Push the failure's sentence as XCom ``error`` before failing; bad input fails without retries."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            sentence = describe(exc)
            push_error(get_current_context()["ti"], sentence)
            if isinstance(exc, (BadRequest, ValidationError)):
                raise AirflowFailException(sentence) from exc
            raise

    return cast(F, wrapper)


def reported_errors(context: Any) -> list[str]:
    """The one-sentence errors the run's other tasks recorded (XCom ``error``), in the DAG's task order."""
    ti = context["ti"]
    others = [t for t in context["dag"].task_ids if t != ti.task_id]
    return [e for e in ti.xcom_pull(task_ids=others, key=ERROR_KEY) or [] if e]
