"""The jobs API: a FastAPI app that Airflow's API server mounts under ``/wpclone`` (see wpclone.plugin).

Every route authenticates with Airflow's own dependencies (a JWT from ``POST /auth/token``, as a bearer
token or the UI's cookie: none -> 401) and asks Airflow's auth manager whether the user may act on the DAG
behind the job (no -> 403). Errors are JSON ``{"detail": "<one sentence>"}``. A request is checked
completely before anything is created, so a refused request leaves nothing behind.

``GET /api/v1/sources`` lists the registered sources (wpclone.sources: the configuration's and Airflow's
connections ``wpclone_source_<name>``). The API finds a request's source by URL (it may list connections)
and passes its name to the job as the ``source`` param, which is how a task finds a connection's source.

``GET /api/v1/jobs`` lists the jobs newest first (the job DAGs' runs, and the registry's accepted jobs
that never got one), filtered by status, type, clone, who asked and since, a page at a time with a cursor
(docs/jobs-api.md); only the job DAGs whose runs the user may read.
``GET /api/v1/clones`` lists the clones that are not deleted (``?all=true``: the history too; a ``status``
filter lists what it names); its ``source`` matches whatever spelling of the URL ``POST /clones`` accepts.
``PATCH /api/v1/clones/{clone_id}`` with ``{"ttl_minutes": N}`` extends a ready clone to now + N minutes
(wpclone.services.expiry: 422 out of bounds, 409 when the clone is not ready) and answers its registry row;
it needs the same permission as a clone (POST on the runs of wp_clone).
``POST /api/v1/clones/{clone_id}/login`` answers a one-time wp-admin link of a ready clone (wpclone.login:
written into the clone's database through the registry login, on either runtime; ``Cache-Control:
no-store``; the token is in the answer's body only, never in a URL we receive or a log line).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import get_user
from airflow.utils.session import create_session
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from wpclone import jobs, login
from wpclone.airflow import runparams
from wpclone.airflow.services import mysql_admin, registry, registry_conn_id, services
from wpclone.api import pages
from wpclone.api.dispatch import Dispatcher, airflow_trigger, is_stale
from wpclone.api.runs import (
    build_execution_api,
    cancel,
    existing_runs,
    find_run,
    job_status,
    list_runs,
    page_facts,
    warm_up,
)
from wpclone.errors import (
    BadRequest,
    CloneBusy,
    CloneNotFound,
    CloneTaken,
    ConfigError,
    StepFailed,
    describe,
    error_field,
    validation_sentence,
)
from wpclone.fetch import redact
from wpclone.jobs import JobQuery, JobResponse, JobStatusResponse, JobType, SourceInfo
from wpclone.models import (
    FIELD_RULES,
    TTL_MAX_MINUTES,
    TTL_MIN_MINUTES,
    BackupUrl,
    CloneId,
    ClonePlan,
    CloneRequest,
    CloneStatus,
    SourceConfig,
    url_spellings,
)
from wpclone.mysql_admin import MySqlAdmin
from wpclone.registry import CloneRecord, JobRecord, Registry
from wpclone.services import clone, expiry, restore
from wpclone.services.common import Services

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
Method = Literal["GET", "POST", "PUT", "DELETE"]
F = TypeVar("F", bound=Callable[..., Any])


def _session() -> Iterator[Session]:

    # Not the thread-local session: FastAPI runs concurrent requests' dependencies and endpoints in pool
    # threads, and a shared session breaks under concurrent use (as Airflow's own ``_get_session``).
    with create_session(scoped=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


def _user() -> Any:
    """Airflow's ``get_user`` dependency (imported lazily: plugins load in every Airflow component)."""

    return Depends(get_user)


UserDep = Annotated[Any, _user()]


def may(user: Any, method: Method, dag_id: str) -> bool:
    """Whether Airflow's auth manager lets ``user`` do ``method`` on the runs of ``dag_id``."""

    return bool(
        get_auth_manager().is_authorized_dag(
            method=method, access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
        )
    )


def authorize(user: Any, method: Method, dag_id: str) -> None:
    """403 unless Airflow's auth manager lets ``user`` do ``method`` on the runs of ``dag_id``."""

    if not may(user, method, dag_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"user {user.get_name()} may not {method} runs of the DAG {dag_id}."
        )


