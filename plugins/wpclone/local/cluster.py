"""A local Kubernetes control plane for the cluster test tier: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler on 127.0.0.1, started and stopped like the rest of the local stack (no systemd).

The Kubernetes binaries are version 1.20.2, built once per machine from Debian's source package by
``scripts/kube-build.sh`` into ``WPCLONE_KUBE_DIR`` (default ``$XDG_CACHE_HOME/wpclone/kubernetes-1.20.2``,
binaries in its ``bin/``); etcd is Debian's ``etcd-server``. Everything else lives under
``<state dir>/cluster/``: the ports (``ports.json``: chosen free on first start, then kept), etcd's data, the
keys and certificates (``pki/``), the static token file, one kubeconfig per client, and a pidfile and a log
per process. Each process leads its own process group, so :meth:`Cluster.stop` leaves nothing behind.

What runs:

- etcd, client and peer ports on 127.0.0.1 only;
- kube-apiserver: HTTPS only (no insecure port) with a self-signed serving certificate for 127.0.0.1,
  ``localhost`` and the in-cluster names; static tokens (an admin in ``system:masters``, the controller
  manager, the scheduler); ``--authorization-mode=Node,RBAC``; a service-account signing key; no endpoint
  reconciler (nothing else can reach this server, so the ``kubernetes`` Service has no endpoints);
- kube-controller-manager with one service account per controller (RBAC's bootstrap roles), the
  service-account token controller, no leader election, no serving ports;
- kube-scheduler, no leader election, no serving ports.

There is no node: pods stay ``Pending`` until something plays the kubelet (the tests' node agent,
``tests/kube/node_agent.py``), and nothing provisions volumes, routes Services or enforces NetworkPolicy.
``admin.kubeconfig`` points ``kubectl`` (any version that talks to 1.20) or the Python client at it.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import logging
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wpclone import settings
from wpclone.local.procs import kill_group, pid_from_file
from wpclone.local.settings import StackSettings, free_port
from wpclone.local.sitehost import _write_private as write_private  # text, mode 0600, atomic

log = logging.getLogger(__name__)

KUBE_VERSION = "1.20.2"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")  # in start order
# A node started against this cluster (the tests' node agent) records its pid as <cluster dir>/node.pid:
# stop() stops it first.
NODE = "node"
SERVICE_CIDR = "10.0.0.0/24"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# The in-cluster names of the API server, for its serving certificate.
API_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
# Static token users: name -> groups. The two components' names are the ones RBAC's bootstrap roles bind.
TOKEN_USERS = {
    "admin": ("system:masters",),
    "system:kube-controller-manager": (),
    "system:kube-scheduler": (),
}


def kube_dir() -> Path:
    """Where ``scripts/kube-build.sh`` keeps what it built (``WPCLONE_KUBE_DIR`` or the user's cache)."""
    return settings.kube_dir(KUBE_VERSION)


def missing_binaries() -> list[str]:
    """The control plane's programs that are not there: the built ones, and Debian's etcd."""
    missing = [name for name in BINARIES if not os.access(kube_dir() / "bin" / name, os.X_OK)]
    if shutil.which("etcd") is None:
        missing.append("etcd")
    return missing


def self_signed(cert: Path, key: Path, common_name: str, hosts: Sequence[str], days: int = 3650) -> None:
    """Write a self-signed serving certificate for ``hosts`` (names or IP addresses) and its key (0600)."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(private, hashes.SHA256())
    )
    write_private(
        key,
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def kubeconfig_text(server: str, ca_pem: bytes, user: str, token: str) -> str:
    """A kubeconfig (JSON is valid YAML) for ``user`` with a bearer token, trusting ``ca_pem``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "wpclone-local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "wpclone-local", "context": {"cluster": "wpclone-local", "user": user}}],
        "current-context": "wpclone-local",
    }
    return json.dumps(config, indent=2) + "\n"


