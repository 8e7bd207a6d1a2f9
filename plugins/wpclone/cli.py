"""``wpclone``: WordPress staging clones from the command line, through the wpclone jobs API.

Every command is one or more HTTP calls to the jobs API that the wpclone plugin mounts under ``/wpclone`` on
Airflow's API server (see wpclone.api.app); the answers are parsed with the API's own models, so the CLI and
the API cannot silently disagree. ``--wait`` polls the job every half second and shows a live progress bar
on a terminal, or one plain line per change otherwise (logs, CI); ``--json`` prints only the API's JSON.

Environment:
  WPCLONE_API_URL    Airflow's base URL, e.g. http://127.0.0.1:8080
                     (unset: the local stack's Airflow, `python -m wpclone.local up --airflow`)
  WPCLONE_TOKEN      a token from Airflow's POST /auth/token, or instead
  WPCLONE_USERNAME   an Airflow login and its password, to get a token
  WPCLONE_PASSWORD   (unset with the local stack: its admin login)

Exit codes:
  0  success: the job completed, or the request was accepted (without --wait); a bare `wpclone` (its help)
  1  the job failed or was cancelled, or --wait timed out
  2  bad input: wrong arguments, or the API refused the request (400, 404, 409, 422)
  3  Airflow cannot be reached, refused the login or the user (401, 403), or is not configured
  130  interrupted while waiting (the job goes on)
  141  the output was closed early (e.g. `wpclone list | head -3`): the rest is not printed
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import time
import webbrowser
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from wpclone.config import local_config_path
from wpclone.errors import BadRequest
from wpclone.jobs import (
    FINAL_STATUSES,
    PAGE_DEFAULT,
    PAGE_MAX,
    JobList,
    JobResponse,
    JobStatus,
    JobStatusResponse,
    JobType,
    SourceInfo,
)
from wpclone.local.airflow import LocalAirflow
from wpclone.local.settings import StackSettings
from wpclone.login import LoginLink
from wpclone.models import CloneStatus, CopyMode, check_clone_id
from wpclone.registry import CloneRecord
from wpclone.settings import API_URL, PASSWORD, TOKEN, USERNAME, ApiAccess
from wpclone.summary import copy_lines, in_words, login_line
from wpclone.timewords import moment_words, parse_since, parse_ttl, relative

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141  # what a shell reports for a command ended by SIGPIPE (128 + 13)

API_PREFIX = "/wpclone/api/v1"
POLL_INTERVAL_S = 0.5
DEFAULT_TIMEOUT_S = 1800.0
HTTP_TIMEOUT_S = 30.0
BAD_INPUT_STATUSES = frozenset({400, 404, 409, 422})
AUTH_STATUSES = frozenset({401, 403})

LOCAL_USER = "admin"

EPILOG = (__doc__ or "")[(__doc__ or "").index("Environment:") :]
M = TypeVar("M", bound=BaseModel)


class CliError(Exception):
    """Ends the command: ``message`` (one sentence) on stderr and ``code`` as the exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def sentence(text: str) -> str:
    """``text`` on one line, ending with a full stop."""
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


# -- configuration -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Where Airflow is and how to log in: a token, or a username and password to get one."""

    url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None


def local_settings() -> Settings | None:
    """The local stack's Airflow and its admin login, if that Airflow has been set up (its passwords file).

    Checks for the stack's ``ports.json`` first, so that without a stack nothing is created on disk.
    """

    if not (local_config_path().parent / "ports.json").exists():
        return None

    airflow = LocalAirflow(StackSettings.load())
    if not airflow.passwords_file.exists():
        return None
    return Settings(airflow.url, username=LOCAL_USER, password=airflow.password(LOCAL_USER))


def settings_from_env(env: Mapping[str, str], local: Callable[[], Settings | None]) -> Settings:
    """Settings from ``WPCLONE_*`` variables; without ``WPCLONE_API_URL``, the local stack's Airflow."""
    access = ApiAccess.from_env(env)
    url, token, username, password = access.url, access.token, access.username, access.password
    if not token and bool(username) != bool(password):
        raise CliError(EXIT_UNAVAILABLE, f"set both {USERNAME} and {PASSWORD}, or {TOKEN}.")
    if not url:
        fallback = local()
        if fallback is None:
            raise CliError(
                EXIT_UNAVAILABLE,
                f"set {API_URL} to Airflow's base URL (e.g. http://127.0.0.1:8080) and {TOKEN} or "
                f"{USERNAME} and {PASSWORD}, or start the local stack with "
                "`python -m wpclone.local up --airflow`.",
            )
        if not token and not username:
            return fallback
        url = fallback.url
    if not token and not username:
        raise CliError(EXIT_UNAVAILABLE, f"set {TOKEN}, or {USERNAME} and {PASSWORD}, to log in.")
    return Settings(url, token, username, password)