def _refuse(exc: Exception) -> HTTPException:
    """A request we will not carry out, with the check's sentence: 404 for a clone that does not exist,
    409 for one that is busy or not ready, else 422."""
    code = status.HTTP_422_UNPROCESSABLE_ENTITY
    if isinstance(exc, CloneNotFound):
        code = status.HTTP_404_NOT_FOUND
    elif isinstance(exc, CloneBusy):
        code = status.HTTP_409_CONFLICT
    return HTTPException(code, describe(exc))


def _status_url(request: Request, job_id: str) -> str:
    return f"{request.scope.get('root_path', '')}{API_PREFIX}/jobs/{job_id}"


def _start_job(
    request: Request,
    user: Any,
    job_type: JobType,
    conf: dict[str, Any],
    *,
    plan: ClonePlan | None = None,
    job_id: str | None = None,
) -> JobResponse:
    """Record the job and answer; the app's dispatcher creates its DAG run right after (see dispatch). A
    clone job's ``plan`` takes its clone id at once (Registry.accept): 409 if another request took it."""
    dag_id = jobs.DAG_OF_TYPE[job_type]
    job_id = job_id or jobs.new_job_id(job_type)
    clone_id = conf.get("clone_id")
    if plan is None:
        record = _registry().record_job(job_id, dag_id, conf, user.get_name(), clone_id)
    else:
        try:
            record = _registry().accept(plan, job_id, dag_id, conf, user.get_name())
        except CloneTaken as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    _dispatcher(request).submit(record)  # which logs the job once its run is created
    return JobResponse(
        job_id=job_id,
        type=job_type,
        status=jobs.JobStatus.PENDING,
        status_url=_status_url(request, job_id),
        created_at=record.created_at,
        clone_id=clone_id,
    )


async def _accepting(request: Request) -> AsyncIterator[None]:
    # async: entered and left on the event loop, not with two hops through the thread pool
    with _dispatcher(request).accepting():
        yield


AcceptingDep = Annotated[None, Depends(_accepting)]


def _dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


class RestoreBody(BaseModel):
    """The body of ``POST /clones/{clone_id}/restore`` (the clone id is in the path)."""

    model_config = ConfigDict(extra="forbid")

    source_backup_url: BackupUrl


class ExtendBody(BaseModel):
    """The body of ``PATCH /clones/{clone_id}``: the clone's new time to live, from now."""

    model_config = ConfigDict(extra="forbid")

    ttl_minutes: int = Field(
        description=f"Minutes from now until the clone is deleted ({TTL_MIN_MINUTES}-{TTL_MAX_MINUTES}).",
        examples=[120],
    )


def _accepted_job(
    request: Request, job_id: str, dag_ids: list[str], session: Session, user: Any
) -> JobStatusResponse | Any:
    """A job we accepted whose run was not found: its status from the registry, or the run once a
    stale job (its process died before starting it) has been started here."""

    accepted = _registry().get_job(job_id)
    if accepted is None or accepted.dag_id not in dag_ids:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} does not exist.")
    authorize(user, "GET", accepted.dag_id)
    if is_stale(accepted):
        _dispatcher(request).dispatch(accepted)
        run = find_run(job_id, dag_ids, session)
        if run is not None:
            return run
        accepted = _registry().get_job(job_id) or accepted
    return jobs.accepted_status(
        job_id,
        dag_id=accepted.dag_id,
        clone_id=accepted.clone_id,
        created_at=accepted.created_at,
        error=accepted.error,
    )


@functools.cache
def _registry() -> Registry:
    """The registry, its schema checked once per API server process, over pooled connections (a connection
    per call would cost each request ~1 ms of handshake, three times)."""
    return registry(pooled=True)


@functools.cache
def _clone_data() -> MySqlAdmin:
    """The API server's MySQL access outside the registry, through the registry's login: it writes a login
    link or a new expiry into a clone's database, and may create or drop nothing (least privilege:
    wpclone.airflow.services). The provisioning login is never used by the API server."""
    return mysql_admin(registry_conn_id())


def _services() -> Services:
    """A request's services: the process's registry and MySQL access (both the registry login), the
    configuration (and its runtime) as it is now, and the sources, Airflow's connections listed
    (wpclone.sources: the API finds a source by URL, and passes its name to the job, whose tasks cannot list
    connections)."""
    return services(_registry(), list_sources=True, mysql=_clone_data())


