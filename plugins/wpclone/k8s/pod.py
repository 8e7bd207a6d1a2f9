"""The operator that runs a data-plane step (``python -m wpclone.steps ...``) in a pod on the toolbox image.

Built at DAG parse time with no I/O, holding only what does not depend on the clone: the image, command,
resources, security context and labels. When the task runs (:meth:`StepPodOperator.render_template_fields`,
as cosmos builds its pod arguments at execute time) it reads the clone's typed
:class:`~wpclone.models.ClonePlan` from the ``plan_xcom`` task and the configuration, and builds the rest
from the step's :class:`~wpclone.runtimes.stepspec.StepSpec` (the same one the local runtime renders):
the arguments, the environment (with the TLS settings of Airflow's connection ``wpclone_mysql`` for the
logins on the shared server, and its files from the Secret ``settings.db_tls_secret`` mounted read-only at
``/etc/wpclone/db-tls``), the volumes, the clone's label and the site affinity. No Jinja template
derives a name, and no private method of the provider is overridden.

The pod: the step's command line; the spec's plain environment (``WPCLONE_JOB_ID`` and
``WPCLONE_CLONE_ID`` for the step's log lines, each login's ``<P>_HOST/_PORT/_USER/_NAME``, the link roots,
the fetch policy of a restore and the retention of a backup); ``<P>_PASSWORD`` *only* as a ``secretKeyRef``
(the source's Secret ``db_password_secret`` key ``password``, the clone's Secret key ``db-password``, or
for a ``restore`` login the clone's Secret key ``restore-db-password``); for each content tree the source's
content claim read-only at ``/content/source`` (its root is the source's wp-content) or the clone's whole
claim at ``/content/clone`` with the env var pointing at its ``wp-content`` (so a restore stages beside it
on the same filesystem, :mod:`wpclone.k8s.content`); our labels; requests and limits; non-root, no
privilege escalation, no capabilities, read-only root filesystem (``/tmp`` is an ``emptyDir``); no
service-account token. ``SOURCE_CONTENT_LINK_ROOTS`` are paths the pod sees: the source's
``content_link_roots`` (none when unset): a link out of the source's claim (to a path on the machine that
serves the source) cannot be followed, and fails the copy with the link named, unless a root names a path
the image itself holds.

Backup and restore steps (``backup-clone``, ``restore-backup``) also mount the backups claim
(``settings.backup_claim``) at ``settings.backup_mount`` (read-only for a restore) with
``WPCLONE_BACKUP_DIR`` pointing there; no other pod of ours mounts it but the content pod that purges a
deleted clone's backups. A step that mounts the clone's claim runs on the node of the clone's site (the
claim is ReadWriteOnce): required for the backup and restore steps (they only run on a ready clone, whose
site pod exists), preferred for the others (while a clone is being made there is no site yet).

``step.param_env`` (run params, e.g. a backup URL that may carry a token) never becomes a plain value: when
the task runs, the operator writes each param into the clone's Secret (key ``param-<env name>``, removed
again by the runtime's ``discard_restore_content``) and the pod reads it with a ``secretKeyRef``.
``get_logs``, ``on_finish_action="delete_pod"`` and durable reattachment (a new worker picks up the running
pod instead of starting a second one) come from the provider.

:class:`StepPodOperator` adds only what ``KubernetesPodOperator`` lacks:

- the task-time pieces above, from the typed plan (when rendering), and the params Secret (when executing);
- a check, before any pod exists, that every Kubernetes name and label taken from the plan is valid, so a
  bad plan fails with a sentence;
- a pod that does not start fails with the scheduler's or the node's cause (:mod:`wpclone.k8s.startup`):
  within seconds when waiting cannot help (a missing claim, Secret or image), else when the schedule or
  start-up timeout ends (``settings.startup_timeout_seconds``), instead of a bare ``Pod … returned a
  failure.`` after the timeout; this is the synchronous path (a deferred pod is watched by the provider's
  trigger);
- on success, the step's JSON result as the task's XCom, as on the local runtime: the step writes it to
  ``WPCLONE_TERMINATION_LOG`` (``/dev/termination-log`` in the pod), so it is the container's termination
  message;
- on failure, the step's one-sentence error as XCom ``error``, ``<step>: <sentence>`` as on the local
  runtime: the container's termination message (``terminationMessagePolicy: FallbackToLogsOnError`` puts
  the tail of its output there, whose last line is the step's ``error: <sentence>``), else why the pod did
  not start, else a sentence made from the exception.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
from airflow.models.xcom import XCOM_RETURN_KEY
from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import PodLaunchFailedException
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.container import get_container_termination_message
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSkipException, AirflowTaskTimeout
from kubernetes.client import models as k8s

from wpclone.airflow.runparams import resolve
from wpclone.airflow.services import admin_tls
from wpclone.airflow.xcom import ERROR_KEY
from wpclone.config import load_config
from wpclone.errors import KubernetesError
from wpclone.k8s.apply import ClusterClient
from wpclone.k8s.content import TERMINATION_LOG
from wpclone.k8s.manifests import (
    COMPONENT_LABEL,
    CONTENT_SUBPATH,
    DB_PASSWORD_KEY,
    NAME_PREFIX,
    RESTORE_PASSWORD_KEY,
    SITE_COMPONENT,
    SOURCE_PASSWORD_KEY,
    content_claim_name,
    param_secret_key,
    secret_name,
)
from wpclone.k8s.settings import DB_TLS_MOUNT, KubernetesSettings
from wpclone.k8s.startup import start_problem, timeout_sentence
from wpclone.models import CLONE_ID_RE, ClonePlan
from wpclone.runtimes.base import CLONE_ID_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from wpclone.runtimes.kubernetes import KubernetesRuntime
from wpclone.runtimes.limits import step_execution_timeout, task_timed_out
from wpclone.runtimes.stepspec import (
    STEP_COMMAND,
    BackupAccess,
    ContentRole,
    DbRole,
    Step,
    StepSpec,
    check_step,
)
from wpclone.steps.backup import BACKUP_DIR_ENV
from wpclone.steps.common import TERMINATION_LOG_ENV

log = logging.getLogger(__name__)

STEP_LABEL = "wpclone.io/step"
SOURCE_CONTENT_DIR = "/content/source"
CLONE_CONTENT_DIR = "/content/clone"  # the clone's whole claim; its live tree is CONTENT_SUBPATH
MAX_ERROR_CHARS = 1000
# The pod's own environment, whatever the step.
POD_ENV = {
    "HOME": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    TERMINATION_LOG_ENV: TERMINATION_LOG,  # the step's JSON result, read back as the task's XCom
}

TASK_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,249}")
# RFC 1123 subdomain: Secret and PersistentVolumeClaim names.
SUBDOMAIN_RE = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _secret_env(name: str, secret: str, key: str) -> k8s.V1EnvVar:
    return k8s.V1EnvVar(
        name=name,
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key)),
    )


def _password_secret(plan: ClonePlan, role: DbRole) -> tuple[str, str]:
    """(Secret, key) of a login's password: the source's own Secret, or the clone's."""
    if role is DbRole.SOURCE:
        return plan.source.db_password_secret or "", SOURCE_PASSWORD_KEY
    return secret_name(plan.clone_id), RESTORE_PASSWORD_KEY if role is DbRole.RESTORE else DB_PASSWORD_KEY


