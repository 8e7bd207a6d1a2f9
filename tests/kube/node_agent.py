"""A node for the local cluster (``wpclone.local.cluster``) that really runs the pods bound to it: the tests'
stand-in for a kubelet, a container runtime and a volume provisioner.

``python -m tests.kube.node_agent --kubeconfig <state>/cluster/admin.kubeconfig`` registers the node
``wpclone-node`` (Ready, renewing its Lease) and then, every quarter of a second:

- **volumes**: a claim that is ``Pending`` with no volume gets a hostPath PersistentVolume made for it (its
  class, access modes and size; a directory under ``<state>/volumes``), since nothing else provisions here;
  a volume of ours that its claim released is deleted with its directory;
- **pods bound to the node**: each container's command runs as a local process (its own process group)
  with the pod's environment (``value``, ``secretKeyRef``, ``configMapKeyRef`` and ``fieldRef`` resolved
  through the API server; a missing Secret or key is ``CreateContainerConfigError``, as on a kubelet).
  Images are not pulled: the toolbox image's ``python`` is this checkout's interpreter (``PATH`` has the
  virtualenv first, ``PYTHONPATH`` this checkout's ``plugins/``), and an image the agent does not know
  stays ``Pending`` with ``ErrImagePull`` then ``ImagePullBackOff``. There is no container filesystem:
  each volume mount (a claim's directory, an ``emptyDir``, a ConfigMap's or Secret's files, with
  ``subPath``) is a local directory, and a mount path inside an env value or an argument is rewritten to
  it (``/content/clone/wp-content`` -> ``<volume dir>/wp-content``). The pod moves through ``Running`` to
  ``Succeeded``/``Failed`` with the exit code and the termination message (the file named by
  ``WPCLONE_TERMINATION_LOG``, else, for ``FallbackToLogsOnError``, the last 80 lines of the output);
  ``activeDeadlineSeconds`` ends it ``DeadlineExceeded``; a local directory in the termination message is
  written back as its mount path. A container is never restarted (a
  ``restartPolicy: Always`` pod whose command ends stays ``Running``, not ready). A graceful delete stops
  the processes (SIGTERM, SIGKILL after the grace period) and then removes the pod;
- **the site**: a pod of the WordPress image (a clone's site or restore preview Deployment) is served by the
  local PHP site host of ``--stack-state-dir`` (``wpclone.local.sitehost``) as the site named like its
  Deployment, at ``http://<deployment>.localhost:<site host port>/``: its database, login, table prefix and
  ``WORDPRESS_CONFIG_EXTRA`` constants from the pod's env, its wp-content the claim's directory mounted at
  ``/var/www/html/wp-content``, the must-use plugin of its ConfigMap copied in. ``WP_HOME`` and
  ``WP_SITEURL`` are that local URL, not the clone's (nothing routes the clone's host name here, and
  WordPress redirects a request for another URL to its own), so the database's links still name the
  clone's URL. It is Ready when the local URL answers below 400. Without a site host (or with a Deployment
  name longer than a site name may be) it is marked Ready unserved, and the agent says so in its log;
- **logs**: each container's output, timestamped, is served on the kubelet port over TLS
  (``/containerLogs/<namespace>/<pod>/<container>`` with ``follow``, ``timestamps``, ``tailLines``,
  ``sinceSeconds``, ``sinceTime``, ``limitBytes``), so ``kubectl logs`` and ``KubernetesPodOperator``'s
  log streaming work through the API server. A pod annotated ``wpclone.test/log-follow-cut-seconds: <s>``
  has each following stream closed after ``s`` seconds while its container still runs: a log watch that
  breaks mid-job, for the tests.

Not done: security contexts (processes run as the agent's user), resource limits, probes other than the
site's, exec/attach/port-forward, init containers, networking (a Service routes nowhere). The agent plays
with the admin token (it creates PersistentVolumes, which no node may).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes
from kubernetes.client.exceptions import ApiException

import wpclone
from wpclone.k8s.settings import KubernetesSettings
from wpclone.local.cluster import KUBE_VERSION, self_signed
from wpclone.local.settings import StackSettings, free_port
from wpclone.local.sitehost import (
    SITE_NAME_RE,
    SiteConfig,
    http_opener,
    register_site,
    unregister_site,
)
from wpclone.local.sitehost import _write_private as write_private

log = logging.getLogger("node-agent")

NODE_NAME = "wpclone-node"
TICK_S = 0.25
LEASE_RENEW_S = 10.0
AGENT_LABEL = "wpclone.test/node-agent"  # on the volumes the agent made
FOLLOW_CUT_ANNOTATION = "wpclone.test/log-follow-cut-seconds"  # a pod's log follows break (module docstring)
TERMINATION_LINES = 80  # a kubelet's fallback: the last 80 lines, at most 2 KiB
TERMINATION_BYTES = 2048
TERMINATION_FILE_BYTES = 4096
PLUGINS_DIR = Path(wpclone.__file__).resolve().parents[1]
SITE_CONTENT_MOUNT = "/var/www/html/wp-content"  # the official WordPress image's wp-content
MERGE_PATCH = "application/merge-patch+json"
Json = dict[str, Any]


def now() -> str:
    """RFC 3339 in UTC with microseconds: what timestamps in statuses and log lines look like."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class ConfigError(Exception):
    """Why a container cannot be started yet (a kubelet's ``CreateContainerConfigError`` message)."""