def _source_of(svc: Services, record: CloneRecord) -> dict[str, str]:
    """The ``source`` param of a job on an existing clone: its source's name (422 if none is registered)."""
    try:
        return {"source": svc.sources.find(record.source_url).name}
    except (BadRequest, ConfigError) as exc:
        raise _refuse(exc) from exc


def _warm_up() -> None:

    _services()
    warm_up(jobs.TYPE_OF_DAG)


def _registry_error(clone_id: str) -> str | None:
    record = _registry().get(clone_id)
    return record.last_error if record is not None else None


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Entered by Airflow's API server at startup, before the worker serves a request."""

    started = time.monotonic()
    if build_execution_api():
        log.info("built the task execution API's routes in %.1f s", time.monotonic() - started)
    yield
    app.state.dispatcher.stop()  # the worker shuts down: what it accepted and did not start, a sweep starts


def create_app() -> FastAPI:
    """The app Airflow mounts; a factory so tests and the plugin each get their own."""
    app = FastAPI(
        lifespan=_lifespan,
        title="wpclone jobs API",
        docs_url=None,  # served by _add_docs_routes, with Swagger UI's files from a package (no CDN)
        version="1",
        description=(
            "Self-service WordPress staging clones as Airflow jobs. Authenticate with a token from "
            "Airflow's `POST /auth/token` (`Authorization: Bearer <token>`)."
        ),
    )

    app.state.dispatcher = Dispatcher(_registry, airflow_trigger)
    # Migrate the registry and load the configuration now, not in the first request.
    app.state.dispatcher.start(warm_up=_warm_up)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_request(request.url.path, list(exc.errors()))

    app.middleware("http")(_json_bodies_only)

    _add_docs_routes(app)
    _add_job_routes(app)
    _add_read_routes(app)
    _add_source_routes(app)
    _add_expiry_routes(app)
    _add_login_routes(app)
    _add_check_routes(app)
    pages.add_page_routes(app, API_PREFIX)
    _add_listing_routes(app)
    return app


# What a request body looks like, for the sentences that refuse one (by the end of the route's path).
BODY_EXAMPLES = {
    "/restore": '{"source_backup_url": "https://backups.example.com/qa-checkout.tar.zst"}',
    "/clones": '{"source_url": "https://www.example.com", "clone_id": "qa-checkout", "ttl_minutes": 120}',
}
WHOLE_BODY_ERRORS = frozenset({"model_attributes_type", "dict_type", "model_type", "missing"})


def _body_example(path: str) -> str:
    return next((example for end, example in BODY_EXAMPLES.items() if path.endswith(end)), "{...}")


def invalid_request(path: str, errors: list[Any]) -> JSONResponse:
    """A request FastAPI could not read into its model, as one sentence in the API's vocabulary (its JSON
    field names): a body that is not JSON (400) or not an object, or a field's rule in words with an
    example (422, with ``field`` and ``rule`` so a client can say it in its own words, as the CLI does)."""
    first = errors[0]
    field = error_field(first)
    if first.get("type") == "json_invalid":
        reason = str((first.get("ctx") or {}).get("error") or "not JSON").rstrip(".")
        detail = (
            f"The request body is not valid JSON ({reason.lower()} at character {first['loc'][-1]}); "
            f"send a JSON object, e.g. {_body_example(path)}."
        )
        return JSONResponse({"detail": detail}, status_code=status.HTTP_400_BAD_REQUEST)
    if not field and first.get("type") in WHOLE_BODY_ERRORS:
        detail = f"The request body must be a JSON object, e.g. {_body_example(path)}."
        return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_ENTITY)
    rules = {**FIELD_RULES, **jobs.QUERY_RULES} if path.endswith(f"{API_PREFIX}/jobs") else FIELD_RULES
    body: dict[str, str] = {"detail": validation_sentence(errors, rules)}
    if field in rules and rules[field] in body["detail"]:  # not a check's own sentence
        body.update(field=field, rule=rules[field])
    return JSONResponse(body, status_code=status.HTTP_422_UNPROCESSABLE_ENTITY)


