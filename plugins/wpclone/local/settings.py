"""Where the local stack keeps its state and which ports it uses.

Everything lives under one state directory (``WPCLONE_STATE_DIR``, default ``<repo>/.local``). Ports come
from ``WPCLONE_DB_PORT`` / ``WPCLONE_HTTP_PORT`` / ``WPCLONE_AIRFLOW_PORT``; when unset, a free port is
picked on first use and remembered in ``ports.json`` so the stack keeps its addresses across restarts.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from wpclone.settings import STACK_PORTS, stack_port
from wpclone.settings import state_dir as stack_state_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class StackSettings:
    state_dir: Path
    db_port: int
    http_port: int
    airflow_port: int = 8080

    @classmethod
    def load(cls) -> StackSettings:
        state_dir = stack_state_dir()
        state_dir.mkdir(parents=True, exist_ok=True)
        ports_file = state_dir / "ports.json"
        saved: dict[str, int] = json.loads(ports_file.read_text()) if ports_file.exists() else {}
        ports = {}
        for key in STACK_PORTS:
            ports[key] = stack_port(key) or saved.get(key) or free_port()
        if ports != saved:
            ports_file.write_text(json.dumps(ports))
        return cls(state_dir, ports["db"], ports["http"], ports["airflow"])

    # Layout of the state directory.
    @property
    def mariadb_dir(self) -> Path:
        return self.state_dir / "mariadb"

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def sites_dir(self) -> Path:
        """One directory per site: its config (``site.json``) and its ``wp-content``."""
        return self.state_dir / "sites"

    @property
    def sitehost_dir(self) -> Path:
        return self.state_dir / "sitehost"

    def site_url(self, site: str) -> str:
        return f"http://{site}.localhost:{self.http_port}"

    def secret(self, name: str) -> str:
        """Read (creating on first use) a random secret kept in a file only the owner can read."""
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.secrets_dir / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(24))
        return path.read_text().strip()