# -- the jobs API --------------------------------------------------------------------------------------------


# The jobs API's request fields as this CLI's arguments: a refused field is said in the words the user typed.
OPTION_OF_FIELD = {
    "clone_id": "--id",
    "ttl_minutes": "--ttl",
    "copy_mode": "--copy-mode",
    "source_url": "SOURCE_URL",
    "source_backup_url": "BACKUP_URL",
}


def detail_of(response: httpx.Response) -> str | None:
    """The API's ``detail`` sentence (its first line), if the answer has one; a field refused by its rule
    (the API's ``field`` and ``rule``) is said with this CLI's option, e.g. ``--id must be ...``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("field") in OPTION_OF_FIELD and isinstance(body.get("rule"), str):
        return sentence(f"{OPTION_OF_FIELD[body['field']]} {body['rule']}")
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        detail = detail[0].get("msg")
    if isinstance(detail, str) and detail.strip():
        return sentence(detail.strip().splitlines()[0])
    return None


def error_for(response: httpx.Response, url: str) -> CliError:
    """A refused request as a CliError: bad input (2) or an Airflow we cannot use (3)."""
    status, detail = response.status_code, detail_of(response)
    answer = detail or f"HTTP {status} {response.reason_phrase}."
    if status == 404 and detail == "Not Found.":  # FastAPI's answer for a path no route serves
        return CliError(
            EXIT_UNAVAILABLE, f"Airflow at {url} has no wpclone jobs API; is the wpclone plugin installed?"
        )
    if status in BAD_INPUT_STATUSES:
        return CliError(EXIT_BAD_INPUT, answer)
    if status in AUTH_STATUSES:
        return CliError(EXIT_UNAVAILABLE, f"Airflow at {url} refused the request: {answer}")
    return CliError(
        EXIT_UNAVAILABLE, f"Airflow at {url} answered " + (f"HTTP {status}: {detail}" if detail else answer)
    )


def parse(model: type[M], data: Any) -> M:
    """``data`` as ``model``; an answer of another shape means an API we do not understand (exit 3)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CliError(
            EXIT_UNAVAILABLE,
            f"the jobs API answered with an unexpected {model.__name__} ({exc.errors()[0]['msg']}); "
            "are the CLI and the wpclone plugin the same version?",
        ) from exc


class Api:
    """The jobs API over HTTP as one logged-in user; every failure is a CliError with one sentence."""

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self.url = settings.url
        self.settings = settings
        self._token = settings.token
        self._http = httpx.Client(base_url=settings.url, timeout=HTTP_TIMEOUT_S, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise CliError(
                EXIT_UNAVAILABLE, f"Airflow at {self.url} did not answer within {HTTP_TIMEOUT_S:.0f} s."
            ) from exc
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(
                EXIT_UNAVAILABLE,
                f"cannot reach Airflow at {self.url} ({reason}); check {API_URL} and that Airflow runs.",
            ) from exc

    def token(self) -> str:
        """The bearer token: the configured one, or one from ``POST /auth/token`` (once)."""
        if self._token is None:
            login = {"username": self.settings.username, "password": self.settings.password}
            response = self._send("POST", "/auth/token", json=login)
            if response.status_code in (400, 401, 403, 422):
                raise CliError(
                    EXIT_UNAVAILABLE,
                    f"Airflow at {self.url} refused the login of {self.settings.username} "
                    f"({(detail_of(response) or f'HTTP {response.status_code}').rstrip('.')}); "
                    f"check {USERNAME} and {PASSWORD}.",
                )
            self._token = str(self._json(response, "/auth/token").get("access_token") or "") or None
            if self._token is None:
                raise CliError(EXIT_UNAVAILABLE, f"Airflow at {self.url} answered the login without a token.")
        return self._token

    def _json(self, response: httpx.Response, path: str) -> Any:
        if not response.is_success:
            raise error_for(response, self.url)
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(
                EXIT_UNAVAILABLE,
                f"Airflow at {self.url} answered {path} with something other than JSON; "
                "is the wpclone plugin installed?",
            ) from exc

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of ``method`` on ``path`` (below the API prefix)."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        response = self._send(method, API_PREFIX + path, headers=headers, **kwargs)
        return self._json(response, API_PREFIX + path)


# -- output --------------------------------------------------------------------------------------------------


def when(value: datetime | str | None) -> str:
    """A timestamp for people: local time to the minute, with its zone."""
    if value is None:
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")


def moment(value: datetime | str | None) -> str:
    """A clone's time for people: relative and in UTC, ``in 1 h 20 min (2026-12-06 07:10 UTC)``."""
    return moment_words(datetime.fromisoformat(value) if isinstance(value, str) else value)


def clone_expiry(clone: CloneRecord) -> str:
    """When the clone expires, or (deleted) when it was deleted."""
    if clone.deleted_at:
        return "deleted " + moment(clone.deleted_at)
    return moment(clone.expires_at)


def fields(rows: Sequence[tuple[str, object]]) -> str:
    """``Label: value`` lines with the values aligned."""
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label + ':':<{width}}{value}" for label, value in rows)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: left-aligned columns two spaces apart (greppable, no box drawing)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(f"{cell:<{w}}" for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    ]
    return "\n".join(lines)