async def _json_bodies_only(request: Request, call_next: Callable[[Request], Any]) -> Any:
    """415 with a sentence for a request whose body is not sent as JSON (FastAPI would try to read it)."""
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and media_type != "application/json" and not media_type.endswith("+json"):
        said = f"Content-Type {media_type}" if media_type else "no Content-Type"
        detail = (
            f"The request body must be JSON, sent with Content-Type: application/json (this request has "
            f"{said}), e.g. {_body_example(request.url.path)}."
        )
        return JSONResponse({"detail": detail}, status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE)
    return await call_next(request)


SWAGGER_UI_PACKAGE = "swagger_ui"  # swagger-ui-py (requirements.txt): its static/ is Swagger UI 5's files
SWAGGER_UI_PATH = "/static/swagger-ui"


def swagger_ui_dir() -> str:
    """The directory of Swagger UI's files in the installed swagger-ui-py package (found without importing
    the package, whose own code is for other frameworks)."""
    spec = importlib.util.find_spec(SWAGGER_UI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the Python package swagger-ui-py ({SWAGGER_UI_PACKAGE}) is not installed.")
    return os.path.join(next(iter(spec.submodule_search_locations)), "static")


def _add_docs_routes(app: FastAPI) -> None:
    """``/docs``: Swagger UI with its script, styles and icon served from here, so the page works offline."""
    app.mount(SWAGGER_UI_PATH, StaticFiles(directory=swagger_ui_dir()), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{SWAGGER_UI_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER_UI_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER_UI_PATH}/favicon-32x32.png",
        )


def _starts_job(app: FastAPI, method: Method, path: str, summary: str) -> Callable[[F], F]:
    """A route under API_PREFIX answering 202 with a JobResponse."""
    route: Callable[[F], F] = app.api_route(
        f"{API_PREFIX}{path}",
        methods=[method],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobResponse,
        summary=summary,
    )
    return route


def _add_job_routes(app: FastAPI) -> None:
    """The routes that start jobs (202 with a JobResponse)."""

    @_starts_job(app, "POST", "/clones", "Clone a registered source into a new staging site (a wp_clone job)")
    def create_clone(body: CloneRequest, request: Request, user: UserDep, _busy: AcceptingDep) -> JobResponse:
        authorize(user, "POST", jobs.DAG_OF_TYPE[JobType.CLONE])
        svc = _services()
        checked, source, clone_id = _checked_clone_request(svc, body)
        conf = {**checked.model_dump(mode="json"), "clone_id": clone_id, "source": source.name}
        plan = clone.clone_plan(svc, checked, source, clone_id, datetime.now(UTC))
        return _start_job(request, user, JobType.CLONE, conf, plan=plan)

    @_starts_job(
        app,
        "DELETE",
        "/clones/{clone_id}",
        "Delete a clone: site, database, user and content (a wp_delete job)",
    )
    def delete_clone(
        clone_id: CloneId, request: Request, session: SessionDep, user: UserDep, _busy: AcceptingDep
    ) -> JobResponse:
        authorize(user, "POST", jobs.DAG_OF_TYPE[JobType.DELETE])
        record = _registry().get(clone_id)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"clone {clone_id} does not exist.")
        if record.status is CloneStatus.DELETED:  # deleting again would converge on nothing: no job
            raise HTTPException(status.HTTP_409_CONFLICT, already_deleted(record))
        if record.lock_job_id and record.status in (CloneStatus.ACCEPTED, CloneStatus.PROVISIONING):
            # Still being made: cancel that job (its rollback removes what exists); the delete waits for it.
            authorize(user, "POST", jobs.DAG_OF_TYPE[JobType.CLONE])
            _cancel_clone_job(record.lock_job_id, user.get_name(), session)
        elif record.lock_job_id:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"clone {clone_id} is {record.status} by job {record.lock_job_id}; "
                "delete it once that job has finished.",
            )
        return _start_job(request, user, JobType.DELETE, {"clone_id": clone_id})

    @_starts_job(
        app,
        "POST",
        "/clones/{clone_id}/backup",
        "Archive a clone's database and wp-content to the backup location (a wp_backup job)",
    )
    def backup_clone(clone_id: CloneId, request: Request, user: UserDep, _busy: AcceptingDep) -> JobResponse:
        authorize(user, "POST", jobs.DAG_OF_TYPE[JobType.BACKUP])
        svc = _services()
        try:
            record = restore.ready_clone(svc, clone_id)
        except BadRequest as exc:
            raise _refuse(exc) from exc
        return _start_job(request, user, JobType.BACKUP, {"clone_id": clone_id, **_source_of(svc, record)})

    @_starts_job(
        app,
        "POST",
        "/clones/{clone_id}/restore",
        "Restore a clone from a backup archive; it keeps serving until the restore is checked",
    )
    def restore_clone(
        clone_id: CloneId, body: RestoreBody, request: Request, user: UserDep, _busy: AcceptingDep
    ) -> JobResponse:
        authorize(user, "POST", jobs.DAG_OF_TYPE[JobType.RESTORE])
        svc = _services()
        try:
            record = restore.check_restore_request(svc, clone_id, body.source_backup_url)
        except (BadRequest, ValidationError) as exc:
            raise _refuse(exc) from exc
        conf = {"clone_id": clone_id, "source_backup_url": body.source_backup_url, **_source_of(svc, record)}
        # A presigned URL's token never reaches the run's conf, which every viewer of the DAG can read.
        job_id = jobs.new_job_id(JobType.RESTORE)
        shown = redact(body.source_backup_url).replace("?…", "")
        conf = runparams.keep_out_of_conf(conf, "source_backup_url", job_id, shown)
        return _start_job(request, user, JobType.RESTORE, conf, job_id=job_id)


