"""A project-local MariaDB server: own data dir, socket and TCP port; no systemd.

It plays the role of the shared MySQL server (RDS in production). Two accounts are provisioned on start,
each password a local secret file: the admin (provisioning) login ``wpclone_admin``, which may create
databases and users, and the registry login ``wpclone_registry``, which may only read and write the rows of
the control schema and of the clones' databases (wpclone.mysql_admin.MySqlAdmin.grant_registry_login): the
local Airflow's connections ``wpclone_mysql`` and ``wpclone_registry`` (wpclone.airflow.services).

TLS is available as on a managed server: on first start a CA and a server certificate (for ``127.0.0.1``
and ``localhost``) are made with ``openssl`` under ``<state dir>/mariadb/tls`` and named in the server's
configuration; :attr:`LocalMariaDB.tls` is what a client verifying it uses (the tests' TLS logins,
docs/database-tls.md). Nothing requires it unless an account says ``REQUIRE SSL``. A running server whose
configuration is older than this module's is restarted with the new one.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from wpclone.db import DbEndpoint, DbTls, TlsMode
from wpclone.local.procs import kill_group
from wpclone.local.settings import StackSettings
from wpclone.mysql_admin import MySqlAdmin
from wpclone.settings import control_schema

log = logging.getLogger(__name__)

ADMIN_USER = "wpclone_admin"
REGISTRY_USER = "wpclone_registry"
# Clients of the local server connect over TCP from loopback: every account we create is user@127.0.0.1.
LOCAL_USER_HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0

MY_CNF = """\
[mysqld]
user = {user}
datadir = {datadir}
socket = {socket}
pid-file = {pidfile}
log-error = {logfile}
port = {port}
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_unicode_ci
max_connections = 500
max_allowed_packet = 256M
innodb_buffer_pool_size = 512M
innodb_log_file_size = 256M
innodb_flush_log_at_trx_commit = 2
innodb_doublewrite = 0
skip-log-bin
ssl_ca = {tls_dir}/ca.pem
ssl_cert = {tls_dir}/server-cert.pem
ssl_key = {tls_dir}/server-key.pem
"""
CERT_DAYS = 3650
SERVER_NAMES = "IP:127.0.0.1,DNS:localhost"


class LocalMariaDB:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.base = settings.mariadb_dir
        self.datadir = self.base / "data"
        self.socket = self.base / "mysqld.sock"
        self.pidfile = self.base / "mysqld.pid"
        self.logfile = self.base / "mysqld.log"
        self.cnf = self.base / "my.cnf"
        self.tls_dir = self.base / "tls"

    @property
    def admin(self) -> DbEndpoint:
        return DbEndpoint("127.0.0.1", self.settings.db_port, ADMIN_USER, self.settings.secret("mysql-admin"))

    @property
    def registry(self) -> DbEndpoint:
        """The registry login: rows of the control schema and of the clones' databases, nothing else."""
        password = self.settings.secret("mysql-registry")
        return DbEndpoint("127.0.0.1", self.settings.db_port, REGISTRY_USER, password)

    @property
    def tls(self) -> DbTls:
        """TLS to this server, its certificate verified against the stack's CA."""
        return DbTls(TlsMode.VERIFY_IDENTITY, ca=str(self.tls_dir / "ca.pem"))

    def ensure_certificates(self) -> None:
        """The CA and the server's certificate and key under :attr:`tls_dir`, made once with openssl."""
        names = ("ca.pem", "server-cert.pem", "server-key.pem")
        if all((self.tls_dir / name).is_file() for name in names):
            return
        self.base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="tls-", dir=self.base))
        try:
            days = str(CERT_DAYS)
            _openssl(
                work,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                days,
                "-subj",
                "/CN=wpclone local CA",
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
            )
            _openssl(
                work,
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-addext",
                f"subjectAltName={SERVER_NAMES}",
                "-keyout",
                "server-key.pem",
                "-out",
                "server.csr",
            )
            _openssl(
                work,
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                days,
                "-copy_extensions",
                "copyall",
                "-out",
                "server-cert.pem",
            )
            for path in work.iterdir():
                path.chmod(0o600 if path.name.endswith("key.pem") else 0o644)
            shutil.rmtree(self.tls_dir, ignore_errors=True)
            work.rename(self.tls_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("made the local MariaDB's CA and server certificate in %s", self.tls_dir)

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None and self._ping()

    def _ping(self) -> bool:
        result = subprocess.run(
            ["mariadb-admin", f"--socket={self.socket}", "--user=root", "--connect-timeout=2", "ping"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _config(self) -> str:
        return MY_CNF.format(
            user=getpass.getuser(),
            datadir=self.datadir,
            socket=self.socket,
            pidfile=self.pidfile,
            logfile=self.logfile,
            port=self.settings.db_port,
            tls_dir=self.tls_dir,
        )

    def start(self) -> None:
        """Start the server (initialising the data dir the first time, making its certificates) and
        provision the admin and registry accounts; a running server with an older configuration is
        restarted."""
        self.ensure_certificates()
        if self.is_running():
            if self.cnf.is_file() and self.cnf.read_text() == self._config():
                self._provision_admin()
                return
            log.info("restarting MariaDB: its configuration changed")
            self.stop()
        self.base.mkdir(parents=True, exist_ok=True)
        self.cnf.write_text(self._config())
        if not (self.datadir / "mysql").is_dir():
            log.info("initialising MariaDB data dir %s", self.datadir)
            subprocess.run(
                [
                    "mariadb-install-db",
                    f"--defaults-file={self.cnf}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                check=True,
                capture_output=True,
            )
        with open(os.devnull, "rb") as devnull:
            subprocess.Popen(
                ["mariadbd", f"--defaults-file={self.cnf}"],
                stdin=devnull,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # survives the command that started it; no SIGINT from the tty
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self.pid() and self._ping()):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"MariaDB did not start within {START_TIMEOUT_S:.0f} s; see {self.logfile}."
                )
            time.sleep(0.1)
        self._provision_admin()
        log.info("MariaDB listening on 127.0.0.1:%s", self.settings.db_port)

    def root_sql(self, sql: str) -> str:
        """Run SQL as root over the unix socket (for provisioning); returns stdout."""
        result = subprocess.run(
            ["mariadb", f"--socket={self.socket}", "--user=root", "--batch", "--skip-column-names"],
            input=sql,
            text=True,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"MariaDB refused provisioning SQL: {result.stderr.strip()}")
        return result.stdout

    def _provision_admin(self) -> None:
        password = self.settings.secret("mysql-admin").replace("'", "''")
        self.root_sql(
            f"CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'{LOCAL_USER_HOST}' IDENTIFIED BY '{password}';\n"
            f"ALTER USER '{ADMIN_USER}'@'{LOCAL_USER_HOST}' IDENTIFIED BY '{password}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{LOCAL_USER_HOST}' WITH GRANT OPTION;\n"
        )
        login = self.registry
        MySqlAdmin.from_endpoint(self.admin).grant_registry_login(
            login.user, login.password, control_schema(), user_host=LOCAL_USER_HOST
        )

    def stop(self, timeout: float = 60.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        kill_group(pid, timeout)  # mariadbd leads its own session (start_new_session)
        self.pidfile.unlink(missing_ok=True)


def _openssl(cwd: Path, *args: str) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"openssl {args[0]} failed making the local TLS certificates: {result.stderr.strip()}"
        )