# -- the container's process -----------------------------------------------------------------------------


@dataclass
class Container:
    """One container of a pod: its process, its timestamped log, what it ended with."""

    name: str
    spec: Json
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    served: bool = False  # a WordPress container: the site host serves it, no process of its own
    terminated: Json | None = None
    waiting: tuple[str, str] | None = None  # (reason, message)
    ready: bool = False
    mounts: list[tuple[str, Path]] = field(default_factory=list)  # (mount path, local directory)
    output_done: threading.Event = field(default_factory=threading.Event)  # all output is in the log
    # Its end is in the pod's status (or it was stopped): a log follower stops here, as on a kubelet, so
    # KubernetesPodOperator never sees its stream end while the pod still says the container runs.
    end_reported: threading.Event = field(default_factory=threading.Event)
    follow_cut: float | None = None  # a following log stream is closed after this many seconds (the tests')

    @property
    def log_file(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def termination_file(self) -> Path:
        return self.directory / f"{self.name}.termination-log"

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.termination_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a delete stops the command and everything it started
        )
        self.started_at, self.terminated, self.waiting = now(), None, None
        threading.Thread(target=self._copy_output, args=(self.process,), daemon=True).start()

    def _copy_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with self.log_file.open("ab") as out:
            for line in process.stdout:
                out.write(now().encode() + b" " + line.rstrip(b"\n") + b"\n")
                out.flush()
        self.output_done.set()

    def exited(self) -> int | None:
        """The exit code once the process has ended and all its output is in the log; else None."""
        if self.process is None or self.process.poll() is None:
            return None
        self.output_done.wait()
        return self.process.returncode

    def finish(self, code: int) -> None:
        code = code if code >= 0 else 128 - code  # killed by a signal: 128 + its number, as a runtime says
        self.terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": self.started_at,
            "finishedAt": now(),
            "message": self.termination_message(code),
        }
        self.process, self.ready = None, False

    def termination_message(self, code: int) -> str:
        try:
            text = self.termination_file.read_bytes()[:TERMINATION_FILE_BYTES].decode("utf-8", "replace")
        except FileNotFoundError:
            text = ""
        if text or code == 0 or self.spec.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return untranslate(text, self.mounts)
        lines = [line for _, line in read_log(self.log_file)][-TERMINATION_LINES:]
        return untranslate(
            "".join(lines).encode()[-TERMINATION_BYTES:].decode("utf-8", "replace"), self.mounts
        )

    def stop(self, grace: float) -> None:
        """SIGTERM the command's process group, SIGKILL what is left after ``grace`` seconds; it has then
        ended (waited for here, not reaped elsewhere, so its exit code is known)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.finish(self.exited() or 0)
        elif self.served:  # the agent unregisters the site
            self.served = False
            self.finish(0)
        self.end_reported.set()

    def status(self) -> Json:
        running = self.process is not None or self.served
        if running:
            state: Json = {"running": {"startedAt": self.started_at}}
        elif self.terminated is not None:
            state = {"terminated": self.terminated}
        else:
            reason, message = self.waiting or ("ContainerCreating", "")
            state = {"waiting": {"reason": reason, "message": message} if message else {"reason": reason}}
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"wpclone-agent://{self.directory.name}/{self.name}",
            "ready": self.ready,
            "started": running,
            "restartCount": 0,
            "state": state,
            "lastState": {},
        }


def read_log(path: Path) -> Iterator[tuple[str, str]]:
    """(timestamp, line with its newline) of each line of a container's log."""
    with contextlib.suppress(FileNotFoundError), path.open("r", encoding="utf-8", errors="replace") as log_in:
        for raw in log_in:
            stamp, _, line = raw.partition(" ")
            yield stamp, line