def already_deleted(record: CloneRecord) -> str:
    """The answer to deleting a clone that is deleted."""
    at = f" at {record.deleted_at:%Y-%m-%d %H:%M} UTC" if record.deleted_at else ""
    return f"{record.clone_id} was already deleted{at}; there is nothing to delete."


def _checked_clone_request(svc: Services, body: CloneRequest) -> tuple[CloneRequest, SourceConfig, str]:
    """clone.check_clone_request, its refusals as answers: a field's rule (as a refused body's), else 422."""
    try:
        return clone.check_clone_request(svc, body.model_dump(mode="json"))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    except BadRequest as exc:
        raise _refuse(exc) from exc


def _cancel_clone_job(job_id: str, user_name: str, session: Session) -> None:
    """Cancel the clone job ``job_id`` for a delete: its run if it exists, else the accepted job itself."""

    dag_ids = [jobs.DAG_OF_TYPE[JobType.CLONE]]
    run = find_run(job_id, dag_ids, session)
    if run is None:
        reg = _registry()
        if reg.cancel_untriggered_job(job_id, f"cancelled by {user_name} (the clone was deleted)."):
            log.info("job %s cancelled before its run was created", job_id)
        run = find_run(job_id, dag_ids, session)  # a dispatcher that started it meanwhile
    if run is not None and str(run.state) not in ("success", "failed"):
        _cancel_run(run, user_name, session)
    log.info("job %s cancelled by %s to delete its clone", job_id, user_name)


def _cancel_run(run: Any, user_name: str, session: Session) -> None:
    """Cancel a started job; a clone job cancelled before it reserved its clone (whose rollback will not
    run) gives back the clone id it was accepted with."""

    reason = cancel(run, user_name, session)
    clone_id = (run.conf or {}).get("clone_id")
    if run.dag_id == jobs.DAG_OF_TYPE[JobType.CLONE] and isinstance(clone_id, str):
        _registry().mark_failed(clone_id, run.run_id, reason, only_accepted=True)


def _cancel_accepted(request: Request, job_id: str, session: Session, user: Any) -> JobStatusResponse | None:
    """Cancel a job accepted whose run does not exist: it will never start (None if it just did)."""
    reg = _registry()
    accepted = reg.get_job(job_id)
    if accepted is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} does not exist.")
    authorize(user, "POST", accepted.dag_id)
    if accepted.error:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} has already ended (failed).")
    if not reg.cancel_untriggered_job(job_id, f"cancelled by {user.get_name()}."):
        return None
    runparams.drop(accepted.conf or {}, "source_backup_url")
    log.info("job %s cancelled by %s before it started", job_id, user.get_name())
    result: JobStatusResponse = _accepted_job(request, job_id, [accepted.dag_id], session, user)
    return result


