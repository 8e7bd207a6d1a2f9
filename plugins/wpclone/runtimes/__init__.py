"""Runtimes: where steps run and clones are served, chosen by configuration."""

from __future__ import annotations

from wpclone.models import RuntimeKind, WpcloneConfig
from wpclone.runtimes.base import Runtime
from wpclone.runtimes.kubernetes import KubernetesRuntime
from wpclone.runtimes.local import LocalRuntime


def runtime_for(config: WpcloneConfig) -> Runtime:
    """The runtime object for ``config`` (cheap: neither runtime touches anything until it is used)."""
    if config.runtime is RuntimeKind.KUBERNETES:
        return KubernetesRuntime(config)
    return LocalRuntime(config)
