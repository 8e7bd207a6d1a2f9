"""Run params that may carry a credential (a presigned backup URL's query, a URL's userinfo).

A DAG run's conf is readable by everyone who may view the DAG's runs. So the jobs API keeps such a value out
of it: it stores the whole value in an Airflow Variable whose key marks it secret (Airflow masks the values of
such Variables in task logs and the UI) and gives the run the value with its credential removed plus a
reference, ``<param>_ref``, which the run resolves when a task needs the value (:func:`resolve`), and deletes
when it ends (:func:`forget`). A run triggered from Airflow's own form or REST API carries what it was given.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import Variable

log = logging.getLogger(__name__)

REF_SUFFIX = "_ref"
KEY_PREFIX = "wpclone_secret_"  # "secret" in the key: Airflow masks the Variable's value
KEY_PATTERN = r"^wpclone_secret_[A-Za-z0-9_.~:+-]{1,200}$"


def holds_credential(url: str) -> bool:
    """Whether ``url`` carries userinfo, a query or a fragment (where presigned URLs keep their tokens)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return True
    return bool(parts.username or parts.password or parts.query or parts.fragment)


def variable_key(job_id: str, param: str) -> str:
    key = f"{KEY_PREFIX}{param}_{job_id}"
    if not re.fullmatch(KEY_PATTERN, key):
        raise ValueError(f"job id {job_id!r} cannot name a Variable.")
    return key


def keep_out_of_conf(conf: Mapping[str, Any], param: str, job_id: str, shown: str) -> dict[str, Any]:
    """``conf`` with ``param``'s value stored in a secret Variable (API server only: it writes Airflow's
    metadata database) and replaced by ``shown`` and a reference to it; unchanged when the value carries
    no credential."""
    value = str(conf.get(param) or "")
    if not holds_credential(value):
        return dict(conf)
    from airflow.models.variable import Variable  # noqa: PLC0415 (the metadata database: the API server only)

    key = variable_key(job_id, param)
    Variable.set(key, value, description=f"wpclone: {param} of job {job_id}; deleted when the job ends")
    return {**conf, param: shown, param + REF_SUFFIX: key}


def _ref(params: Mapping[str, Any], param: str) -> str | None:
    ref = params.get(param + REF_SUFFIX)
    if not ref:
        return None
    if not isinstance(ref, str) or not re.fullmatch(KEY_PATTERN, ref):
        raise ValueError(f"{param}{REF_SUFFIX} must name a wpclone secret Variable ({KEY_PREFIX}...).")
    return ref


def resolve(params: Mapping[str, Any], param: str) -> str:
    """The value of ``param`` for a task: from its secret Variable when the run has a reference to one."""
    ref = _ref(params, param)
    if ref is None:
        return str(params.get(param) or "")

    value = Variable.get(ref, default=None)
    if value is None:
        raise ValueError(
            f"the {param} of this job is gone (Variable {ref} no longer exists); start it again."
        )
    return str(value)


def forget(params: Mapping[str, Any], param: str) -> None:
    """Delete ``param``'s secret Variable (a task at the end of the run); nothing when there is none."""
    ref = _ref(params, param)
    if ref is None:
        return

    Variable.delete(ref)
    log.info("deleted the Variable %s that held this job's %s", ref, param)


def drop(conf: Mapping[str, Any], param: str) -> None:
    """:func:`forget` for the API server (a job that will never run: it could not start, or was cancelled
    before it started), through Airflow's metadata database."""
    ref = _ref(conf, param)
    if ref is None:
        return
    from airflow.models.variable import Variable  # noqa: PLC0415 (the metadata database: the API server only)

    Variable.delete(ref)