def _add_source_routes(app: FastAPI) -> None:
    """The sources: the configuration's and Airflow's connections (wpclone.sources)."""

    @app.get(f"{API_PREFIX}/sources", response_model=list[SourceInfo], summary="The registered sources")
    def list_sources(user: UserDep) -> list[SourceInfo]:
        authorize(user, "GET", jobs.DAG_OF_TYPE[JobType.CLONE])
        try:
            found = _services().sources.all()
        except ConfigError as exc:  # one name or URL registered twice
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        return [SourceInfo.of(source) for source in found]


def _add_expiry_routes(app: FastAPI) -> None:
    """A clone's expiry (wpclone.services.expiry)."""

    @app.patch(
        f"{API_PREFIX}/clones/{{clone_id}}",
        response_model=CloneRecord,
        summary="Extend a ready clone: it expires ttl_minutes from now (10 minutes to 7 days)",
    )
    def extend_clone(clone_id: CloneId, body: ExtendBody, user: UserDep) -> CloneRecord:
        authorize(user, "POST", jobs.DAG_OF_TYPE[JobType.CLONE])
        try:
            return expiry.extend_clone(_services(), clone_id, body.ttl_minutes)
        except BadRequest as exc:
            raise _refuse(exc) from exc


def _add_read_routes(app: FastAPI) -> None:
    """The routes that read jobs and clones."""

    @app.get(
        f"{API_PREFIX}/jobs/{{job_id}}",
        response_model=JobStatusResponse,
        summary="A job's status, progress, result and error",
    )
    def get_job(
        job_id: Annotated[str, Path(pattern=jobs.JOB_ID_PATTERN)],
        request: Request,
        session: SessionDep,
        user: UserDep,
        type: JobType | None = None,
    ) -> JobStatusResponse:

        dag_ids = [jobs.DAG_OF_TYPE[type]] if type else list(jobs.TYPE_OF_DAG)
        run = find_run(job_id, dag_ids, session) or _accepted_job(request, job_id, dag_ids, session, user)
        if isinstance(run, JobStatusResponse):
            return run
        authorize(user, "GET", run.dag_id)
        return job_status(run, session, _registry_error)

    @app.post(
        f"{API_PREFIX}/jobs/{{job_id}}/cancel",
        response_model=JobStatusResponse,
        summary="Cancel a job: its running step is stopped and what it made is rolled back",
    )
    def cancel_job(
        job_id: Annotated[str, Path(pattern=jobs.JOB_ID_PATTERN)],
        request: Request,
        session: SessionDep,
        user: UserDep,
    ) -> JobStatusResponse:

        run = find_run(job_id, list(jobs.TYPE_OF_DAG), session)
        if run is None:
            cancelled = _cancel_accepted(request, job_id, session, user)
            if cancelled is not None:
                return cancelled
            run = find_run(job_id, list(jobs.TYPE_OF_DAG), session)  # it started meanwhile
            if run is None:
                raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} is starting; try again.")
        authorize(user, "POST", run.dag_id)
        current = job_status(run, session, _registry_error)
        if current.status in jobs.FINAL_STATUSES:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"job {job_id} has already ended ({current.status})."
            )
        _cancel_run(run, user.get_name(), session)
        log.info("job %s cancelled by %s", job_id, user.get_name())
        return job_status(run, session, _registry_error)

    @app.get(f"{API_PREFIX}/clones", response_model=list[CloneRecord], summary="Clones in the registry")
    def list_clones(
        user: UserDep,
        status_: Annotated[CloneStatus | None, Query(alias="status")] = None,
        source: Annotated[
            str | None, Query(description="a source URL (any case, trailing slash or default port)")
        ] = None,
        all_: Annotated[bool, Query(alias="all", description="deleted clones too (the history)")] = False,
    ) -> list[CloneRecord]:
        authorize(user, "GET", jobs.DAG_OF_TYPE[JobType.CLONE])
        records: list[CloneRecord] = _registry().list(
            status=status_,
            source_url=url_spellings(source) if source else None,
            live=not all_ and status_ is None,
        )
        return records

    @app.get(f"{API_PREFIX}/clones/{{clone_id}}", response_model=CloneRecord, summary="One clone")
    def get_clone(clone_id: CloneId, user: UserDep) -> CloneRecord:
        authorize(user, "GET", jobs.DAG_OF_TYPE[JobType.CLONE])
        record: CloneRecord | None = _registry().get(clone_id)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"clone {clone_id} does not exist.")
        return record