# -- the agent ---------------------------------------------------------------------------------------------


@dataclass
class PodRun:
    """What the agent holds for one pod bound to it."""

    uid: str
    namespace: str
    name: str
    directory: Path
    containers: dict[str, Container]
    started: str = field(default_factory=now)
    site: str | None = None  # the site host's site serving this pod
    site_url: str | None = None
    next_probe: float = 0.0
    deleting: bool = False
    final: Json | None = None  # {"phase": ..., "reason": ..., "message": ...} once the pod has ended
    sent: Json | None = None  # the last status written


class NodeAgent:
    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        state_dir: Path,
        *,
        name: str = NODE_NAME,
        toolbox_images: tuple[str, ...],
        wordpress_images: tuple[str, ...],
        stack: StackSettings | None = None,
    ) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.leases = kubernetes.client.CoordinationV1Api(api)
        self.state_dir = state_dir
        self.name = name
        self.toolbox_images = toolbox_images
        self.wordpress_images = wordpress_images
        self.stack = stack
        self.port = free_port()
        self.runs: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.next_lease = 0.0

    # -- API helpers ------------------------------------------------------------------------------------

    @staticmethod
    def read(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Json:
        """An API read as the server's JSON (camelCase), not the client's models."""
        response = call(*args, _preload_content=False, **kwargs)
        result: Json = json.loads(response.data)
        return result

    def read_or_none(self, call: Callable[..., Any], *args: Any) -> Json | None:
        try:
            return self.read(call, *args)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # -- the node ---------------------------------------------------------------------------------------

    def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        body = {"metadata": {"name": self.name, "labels": labels}, "spec": {}}
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_node(self.name, body, _content_type=MERGE_PATCH)
        self.heartbeat()
        log.info("node %s registered; kubelet port %s", self.name, self.port)

    def heartbeat(self) -> None:
        """The node's status (Ready, addresses, kubelet port) and its Lease, renewed."""
        stamp = now()
        resources = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        status = {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                "kubeletVersion": f"v{KUBE_VERSION}",
                "kubeProxyVersion": f"v{KUBE_VERSION}",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "wpclone-node-agent://1",
                "osImage": "local processes",
                "kernelVersion": os.uname().release,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "the wpclone node agent runs pods as local processes",
                    "lastHeartbeatTime": stamp[:19] + "Z",
                    "lastTransitionTime": stamp[:19] + "Z",
                }
            ],
        }
        self.core.patch_node_status(self.name, {"status": status}, _content_type=MERGE_PATCH)
        lease = {
            "metadata": {"name": self.name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": stamp},
        }
        try:
            self.leases.patch_namespaced_lease(self.name, "kube-node-lease", lease, _content_type=MERGE_PATCH)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.leases.create_namespaced_lease("kube-node-lease", lease)
        self.next_lease = time.monotonic() + LEASE_RENEW_S

    # -- volumes ----------------------------------------------------------------------------------------

    def provision(self) -> None:
        """A hostPath volume for each unbound claim; our released volumes deleted with their directories."""
        for claim in self.read(self.core.list_persistent_volume_claim_for_all_namespaces)["items"]:
            meta, spec = claim["metadata"], claim["spec"]
            if claim.get("status", {}).get("phase") != "Pending" or spec.get("volumeName"):
                continue
            if meta.get("deletionTimestamp"):
                continue
            directory = self.state_dir / "volumes" / f"{meta['namespace']}-{meta['name']}-{meta['uid'][:8]}"
            directory.mkdir(parents=True, exist_ok=True)
            volume: Json = {
                "metadata": {"name": f"pv-{meta['uid']}", "labels": {AGENT_LABEL: self.name}},
                "spec": {
                    "capacity": {
                        "storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
                    },
                    "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": str(directory), "type": "Directory"},
                    "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                },
            }
            if spec.get("storageClassName"):
                volume["spec"]["storageClassName"] = spec["storageClassName"]
            try:
                self.core.create_persistent_volume(volume)
                log.info("volume for claim %s/%s at %s", meta["namespace"], meta["name"], directory)
            except ApiException as exc:
                if exc.status != 409:  # 409: made already, the binder is on its way
                    log.error("no volume for claim %s/%s: %s", meta["namespace"], meta["name"], exc.body)
        selector = f"{AGENT_LABEL}={self.name}"
        for volume in self.read(self.core.list_persistent_volume, label_selector=selector)["items"]:
            if volume.get("status", {}).get("phase") == "Released":
                shutil.rmtree(volume["spec"]["hostPath"]["path"], ignore_errors=True)
                with contextlib.suppress(ApiException):
                    self.core.delete_persistent_volume(volume["metadata"]["name"])

    def volume_dirs(self, pod: Json, run: PodRun) -> dict[str, Path]:
        """Each of the pod's volumes as a local directory (ConfigError when one cannot be had yet)."""
        namespace = pod["metadata"]["namespace"]
        dirs: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            own = run.directory / "volumes" / name
            if "persistentVolumeClaim" in volume:
                claim_name = volume["persistentVolumeClaim"]["claimName"]
                claim = self.read_or_none(
                    self.core.read_namespaced_persistent_volume_claim, claim_name, namespace
                )
                bound = claim and claim["spec"].get("volumeName")
                if not bound:
                    raise ConfigError(f'persistentvolumeclaim "{claim_name}" is not bound')
                pv = self.read(self.core.read_persistent_volume, bound)
                if "hostPath" not in pv["spec"]:
                    raise ConfigError(f'volume "{bound}" is not a hostPath volume the agent can mount')
                dirs[name] = Path(pv["spec"]["hostPath"]["path"])
            elif "hostPath" in volume:
                dirs[name] = Path(volume["hostPath"]["path"])
            elif "emptyDir" in volume:
                own.mkdir(parents=True, exist_ok=True)
                dirs[name] = own
            elif "configMap" in volume or "secret" in volume:
                self.write_files(volume, namespace, own)
                dirs[name] = own
            else:
                raise ConfigError(f'volume "{name}" is of a kind the node agent does not mount')
        return dirs

    def write_files(self, volume: Json, namespace: str, directory: Path) -> None:
        """A ConfigMap's or Secret's keys as files (its ``items``, or every key)."""
        if "configMap" in volume:
            source, kind = volume["configMap"], "configmap"
            found = self.read_or_none(self.core.read_namespaced_config_map, source["name"], namespace)
            data = (found or {}).get("data") or {}
        else:
            source, kind = volume["secret"], "secret"
            found = self.read_or_none(self.core.read_namespaced_secret, source["secretName"], namespace)
            data = {k: base64.b64decode(v).decode() for k, v in ((found or {}).get("data") or {}).items()}
        if found is None:
            if source.get("optional"):
                data = {}
            else:
                raise ConfigError(f'{kind} "{source.get("name") or source.get("secretName")}" not found')
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        directory.mkdir(parents=True, exist_ok=True)
        for item in items:
            if item["key"] in data:
                target = directory / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data[item["key"]])

    # -- the containers' environment ----------------------------------------------------------------

    def env(self, pod: Json, container: Json) -> dict[str, str]:
        """The container's env with every reference resolved (ConfigError like a kubelet's)."""
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for var in container.get("env") or []:
            source = var.get("valueFrom")
            if source is None:
                env[var["name"]] = re.sub(
                    r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), var.get("value", "")
                )
            elif "fieldRef" in source:
                env[var["name"]] = field_value(pod, source["fieldRef"]["fieldPath"])
            else:
                if "secretKeyRef" in source:
                    ref, kind, read = source["secretKeyRef"], "secret", self.core.read_namespaced_secret
                else:
                    ref, kind, read = (
                        source["configMapKeyRef"],
                        "configmap",
                        self.core.read_namespaced_config_map,
                    )
                found = self.read_or_none(read, ref["name"], namespace)
                if found is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'{kind} "{ref["name"]}" not found')
                data = found.get("data") or {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(
                        f"couldn't find key {ref['key']} in {kind.capitalize()} {namespace}/{ref['name']}"
                    )
                value = data[ref["key"]]
                env[var["name"]] = base64.b64decode(value).decode() if kind == "secret" else value
        return env

    # -- pods -------------------------------------------------------------------------------------------

    def sync_pods(self) -> None:
        selector = f"spec.nodeName={self.name}"
        pods = self.read(self.core.list_pod_for_all_namespaces, field_selector=selector)["items"]
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            with self.lock:
                run = self.runs.get(uid)
            if run is None:
                if pod["metadata"].get("deletionTimestamp"):
                    self.remove(pod)  # nothing of it runs here
                    continue
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                run = self.admit(pod)
            try:
                self.sync(pod, run)
            except Exception:  # one pod's trouble must not stop the node: say it and go on
                log.exception("pod %s/%s could not be synced", run.namespace, run.name)
        with self.lock:
            gone = [run for uid, run in self.runs.items() if uid not in seen and not run.deleting]
        for run in gone:  # deleted at once (grace 0) or the node was changed under it
            self.stop_run(run, 0)
            with self.lock:
                self.runs.pop(run.uid, None)

    def admit(self, pod: Json) -> PodRun:
        meta = pod["metadata"]
        directory = self.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        cut = (meta.get("annotations") or {}).get(FOLLOW_CUT_ANNOTATION)
        containers = {
            c["name"]: Container(c["name"], c, directory, follow_cut=float(cut) if cut else None)
            for c in pod["spec"]["containers"]
        }
        run = PodRun(meta["uid"], meta["namespace"], meta["name"], directory, containers)
        if pod.get("status", {}).get("phase") == "Running":  # a previous agent's: its processes are gone
            run.final = {
                "phase": "Failed",
                "reason": "NodeAgentRestarted",
                "message": "The node agent restarted.",
            }
        elif pod["spec"].get("initContainers"):
            run.final = {
                "phase": "Failed",
                "reason": "Unsupported",
                "message": "The node agent runs no init containers.",
            }
        with self.lock:
            self.runs[run.uid] = run
        return run

    def sync(self, pod: Json, run: PodRun) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            if not run.deleting:
                run.deleting = True
                grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
                threading.Thread(target=self.finish_delete, args=(pod, run, grace), daemon=True).start()
            return
        if run.final is None:
            deadline = pod["spec"].get("activeDeadlineSeconds")
            if deadline and time.time() - parse_time(run.started).timestamp() > deadline:
                self.stop_run(run, 0)
                message = "Pod was active on the node longer than the specified deadline"
                run.final = {"phase": "Failed", "reason": "DeadlineExceeded", "message": message}
            else:
                for container in run.containers.values():
                    self.sync_container(pod, run, container)
                run.final = self.ended(pod, run)
        self.report(pod, run)

    def sync_container(self, pod: Json, run: PodRun, container: Container) -> None:
        image = container.spec.get("image", "")
        if image not in (*self.toolbox_images, *self.wordpress_images):
            reason = (
                "ImagePullBackOff"
                if container.waiting and container.waiting[0] == "ErrImagePull"
                else "ErrImagePull"
            )
            known = ", ".join((*self.toolbox_images, *self.wordpress_images))
            container.waiting = (reason, f'the node agent cannot pull image "{image}": it runs only {known}')
            return
        if image in self.wordpress_images:
            self.sync_site(pod, run, container)
            return
        code = container.exited()
        if code is not None:
            container.finish(code)
        if container.process is None and container.terminated is None:
            self.start_container(pod, run, container)

    def container_config(
        self, pod: Json, run: PodRun, container: Container
    ) -> tuple[list[tuple[str, Path]], dict[str, str]] | None:
        """The container's mounts and env, or None with the container waiting on why they cannot be had."""
        try:
            return self.mounts(pod, run, container.spec), self.env(pod, container.spec)
        except ConfigError as exc:
            container.waiting = ("CreateContainerConfigError", str(exc))
            return None

    def start_container(self, pod: Json, run: PodRun, container: Container) -> None:
        config = self.container_config(pod, run, container)
        if config is None:
            return
        mounts, env = config
        argv = [
            translate(arg, mounts)
            for arg in [*container.spec.get("command", []), *container.spec.get("args", [])]
        ]
        if not argv:
            container.waiting = (
                "CreateContainerError",
                "the container has no command and the agent knows no image entry point",
            )
            return
        env = {key: translate(value, mounts) for key, value in env.items()}
        env.setdefault("PATH", f"{Path(sys.executable).parent}{os.pathsep}/usr/local/bin:/usr/bin:/bin")
        env.setdefault("HOSTNAME", run.name)
        env["WPCLONE_TERMINATION_LOG"] = str(container.termination_file)  # for terminationMessagePath
        env["PYTHONPATH"] = str(PLUGINS_DIR)
        workdir = Path(translate(container.spec.get("workingDir", ""), mounts) or run.directory)
        container.mounts = mounts
        try:
            container.start(argv, env, workdir)
        except OSError as exc:
            container.waiting = ("RunContainerError", f"cannot run {argv[0]}: {exc.strerror}")
            return
        container.ready = True  # no probe: ready when running
        log.info("pod %s/%s container %s started: %s", run.namespace, run.name, container.name, argv[0])

    def mounts(self, pod: Json, run: PodRun, spec: Json) -> list[tuple[str, Path]]:
        """(mount path, local path) of the container's mounts, longest mount path first."""
        dirs = self.volume_dirs(pod, run)
        mounts = []
        for mount in spec.get("volumeMounts") or []:
            local = dirs[mount["name"]]
            if mount.get("subPath"):
                local = local / mount["subPath"]
                if not local.exists():
                    local.mkdir(parents=True)  # as a kubelet makes a missing subPath
            mounts.append((mount["mountPath"].rstrip("/") or "/", local))
        return sorted(mounts, key=lambda m: len(m[0]), reverse=True)

    def ended(self, pod: Json, run: PodRun) -> Json | None:
        """The pod's final phase once every container has ended (none is restarted: module docstring)."""
        statuses = [c.terminated for c in run.containers.values()]
        if any(s is None for s in statuses) or pod["spec"].get("restartPolicy", "Always") == "Always":
            return None
        return {"phase": "Failed" if any(s and s["exitCode"] != 0 for s in statuses) else "Succeeded"}

    def report(self, pod: Json, run: PodRun) -> None:
        """Write the pod's status when it changed."""
        containers = [c.status() for c in run.containers.values()]
        ready = all(c["ready"] for c in containers)
        if run.final is not None:
            phase = run.final["phase"]
        elif any(c["state"].get("running") or c["state"].get("terminated") for c in containers):
            phase = "Running"
        else:
            phase = "Pending"
        stamp = pod["status"].get("startTime") or run.started[:19] + "Z"

        def condition(kind: str, true: bool) -> Json:
            return {
                "type": kind,
                "status": "True" if true else "False",
                "lastProbeTime": None,
                "lastTransitionTime": stamp,
            }

        status: Json = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": stamp,
            "conditions": [
                condition("Initialized", True),
                condition("Ready", ready and phase == "Running"),
                condition("ContainersReady", ready and phase == "Running"),
                condition("PodScheduled", True),
            ],
            "containerStatuses": containers,
        }
        for key in ("reason", "message"):
            status[key] = (run.final or {}).get(key)
        if status == run.sent:
            return
        try:
            self.core.patch_namespaced_pod_status(
                run.name, run.namespace, {"status": status}, _content_type=MERGE_PATCH
            )
            run.sent = status
            for container in run.containers.values():
                if container.terminated is not None:
                    container.end_reported.set()
        except ApiException as exc:
            if exc.status != 404:
                raise

    def finish_delete(self, pod: Json, run: PodRun, grace: float) -> None:
        """A graceful delete: stop the processes within the grace period, then remove the pod for good."""
        self.stop_run(run, grace)
        self.remove(pod)
        with self.lock:
            self.runs.pop(run.uid, None)

    def stop_run(self, run: PodRun, grace: float) -> None:
        for container in run.containers.values():
            container.stop(max(grace, 0.5))
        if run.site is not None and self.stack is not None:
            unregister_site(self.stack, run.site)
            run.site = None

    def remove(self, pod: Json) -> None:
        meta = pod["metadata"]
        options = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        with contextlib.suppress(ApiException):  # gone already, or another pod of that name now
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=options)

    # -- the site ------------------------------------------------------------------------------------

    def sync_site(self, pod: Json, run: PodRun, container: Container) -> None:
        """Serve a WordPress pod with the local site host (module docstring); Ready when it answers."""
        if not container.served:
            config = self.container_config(pod, run, container)
            if config is None:
                return
            try:
                run.site, run.site_url = self.serve_site(pod, run, *config)
            except (ValueError, OSError) as exc:  # the site host refused the site's settings
                container.waiting = ("CreateContainerError", str(exc))
                return
            container.started_at, container.waiting, container.served = now(), None, True
        if run.site_url is None:
            container.ready = True
        elif time.monotonic() >= run.next_probe:
            run.next_probe = time.monotonic() + 1.0
            container.ready = probe(run.site_url)

    def serve_site(
        self, pod: Json, run: PodRun, mounts: list[tuple[str, Path]], env: dict[str, str]
    ) -> tuple[str | None, str | None]:
        """Register the pod as a site of the site host; (site name, URL), or (None, None) when unserved."""
        name = deployment_name(pod)
        if self.stack is None or not SITE_NAME_RE.fullmatch(name):
            why = (
                "no site host was given (--stack-state-dir)"
                if self.stack is None
                else f"{name!r} is no site name"
            )
            log.warning("pod %s/%s is marked Ready without being served: %s", run.namespace, run.name, why)
            return None, None
        content = dict(mounts).get(SITE_CONTENT_MOUNT)
        if content is None:
            log.warning(
                "pod %s/%s mounts nothing at %s; serving an empty wp-content",
                run.namespace,
                run.name,
                SITE_CONTENT_MOUNT,
            )
            content = run.directory / "wp-content"
        content.mkdir(parents=True, exist_ok=True)
        for path, local in mounts:  # files mounted inside wp-content (the must-use plugin) are copied in
            if path.startswith(SITE_CONTENT_MOUNT + "/") and local.is_file():
                target = content / path.removeprefix(SITE_CONTENT_MOUNT + "/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(local, target)
        password = run.directory / "db-password"
        write_private(password, env.get("WORDPRESS_DB_PASSWORD", ""))
        host, _, port = env.get("WORDPRESS_DB_HOST", "127.0.0.1").partition(":")
        constants = php_constants(env.get("WORDPRESS_CONFIG_EXTRA", ""))
        for own in ("WP_HOME", "WP_SITEURL"):  # the site host's URL instead (module docstring)
            constants.pop(own, None)
        register_site(
            self.stack,
            SiteConfig(
                name=name,
                url=self.stack.site_url(name),
                db_host=host,
                db_port=int(port or 3306),
                db_name=env.get("WORDPRESS_DB_NAME", "wordpress"),
                db_user=env.get("WORDPRESS_DB_USER", "wordpress"),
                db_password_file=password,
                table_prefix=env.get("WORDPRESS_TABLE_PREFIX", "wp_"),
                constants=constants,
                content_dir=content,
            ),
            default_content=False,
        )
        return name, self.stack.site_url(name) + "/"

    # -- the loop ------------------------------------------------------------------------------------

    def run_forever(self) -> None:
        self.register()
        server = self.serve_logs()
        try:
            while not self.stopping.is_set():
                if time.monotonic() >= self.next_lease:
                    self.heartbeat()
                self.provision()
                self.sync_pods()
                self.stopping.wait(TICK_S)
        finally:
            server.shutdown()
            with self.lock:
                runs = list(self.runs.values())
            for run in runs:
                self.stop_run(run, 5)

    def serve_logs(self) -> ThreadingHTTPServer:
        """The kubelet's log endpoint over TLS on ``self.port`` (a self-signed certificate: the API server
        does not check a kubelet's unless told to)."""
        cert, key = self.state_dir / "kubelet.crt", self.state_dir / "kubelet.key"
        if not cert.exists():
            self_signed(cert, key, self.name, ["127.0.0.1", "localhost", self.name])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        agent = self

        class Handler(LogHandler):
            node = agent

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def container(self, namespace: str, pod: str, name: str) -> Container | None:
        with self.lock:
            for run in self.runs.values():
                if run.namespace == namespace and run.name == pod:
                    return run.containers.get(name)
        return None


class LogHandler(BaseHTTPRequestHandler):
    """``GET /containerLogs/<namespace>/<pod>/<container>`` as a kubelet answers it."""

    node: NodeAgent

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        segments = parts.path.strip("/").split("/")
        found = len(segments) == 4 and segments[0] == "containerLogs"
        container = self.node.container(*segments[1:4]) if found else None
        if container is None:
            self.send_error(404, "no such container on this node")
            return
        if not container.log_file.exists():
            self.send_error(400, f'container "{container.name}" is waiting to start')
            return
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.stream(container, query)

    def stream(self, container: Container, query: dict[str, str]) -> None:
        """The log's lines as asked; with ``follow``, then each new line until the container has ended."""
        since = None
        if "sinceTime" in query:
            since = parse_time(query["sinceTime"])
        elif "sinceSeconds" in query:
            since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
                seconds=int(query["sinceSeconds"])
            )
        limit = int(query["limitBytes"]) if "limitBytes" in query else None
        follow, sent = query.get("follow") == "true", 0
        cut_at = time.monotonic() + container.follow_cut if follow and container.follow_cut else None
        with container.log_file.open("rb") as log_in:
            lines = log_in.read().splitlines(keepends=True)
            if "tailLines" in query:
                lines = lines[len(lines) - int(query["tailLines"]) :] if int(query["tailLines"]) else []
            while True:
                for raw in lines:
                    stamp, _, line = raw.decode("utf-8", "replace").partition(" ")
                    if since is not None and parse_time(stamp) < since:
                        continue
                    data = ((stamp + " " if query.get("timestamps") == "true" else "") + line).encode()
                    if limit is not None:
                        data = data[: limit - sent]
                    self.wfile.write(data)
                    sent += len(data)
                    if limit is not None and sent >= limit:
                        return
                self.wfile.flush()
                if not follow or (cut_at is not None and time.monotonic() > cut_at):
                    return  # a cut follow: the connection closes mid-stream, as a broken watch's does
                ended = container.end_reported.is_set()
                lines = log_in.readlines()  # the reader writes whole lines
                if not lines:
                    if ended:
                        return
                    time.sleep(0.1)


