"""The operator of a data-plane step, chosen by the runtime the DAGs are built for (cosmos's execution mode).

Local: a ``PythonOperator`` whose task runs the step as a child process
(:meth:`wpclone.runtimes.local.LocalRuntime.run_step`), its log lines in the task's log and its JSON result
line as the task's XCom. Kubernetes: :class:`wpclone.k8s.pod.StepPodOperator`, a pod on the toolbox image.
Either way the step gets the same :class:`~wpclone.runtimes.stepspec.StepSpec` of the clone's typed plan,
built when the task runs (with the TLS settings of the ``wpclone_mysql`` connection for the logins on the
shared server: wpclone.airflow.services.admin_tls), and a failure pushes the step's one sentence as XCom
``error``. Built at parse time with no I/O.

Time limits (wpclone.runtimes.limits): each step operator's ``execution_timeout`` is the step's ceiling and
:data:`~wpclone.runtimes.limits.STEP_GRACE_S` more. The local step's own limit, sized to its source when
the task runs, strikes first, with the sentence ``<task> timed out after N s (limit for a X MB source: N s,
<setting>)``; should Airflow's strike instead (or on Kubernetes, where it is the only one: the provider's
``on_kill`` deletes the pod), the error pushed says the task timed out after its ``execution_timeout``.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowTaskTimeout

from wpclone.airflow.runparams import resolve
from wpclone.airflow.services import admin_tls
from wpclone.airflow.sources import with_password_file
from wpclone.airflow.xcom import push_error
from wpclone.config import load_config
from wpclone.errors import StepFailed
from wpclone.k8s.settings import KubernetesSettings
from wpclone.models import ClonePlan, RuntimeKind
from wpclone.runtimes.limits import step_execution_timeout, task_timed_out
from wpclone.runtimes.local import LocalRuntime
from wpclone.runtimes.stepspec import Step, check_step
from wpclone.settings import TimeLimits


def step_operator(kind: RuntimeKind, step: Step, *, plan_xcom: str, **operator_kwargs: Any) -> BaseOperator:
    """The operator running ``step`` on runtime ``kind`` for the clone whose ClonePlan (JSON) is the XCom
    of ``plan_xcom``; ``operator_kwargs`` (``pool``, ``retries``, ...) go to the operator; its
    ``execution_timeout`` is :func:`step_execution_timeout` unless they give one."""
    if kind is RuntimeKind.KUBERNETES:
        from wpclone.k8s.pod import step_pod_operator  # noqa: PLC0415 (the kubernetes provider and client: that runtime only)

        settings = KubernetesSettings.from_env()
        return step_pod_operator(step, plan_xcom=plan_xcom, settings=settings, **operator_kwargs)
    check_step(step)
    operator_kwargs.setdefault("execution_timeout", step_execution_timeout())
    return PythonOperator(
        task_id=step.task_id,
        python_callable=run_local_step,
        op_kwargs={"step": step, "plan_xcom": plan_xcom},
        **operator_kwargs,
    )


def run_local_step(step: Step, plan_xcom: str, **context: Any) -> dict[str, Any]:
    """The local step's task: the step for the clone planned in XCom ``plan_xcom``, its params resolved;
    on failure its one sentence (``<step>: <sentence>``) is pushed as XCom ``error`` and the task fails."""
    ti = context["ti"]
    plan = ClonePlan.model_validate(ti.xcom_pull(task_ids=plan_xcom))
    params = {name: resolve(context["params"], param) for name, param in step.param_env.items()}
    runtime = LocalRuntime(load_config())
    # A connection's source: its password handed to the step as a private file, never through the plan.
    plan = plan.model_copy(update={"source": with_password_file(plan.source, runtime.settings.secrets_dir)})
    limits = TimeLimits.from_env()
    try:
        return runtime.run_step(
            step, plan, params=params, job_id=context["run_id"], db_tls=admin_tls(), limits=limits
        )
    except StepFailed as exc:
        push_error(ti, str(exc))
        raise
    except AirflowTaskTimeout:  # run_step killed the step on its way out
        push_error(ti, task_timed_out(step.task_id, ti.task.execution_timeout))
        raise