def describe_result(job: JobStatusResponse) -> str:
    """What a completed job produced: the clone's addresses and logins, or the deletion."""
    result = job.result or {}
    if job.type is JobType.DELETE:
        verb = "was already deleted" if result.get("already_deleted") else "is deleted"
        return f"Clone {job.clone_id} {verb}."
    if job.type is JobType.BACKUP:
        return f"Clone {job.clone_id} is backed up.\n" + fields(
            [
                ("  Backup", result.get("backup_url", "-")),
                ("  Size", f"{result.get('size', 0) / 1e6:.1f} MB"),
                ("  SHA-256", result.get("sha256", "-")),
            ]
        )
    if job.type is JobType.RESTORE:
        return f"Clone {job.clone_id} serves the restored backup.\n" + fields(
            [
                ("  URL", result.get("url", "-")),
                ("  Restored from", result.get("backup_site_url", "-")),
                ("  Backup made first", result.get("safety_backup_url", "-")),
            ]
        )
    copied = "".join(f"\n  {line}" for line in copy_lines(result.get("copied") or {}))
    return (
        f"Clone {job.clone_id} is ready.\n"
        + fields(
            [
                ("  URL", result.get("url", "-")),
                ("  Admin", result.get("admin_url", "-")),
                ("  Admin user", result.get("admin_user", "-")),
                ("  Admin password", f"stored in {result.get('admin_password', '-')}"),
                ("  Expires", moment(result.get("expires_at"))),
                ("  Log in", f"wpclone login {job.clone_id} (a one-time wp-admin link)"),
            ]
        )
        + copied
    )


def describe_job(job: JobStatusResponse) -> str:
    """A job's state for people; its result when it completed."""
    rows: list[tuple[str, object]] = [
        ("Job", f"{job.job_id} ({job.type} job for clone {job.clone_id or '-'})"),
        ("Status", f"{job.status}, {job.progress}%: {job.status_message}"),
        ("Created", when(job.created_at)),
    ]
    if job.completed_at:
        rows.append(("Completed", when(job.completed_at)))
    elif job.estimated_completion:
        rows.append(("Estimated", when(job.estimated_completion)))
    if job.error:
        rows.append(("Error", job.error))
    text = fields(rows)
    return text + "\n" + describe_result(job) if job.status is JobStatus.COMPLETED else text


def describe_clone(clone: CloneRecord) -> str:
    """Every registry field of one clone for people."""
    rows: list[tuple[str, object]] = [
        ("Clone", clone.clone_id),
        ("Status", clone.status),
        ("URL", clone.url),
        ("Source", clone.source_url),
        ("Copy mode", clone.copy_mode),
        ("Database", clone.db_name),
        ("Asked by", clone.requested_by or "-"),
        ("Created", moment(clone.created_at)),
        ("Expires", moment(clone.expires_at)),
        ("Updated", moment(clone.updated_at)),
    ]
    if clone.deleted_at:
        rows.append(("Deleted", moment(clone.deleted_at)))
    rows.append(("Last job", clone.last_job_id))
    if clone.lock_job_id:
        rows.append(("Locked by", f"job {clone.lock_job_id}"))
    if clone.status is CloneStatus.READY:
        rows.append(("Log in", login_line(clone.clone_id).removeprefix("Log in: ").replace("`", "")))
    if clone.last_error:
        rows.append(("Last error", clone.last_error))
    return fields(rows)