# -- small pure helpers ------------------------------------------------------------------------------------


def translate(value: str, mounts: list[tuple[str, Path]]) -> str:
    """``value`` with each mount path in it (a whole path, not part of a longer name, or a ``file://`` URL's
    path) replaced by its local directory, in one pass, the longest mount path first."""
    if not mounts:
        return value
    local = {path: str(directory) for path, directory in mounts}
    paths = "|".join(re.escape(path) for path, _ in mounts)
    return re.sub(rf"(?:(?<=file://)|(?<![\w./-]))({paths})(?=/|$|[^\w.-])", lambda m: local[m[1]], value)


def untranslate(text: str, mounts: list[tuple[str, Path]]) -> str:
    """``text`` with each mount's local directory written back as its mount path (what the container
    reports, e.g. a backup's ``file:///backups/...`` URL, names the paths it sees in a real pod)."""
    for path, directory in sorted(mounts, key=lambda m: len(str(m[1])), reverse=True):
        text = text.replace(str(directory), path)
    return text


def field_value(pod: Json, path: str) -> str:
    """A ``fieldRef``: metadata.name/namespace/uid, a label or annotation, spec.nodeName, the pod's IP."""
    meta = pod["metadata"]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match[1]) or {}).get(match[2], ""))
    values = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
    }
    if path not in values:
        raise ConfigError(f"unsupported fieldRef {path}")
    return str(values[path])