def _claim(
    name: str, claim: str, mount_path: str, *, read_only: bool
) -> tuple[k8s.V1Volume, k8s.V1VolumeMount]:
    source = k8s.V1PersistentVolumeClaimVolumeSource(claim_name=claim, read_only=read_only)
    return (
        k8s.V1Volume(name=name, persistent_volume_claim=source),
        k8s.V1VolumeMount(name=name, mount_path=mount_path, read_only=read_only),
    )


def pod_env(spec: StepSpec, plan: ClonePlan, settings: KubernetesSettings) -> list[k8s.V1EnvVar]:
    """The step's environment in the pod: the spec's values, passwords and params by Secret reference."""
    env = [k8s.V1EnvVar(name=name, value=value) for name, value in spec.env.items()]
    env += [
        _secret_env(f"{p}_PASSWORD", *_password_secret(plan, login.role)) for p, login in spec.logins.items()
    ]
    for name, role in spec.content.items():
        path = SOURCE_CONTENT_DIR if role is ContentRole.SOURCE else f"{CLONE_CONTENT_DIR}/{CONTENT_SUBPATH}"
        env.append(k8s.V1EnvVar(name=name, value=path))
    if spec.backups is not None:
        env.append(k8s.V1EnvVar(name=BACKUP_DIR_ENV, value=settings.backup_mount))
    # Run params by reference to the clone's Secret (written when the task runs: ``publish_params``).
    env += [_secret_env(name, secret_name(plan.clone_id), param_secret_key(name)) for name in spec.params]
    env += [k8s.V1EnvVar(name=name, value=value) for name, value in POD_ENV.items()]
    return env