def _add_login_routes(app: FastAPI) -> None:
    """A way into a clone's wp-admin without its password (wpclone.login)."""

    @app.post(
        f"{API_PREFIX}/clones/{{clone_id}}/login",
        response_model=login.LoginLink,
        summary=f"A one-time wp-admin link to a ready clone (single use, valid "
        f"{login.LINK_TTL.total_seconds() / 60:.0f} minutes)",
    )
    def login_link(clone_id: CloneId, response: Response, user: UserDep) -> login.LoginLink:
        authorize(user, "POST", jobs.DAG_OF_TYPE[JobType.CLONE])
        try:
            link = login.clone_login_link(_services(), clone_id)
        except BadRequest as exc:
            raise _refuse(exc) from exc
        except StepFailed as exc:  # the clone's database has no administrator
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        response.headers["Cache-Control"] = "no-store"
        log.info("one-time login link to clone %s given to %s", clone_id, user.get_name())
        return link


class FieldError(BaseModel):
    """A field's refusal: its rule in words when it has one (``rule``), else the check's sentence."""

    field: str
    detail: str
    rule: str | None = None


class CloneCheck(BaseModel):
    """The answer of ``POST /clones/check``: every field's refusal, or the clone id and URL it would get."""

    ok: bool
    errors: list[FieldError]
    clone_id: str | None = None  # when the request names one (an empty one is generated at the start)
    url: str | None = None


def check_clone_fields(svc: Services, body: dict[str, Any]) -> CloneCheck:
    """A clone request checked field by field as ``POST /clones`` would check it, creating nothing: each
    field's first refusal (its rule in words), then whether the source is registered and the clone id free."""
    try:
        request = CloneRequest(**body)
    except ValidationError as exc:
        seen: dict[str, FieldError] = {}
        for error in exc.errors():
            field = error_field(error) or "request"
            if field not in seen:
                rule = FIELD_RULES.get(field)
                sentence = validation_sentence([error], FIELD_RULES)
                said_rule = rule if rule and rule in sentence else None
                seen[field] = FieldError(field=field, detail=sentence, rule=said_rule)
        return CloneCheck(ok=False, errors=list(seen.values()))
    try:
        source = svc.sources.find(request.source_url, request.source)
    except BadRequest as exc:
        return CloneCheck(ok=False, errors=[FieldError(field="source_url", detail=describe(exc))])
    if request.clone_id is None:
        return CloneCheck(ok=True, errors=[])
    try:  # by the source's name: found again without listing the connections a second time
        _, _, clone_id = clone.check_clone_request(
            svc, {**request.model_dump(mode="json"), "source": source.name}
        )
    except BadRequest as exc:  # the source was found: what is left is the clone id's
        return CloneCheck(ok=False, errors=[FieldError(field="clone_id", detail=describe(exc))])
    return CloneCheck(ok=True, errors=[], clone_id=clone_id, url=svc.runtime.clone_url(clone_id))


def _add_check_routes(app: FastAPI) -> None:
    """``POST /clones/check``: a clone request's fields checked before anything runs (the new-clone page)."""

    @app.post(
        f"{API_PREFIX}/clones/check",
        response_model=CloneCheck,
        summary="Check a clone request field by field without starting anything",
    )
    def check_clone(body: dict[str, Any], user: UserDep) -> CloneCheck:
        authorize(user, "POST", jobs.DAG_OF_TYPE[JobType.CLONE])
        return check_clone_fields(_services(), body)


