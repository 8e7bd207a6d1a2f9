"""wpclone's errors: one hierarchy whose message is the user's sentence, and :func:`describe` for any error.

Every error we raise on purpose is a :class:`WpcloneError`; ``str(error)`` is one sentence a user can act
on (it never holds a secret). The builtin base each one also has (``ValueError``, ``RuntimeError``) says
what kind of failure it is to code that catches broadly::

    WpcloneError
    ├── ConfigError (ValueError)       configuration or input a user must fix (a step exits 2)
    │   ├── BadRequest                 a request refused before anything is created: no retries
    │   │   ├── CloneNotFound          the clone does not exist (the jobs API: 404)
    │   │   └── CloneBusy              not in the state the request needs, or locked by a job (409)
    │   ├── CloneNameTaken             a clone id that would name what is not that clone's
    │   └── RegistryError              the registry refused an operation (or its schema is behind)
    │       └── CloneTaken             another job holds or made the clone id
    ├── StepError (RuntimeError)       an expected failure of a step (a step exits 1)
    │   ├── FetchError                 a backup URL refused or its download failed
    │   ├── ArchiveError               a backup that cannot be written or is refused
    │   ├── SqlRefused                 a dump statement that could reach outside the clone's database
    │   ├── LinkRefused                a symlink in wp-content the rule does not allow
    │   └── LoadError                  a statement of the parallel load failed (the server's message)
    ├── StepFailed (RuntimeError)      a task's work failed (a step, or what a task checked)
    ├── SiteNotReady (RuntimeError)    the clone's site does not serve a right WordPress site
    ├── KubernetesError (RuntimeError) a Kubernetes API call or pod failed
    │   └── ForeignObject              an object under a clone's name is not that clone's
    └── ContentError (RuntimeError)    the content pod cannot switch a clone's wp-content

Standard library only: the steps and the content pod import it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


class WpcloneError(Exception):
    """An error wpclone raises on purpose: its message is one sentence for the user."""


class ConfigError(WpcloneError, ValueError):
    """Configuration or input that a user must fix; its message is one sentence."""


class BadRequest(ConfigError):
    """Input a user must fix; the job fails at once without retries."""


class CloneNotFound(BadRequest):
    """The clone a request names does not exist (the jobs API answers 404)."""


class CloneBusy(BadRequest):
    """The clone is not in a state the request needs, or another job works on it (the jobs API: 409)."""


class CloneNameTaken(ConfigError):
    """A clone id would name something that is not that clone's; the message is one sentence."""


class RegistryError(ConfigError):
    """A registry operation was refused; its message is one sentence for the user."""


class CloneTaken(RegistryError):
    """Another job holds (or made) the clone id: the request must change, a retry cannot help."""


class StepError(WpcloneError, RuntimeError):
    """An expected failure of a step: its message is one clear sentence, shown without a traceback."""


class FetchError(StepError):
    """A URL refused or a download failed; one sentence, the URL shown without secrets."""


class ArchiveError(StepError):
    """A backup that cannot be written or is refused; its message is one sentence naming the cause."""


class SqlRefused(StepError):
    """The dump holds a statement that could reach outside the clone's database; one sentence naming it."""


class LinkRefused(StepError):
    """A symlink the rule does not allow; its message names it."""


class LoadError(StepError):
    """A statement failed on the target of the parallel load; the message is the server's."""


class StepFailed(WpcloneError, RuntimeError):
    """A task's work failed; its message is the step's (or the check's) one sentence."""


class SiteNotReady(WpcloneError, RuntimeError):
    """The site is not right; the message is the user's sentence."""


class KubernetesError(WpcloneError, RuntimeError):
    """A Kubernetes API call failed; the message is one sentence without secret values."""


class ForeignObject(KubernetesError):
    """An object under a clone's name is not that clone's: wpclone will not write or delete it."""


class ContentError(WpcloneError, RuntimeError):
    """The content pod cannot make the switch; the message is one sentence."""