def pod_volumes(
    spec: StepSpec, plan: ClonePlan, settings: KubernetesSettings
) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """The content claims, the backups claim (backup and restore steps), the database TLS Secret (a login
    with TLS files) and ``/tmp``."""
    claims = []
    roles = set(spec.content.values())
    if ContentRole.SOURCE in roles:
        claim = plan.source.content_claim or ""
        claims.append(_claim("source-content", claim, SOURCE_CONTENT_DIR, read_only=True))
    if ContentRole.CLONE in roles:
        claims.append(
            _claim("clone-content", content_claim_name(plan.clone_id), CLONE_CONTENT_DIR, read_only=False)
        )
    if spec.backups is not None:
        read_only = spec.backups is BackupAccess.READ
        claims.append(_claim("backups", settings.backup_claim, settings.backup_mount, read_only=read_only))
    volumes = [volume for volume, _ in claims]
    mounts = [mount for _, mount in claims]
    if settings.db_tls_secret and any(login.tls and login.tls.files() for login in spec.logins.values()):
        # The TLS files of the wpclone_mysql connection (KubernetesRuntime.step_tls points the env here);
        # group-readable only, for the fsGroup the step runs in.
        secret = k8s.V1SecretVolumeSource(secret_name=settings.db_tls_secret, default_mode=0o440)
        volumes.append(k8s.V1Volume(name="db-tls", secret=secret))
        mounts.append(k8s.V1VolumeMount(name="db-tls", mount_path=DB_TLS_MOUNT, read_only=True))
    volumes.append(k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="1Gi")))
    mounts.append(k8s.V1VolumeMount(name="tmp", mount_path="/tmp"))
    return volumes, mounts


def step_pod_operator(
    step: Step, *, plan_xcom: str, settings: KubernetesSettings, **operator_kwargs: Any
) -> StepPodOperator:
    """The operator running ``step`` for the clone whose ClonePlan JSON is the XCom of ``plan_xcom``.

    ``operator_kwargs`` (e.g. ``pool``, ``retries``, ``trigger_rule``) override the defaults set here.
    """
    if not TASK_ID_RE.fullmatch(plan_xcom):
        raise ValueError(f"plan_xcom {plan_xcom!r} is not a task id.")
    check_step(step)
    defaults: dict[str, Any] = {
        "task_id": step.task_id,
        "name": f"{NAME_PREFIX}{step.step}",
        "namespace": settings.namespace,
        "kubernetes_conn_id": settings.conn_id,
        "image": settings.toolbox_image,
        "image_pull_policy": settings.image_pull_policy,
        "cmds": list(STEP_COMMAND),
        "arguments": [step.step],
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, STEP_LABEL: step.step},
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": settings.step_cpu_request, "memory": settings.step_memory_request},
            limits={"cpu": settings.step_cpu_limit, "memory": settings.step_memory_limit},
        ),
        "security_context": k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=settings.run_as_user,
            run_as_group=settings.fs_group,
            fs_group=settings.fs_group,
            fs_group_change_policy="OnRootMismatch",
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        "container_security_context": k8s.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=settings.run_as_user,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        "service_account_name": settings.step_service_account,
        "automount_service_account_token": False,
        "termination_message_policy": "FallbackToLogsOnError",
        "get_logs": True,
        "on_finish_action": "delete_pod",
        "durable": True,  # Airflow 3.3's successor of reattach_on_restart=True
        "deferrable": settings.deferrable,
        "startup_timeout_seconds": settings.startup_timeout_seconds,
        "startup_check_interval_seconds": 2,  # a pod that cannot start is told within seconds
        "log_events_on_failure": True,
        "log_pod_spec_on_failure": False,
        # Kubernetes ends the pod itself at the step task's limit, should the worker watching it be gone.
        "execution_timeout": step_execution_timeout(),
        "active_deadline_seconds": int(step_execution_timeout().total_seconds()),
    }
    return StepPodOperator(
        step=step, plan_xcom=plan_xcom, settings=settings, **{**defaults, **operator_kwargs}
    )


