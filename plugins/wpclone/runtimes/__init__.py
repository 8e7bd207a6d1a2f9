"""Runtimes: where steps run and clones are served, chosen by configuration (DESIGN §5)."""

from __future__ import annotations

import os

from wpclone.models import RuntimeKind, WpcloneConfig
from wpclone.runtimes.base import Runtime

RUNTIME_ENV = "WPCLONE_RUNTIME"


def runtime_kind() -> RuntimeKind:
    """The runtime the DAGs are built for: ``WPCLONE_RUNTIME`` (local|kubernetes), default local.

    Read at parse time from the environment only (no I/O), since the task graph's operators follow it.
    """
    value = os.environ.get(RUNTIME_ENV, RuntimeKind.LOCAL.value)
    try:
        return RuntimeKind(value)
    except ValueError:
        raise ValueError(f"{RUNTIME_ENV}={value!r} is not a runtime: use local or kubernetes.") from None


def runtime_for(config: WpcloneConfig) -> Runtime:
    """The runtime object for ``config`` (imported lazily: the kubernetes one pulls in the provider)."""
    if config.runtime is RuntimeKind.KUBERNETES:
        from wpclone.runtimes.kubernetes import KubernetesRuntime

        return KubernetesRuntime(config)
    from wpclone.runtimes.local import LocalRuntime

    return LocalRuntime(config)