def _add_listing_routes(app: FastAPI) -> None:
    """``GET /jobs``: the jobs of the job DAGs (wp_clone, wp_delete, wp_backup, wp_restore), newest first."""

    @app.get(
        f"{API_PREFIX}/jobs",
        response_model=jobs.JobList,
        summary="Jobs, newest first, filtered by status, type, clone, who asked and since; a page at a time",
    )
    def list_jobs(
        session: SessionDep,
        user: UserDep,
        *,
        status_: Annotated[jobs.JobStatus | None, Query(alias="status")] = None,
        type_: Annotated[JobType | None, Query(alias="type")] = None,
        clone_id: CloneId | None = None,
        requested_by: Annotated[str | None, Query(description="the user who started the job")] = None,
        mine: Annotated[bool, Query(description="only the jobs the caller started")] = False,
        since: Annotated[datetime | None, Query(description="only jobs asked for at or after")] = None,
        limit: Annotated[int, Query(ge=1, le=jobs.PAGE_MAX)] = jobs.PAGE_DEFAULT,
        cursor: Annotated[str | None, Query(description="the previous page's next")] = None,
    ) -> jobs.JobList:
        if mine and requested_by:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "give mine or requested_by, not both.")
        try:
            before = jobs.PagePosition.of(cursor) if cursor else None
        except BadRequest as exc:
            raise _refuse(exc) from exc
        query = JobQuery(
            dag_ids=_readable_job_dags(user, type_),
            status=status_,
            clone_id=clone_id,
            requested_by=user.get_name() if mine else requested_by,
            since=since.replace(tzinfo=since.tzinfo or UTC) if since else None,
            before=before,
            limit=limit,
        )
        return list_page(query, session)


def _readable_job_dags(user: Any, job_type: JobType | None) -> list[str]:
    """The job DAGs whose runs ``user`` may read (of ``job_type`` only, if given); 403 if none."""
    if job_type is not None:
        authorize(user, "GET", jobs.DAG_OF_TYPE[job_type])
        return [jobs.DAG_OF_TYPE[job_type]]
    readable = [dag_id for dag_id in jobs.TYPE_OF_DAG if may(user, "GET", dag_id)]
    if not readable:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"user {user.get_name()} may not GET the runs of any job DAG."
        )
    return readable


def list_page(query: JobQuery, session: Session) -> jobs.JobList:
    """One page of jobs: the runs of the job DAGs and the accepted jobs whose run was never created (the
    registry's), merged newest first; each run's status from one read of the page's task instances and
    XComs. With a status filter, a run whose status is not that one now (it changed meanwhile) is left out."""
    now = datetime.now(UTC)
    runs = list_runs(session, query)
    entries: list[tuple[jobs.PagePosition, Any]] = [
        (jobs.PagePosition(r.run_after, r.run_id), r) for r in runs
    ]
    unstarted = _unstarted_jobs(query)
    started = existing_runs(session, [job.job_id for job in unstarted], query.dag_ids)
    entries += [(jobs.PagePosition(j.created_at, j.job_id), j) for j in unstarted if j.job_id not in started]
    entries.sort(key=lambda entry: entry[0], reverse=True)
    page = entries[: query.limit]
    facts = page_facts([item for _, item in page if not isinstance(item, JobRecord)], session)
    listed = []
    for _, item in page:
        if isinstance(item, JobRecord):
            job = jobs.accepted_status(
                item.job_id,
                dag_id=item.dag_id,
                clone_id=item.clone_id,
                created_at=item.created_at,
                error=item.error,
                requested_by=item.requested_by,
                now=now,
            )
        else:
            job = job_status(item, session, _registry_error, now, facts=facts[item.id])
        if query.status is None or job.status is query.status:
            listed.append(job)
    more = len(entries) > query.limit
    return jobs.JobList(jobs=listed, next=page[-1][0].cursor() if more else None)


def _unstarted_jobs(query: JobQuery) -> list[JobRecord]:
    """The registry's accepted jobs that never got a run and match ``query`` (none is running or
    completed): pending ones have no error, refused ones have it (``cancelled ...`` when cancelled)."""
    ended: bool | None = None
    cancelled: bool | None = None
    if query.status is not None:
        if query.status not in (jobs.JobStatus.PENDING, jobs.JobStatus.FAILED, jobs.JobStatus.CANCELLED):
            return []
        ended = query.status is not jobs.JobStatus.PENDING
        cancelled = query.status is jobs.JobStatus.CANCELLED if ended else None
    found: list[JobRecord] = _registry().unstarted_jobs(
        query.dag_ids,
        ended=ended,
        cancelled=cancelled,
        clone_id=query.clone_id,
        requested_by=query.requested_by,
        since=query.since,
        before=(query.before.at, query.before.job_id) if query.before else None,
        limit=query.limit + 1,
    )
    return found