def error_sentence(termination_message: str | None) -> str | None:
    """The step's sentence from its termination message: the last non-empty line, without ``error: ``."""
    if not termination_message:
        return None
    lines = [line.strip() for line in termination_message.splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    last = last.removeprefix("error:").strip()
    return last[:MAX_ERROR_CHARS] or None


class StepPodOperator(KubernetesPodOperator):
    """``KubernetesPodOperator`` for one step: its pod built from the typed plan when the task runs,
    rendered-name checks, the params Secret and XCom ``error``."""

    def __init__(self, *, step: Step, plan_xcom: str, settings: KubernetesSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.plan_xcom = plan_xcom
        self.step_settings = settings
        self.start_failure: str | None = None  # why the pod did not start (await_pod_start)

    @property
    def step_name(self) -> str:
        return self.step.step

    # -- when the task runs ------------------------------------------------------------------------------

    def render_template_fields(self, context: Any, jinja_env: jinja2.Environment | None = None) -> None:
        """Render, then build what depends on the task's clone and the configuration at task time."""
        super().render_template_fields(context, jinja_env)
        plan = ClonePlan.model_validate(context["ti"].xcom_pull(task_ids=self.plan_xcom))
        self.apply_plan(plan, job_id=str(context["run_id"]))

    def apply_plan(self, plan: ClonePlan, *, job_id: str) -> None:
        """Arguments, environment, volumes, the clone's label and the site affinity, from ``plan``."""
        runtime = KubernetesRuntime(load_config(), self.step_settings)
        spec = runtime.step_spec(self.step, plan, job_id=job_id, db_tls=admin_tls())
        self.arguments = list(spec.argv)
        self.env_vars = pod_env(spec, plan, self.step_settings)
        self.volumes, self.volume_mounts = pod_volumes(spec, plan, self.step_settings)
        self.labels = {**self.labels, CLONE_ID_LABEL: plan.clone_id}
        if ContentRole.CLONE in spec.content.values() and CLONE_ID_RE.fullmatch(plan.clone_id):
            self.affinity = site_affinity(plan.clone_id, required=spec.backups is not None)

    def publish_params(self, context: Any, cluster: Any = None) -> None:
        """Write the run's ``param_env`` params into the clone's Secret (never the pod spec or a log)."""
        if not self.step.param_env:
            return
        params = context["params"]
        data = {
            param_secret_key(name): base64.b64encode(resolve(params, param).encode()).decode()
            for name, param in self.step.param_env.items()
        }
        clone_id = str(self.labels[CLONE_ID_LABEL])
        name = secret_name(clone_id)
        cluster = cluster or ClusterClient(str(self.namespace), str(self.kubernetes_conn_id))
        if cluster.patch("Secret", name, {"data": data}, clone_id=clone_id) is None:
            raise KubernetesError(
                f"Secret {name} does not exist in namespace {self.namespace}: the clone is incomplete."
            )

    def check_rendered(self) -> None:
        """ValueError with one sentence if a rendered name or label would be refused or is not ours."""
        clone_id = str(self.labels.get(CLONE_ID_LABEL, ""))
        if not CLONE_ID_RE.fullmatch(clone_id):
            raise ValueError(f"the plan's clone id {clone_id!r} is not a valid clone id.")
        for volume in self.volumes:
            pvc = getattr(volume, "persistent_volume_claim", None)
            if pvc is not None and not SUBDOMAIN_RE.fullmatch(str(pvc.claim_name)):
                raise ValueError(
                    f"volume {volume.name} would mount the claim {pvc.claim_name!r}, which is not a valid "
                    "PersistentVolumeClaim name (does the source set content_claim?)."
                )
        for env in _env_vars(self.env_vars):
            ref = env.value_from.secret_key_ref if env.value_from else None
            if ref is not None and not SUBDOMAIN_RE.fullmatch(str(ref.name)):
                raise ValueError(
                    f"{env.name} would come from the Secret {ref.name!r}, which is not a valid Secret name "
                    "(does the source set db_password_secret?)."
                )

    # -- running -----------------------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        try:
            self.check_rendered()
            self.publish_params(context)
            super().execute(context)
        except (AirflowSkipException, AirflowRescheduleException):
            raise
        except AirflowTaskTimeout as exc:  # a BaseException: Airflow's execution_timeout struck
            self.push_error(context, exc)
            raise
        except Exception as exc:
            self.push_error(context, exc)
            if self.start_failure:  # cleanup's "Pod … returned a failure." says less than why
                raise KubernetesError(self.start_failure) from exc
            raise
        result = self.step_result()
        context["ti"].xcom_push(key=XCOM_RETURN_KEY, value=result)
        return result

    def step_result(self) -> dict[str, Any] | None:
        """The step's JSON result, the last line of its container's termination message (as on the local
        runtime, the task's XCom); None when the pod left none."""
        pod = self.remote_pod or self.pod
        message = get_container_termination_message(pod, self.base_container_name) if pod else None
        lines = [line for line in (message or "").splitlines() if line.strip()]
        try:
            result = json.loads(lines[-1]) if lines else None
        except ValueError:
            return None
        return result if isinstance(result, dict) else None

    def await_pod_start(self, pod: k8s.V1Pod) -> None:
        """Until the pod has left ``Pending``; PodLaunchFailedException with its cause when it cannot start
        (at once when waiting cannot help, else at the schedule or start-up timeout)."""
        serialize = self.client.api_client.sanitize_for_serialization
        started, scheduled_at = time.monotonic(), None
        while True:
            remote = self.pod_manager.read_pod(pod)
            if remote.status.phase not in ("Pending", "Unknown"):
                return
            data = serialize(remote)
            conditions = (data.get("status") or {}).get("conditions") or []
            if scheduled_at is None and any(
                c.get("type") == "PodScheduled" and c.get("status") == "True" for c in conditions
            ):
                scheduled_at = time.monotonic()
            since, limit = (
                (scheduled_at, self.startup_timeout_seconds)
                if scheduled_at is not None
                else (started, self.schedule_timeout_seconds)
            )
            timed_out = time.monotonic() - since >= limit
            problem = start_problem(data)
            if timed_out and problem is None:
                problem = start_problem(data, serialize(self.pod_manager.read_pod_events(pod)).get("items"))
            name = str(pod.metadata.name)
            if problem is not None and problem.final:
                self.start_failure = problem.sentence(name)
            elif timed_out:
                self.start_failure = timeout_sentence(name, limit, problem)
            if self.start_failure:
                if self.log_events_on_failure:
                    self._read_pod_events(pod, reraise=False)
                raise PodLaunchFailedException(self.start_failure)
            time.sleep(self.startup_check_interval_seconds)

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        try:
            return super().trigger_reentry(context, event)
        except (AirflowSkipException, AirflowRescheduleException):
            raise
        except Exception as exc:
            self.push_error(context, exc)
            raise

    def push_error(self, context: Any, exc: BaseException) -> str:
        """Push XCom ``error``: the step's own sentence if its container left one, else one made here."""
        pod = self.remote_pod or self.pod
        sentence = (
            error_sentence(get_container_termination_message(pod, self.base_container_name)) if pod else None
        )
        if sentence is None and self.start_failure:
            sentence = self.start_failure
        if isinstance(exc, AirflowTaskTimeout):  # on_kill deletes the pod once this returns
            sentence = task_timed_out(self.task_id, self.execution_timeout)  # as the local runtime's
        elif sentence is None:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
            sentence = f"The {self.step_name} step failed: {first}."[:MAX_ERROR_CHARS]
        elif not sentence.startswith(f"{self.step_name}: "):  # named like the local runtime's
            sentence = f"{self.step_name}: {sentence}"[:MAX_ERROR_CHARS]
        context["ti"].xcom_push(key=ERROR_KEY, value=sentence)
        return sentence


def site_affinity(clone_id: str, *, required: bool) -> k8s.V1Affinity:
    """On the node of the clone's site: its content claim is ReadWriteOnce (module docstring)."""
    selector = {MANAGED_BY_LABEL: MANAGED_BY, CLONE_ID_LABEL: clone_id, COMPONENT_LABEL: SITE_COMPONENT}
    term = k8s.V1PodAffinityTerm(
        label_selector=k8s.V1LabelSelector(match_labels=selector), topology_key="kubernetes.io/hostname"
    )
    if required:
        return k8s.V1Affinity(
            pod_affinity=k8s.V1PodAffinity(required_during_scheduling_ignored_during_execution=[term])
        )
    return k8s.V1Affinity(
        pod_affinity=k8s.V1PodAffinity(
            preferred_during_scheduling_ignored_during_execution=[
                k8s.V1WeightedPodAffinityTerm(weight=100, pod_affinity_term=term)
            ]
        )
    )


def _env_vars(env_vars: Iterable[Any] | Mapping[str, str]) -> list[k8s.V1EnvVar]:
    if isinstance(env_vars, Mapping):
        return [k8s.V1EnvVar(name=k, value=v) for k, v in env_vars.items()]
    return [e for e in env_vars if isinstance(e, k8s.V1EnvVar)]