class Cluster:
    """Start/stop the control plane under ``<state dir>/cluster``; every method is idempotent."""

    def __init__(self, settings: StackSettings) -> None:
        self.base = settings.state_dir / "cluster"
        self.pki = self.base / "pki"
        self.etcd_dir = self.base / "etcd"
        self.kubeconfig = self.base / "admin.kubeconfig"
        self.bin = kube_dir() / "bin"
        self.ports = self._ports()
        self.server = f"https://127.0.0.1:{self.ports['apiserver']}"

    # -- state -------------------------------------------------------------------------------------------

    def _ports(self) -> dict[str, int]:
        """The ports: those of the last start, else free ones (which :meth:`start` remembers)."""
        path = self.base / "ports.json"
        try:
            saved: dict[str, int] = json.loads(path.read_text())
        except FileNotFoundError:
            saved = {}
        return {key: saved.get(key) or free_port() for key in ("etcd", "etcd_peer", "apiserver")}

    def token(self, user: str = "admin") -> str:
        """The static bearer token of one of :data:`TOKEN_USERS` (a secret: never log it)."""
        return self._tokens()[user]

    def _tokens(self) -> dict[str, str]:
        path = self.pki / "tokens.json"
        try:
            tokens: dict[str, str] = json.loads(path.read_text())
        except FileNotFoundError:
            tokens = {}
        if set(tokens) != set(TOKEN_USERS):
            tokens = {user: tokens.get(user) or secrets.token_urlsafe(32) for user in TOKEN_USERS}
            self.pki.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(path, json.dumps(tokens))
        return tokens

    @property
    def ca_file(self) -> Path:
        """The API server's self-signed certificate: what a client trusts."""
        return self.pki / "apiserver.crt"

    def _prepare(self) -> None:
        """Keys, certificate, token file and kubeconfigs (made once, kept across restarts)."""
        self.pki.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.ca_file.exists():
            hosts = ["127.0.0.1", "10.0.0.1", *API_NAMES, "kubernetes.default.svc.cluster.local"]
            self_signed(self.ca_file, self.pki / "apiserver.key", "kube-apiserver", hosts)
        sa_key = self.pki / "sa.key"
        if not sa_key.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            write_private(sa_key, pem.decode())
        tokens = self._tokens()
        lines = [f'{tokens[user]},{user},{user},"{",".join(groups)}"' for user, groups in TOKEN_USERS.items()]
        write_private(self.pki / "tokens.csv", "\n".join(lines) + "\n")
        ca_pem = self.ca_file.read_bytes()
        for user, path in (
            ("admin", self.kubeconfig),
            ("system:kube-controller-manager", self.base / "controller-manager.kubeconfig"),
            ("system:kube-scheduler", self.base / "scheduler.kubeconfig"),
        ):
            write_private(path, kubeconfig_text(self.server, ca_pem, user, tokens[user]))

    # -- processes ---------------------------------------------------------------------------------------

    def _argv(self, name: str) -> list[str]:
        pki, ports = self.pki, self.ports
        if name == "etcd":
            peer = f"http://127.0.0.1:{ports['etcd_peer']}"
            client = f"http://127.0.0.1:{ports['etcd']}"
            return [
                "etcd",
                "--name=wpclone",
                f"--data-dir={self.etcd_dir}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=wpclone={peer}",
                "--log-level=warn",
            ]
        if name == "kube-apiserver":
            return [
                str(self.bin / name),
                f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={self.ca_file}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={pki / 'sa.key'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "--v=1",
            ]
        common = [
            str(self.bin / name),
            "--leader-elect=false",
            "--port=0",
            "--secure-port=0",
            "--profiling=false",
            "--v=1",
        ]
        if name == "kube-controller-manager":
            return [
                *common,
                f"--kubeconfig={self.base / 'controller-manager.kubeconfig'}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ]
        return [*common, f"--kubeconfig={self.base / 'scheduler.kubeconfig'}"]

    def pidfile(self, name: str) -> Path:
        return self.base / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.base / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The process's pid if it runs (its command line names this state dir: a reused pid is not ours)."""
        return pid_from_file(self.pidfile(name), str(self.base).encode())

    def is_running(self) -> bool:
        return all(self.pid(name) for name in PROCESSES) and self._api_ready()

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        with open(os.devnull, "rb") as devnull, open(self.logfile(name), "ab") as logf:
            process = subprocess.Popen(
                self._argv(name),
                cwd=self.base,
                stdin=devnull,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills it and nothing else
            )
        self.pidfile(name).write_text(f"{process.pid}\n")
        return process

    def _wait(self, name: str, process: subprocess.Popen[bytes], ready: str) -> None:
        """Until the check named ``ready`` passes; RuntimeError naming the log if the process dies first."""
        check = {"etcd": self._etcd_ready, "api": self._api_ready, "controllers": self._controllers_ready}
        deadline = time.monotonic() + START_TIMEOUT_S
        while not check[ready]():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with status {process.returncode} at start; see {self.logfile(name)}."
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} did not become ready within {START_TIMEOUT_S:.0f} s; see {self.logfile(name)}."
                )
            time.sleep(0.1)

    def start(self) -> None:
        """Start whatever does not run yet, in order, each once the one before answers."""
        if self.is_running():
            log.info("cluster already running at %s", self.server)
            return
        missing = missing_binaries()
        if missing:
            raise RuntimeError(
                f"the local cluster needs {', '.join(missing)}, which are not built or installed; run "
                "make kube-build (scripts/setup.sh --cluster: 7-8 minutes once per machine)."
            )
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "ports.json").write_text(json.dumps(self.ports))
        self._prepare()
        started = time.monotonic()
        steps = (
            ("etcd", "etcd"),
            ("kube-apiserver", "api"),
            ("kube-controller-manager", "controllers"),
            ("kube-scheduler", ""),
        )
        try:
            for name, ready in steps:
                if self.pid(name) is not None:
                    continue
                process = self._spawn(name)
                if ready:
                    self._wait(name, process, ready)
                elif process.poll() is not None:
                    raise RuntimeError(f"{name} exited at start; see {self.logfile(name)}.")
        except BaseException:
            self.stop()
            raise
        log.info(
            "cluster up at %s in %.1f s (kubeconfig %s)",
            self.server,
            time.monotonic() - started,
            self.kubeconfig,
        )

    def stop(self) -> None:
        """Stop every process (a node, then the reverse of the start order); the data is kept."""
        for name in (NODE, *reversed(PROCESSES)):
            pid = self.pid(name)
            if pid is not None:
                log.info("stopping %s (pid %s)", name, pid)
                kill_group(pid, STOP_TIMEOUT_S)
            self.pidfile(name).unlink(missing_ok=True)

    def reset(self) -> None:
        """Stop, and forget every object (etcd's data); keys, tokens and ports stay."""
        self.stop()
        shutil.rmtree(self.etcd_dir, ignore_errors=True)

    def rss_bytes(self) -> int:
        """Resident memory of the control plane's processes (for the README's figures)."""
        total = 0
        for name in PROCESSES:
            pid = self.pid(name)
            if pid is None:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    # -- readiness ---------------------------------------------------------------------------------------

    def _etcd_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['etcd']}/health", timeout=2) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def get(self, path: str) -> bytes | None:
        """``GET`` an API path as admin: the body, or None when the server does not answer 200."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.token()}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return bytes(response.read())
        except (OSError, urllib.error.HTTPError):
            return None

    def _api_ready(self) -> bool:
        return self.get("/readyz") == b"ok"

    def _controllers_ready(self) -> bool:
        """The service-account controllers made the ``default`` account and its token: they run, with RBAC."""
        body = self.get("/api/v1/namespaces/default/serviceaccounts/default")
        return body is not None and bool(json.loads(body).get("secrets"))
