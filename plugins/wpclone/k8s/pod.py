"""The operator that runs a data-plane step (``python -m wpclone.steps ...``) in a pod on the toolbox image.

Built at DAG parse time with no I/O: everything that depends on the clone (its id, the source's database
and content claim) is a Jinja template over the ClonePlan JSON that the ``plan_xcom`` task returned, and is
rendered by Airflow when the task runs.

The pod: the step's command line; ``step.env`` as plain values; ``WPCLONE_JOB_ID`` (the run id) and
``WPCLONE_CLONE_ID`` for the step's log lines; for each ``step.db_env`` prefix
``<P>_HOST/_PORT/_USER/_NAME`` as values and ``<P>_PASSWORD`` *only* as a ``secretKeyRef`` (the source's
Secret ``db_password_secret`` key ``password``, or the clone's Secret key ``db-password``, or for a
``restore`` login the fresh database ``wpr_...`` and the clone's Secret key ``restore-db-password``); for
each ``step.content`` entry the source's content claim read-only at ``/content/source`` (its root is the
source's wp-content) or the clone's whole claim at ``/content/clone`` with the env var pointing at its
``wp-content`` (so a restore stages beside it on the same filesystem, :mod:`wpclone.k8s.content`); our
labels; requests and limits; non-root, no privilege escalation, no capabilities, read-only root
filesystem (``/tmp`` is an ``emptyDir``); no service-account token. A step given content also gets
``SOURCE_CONTENT_LINK_ROOTS``, paths the pod sees (``_content``).

Backup and restore steps (``backup-clone``, ``restore-backup``) also mount the backups claim
(``settings.backup_claim``) at ``settings.backup_mount`` (read-only for a restore) with ``WPCLONE_BACKUP_DIR``
pointing there. A step with a ``restore`` login gets ``WPCLONE_FETCH_POLICY``: the URL policy of
:meth:`wpclone.runtimes.base.Runtime.fetch_policy` from the configuration the worker reads when it renders the
task (not at parse time; it is no secret, so it may show among the rendered templates); the backup step gets
the configuration's retention the same way (:func:`wpclone.steps.backup.retention_env`). No other pod of ours
mounts the backups claim but the content pod that purges a deleted clone's backups. A step that mounts the
clone's claim runs on the node of the clone's site (the claim is ReadWriteOnce): required for the backup and
restore steps (they only run on a ready clone, whose site pod exists), preferred for the others (while a clone
is being made there is no site yet).

``step.param_env`` (run params, e.g. a backup URL that may carry a token) never becomes a template or a
plain value: when the task runs, the operator writes each param into the clone's Secret (key
``param-<env name>``, removed again by the runtime's ``discard_restore_content``) and the pod reads it with a
``secretKeyRef``. ``get_logs``, ``on_finish_action="delete_pod"`` and durable reattachment (a new
worker picks up the running pod instead of starting a second one) come from the provider.

:class:`StepPodOperator` adds only what ``KubernetesPodOperator`` lacks:

- Secret references whose Secret name is a template (the provider renders only an env var's name and value);
- the task-time pieces above: the fetch policy and the site affinity (when rendering), the params Secret
  (when executing);
- a check, after rendering, that every Kubernetes name and label the templates produced is valid, so a bad
  plan fails with a sentence before any pod exists;
- on failure, the step's one-sentence error as XCom ``error``: the container's termination message
  (``terminationMessagePolicy: FallbackToLogsOnError`` puts the tail of its output there, whose last line
  is the step's ``error: <sentence>``), else a sentence made from the exception.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.container import get_container_termination_message
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSkipException
from kubernetes.client import models as k8s

from wpclone.airflow.runparams import resolve
from wpclone.config import load_config
from wpclone.k8s.manifests import (
    COMPONENT_LABEL,
    CONTENT_SUBPATH,
    DB_PASSWORD_KEY,
    NAME_PREFIX,
    RESTORE_PASSWORD_KEY,
    SITE_COMPONENT,
    SOURCE_PASSWORD_KEY,
    param_secret_key,
    secret_name,
)
from wpclone.k8s.settings import KubernetesSettings
from wpclone.models import CLONE_ID_RE
from wpclone.runtimes.base import CLONE_ID_LABEL, MANAGED_BY, MANAGED_BY_LABEL, STEP_COMMAND, Step
from wpclone.steps.backup import BACKUP_DIR_ENV, BACKUP_STEP, FETCH_POLICY_ENV, RESTORE_STEP, retention_env
from wpclone.steps.common import CLONE_ID_ENV, JOB_ID_ENV
from wpclone.steps.content_tree import LINK_ROOTS_ENV

log = logging.getLogger(__name__)

STEP_LABEL = "wpclone.io/step"
SOURCE_CONTENT_DIR = "/content/source"
CLONE_CONTENT_DIR = "/content/clone"  # the clone's whole claim; its live tree is CONTENT_SUBPATH
BACKUP_STEPS = (BACKUP_STEP, RESTORE_STEP)  # the steps that mount the backups claim (RESTORE_STEP read-only)
ERROR_XCOM_KEY = "error"
MAX_ERROR_CHARS = 1000

TASK_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,249}")
STEP_RE = re.compile(r"[a-z][a-z0-9-]{0,40}")
ENV_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]{0,100}")
# RFC 1123 subdomain: Secret and PersistentVolumeClaim names.
SUBDOMAIN_RE = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
WHICH = ("source", "clone")
DB_WHICH = (*WHICH, "restore")  # "restore": the fresh database a restore loads into


def plan_template(plan_xcom: str, path: str) -> str:
    """``{{ ti.xcom_pull(task_ids='<plan_xcom>')<path> }}``, e.g. path ``['source']['db_host']``."""
    return "{{ ti.xcom_pull(task_ids='" + plan_xcom + "')" + path + " }}"


def _secret_env(name: str, secret: str, key: str) -> k8s.V1EnvVar:
    return k8s.V1EnvVar(
        name=name,
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=secret, key=key)),
    )


def _check_step(step: Step, plan_xcom: str) -> None:
    if not TASK_ID_RE.fullmatch(plan_xcom):
        raise ValueError(f"plan_xcom {plan_xcom!r} is not a task id.")
    if not STEP_RE.fullmatch(step.step):
        raise ValueError(f"step {step.step!r} is not a step name: use lower-case letters, digits and '-'.")
    for name in (*step.env, *step.db_env, *step.content, *step.param_env):
        if not ENV_NAME_RE.fullmatch(name):
            raise ValueError(f"environment variable name {name!r} is not valid: use A-Z, 0-9 and '_'.")
    for prefix, which in step.db_env.items():
        if which not in DB_WHICH:
            raise ValueError(f"{prefix} must name 'source', 'clone' or 'restore', not {which!r}.")
    for prefix, which in step.content.items():
        if which not in WHICH:
            raise ValueError(f"{prefix} must name 'source' or 'clone', not {which!r}.")
    for param in step.param_env.values():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,100}", param):
            raise ValueError(f"param {param!r} is not a parameter name.")


def _db_env(step: Step, plan_xcom: str, settings: KubernetesSettings) -> list[k8s.V1EnvVar]:
    clone_id = plan_template(plan_xcom, "['clone_id']")
    host = settings.clone_db_host or plan_template(plan_xcom, "['source']['db_host']")
    port = (
        str(settings.clone_db_port)
        if settings.clone_db_port
        else plan_template(plan_xcom, "['source']['db_port']")
    )
    env: list[k8s.V1EnvVar] = []
    for prefix, which in step.db_env.items():
        if which == "source":
            env += [
                k8s.V1EnvVar(name=f"{prefix}_HOST", value=plan_template(plan_xcom, "['source']['db_host']")),
                k8s.V1EnvVar(name=f"{prefix}_PORT", value=plan_template(plan_xcom, "['source']['db_port']")),
                k8s.V1EnvVar(name=f"{prefix}_USER", value=plan_template(plan_xcom, "['source']['db_user']")),
                k8s.V1EnvVar(name=f"{prefix}_NAME", value=plan_template(plan_xcom, "['source']['db_name']")),
                _secret_env(
                    f"{prefix}_PASSWORD",
                    plan_template(plan_xcom, "['source']['db_password_secret']"),
                    SOURCE_PASSWORD_KEY,
                ),
            ]
        else:
            # "restore": the fresh database a restore loads into (wpclone.models.restore_db_name).
            restore = which == "restore"
            name = plan_template(plan_xcom, "['db_name']")
            name = "{{ 'wpr_' ~ " + name[3:-3].strip() + "[4:] }}" if restore else name
            env += [
                k8s.V1EnvVar(name=f"{prefix}_HOST", value=host),
                k8s.V1EnvVar(name=f"{prefix}_PORT", value=port),
                k8s.V1EnvVar(name=f"{prefix}_USER", value=name),
                k8s.V1EnvVar(name=f"{prefix}_NAME", value=name),
                _secret_env(
                    f"{prefix}_PASSWORD",
                    NAME_PREFIX + clone_id,
                    RESTORE_PASSWORD_KEY if restore else DB_PASSWORD_KEY,
                ),
            ]
    return env


def _content(
    step: Step, plan_xcom: str
) -> tuple[list[k8s.V1EnvVar], list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """The content claims, their directories, and ``SOURCE_CONTENT_LINK_ROOTS``.

    The roots are the source's ``content_link_roots`` (none when unset): the directories a link in
    wp-content may point into to be copied as its target (:mod:`wpclone.steps.content_tree`). They are paths
    as *the pod* sees them: it has only the toolbox image and the claims mounted here, so a link out of the
    source's claim (to a path on the machine that serves the source) cannot be followed, and fails the copy
    with the link named, unless a root names a path the image itself holds.
    """
    env: list[k8s.V1EnvVar] = []
    volumes: list[k8s.V1Volume] = []
    mounts: list[k8s.V1VolumeMount] = []
    if step.content:
        roots = (
            "{{ (ti.xcom_pull(task_ids='"
            + plan_xcom
            + "')['source']['content_link_roots'] or []) | tojson }}"
        )
        env.append(k8s.V1EnvVar(name=LINK_ROOTS_ENV, value=roots))
    for name, which in step.content.items():
        path = SOURCE_CONTENT_DIR if which == "source" else CLONE_CONTENT_DIR
        env.append(k8s.V1EnvVar(name=name, value=path if which == "source" else f"{path}/{CONTENT_SUBPATH}"))
        volume = f"{which}-content"
        if any(v.name == volume for v in volumes):
            continue
        if which == "source":
            claim = plan_template(plan_xcom, "['source']['content_claim']")
        else:
            # Renders to manifests.content_claim_name(<clone id>) (a unit test holds them equal).
            claim = NAME_PREFIX + plan_template(plan_xcom, "['clone_id']") + "-content"
        read_only = which == "source"
        volumes.append(
            k8s.V1Volume(
                name=volume,
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=claim, read_only=read_only
                ),
            )
        )
        mounts.append(k8s.V1VolumeMount(name=volume, mount_path=path, read_only=read_only))
    return env, volumes, mounts


def _backups(
    step: Step, settings: KubernetesSettings
) -> tuple[list[k8s.V1EnvVar], list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """The backups claim and ``WPCLONE_BACKUP_DIR`` for the backup and restore steps; nothing for others."""
    if step.step not in BACKUP_STEPS:
        return [], [], []
    read_only = step.step == RESTORE_STEP
    volume = k8s.V1Volume(
        name="backups",
        persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
            claim_name=settings.backup_claim, read_only=read_only
        ),
    )
    mount = k8s.V1VolumeMount(name="backups", mount_path=settings.backup_mount, read_only=read_only)
    return [k8s.V1EnvVar(name=BACKUP_DIR_ENV, value=settings.backup_mount)], [volume], [mount]


def _param_env(step: Step, plan_xcom: str) -> list[k8s.V1EnvVar]:
    """Run params by reference to the clone's Secret (written when the task runs: ``publish_params``)."""
    secret = NAME_PREFIX + plan_template(plan_xcom, "['clone_id']")
    return [_secret_env(name, secret, param_secret_key(name)) for name in step.param_env]