def clone_table(clones: Sequence[CloneRecord]) -> str:
    headers = ("CLONE ID", "STATUS", "URL", "SOURCE", "ASKED BY", "EXPIRES")
    return format_table(
        headers,
        [
            (c.clone_id, c.status.value, c.url, c.source_url, c.requested_by or "-", clone_expiry(c))
            for c in clones
        ],
    )


def job_table(listed: Sequence[JobStatusResponse]) -> str:
    """Jobs one a line: when each was asked for in words, and what it is doing or why it ended badly."""
    headers = ("JOB ID", "TYPE", "CLONE", "STATUS", "ASKED BY", "ASKED", "DETAIL")
    rows = [
        (
            j.job_id,
            j.type.value,
            j.clone_id or "-",
            j.status.value if j.status in FINAL_STATUSES else f"{j.status.value} {j.progress}%",
            j.requested_by or "-",
            relative(j.created_at),
            j.error or j.status_message,
        )
        for j in listed
    ]
    return format_table(headers, rows)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def progress_line(status: JobStatus, progress: int, message: str) -> str:
    return f"{progress:3d}% {status}: {message}"


class LineReporter:
    """Without a terminal: one plain line whenever the status, progress or message changes.

    The progress shown is the furthest seen, so a job's progress never goes backwards on screen.
    """

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._furthest = 0
        self._last: tuple[JobStatus, int, str] | None = None

    def __call__(self, job: JobStatusResponse) -> None:
        self._furthest = max(self._furthest, job.progress)
        state = (job.status, self._furthest, job.status_message)
        if state != self._last:
            self._last = state
            self._write(progress_line(*state))


