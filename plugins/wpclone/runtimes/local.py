"""The local runtime: steps as local processes, clones served by the local site host.

Secrets are files only the owner can read under the stack's ``secrets/``; a step receives
``*_PASSWORD_FILE`` where a pod would receive ``*_PASSWORD`` from a Secret, and the same command line: the
same :class:`~wpclone.runtimes.stepspec.StepSpec`, rendered with files and directories
(:meth:`LocalRuntime.step_env`) and run as a child process (:meth:`LocalRuntime.run_step`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wpclone.db import DbTls
from wpclone.errors import StepFailed
from wpclone.local.mariadb import LOCAL_USER_HOST
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import (
    PREVIEW_FILE,
    PREVIEW_HEADER,
    WORDPRESS_CORE,
    SiteConfig,
    SiteHost,
    content_dir,
    http_opener,
    list_sites,
    load_site,
    preview_token,
    record_gone,
    register_preview,
    register_site,
    site_dir,
    unregister_preview,
    unregister_site,
)
from wpclone.models import ClonePlan, RuntimeKind, WpcloneConfig, is_clone_id, restore_db_name
from wpclone.readiness import Fetch, http_fetcher
from wpclone.runtimes.base import CloneSecrets, Runtime
from wpclone.runtimes.limits import StepTimedOut, source_bytes, step_limit
from wpclone.runtimes.stepspec import STEP_COMMAND, ContentRole, DbRole, Step, StepSpec
from wpclone.settings import TimeLimits
from wpclone.steps.backup import BACKUP_DIR_ENV, WORK_DIR_NAME, purge_backups, staged_content_dir
from wpclone.steps.common import PARENT_PID_ENV

log = logging.getLogger(__name__)

CLONE_MARK = "WPCLONE_CLONE_ID"  # the wp-config constant that marks a site as a clone (and names it)
MU_PLUGIN_NAME = "wpclone-staging.php"
STEP_STDERR_KEEP = 50
AIRFLOW_RUN_ID_ENV = "AIRFLOW_CTX_DAG_RUN_ID"  # exported by the task runner before a task executes
ASIDE_SUFFIX = ".restore-old"  # the clone's wp-content set aside while a restored one is checked


class LocalRuntime(Runtime):
    kind = RuntimeKind.LOCAL
    db_user_host = LOCAL_USER_HOST
    default_link_roots = (str(WORDPRESS_CORE),)  # Debian's wp-content links into it

    def __init__(self, config: WpcloneConfig, settings: StackSettings | None = None) -> None:
        super().__init__(config)
        self._settings = settings

    @property
    def settings(self) -> StackSettings:
        if self._settings is None:
            self._settings = StackSettings.load()
        return self._settings

    # -- task time -------------------------------------------------------------------------------------

    def clone_url(self, clone_id: str) -> str:
        return self.settings.site_url(clone_id)

    def _secret_file(self, clone_id: str, key: str) -> Path:
        return self.settings.secrets_dir / f"clone-{clone_id}-{key}"

    def prepare_clone(self, plan: ClonePlan) -> CloneSecrets:
        db = self.settings.secret(self._secret_file(plan.clone_id, "db-password").name)
        admin = self.settings.secret(self._secret_file(plan.clone_id, "admin-password").name)
        return CloneSecrets(db_password=db, admin_password=admin, salts={})  # the site host keeps salts

    def deploy_site(
        self, plan: ClonePlan, constants: Mapping[str, str | int | bool], mu_plugin_php: str
    ) -> None:
        mu_plugins = content_dir(self.settings, plan.clone_id) / "mu-plugins"
        mu_plugins.mkdir(parents=True, exist_ok=True)
        (mu_plugins / MU_PLUGIN_NAME).write_text(mu_plugin_php)
        extra = {k: v for k, v in constants.items() if k not in ("WP_ENVIRONMENT_TYPE", "DISABLE_WP_CRON")}
        register_site(
            self.settings,
            SiteConfig(
                name=plan.clone_id,
                url=plan.url,
                db_host="127.0.0.1",
                db_port=self.settings.db_port,
                db_name=plan.db_name,
                db_user=plan.db_name,
                db_password_file=self._secret_file(plan.clone_id, "db-password"),
                table_prefix=plan.source.table_prefix,
                environment_type=str(constants.get("WP_ENVIRONMENT_TYPE", "staging")),
                disable_wp_cron=bool(constants.get("DISABLE_WP_CRON", True)),
                constants={**extra, CLONE_MARK: plan.clone_id},
                admin_password_file=self._secret_file(plan.clone_id, "admin-password"),
            ),
            default_content=True,
        )

    def site_ready(self, plan: ClonePlan, *, preview: bool = False) -> bool:
        # The site host serves a site from the moment its config is written: nothing rolls out.
        directory = site_dir(self.settings, plan.clone_id)
        return (directory / (PREVIEW_FILE if preview else "site.json")).is_file()

    def page_fetcher(self, plan: ClonePlan, *, preview: bool = False) -> Fetch:
        headers = {}
        if preview:
            token = preview_token(self.settings, plan.clone_id)
            if token is None:
                raise ValueError(f"clone {plan.clone_id} has no restore preview to check.")
            headers[PREVIEW_HEADER] = token
        return http_fetcher(plan.url, headers=headers, opener=http_opener(follow_redirects=False))

    def site_errors(self, plan: ClonePlan) -> Callable[[], list[str]]:
        logfile = SiteHost(self.settings).logfile
        start = logfile.stat().st_size if logfile.exists() else 0
        tag = f"wpclone site {plan.clone_id}: "

        def lines() -> list[str]:
            with contextlib.suppress(OSError), logfile.open("rb") as handle:
                handle.seek(start)
                text = handle.read(1 << 20).decode("utf-8", "replace")
                return [line.split(tag, 1)[1] for line in text.splitlines() if tag in line]
            return []

        return lines

    def deploy_preview(
        self, plan: ClonePlan, constants: Mapping[str, str | int | bool], mu_plugin_php: str
    ) -> None:
        live_content = content_dir(self.settings, plan.clone_id)
        staged = staged_content_dir(live_content)
        if staged.is_dir():
            (staged / "mu-plugins").mkdir(exist_ok=True)
            (staged / "mu-plugins" / MU_PLUGIN_NAME).write_text(mu_plugin_php)
        # A database-only backup stages no wp-content: the switch keeps the live tree, so the preview does.
        served = staged if staged.is_dir() else live_content
        live = load_site(self.settings, plan.clone_id)
        name = restore_db_name(plan.clone_id)
        self.restore_db_password(plan.clone_id)
        register_preview(
            self.settings,
            dataclasses.replace(
                live,
                db_name=name,
                db_user=name,
                db_password_file=self._secret_file(plan.clone_id, "restore-password"),
                content_dir=served,
            ),
        )

    def remove_preview(self, clone_id: str) -> bool:
        return unregister_preview(self.settings, clone_id)

    def secret_location(self, clone_id: str, key: str) -> str:
        return str(self._secret_file(clone_id, key))

    def delete_clone_objects(self, clone_id: str) -> list[str]:
        """The site, its content, its secret files and (unless ``backups.keep_after_delete``) its backups."""
        removed = []
        if unregister_site(self.settings, clone_id):
            removed.append(f"site {clone_id} and its content")
        elif site_dir(self.settings, clone_id).exists():  # content copied before the site was registered
            shutil.rmtree(site_dir(self.settings, clone_id))
            removed.append(f"content of {clone_id}")
        for path in sorted(self.settings.secrets_dir.glob(f"clone-{clone_id}-*")):
            path.unlink(missing_ok=True)
            removed.append(f"secret file {path.name}")
        if not self.config.backups.keep_after_delete and (files := purge_backups(self.backup_dir / clone_id)):
            removed.append(f"backups of {clone_id} ({files} files)")
        return removed

    def record_gone(self, clone_id: str, *, expired: bool) -> None:
        record_gone(self.settings, clone_id, datetime.now(UTC), expired=expired)

    # -- backup and restore ----------------------------------------------------------------------------

    @property
    def backup_dir(self) -> Path:
        return Path(self.config.backups.directory or self.settings.state_dir / "backups")

    def restore_db_password(self, clone_id: str) -> str:
        return self.settings.secret(self._secret_file(clone_id, "restore-password").name)

    def fetch_policy_overrides(self) -> tuple[tuple[Path, ...], bool]:
        # The machine's own sites and backup directory: loopback, private addresses and file:// there.
        return (self.backup_dir,), True

    def switch_content(self, clone_id: str, *, restored: bool) -> bool:
        live = content_dir(self.settings, clone_id)
        staged, aside = staged_content_dir(live), live.with_name(live.name + ASIDE_SUFFIX)
        if restored and staged.is_dir():
            if live.exists():
                live.rename(aside)
            staged.rename(live)
            return True
        if not restored and aside.is_dir():
            if live.exists():
                shutil.rmtree(live)
            aside.rename(live)
            return True
        return False

    def discard_restore_content(self, clone_id: str) -> None:
        live = content_dir(self.settings, clone_id)
        for path in (
            staged_content_dir(live),
            live.with_name(live.name + ASIDE_SUFFIX),
            live.parent / WORK_DIR_NAME,
        ):
            shutil.rmtree(path, ignore_errors=True)

    def clone_exists(self, clone_id: str) -> bool:
        # Its site or content directory, or a secret of it (what list_clone_ids finds, for one id).
        settings = self.settings
        if site_dir(settings, clone_id).exists():
            return True
        prefix = f"clone-{clone_id}-"  # a prefix test, not a glob: no pattern compiled per clone id
        with contextlib.suppress(FileNotFoundError):
            return any(name.startswith(prefix) for name in os.listdir(settings.secrets_dir))
        return False

    def list_clone_ids(self) -> set[str]:
        """Clone ids with something here; only names that could be ours (never a reserved word)."""
        ids = {site.name for site in list_sites(self.settings) if site.constants.get(CLONE_MARK) == site.name}
        if self.settings.sites_dir.is_dir():  # content of a clone whose site was never registered
            ids |= {
                entry.name
                for entry in self.settings.sites_dir.iterdir()
                if not (entry / "site.json").exists()
            }
        if self.settings.secrets_dir.is_dir():
            for path in self.settings.secrets_dir.glob("clone-*-db-password"):
                ids.add(path.name[len("clone-") : -len("-db-password")])
        return {clone_id for clone_id in ids if is_clone_id(clone_id)}

    def clone_db_server(self, plan: ClonePlan) -> tuple[str, int]:
        return "127.0.0.1", self.settings.db_port

    def step_env(
        self, plan: ClonePlan, step: Step, *, job_id: str | None = None, db_tls: DbTls | None = None
    ) -> dict[str, str]:
        """The environment ``step`` gets for the clone of ``plan``: its spec (:meth:`step_spec`) with each
        login's password as a file (``<prefix>_PASSWORD_FILE``), each tree as a directory, the backup
        directory. The run params are the caller's (:meth:`run_step`).

        A step given content gets ``SOURCE_CONTENT_LINK_ROOTS``, the directories outside wp-content a link in
        it may point into (:mod:`wpclone.steps.content_tree`): the source's ``content_link_roots``, by
        default WordPress's core directory (Debian's ``/usr/share/wordpress``, which the site host serves
        and Debian's own wp-content links into).

        ``job_id`` is the DAG run id; by default the one Airflow's task runner exports to the task process
        (``AIRFLOW_CTX_DAG_RUN_ID``). The steps log both ids on every line (``wpclone.steps.common``).
        ``db_tls``: the clones' server's TLS settings, the files at their paths on this machine.
        """
        job_id = job_id or os.environ.get(AIRFLOW_RUN_ID_ENV, "")
        spec = self.step_spec(step, plan, job_id=job_id, db_tls=db_tls)
        return self._render(spec, plan)

    def _render(self, spec: StepSpec, plan: ClonePlan) -> dict[str, str]:
        env = dict(spec.env)
        for prefix, login in spec.logins.items():
            env[f"{prefix}_PASSWORD_FILE"] = self._password_file(plan, login.role)
        for name, role in spec.content.items():
            env[name] = self._content_dir(plan, role)
        if spec.backups is not None:
            env[BACKUP_DIR_ENV] = str(self.backup_dir)
        return env

    def _password_file(self, plan: ClonePlan, role: DbRole) -> str:
        if role is DbRole.SOURCE:
            return plan.source.db_password_file or ""
        if role is DbRole.RESTORE:
            self.restore_db_password(plan.clone_id)  # created on first use
            return str(self._secret_file(plan.clone_id, "restore-password"))
        return str(self._secret_file(plan.clone_id, "db-password"))

    def _content_dir(self, plan: ClonePlan, role: ContentRole) -> str:
        if role is ContentRole.SOURCE:
            if not plan.source.content_dir:
                raise ValueError(f"source {plan.source.name} has no content_dir configured.")
            return plan.source.content_dir
        return str(content_dir(self.settings, plan.clone_id))

    def run_step(
        self,
        step: Step,
        plan: ClonePlan,
        *,
        params: Mapping[str, str],
        job_id: str | None = None,
        db_tls: DbTls | None = None,
        limits: TimeLimits | None = None,
    ) -> dict[str, Any]:
        """Run ``python -m wpclone.steps <step> <arguments>`` for the clone of ``plan`` as a child of this
        process, with :meth:`step_env` and the run ``params`` (``step.param_env``'s variables, resolved);
        ``job_id`` and ``db_tls`` as :meth:`step_env` takes them.

        The step's log lines go to this process's log as they come; its JSON result line is returned; on
        failure, StepFailed with ``<step>: <its one sentence>``. With ``limits``, the step gets the time
        limit of its source's size (wpclone.runtimes.limits): past it, the step is killed and
        StepTimedOut says so. The step runs in its own process group, which is killed (SIGKILL: a stopped
        step too) whenever this call ends before it did (its limit, Airflow's ``execution_timeout`` or a
        SIGTERM raising here); should this process die instead, the step dies with it (``die_with_parent``).
        """
        job_id = job_id or os.environ.get(AIRFLOW_RUN_ID_ENV, "")
        spec = self.step_spec(step, plan, job_id=job_id, db_tls=db_tls)
        command = [sys.executable, *STEP_COMMAND[1:], *spec.argv]
        rendered = self._render(spec, plan)
        child_env = {
            **os.environ,
            **rendered,
            **params,
            PARENT_PID_ENV: str(os.getpid()),  # the step dies with this task process (no racing the retry)
        }
        limit = step_limit(source_bytes(rendered), limits) if limits else None
        if limit:
            log.info("step %s time limit: %.0f s (%s)", step.step, limit.seconds, limit.setting)
        log.info("running step %s for clone %s: %s", step.step, plan.clone_id, " ".join(command[1:]))
        proc = subprocess.Popen(
            command,
            env=child_env,
            stdin=subprocess.DEVNULL,  # not the task runner's channel to its supervisor
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,  # the step and its clients (mariadb-dump, mariadb): killed as one
        )
        started = time.monotonic()
        try:
            code, output, tail = follow_step(proc, None if limit is None else started + limit.seconds)
        finally:
            kill_step_group(proc)
        if code is None:
            assert limit is not None
            raise StepTimedOut(limit.timed_out(step.task_id, time.monotonic() - started))
        if code != 0:
            raise StepFailed(f"{step.step}: {step_failure(step.step, code, tail)}")
        lines = output.strip().splitlines()
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        return result


def follow_step(proc: subprocess.Popen[bytes], deadline: float | None) -> tuple[int | None, str, list[str]]:
    """Until the step ends or ``deadline`` (``time.monotonic()``) passes: its exit status (None: the deadline
    passed first), its stdout and the last lines of its stderr, each logged here as it comes."""
    assert proc.stdout is not None and proc.stderr is not None
    streams = selectors.DefaultSelector()
    streams.register(proc.stdout, selectors.EVENT_READ)
    streams.register(proc.stderr, selectors.EVENT_READ)
    output, pending, tail = bytearray(), b"", list[str]()

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    with streams:
        while streams.get_map():
            if left() == 0.0:
                return None, "", tail
            for key, _ in streams.select(left()):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    streams.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    output += chunk
                else:
                    *lines, pending = (pending + chunk).split(b"\n")
                    for raw in lines:
                        line = raw.decode("utf-8", "replace")
                        log.info("%s", line)
                        tail = [*tail[-STEP_STDERR_KEEP:], line]
    if pending:
        tail = [*tail[-STEP_STDERR_KEEP:], pending.decode("utf-8", "replace")]
        log.info("%s", tail[-1])
    try:
        code = proc.wait(timeout=left())
    except subprocess.TimeoutExpired:
        return None, "", tail
    return code, output.decode("utf-8", "replace"), tail


def kill_step_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the step's process group (SIGKILL ends a stopped process too) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def step_failure(step: str, code: int, stderr_tail: list[str]) -> str:
    """Why a step failed, in one sentence: its own ``error:`` line, else how it ended."""
    said = next((t for t in reversed(stderr_tail) if t.startswith("error: ")), None)
    if said:
        return said.removeprefix("error: ").strip()
    if code < 0:  # its last line is whatever it logged before the signal: not a reason
        return f"the step was killed by {signal.Signals(-code).name} before it finished."
    last = next((t.strip() for t in reversed(stderr_tail) if t.strip()), None)
    return last or f"the step exited with status {code} without saying why."