def deployment_name(pod: Json) -> str:
    """The Deployment a pod belongs to (its ReplicaSet's name without the template hash), else its name."""
    meta = pod["metadata"]
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    generate = meta.get("generateName", "")
    if template_hash and generate.endswith(f"-{template_hash}-"):
        return str(generate[: -len(template_hash) - 2])
    return str(meta["name"])


PHP_DEFINE_RE = re.compile(r"define\(\s*'([A-Z][A-Z0-9_]*)'\s*,\s*('(?:[^'\\]|\\.)*'|true|false|-?\d+)\s*\);")


def php_constants(php: str) -> dict[str, str | int | bool]:
    """The ``define('NAME', literal);`` lines of ``WORDPRESS_CONFIG_EXTRA`` as constants."""
    constants: dict[str, str | int | bool] = {}
    for name, literal in PHP_DEFINE_RE.findall(php):
        if literal in ("true", "false"):
            constants[name] = literal == "true"
        elif literal.startswith("'"):
            constants[name] = re.sub(r"\\(.)", r"\1", literal[1:-1])
        else:
            constants[name] = int(literal)
    return constants


def probe(url: str) -> bool:
    """A readiness probe: the URL answers with a status below 400 (redirects not followed)."""
    try:
        with http_opener(follow_redirects=False).open(url, timeout=5) as response:
            return int(response.status) < 400
    except urllib.error.HTTPError as exc:
        return exc.code < 400
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    settings = KubernetesSettings.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m tests.kube.node_agent", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--kubeconfig", type=Path, required=True, help="the cluster's admin kubeconfig")
    parser.add_argument(
        "--state-dir", type=Path, help="pods, logs and volumes (default: <kubeconfig dir>/node)"
    )
    parser.add_argument("--name", default=NODE_NAME, help=f"the node's name (default {NODE_NAME})")
    parser.add_argument(
        "--toolbox-image",
        action="append",
        help=f"an image run from this checkout (default {settings.toolbox_image})",
    )
    parser.add_argument(
        "--wordpress-image",
        action="append",
        help=f"an image served by the site host (default {settings.wordpress_image})",
    )
    parser.add_argument(
        "--stack-state-dir", type=Path, help="the local stack whose site host serves WordPress pods"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir = (args.state_dir or args.kubeconfig.parent / "node").resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    stack = None
    if args.stack_state_dir:
        os.environ["WPCLONE_STATE_DIR"] = str(args.stack_state_dir)
        stack = StackSettings.load()
    agent = NodeAgent(
        kubernetes.config.new_client_from_config(config_file=str(args.kubeconfig)),
        state_dir,
        name=args.name,
        toolbox_images=tuple(args.toolbox_image or [settings.toolbox_image]),
        wordpress_images=tuple(args.wordpress_image or [settings.wordpress_image]),
        stack=stack,
    )
    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stopping.set())
    agent.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