# -- sentences -------------------------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    """One sentence for a user, from any exception we raise or let through: a validation error's first
    problem, a database driver's error as a sentence (never its ``(code, "...")`` tuple), else the
    exception's own message (its type's name when it has none), ending with a full stop."""
    if _is_validation_error(exc):
        return validation_sentence(exc.errors())  # type: ignore[attr-defined]
    if (said := driver_error_sentence(exc)) is not None:
        return said
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if text.endswith(".") else text + "."


def _is_validation_error(exc: BaseException) -> bool:
    """A pydantic ValidationError (known by its module, as the drivers' errors are: no import needed)."""
    return type(exc).__module__.split(".")[0] in ("pydantic", "pydantic_core") and callable(
        getattr(exc, "errors", None)
    )


def validation_sentence(
    errors: Sequence[Mapping[str, Any]],
    rules: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
) -> str:
    """The first of pydantic's (or FastAPI's) validation errors as one sentence: ``where: what.``; for a
    field with a rule in ``rules`` (wpclone.models.FIELD_RULES) the rule in words, ``<name> <rule>.``,
    the field named as ``names`` says (the caller's vocabulary), else by its own name."""
    first = errors[0]
    field = error_field(first)
    where = (names or {}).get(field, field) or "request"
    message = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
    rule = (rules or {}).get(field)
    kind = str(first.get("type", ""))
    if rule and kind == "missing":
        return f"{where} is required: it {rule}."
    if rule and (kind != "value_error" or message.startswith("must ")):  # not a check's own sentence
        return f"{where} {rule}."
    if kind == "extra_forbidden":
        return f"{where} is not a field this request takes."
    return f"{where}: {message}."


def error_field(error: Mapping[str, Any]) -> str:
    """The field a pydantic (or FastAPI) validation error is about, ``a.b`` when nested ('' for the whole
    body)."""
    return ".".join(str(p) for p in error["loc"] if p not in ("body", "query", "path"))


# "Table 'db.t' doesn't exist", "Unknown database 'db'", "Access denied for user 'u'@'h' ...".
_NO_TABLE_RE = re.compile(r"Table '([^'.]*)\.([^']*)' doesn't exist")
_UNKNOWN_DB_RE = re.compile(r"Unknown database '([^']*)'")
_USER_RE = re.compile(r"Access denied for user '([^']*)'@'[^']*'(?: to database '([^']*)')?")
_UNREACHABLE = {2002, 2003, 2005, 2006, 2013}  # no socket, refused, unknown host, gone away, lost


def driver_error_sentence(exc: BaseException) -> str | None:
    """A PyMySQL or MySQLdb error as one sentence for a user (never the driver's ``(code, "...")`` tuple);
    None for any other exception.

    A syntax error's message quotes the statement (which may hold a password): only its code is given.
    """
    module = type(exc).__module__.split(".")[0]
    args = exc.args
    if module not in ("pymysql", "MySQLdb") or len(args) != 2 or not isinstance(args[0], int):
        return None
    code, message = args[0], " ".join(str(args[1]).split()).rstrip(".")
    if not message:
        return f"the database server connection failed (MySQL error {code})."
    if code == 1146 and (m := _NO_TABLE_RE.search(message)):
        return f"the database {m[1]} has no table {m[2]}."
    if code == 1049 and (m := _UNKNOWN_DB_RE.search(message)):
        return f"the database {m[1]} does not exist on the database server."
    if code == 1045 and (m := _USER_RE.search(message)):
        return (
            f"the database server refused the login of user {m[1]}: wrong password, or the user does not "
            "exist or may not connect from here."
        )
    if code == 1044 and (m := _USER_RE.search(message)) and m[2]:
        return f"the database user {m[1]} may not use the database {m[2]}."
    if code in _UNREACHABLE:
        return f"the database server could not be reached or dropped the connection: {message}."
    if code == 1064:
        return "the database server could not parse a statement (MySQL error 1064)."
    return f"the database server refused a statement (MySQL error {code}): {message}."