class BarReporter:
    """On a terminal: a live rich progress bar described by the job's status message."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._task = bar.add_task("Waiting for the job", total=100)
        self._furthest = 0

    def __call__(self, job: JobStatusResponse) -> None:
        self._furthest = max(self._furthest, job.progress)
        self._bar.update(self._task, completed=self._furthest, description=job.status_message)


@contextmanager
def reporter(live: bool, quiet: bool) -> Iterator[Callable[[JobStatusResponse], None]]:
    """How polled job states are shown: not at all (--json), as a live bar (terminal) or as plain lines."""
    if quiet:
        yield lambda job: None
    elif live:
        columns = (SpinnerColumn(), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
        with Progress(*columns, TextColumn("{task.description}")) as bar:
            yield BarReporter(bar)
    else:
        yield LineReporter(lambda line: print(line, flush=True))


def wait_for_job(
    api: Api, job_id: str, timeout: float, report: Callable[[JobStatusResponse], None]
) -> JobStatusResponse:
    """Poll the job until it is final; CliError (exit 1) after ``timeout`` seconds, 130 on Ctrl-C."""
    deadline = time.monotonic() + timeout
    follow = f"follow it with `wpclone status {job_id} --wait`"
    try:
        while True:
            job = parse(JobStatusResponse, api.call("GET", f"/jobs/{job_id}"))
            report(job)
            if job.status in FINAL_STATUSES:
                return job
            if time.monotonic() >= deadline:
                raise CliError(
                    EXIT_JOB_FAILED, f"job {job_id} is still {job.status} after {timeout:g} s; {follow}."
                )
            time.sleep(POLL_INTERVAL_S)
    except KeyboardInterrupt:
        raise CliError(EXIT_INTERRUPTED, f"stopped waiting; job {job_id} goes on: {follow}.") from None


# -- commands ------------------------------------------------------------------------------------------------


def finish(job: JobStatusResponse, as_json: bool) -> int:
    """Print a final job (its JSON, or its result) and turn its outcome into the exit code."""
    if as_json:
        print_json(job.model_dump(mode="json"))
    if job.status is JobStatus.COMPLETED:
        if not as_json:
            print(describe_result(job))
        return EXIT_OK
    raise CliError(
        EXIT_JOB_FAILED, f"job {job.job_id} {job.status}" + (f": {job.error}" if job.error else ".")
    )


def follow_job(api: Api, args: argparse.Namespace, started: JobResponse) -> int:
    """After a job was accepted: say where to follow it, or (--wait) follow it to its end."""
    as_json = getattr(args, "json", False)
    if args.wait and not as_json:
        print(f"Job {started.job_id} started ({started.type} job for clone {started.clone_id}).", flush=True)
    if not args.wait:
        if as_json:
            print_json(started.model_dump(mode="json"))
        else:
            print(f"Job {started.job_id} accepted ({started.type} job for clone {started.clone_id}).")
            print(f"Status: {api.url}{started.status_url}")
            print(f"Follow it with: wpclone status {started.job_id} --wait")
        return EXIT_OK
    with reporter(live=sys.stdout.isatty(), quiet=as_json) as report:
        job = wait_for_job(api, started.job_id, args.timeout, report)
    return finish(job, as_json)


def cmd_clone(api: Api, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"source_url": args.source_url}
    if args.ttl is not None:
        body["ttl_minutes"] = args.ttl
    if args.id:
        body["clone_id"] = args.id
    if args.copy_mode:
        body["copy_mode"] = args.copy_mode
    return follow_job(api, args, parse(JobResponse, api.call("POST", "/clones", json=body)))


def cmd_delete(api: Api, args: argparse.Namespace) -> int:
    """A clone that is already deleted is said so at once: no job is started for it."""
    clone = parse(CloneRecord, api.call("GET", f"/clones/{args.clone_id}"))
    if clone.status is CloneStatus.DELETED:
        if getattr(args, "json", False):
            print_json(clone.model_dump(mode="json"))
        else:
            print(f"{clone.clone_id} was already deleted at {when(clone.deleted_at)}; nothing to delete.")
        return EXIT_OK
    return follow_job(api, args, parse(JobResponse, api.call("DELETE", f"/clones/{args.clone_id}")))


def cmd_backup(api: Api, args: argparse.Namespace) -> int:
    return follow_job(api, args, parse(JobResponse, api.call("POST", f"/clones/{args.clone_id}/backup")))


def cmd_restore(api: Api, args: argparse.Namespace) -> int:
    body = {"source_backup_url": args.backup_url}
    path = f"/clones/{args.clone_id}/restore"
    return follow_job(api, args, parse(JobResponse, api.call("POST", path, json=body)))


def cmd_cancel(api: Api, args: argparse.Namespace) -> int:
    """Exit 0 once the job is cancelling (with --wait: cancelled, its rollback done)."""
    as_json = getattr(args, "json", False)
    job = parse(JobStatusResponse, api.call("POST", f"/jobs/{args.job_id}/cancel"))
    if args.wait:
        with reporter(live=sys.stdout.isatty(), quiet=as_json) as report:
            job = wait_for_job(api, args.job_id, args.timeout, report)
    if as_json:
        print_json(job.model_dump(mode="json"))
    elif job.status is JobStatus.CANCELLED:
        print(f"Job {job.job_id} is cancelled; what it made is rolled back.")
    else:
        print(f"Job {job.job_id} is being cancelled: {job.status_message}.")
    if args.wait and job.status is not JobStatus.CANCELLED:
        raise CliError(EXIT_JOB_FAILED, f"job {job.job_id} ended {job.status}, not cancelled.")
    return EXIT_OK


def cmd_status(api: Api, args: argparse.Namespace) -> int:
    as_json = getattr(args, "json", False)
    if args.wait:
        with reporter(live=sys.stdout.isatty(), quiet=as_json) as report:
            job = wait_for_job(api, args.job_id, args.timeout, report)
        return finish(job, as_json)
    job = parse(JobStatusResponse, api.call("GET", f"/jobs/{args.job_id}"))
    if as_json:
        print_json(job.model_dump(mode="json"))
    else:
        print(describe_job(job))
    return EXIT_JOB_FAILED if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) else EXIT_OK


def cmd_list(api: Api, args: argparse.Namespace) -> int:
    params: dict[str, str] = {k: v for k, v in (("status", args.status), ("source", args.source)) if v}
    if args.all:
        params["all"] = "true"
    clones = [parse(CloneRecord, item) for item in api.call("GET", "/clones", params=params)]
    if getattr(args, "json", False):
        print_json([c.model_dump(mode="json") for c in clones])
    elif clones:
        print(clone_table(clones))
    elif args.all or args.status:
        print("No clones" + (" match those filters." if args.status or args.source else " yet."))
    else:
        where = f" of {args.source}" if args.source else ""
        print(f"No live clones{where}; `wpclone list --all` shows deleted ones too.")
    return EXIT_OK


def cmd_jobs(api: Api, args: argparse.Namespace) -> int:
    """One page of jobs, newest first; an empty answer is a sentence and exit 0."""
    params: dict[str, Any] = {
        name: value
        for name, value in (
            ("status", args.status),
            ("type", args.type),
            ("clone_id", args.clone),
            ("requested_by", args.requested_by),
            ("since", args.since.isoformat() if args.since else None),
        )
        if value
    }
    if args.mine:
        params["mine"] = "true"
    params["limit"] = args.limit
    page = parse(JobList, api.call("GET", "/jobs", params=params))
    if getattr(args, "json", False):
        print_json(page.model_dump(mode="json"))
        return EXIT_OK
    if not page.jobs:
        print("No jobs match those filters." if len(params) > 1 else "No jobs yet.")
        return EXIT_OK
    print(job_table(page.jobs))
    if page.next:
        more = f"raise --limit (up to {PAGE_MAX}) or " if args.limit < PAGE_MAX else ""
        print(
            f"The newest {args.limit} are shown; there are more: {more}narrow with --since.", file=sys.stderr
        )
    return EXIT_OK


def cmd_extend(api: Api, args: argparse.Namespace) -> int:
    body = {"ttl_minutes": args.ttl}
    clone = parse(CloneRecord, api.call("PATCH", f"/clones/{args.clone_id}", json=body))
    if getattr(args, "json", False):
        print_json(clone.model_dump(mode="json"))
    else:
        print(f"Clone {clone.clone_id} now expires {moment(clone.expires_at)}.")
    return EXIT_OK


def cmd_sources(api: Api, args: argparse.Namespace) -> int:
    sources = [parse(SourceInfo, item) for item in api.call("GET", "/sources")]
    if getattr(args, "json", False):
        print_json([s.model_dump(mode="json") for s in sources])
    elif sources:
        rows = [
            (s.name, s.url, ", ".join(s.aliases) or "-", s.conn_id if s.conn_id else s.origin)
            for s in sources
        ]
        print(format_table(("NAME", "URL", "ALIASES", "REGISTERED IN"), rows))
    else:
        print("No sources are registered yet.")
    return EXIT_OK


def cmd_show(api: Api, args: argparse.Namespace) -> int:
    clone = parse(CloneRecord, api.call("GET", f"/clones/{args.clone_id}"))
    if getattr(args, "json", False):
        print_json(clone.model_dump(mode="json"))
    else:
        print(describe_clone(clone))
    return EXIT_OK


def cmd_login(api: Api, args: argparse.Namespace) -> int:
    """The link on stdout (for a script or a browser), what it is on stderr."""
    link = parse(LoginLink, api.call("POST", f"/clones/{args.clone_id}/login"))
    if getattr(args, "json", False):
        print_json(link.model_dump(mode="json"))
        return EXIT_OK
    print(link.url, flush=True)
    left = in_words(link.expires_at - datetime.now(link.expires_at.tzinfo))
    print(
        f"A one-time link into {link.clone_id}'s wp-admin as {link.user}: it works once and {left} "
        f"({when(link.expires_at)}).",
        file=sys.stderr,
    )
    if args.open and not webbrowser.open(link.url):
        raise CliError(EXIT_UNAVAILABLE, "no web browser could be opened here; open the link above yourself.")
    return EXIT_OK


COMMANDS: dict[str, Callable[[Api, argparse.Namespace], int]] = {
    "clone": cmd_clone,
    "status": cmd_status,
    "list": cmd_list,
    "delete": cmd_delete,
    "backup": cmd_backup,
    "restore": cmd_restore,
    "cancel": cmd_cancel,
    "show": cmd_show,
    "sources": cmd_sources,
    "login": cmd_login,
    "extend": cmd_extend,
    "jobs": cmd_jobs,
}


# -- arguments -----------------------------------------------------------------------------------------------


# argparse's refusal of an option's value: "argument --status: invalid choice: 'faild' (choose from ...)".
_INVALID_OPTION_CHOICE = re.compile(
    r"argument (?P<option>-[^:]+): invalid choice: '(?P<typed>[^']*)' \((?P<rest>.*)\)"
)


class Parser(argparse.ArgumentParser):
    """argparse with a suggestion for a mistyped command (``wpclone clnoe``: did you mean clone?) or value
    of an option with choices (``--status faild``: did you mean failed?)."""

    def error(self, message: str) -> Any:  # argparse's signature: it never returns
        choices = self._commands()
        option = _INVALID_OPTION_CHOICE.match(message)
        if option:
            allowed = re.findall(r"'([^']*)'", option["rest"])
            close = difflib.get_close_matches(option["typed"], allowed, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}?" if close else f"it takes {', '.join(allowed)}."
            message = f"{option['option']} {option['typed']!r} is not a value it takes; {hint}"
        elif "invalid choice" in message and choices:
            typed = message.split("'")[1] if message.count("'") >= 2 else ""
            close = difflib.get_close_matches(typed, choices, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}?" if close else f"the commands are {', '.join(choices)}."
            message = f"{typed!r} is not a wpclone command; {hint}"
        return super().error(message)

    def _commands(self) -> list[str]:
        actions = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        return list(actions[0].choices) if actions else []


def ttl_argument(text: str) -> int:
    """``--ttl``: minutes from ``90m``, ``2h``, ``3d`` or plain minutes, with the bounds in the error."""
    try:
        return parse_ttl(text)
    except BadRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def since_argument(text: str) -> datetime:
    """``--since``: ``2h`` (ago) or an ISO 8601 time, as an aware UTC datetime."""
    try:
        return parse_since(text)
    except BadRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def clone_id_argument(text: str) -> str:
    """``--clone``: a clone id, its rule in words when it is not one."""
    try:
        return check_clone_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def limit_argument(text: str) -> int:
    """``--limit``: how many jobs, 1 to PAGE_MAX."""
    if not text.strip().isdigit() or not 1 <= int(text) <= PAGE_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of jobs from 1 to {PAGE_MAX}.")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """``wpclone [--json] COMMAND ...``; ``--json`` is accepted before or after the command."""
    as_json = Parser(add_help=False)
    as_json.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the API's JSON answer (with --wait: the final job status) and no progress",
    )
    waiting = Parser(add_help=False)
    waiting.add_argument("--wait", action="store_true", help="follow the job until it ends, showing progress")
    waiting.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"with --wait: give up waiting after this long, exit code 1 (default {DEFAULT_TIMEOUT_S:g})",
    )
    shared: dict[str, Any] = {"epilog": EPILOG, "formatter_class": argparse.RawDescriptionHelpFormatter}
    parser = Parser(
        prog="wpclone",
        description="Make, follow, list, back up, restore and delete WordPress staging clones, and list\n"
        "jobs, through the wpclone jobs API.",
        parents=[as_json],
        **shared,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    clone = sub.add_parser(
        "clone",
        parents=[as_json, waiting],
        help="clone a registered source site into a new staging site",
        description="Start a clone job: a copy of SOURCE_URL's database and wp-content at a new URL,\n"
        "with staging safety (no indexing, no mail), deleted when its time to live ends.",
        **shared,
    )
    clone.add_argument(
        "source_url", metavar="SOURCE_URL", help="a registered source site, e.g. https://example.com"
    )
    clone.add_argument(
        "--ttl",
        type=ttl_argument,
        metavar="TTL",
        help="time until the clone is deleted: 90m, 2h, 3d or minutes, 10m to 7d (default 1h)",
    )
    clone.add_argument(
        "--id", metavar="ID", help="the clone's name (3-28 of a-z, 0-9, '-'); generated if omitted"
    )
    clone.add_argument(
        "--copy-mode",
        choices=[mode.value for mode in CopyMode],
        help="everything (default): database and wp-content; database: without uploads/; "
        "files: wp-content, and of the database only settings and users",
    )

    status = sub.add_parser(
        "status",
        parents=[as_json, waiting],
        help="show a job's status, progress and outcome",
        description="Show a job's status, progress and outcome (exit code 1 if it failed or was\ncancelled).",
        **shared,
    )
    status.add_argument("job_id", metavar="JOB_ID", help="the job id printed when the job was started")

    cancel = sub.add_parser(
        "cancel",
        parents=[as_json, waiting],
        help="cancel a job: stop its running step and roll back what it made",
        description="Cancel a job that has not ended: its running step is stopped, what it made is rolled\n"
        "back, and it ends cancelled (with --wait: follow it until then).",
        **shared,
    )
    cancel.add_argument("job_id", metavar="JOB_ID")

    listing = sub.add_parser(
        "list",
        parents=[as_json],
        help="list clones",
        description="List the clones in the registry.",
        **shared,
    )
    listing.add_argument("--status", choices=[s.value for s in CloneStatus], help="only clones in this state")
    listing.add_argument("--source", metavar="URL", help="only clones of this source site")
    listing.add_argument("--all", action="store_true", help="deleted clones too (the history)")

    delete = sub.add_parser(
        "delete",
        parents=[as_json, waiting],
        help="delete a clone: site, database, user and content",
        description="Start a delete job for a clone: its site, database, database user and content.",
        **shared,
    )
    delete.add_argument("clone_id", metavar="CLONE_ID")

    backup = sub.add_parser(
        "backup",
        parents=[as_json, waiting],
        help="archive a clone's database and wp-content",
        description="Start a backup job: the clone's database and wp-content, with a manifest, into the\n"
        "backup location; the clone keeps serving.",
        **shared,
    )
    backup.add_argument("clone_id", metavar="CLONE_ID")

    restore = sub.add_parser(
        "restore",
        parents=[as_json, waiting],
        help="restore a clone from a backup archive",
        description="Start a restore job: the clone is backed up first, then serves the backup at\n"
        "BACKUP_URL (its URLs rewritten to the clone's); if anything fails it serves what it served.",
        **shared,
    )
    restore.add_argument("clone_id", metavar="CLONE_ID")
    restore.add_argument(
        "backup_url", metavar="BACKUP_URL", help="https://... (file:// and http:// on the local runtime)"
    )

    show = sub.add_parser(
        "show",
        parents=[as_json],
        help="show one clone",
        description="Show one clone's registry entry.",
        **shared,
    )
    show.add_argument("clone_id", metavar="CLONE_ID")

    login = sub.add_parser(
        "login",
        parents=[as_json],
        help="print a one-time link into a clone's wp-admin",
        description="Print a one-time link that logs into a ready clone's wp-admin as its administrator:\n"
        "it works once and expires after a few minutes; no password needed.",
        **shared,
    )
    login.add_argument("clone_id", metavar="CLONE_ID")
    login.add_argument("--open", action="store_true", help="open the link in the web browser too")
    extend = sub.add_parser(
        "extend",
        parents=[as_json],
        help="give a ready clone more time: it expires TTL from now",
        description="Set a ready clone's expiry to TTL from now (10m to 7d); its staging notice shows it.",
        **shared,
    )
    extend.add_argument("clone_id", metavar="CLONE_ID")
    extend.add_argument(
        "--ttl",
        type=ttl_argument,
        required=True,
        metavar="TTL",
        help="the new time to live from now: 90m, 2h, 3d or minutes (10m to 7d)",
    )

    jobs = sub.add_parser(
        "jobs",
        parents=[as_json],
        help="list jobs, newest first: failed, running, yours, of a clone...",
        description="List the jobs (clone, delete, backup and restore runs), newest first, with their\n"
        "status and, for a job that failed, why.",
        **shared,
    )
    jobs.add_argument("--status", choices=[s.value for s in JobStatus], help="only jobs in this state")
    jobs.add_argument("--type", choices=[t.value for t in JobType], help="only jobs of this type")
    jobs.add_argument("--clone", type=clone_id_argument, metavar="ID", help="only jobs of this clone")
    who = jobs.add_mutually_exclusive_group()
    who.add_argument("--mine", action="store_true", help="only the jobs you started")
    who.add_argument("--requested-by", metavar="USER", help="only the jobs USER started")
    jobs.add_argument(
        "--since",
        type=since_argument,
        metavar="WHEN",
        help="only jobs asked for since WHEN: how long ago (90m, 2h, 3d) or an ISO 8601 time (UTC)",
    )
    jobs.add_argument(
        "--limit",
        type=limit_argument,
        default=PAGE_DEFAULT,
        metavar="N",
        help=f"at most N jobs (default {PAGE_DEFAULT}, at most {PAGE_MAX})",
    )

    sub.add_parser(
        "sources",
        parents=[as_json],
        help="list the registered source sites",
        description="List the sites that may be cloned: those in the wpclone configuration and the\n"
        "Airflow connections wpclone_source_<name>.",
        **shared,
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Run one command; returns the exit code (``env`` and ``transport`` are for tests). A bare ``wpclone``
    prints the help (exit 0); output closed early (``| head``) ends it quietly (exit 141)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return run(args, env, transport)
    except BrokenPipeError:
        # Whoever read our output stopped: no traceback, and none again when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_CLOSED_PIPE


def run(
    args: argparse.Namespace, env: Mapping[str, str] | None, transport: httpx.BaseTransport | None
) -> int:
    """The command ``args`` names, its CliError as one sentence on stderr and its exit code."""
    try:
        settings = settings_from_env(os.environ if env is None else env, local_settings)
        api = Api(settings, transport)
        try:
            return COMMANDS[args.command](api, args)
        finally:
            api.close()
    except CliError as exc:
        print(f"wpclone: {sentence(str(exc))}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("wpclone: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
