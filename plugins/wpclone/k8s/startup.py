"""Why a pod has not started, from what the scheduler and the node said: its status and its events.

A step pod (:mod:`wpclone.k8s.pod`) or the content pod (:mod:`wpclone.runtimes.kubernetes`) that stays
``Pending`` fails with the cause in its sentence instead of a bare timeout, and fails within seconds when
the cause cannot resolve by waiting:

- not scheduled because a claim it mounts does not exist (``persistentvolumeclaim "…" not found``: the
  scheduler's condition and ``FailedScheduling`` event) — final;
- not scheduled for another reason (``0/1 nodes are available: …``: no node matches, none has room) — it
  may resolve (a node is added), so it is waited for until the start-up timeout, whose sentence names it;
- scheduled, but its container cannot be made: the image cannot be pulled (``ErrImagePull``,
  ``ImagePullBackOff``, ``InvalidImageName``, ``ErrImageNeverPull``; final unless the node's message says
  the registry is throttled or down), or a Secret, ConfigMap or key it references is missing
  (``CreateContainerConfigError``) — final.

The functions work on API dicts (``status.containerStatuses``), as read by
:class:`~wpclone.k8s.apply.ClusterClient` or serialized from the client's models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError")
# Pull errors a registry recovers from: waited for, like the provider's own list.
TRANSIENT_PULL = ("rate limit", "too many requests", "quota exceeded", "temporarily unavailable", "timeout")


@dataclass(frozen=True)
class StartProblem:
    """What keeps a pod from starting: one clause (``cause``), and whether waiting can help."""

    cause: str
    final: bool

    def sentence(self, pod: str) -> str:
        return f"Pod {pod} cannot start: {self.cause.rstrip('.')}."


def start_problem(pod: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = ()) -> StartProblem | None:
    """Why ``pod`` (still ``Pending``) has not started, or None when nothing says so yet."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason, message = str(waiting.get("reason") or ""), _clause(waiting.get("message"))
        if reason in PULL_REASONS:
            transient = any(word in message.lower() for word in TRANSIENT_PULL)
            detail = message or f"image {container.get('image') or '?'}"
            return StartProblem(f"its image cannot be pulled ({reason}: {detail})", final=not transient)
        if reason in CONFIG_REASONS:
            detail = message or reason
            return StartProblem(f"its container cannot be created ({reason}: {detail})", final=True)
    unscheduled = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "False"
        ),
        None,
    )
    if unscheduled is None:
        return None
    message = _clause(unscheduled.get("message")) or _last_warning(events, "FailedScheduling")
    if not message:
        return None
    final = "persistentvolumeclaim" in message and "not found" in message
    return StartProblem(f"it cannot be scheduled ({message})", final=final)


def timeout_sentence(pod: str, seconds: float, problem: StartProblem | None) -> str:
    """Pod ``pod`` still not started after ``seconds``, and why (when anything says)."""
    cause = problem.cause.rstrip(".") if problem else "it is still Pending; see its events"
    return f"Pod {pod} did not start within {seconds:.0f} s: {cause}."


def _last_warning(events: Iterable[Mapping[str, Any]], reason: str) -> str:
    found = [e for e in events if e.get("type") == "Warning" and e.get("reason") == reason]
    found.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return _clause(found[-1].get("message")) if found else ""


def _clause(message: object) -> str:
    """A message as a clause: one line, without its final full stop."""
    return " ".join(str(message or "").split()).rstrip(".")