def step_pod_operator(
    step: Step, *, plan_xcom: str, settings: KubernetesSettings, **operator_kwargs: Any
) -> StepPodOperator:
    """The operator running ``step`` for the clone whose ClonePlan JSON is the XCom of ``plan_xcom``.

    ``operator_kwargs`` (e.g. ``pool``, ``retries``, ``trigger_rule``) override the defaults set here.
    """
    _check_step(step, plan_xcom)
    db_env = _db_env(step, plan_xcom, settings)
    content_env, volumes, mounts = _content(step, plan_xcom)
    backup_env, backup_volumes, backup_mounts = _backups(step, settings)
    volumes += backup_volumes
    mounts += backup_mounts
    volumes.append(k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="1Gi")))
    mounts.append(k8s.V1VolumeMount(name="tmp", mount_path="/tmp"))
    env = [
        *(k8s.V1EnvVar(name=key, value=value) for key, value in step.env.items()),
        *db_env,
        *content_env,
        *backup_env,
        *_param_env(step, plan_xcom),
        # The job (DAG run id) and clone every log line of the step carries (wpclone.steps.common).
        k8s.V1EnvVar(name=JOB_ID_ENV, value="{{ run_id }}"),
        k8s.V1EnvVar(name=CLONE_ID_ENV, value=plan_template(plan_xcom, "['clone_id']")),
        k8s.V1EnvVar(name="HOME", value="/tmp"),
        k8s.V1EnvVar(name="PYTHONDONTWRITEBYTECODE", value="1"),
        k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
    ]
    defaults: dict[str, Any] = {
        "task_id": step.task_id,
        "name": f"{NAME_PREFIX}{step.step}",
        "namespace": settings.namespace,
        "kubernetes_conn_id": settings.conn_id,
        "image": settings.toolbox_image,
        "image_pull_policy": settings.image_pull_policy,
        "cmds": list(STEP_COMMAND),
        "arguments": [step.step, *step.arguments],
        "env_vars": env,
        "volumes": volumes,
        "volume_mounts": mounts,
        "labels": {
            MANAGED_BY_LABEL: MANAGED_BY,
            CLONE_ID_LABEL: plan_template(plan_xcom, "['clone_id']"),
            STEP_LABEL: step.step,
        },
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
        "log_events_on_failure": True,
        "log_pod_spec_on_failure": False,
    }
    return StepPodOperator(
        step_name=step.step,
        param_env=dict(step.param_env),
        fetch_policy="restore" in step.db_env.values(),
        near_site=("required" if step.step in BACKUP_STEPS else "preferred")
        if "clone" in step.content.values()
        else None,
        **{**defaults, **operator_kwargs},
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
    """``KubernetesPodOperator`` plus templated Secret refs, rendered-name checks and XCom ``error``."""

    def __init__(
        self,
        *,
        step_name: str,
        param_env: Mapping[str, str] | None = None,
        fetch_policy: bool = False,
        near_site: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step_name = step_name
        self.param_env = dict(param_env or {})
        self.fetch_policy = fetch_policy
        self.near_site = near_site

    # -- rendering ---------------------------------------------------------------------------------------

    def _render_nested_template_fields(
        self, content: Any, context: Any, jinja_env: jinja2.Environment, seen_oids: set[int]
    ) -> None:
        if id(content) not in seen_oids:
            fields: tuple[str, ...] | None = None
            if isinstance(content, k8s.V1EnvVar):
                fields = ("name", "value", "value_from")
            elif isinstance(content, k8s.V1EnvVarSource):
                fields = ("secret_key_ref",)
            elif isinstance(content, k8s.V1SecretKeySelector):
                fields = ("name", "key")
            elif isinstance(content, k8s.V1PersistentVolumeClaimVolumeSource):
                fields = ("claim_name",)
            if fields is not None:
                seen_oids.add(id(content))
                self._do_render_template_fields(content, fields, context, jinja_env, seen_oids)
                return
        super()._render_nested_template_fields(content, context, jinja_env, seen_oids)

    def render_template_fields(self, context: Any, jinja_env: jinja2.Environment | None = None) -> None:
        """Render, then add what depends on the task's clone and the configuration at task time."""
        super().render_template_fields(context, jinja_env)
        if self.fetch_policy:
            self.env_vars = [e for e in _env_vars(self.env_vars) if e.name != FETCH_POLICY_ENV]
            self.env_vars.append(k8s.V1EnvVar(name=FETCH_POLICY_ENV, value=fetch_policy_json()))
        if self.step_name == BACKUP_STEP:  # the configuration's retention (wpclone.steps.backup)
            retention = retention_env(load_config().backups)
            self.env_vars = [e for e in _env_vars(self.env_vars) if e.name not in retention]
            self.env_vars += [k8s.V1EnvVar(name=k, value=v) for k, v in retention.items()]
        clone_id = str(self.labels.get(CLONE_ID_LABEL, ""))
        if self.near_site and CLONE_ID_RE.fullmatch(clone_id):
            self.affinity = site_affinity(clone_id, required=self.near_site == "required")

    def publish_params(self, context: Any, cluster: Any = None) -> None:
        """Write the run's ``param_env`` params into the clone's Secret (never the pod spec or a log)."""
        if not self.param_env:
            return
        import base64

        from wpclone.errors import KubernetesError
        from wpclone.k8s.apply import ClusterClient

        params = context["params"]
        data = {
            param_secret_key(name): base64.b64encode(resolve(params, param).encode()).decode()
            for name, param in self.param_env.items()
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
            return super().execute(context)
        except (AirflowSkipException, AirflowRescheduleException):
            raise
        except Exception as exc:
            self.push_error(context, exc)
            raise

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
        if sentence is None:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
            sentence = f"The {self.step_name} step failed: {first}."[:MAX_ERROR_CHARS]
        context["ti"].xcom_push(key=ERROR_XCOM_KEY, value=sentence)
        return sentence


def fetch_policy_json() -> str:
    """The restore's URL policy (:meth:`Runtime.fetch_policy`) from the configuration, as JSON."""
    import dataclasses
    import json

    from wpclone.config import load_config
    from wpclone.runtimes import runtime_for

    policy = dataclasses.asdict(runtime_for(load_config()).fetch_policy())
    return json.dumps(policy, default=str, sort_keys=True)


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
