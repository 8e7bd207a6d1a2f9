"""The local runtime's site host: one ``php -S`` server that serves every registered site by Host header.

A site named ``<name>`` answers at ``http://<name>.localhost:<http_port>/``. Its directory
``<sites_dir>/<name>/`` holds ``site.json`` (public settings), ``secrets.json`` (salts; mode 0600) and its own
``wp-content/``; the database password stays in the file named by ``db_password_file``. WordPress core is
Debian's ``/usr/share/wordpress``, reached through a per-stack *core* directory of symlinks whose
``wp-config.php`` is ours (see ``router.php`` and ``site.php`` next to this module). A deleted clone leaves a
note ``<sites_dir>/.gone/<name>.json`` (:func:`record_gone`), so its host answers a 410 page saying when it
was deleted, until a site of that name is registered again.

``*.localhost`` names need not resolve on this machine, so :func:`http_opener` gives a urllib opener that
connects them to 127.0.0.1 while sending the real Host header.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wpclone.db import check_identifier
from wpclone.errors import ConfigError
from wpclone.local.procs import kill_group, pid_from_file
from wpclone.local.settings import StackSettings
from wpclone.models import WORDPRESS_SALT_NAMES

log = logging.getLogger(__name__)

SITE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,38}")
TABLE_PREFIX_RE = re.compile(r"[a-z0-9_]{1,20}_")
CONSTANT_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
ENVIRONMENT_TYPES = ("local", "development", "staging", "production")
WORDPRESS_CORE = Path("/usr/share/wordpress")
DEFAULT_THEMES = ("twentytwentyone",)
HERE = Path(__file__).resolve().parent
ROUTER = HERE / "router.php"
CORE_WP_CONFIG = HERE / "wp-config.php"
PHP_WORKERS = 8
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def check_site_name(name: str) -> str:
    """Return ``name`` if it is a valid site name (a DNS label we also use as a path), else raise."""
    if not SITE_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"site name {name!r} is not valid: use 1-39 lower-case letters, digits or hyphens, "
            "starting with a letter or digit."
        )
    return name


@dataclass(frozen=True)
class SiteConfig:
    """Everything the site host needs to serve one WordPress site; secrets are referenced, never held."""

    name: str
    url: str
    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password_file: Path
    table_prefix: str = "wp_"
    environment_type: str | None = None
    disable_wp_cron: bool = False
    # Extra wp-config constants (e.g. staging safety switches); names must be UPPER_SNAKE_CASE.
    constants: dict[str, str | int | bool] = field(default_factory=dict)
    # Informational: the WordPress admin account created with the site, for tests and humans.
    admin_user: str | None = None
    admin_password_file: Path | None = None
    # Where its wp-content is; None: the site directory's own ``wp-content``.
    content_dir: Path | None = None

    def validate(self) -> SiteConfig:
        check_site_name(self.name)
        check_identifier(self.db_name, "database name")
        check_identifier(self.db_user, "database user")
        if not TABLE_PREFIX_RE.fullmatch(self.table_prefix):
            raise ConfigError(
                f"table prefix {self.table_prefix!r} is not valid: use lower-case letters, digits or "
                "underscores ending in an underscore."
            )
        if not re.fullmatch(r"https?://[a-z0-9.-]+(:\d{1,5})?", self.url.rstrip("/")):
            raise ConfigError(f"site URL {self.url!r} is not valid: use http(s)://host[:port] with no path.")
        if self.environment_type is not None and self.environment_type not in ENVIRONMENT_TYPES:
            raise ConfigError(
                f"environment type {self.environment_type!r} is not one of {', '.join(ENVIRONMENT_TYPES)}."
            )
        if not re.fullmatch(r"[A-Za-z0-9.:-]{1,255}", self.db_host):
            raise ConfigError(f"database host {self.db_host!r} is not a valid host name or address.")
        for key in self.constants:
            if not CONSTANT_RE.fullmatch(key):
                raise ConfigError(f"constant name {key!r} is not valid: use UPPER_SNAKE_CASE.")
        return self

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["url"] = self.url.rstrip("/")
        data["db_password_file"] = str(self.db_password_file)
        data["admin_password_file"] = str(self.admin_password_file) if self.admin_password_file else None
        data["content_dir"] = str(self.content_dir) if self.content_dir else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SiteConfig:
        admin_file = data.get("admin_password_file")
        return cls(
            name=data["name"],
            url=data["url"],
            db_host=data["db_host"],
            db_port=int(data["db_port"]),
            db_name=data["db_name"],
            db_user=data["db_user"],
            db_password_file=Path(data["db_password_file"]),
            table_prefix=data.get("table_prefix", "wp_"),
            environment_type=data.get("environment_type"),
            disable_wp_cron=bool(data.get("disable_wp_cron", False)),
            constants=dict(data.get("constants") or {}),
            admin_user=data.get("admin_user"),
            admin_password_file=Path(admin_file) if admin_file else None,
            content_dir=Path(data["content_dir"]) if data.get("content_dir") else None,
        )

    def db_password(self) -> str:
        return read_secret_file(self.db_password_file)

    def admin_password(self) -> str:
        if self.admin_password_file is None:
            raise ConfigError(f"site {self.name} has no admin password file in its config.")
        return read_secret_file(self.admin_password_file)


def read_secret_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}.") from exc


def site_dir(settings: StackSettings, name: str) -> Path:
    return settings.sites_dir / check_site_name(name)


def content_dir(settings: StackSettings, name: str) -> Path:
    """The site's own wp-content directory (themes, plugins, uploads)."""
    return site_dir(settings, name) / "wp-content"


def _write_private(path: Path, text: str) -> None:
    """Write a file readable only by the owner, atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def register_site(settings: StackSettings, config: SiteConfig, *, default_content: bool = True) -> Path:
    """Register (or update) a site so the site host serves it; returns the site's directory.

    Salts are generated on first registration and kept. With ``default_content`` a missing wp-content
    gets the default theme(s) copied in (real files) plus empty ``plugins/`` and ``uploads/``; an
    existing wp-content is never touched, so a content copy may run before or after registration.
    """
    config.validate()
    directory = site_dir(settings, config.name)
    settings.sites_dir.mkdir(parents=True, exist_ok=True)
    (settings.sites_dir / GONE_DIR / f"{config.name}.json").unlink(missing_ok=True)  # the name lives again
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    secrets_file = directory / "secrets.json"
    if not secrets_file.exists():
        salts = {key: secrets.token_urlsafe(48) for key in WORDPRESS_SALT_NAMES}
        _write_private(secrets_file, json.dumps({"salts": salts}, indent=2))
    wp_content = directory / "wp-content"
    if default_content and not wp_content.exists():
        staging = directory / ".wp-content.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "plugins").mkdir(parents=True)
        (staging / "uploads").mkdir()
        (staging / "themes").mkdir()
        for theme in DEFAULT_THEMES:
            # Real files, not symlinks: a clone copies and may modify its themes.
            shutil.copytree(WORDPRESS_CORE / "wp-content" / "themes" / theme, staging / "themes" / theme)
        staging.rename(wp_content)
    _write_private(directory / "site.json", json.dumps(config.to_json(), indent=2))
    log.info("registered site %s at %s", config.name, config.url)
    return directory


PREVIEW_FILE = "preview.json"
PREVIEW_HEADER = "X-Wpclone-Preview"  # carries the preview's token (router.php)


def register_preview(settings: StackSettings, config: SiteConfig) -> str:
    """Serve ``config`` as the preview of the registered site ``config.name``: requests for the site's own
    host that carry the returned token in ``PREVIEW_HEADER`` get it (another database and wp-content, the
    same URL), every other request the site as before. Re-registering keeps the token."""
    config.validate()
    directory = site_dir(settings, config.name)
    if not (directory / "site.json").is_file():
        raise ConfigError(f"site {config.name} is not registered, so it cannot have a preview.")
    token = preview_token(settings, config.name) or secrets.token_urlsafe(32)
    _write_private(
        directory / PREVIEW_FILE, json.dumps({**config.to_json(), "preview_token": token}, indent=2)
    )
    log.info("registered a preview of site %s", config.name)
    return token


def preview_token(settings: StackSettings, name: str) -> str | None:
    """The token of the site's preview, or None when it has none."""
    try:
        data = json.loads((site_dir(settings, name) / PREVIEW_FILE).read_text())
    except FileNotFoundError:
        return None
    return str(data["preview_token"])


def unregister_preview(settings: StackSettings, name: str) -> bool:
    """Stop serving the site's preview; returns whether it had one."""
    path = site_dir(settings, name) / PREVIEW_FILE
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def load_site(settings: StackSettings, name: str) -> SiteConfig:
    path = site_dir(settings, name) / "site.json"
    try:
        return SiteConfig.from_json(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise ConfigError(f"site {name} is not registered (no {path}).") from exc


def list_sites(settings: StackSettings) -> list[SiteConfig]:
    if not settings.sites_dir.is_dir():
        return []
    return [
        load_site(settings, entry.name)
        for entry in sorted(settings.sites_dir.iterdir())
        if SITE_NAME_RE.fullmatch(entry.name) and (entry / "site.json").is_file()
    ]


GONE_DIR = ".gone"  # under sites_dir: a file <name>.json per deleted clone, so its host says it is gone


def record_gone(settings: StackSettings, name: str, gone_at: datetime, *, expired: bool) -> Path:
    """Remember that the clone ``name`` was deleted at ``gone_at`` (``expired``: by its time to live): the
    site host answers its host with a plain 410 page saying so (router.php) until a site takes the name."""
    check_site_name(name)
    directory = settings.sites_dir / GONE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    stamp = gone_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"name": name, "gone_at": stamp, "expired": expired}))
    os.replace(tmp, path)
    return path


def unregister_site(settings: StackSettings, name: str) -> bool:
    """Stop serving a site and delete its config and content; returns whether it existed."""
    directory = site_dir(settings, name)
    if not directory.exists():
        return False
    # Remove site.json first so the site stops answering even if deleting the content is slow.
    (directory / "site.json").unlink(missing_ok=True)
    shutil.rmtree(directory)
    log.info("unregistered site %s", name)
    return True


class SiteHost:
    """Start/stop the one ``php -S`` process; every method is idempotent."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.base = settings.sitehost_dir
        self.pidfile = self.base / "php.pid"
        self.logfile = self.base / "php.log"
        self.core_dir = self.base / "core"

    @property
    def port(self) -> int:
        return self.settings.http_port

    def pid(self) -> int | None:
        """The server's pid if it runs (checked against its command line, so a reused pid is not ours: it
        serves this state dir's core, whichever checkout's router it runs)."""
        return pid_from_file(self.pidfile, str(self.core_dir).encode())

    def is_running(self) -> bool:
        return self.pid() is not None and self._healthy()

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/__wpclone/health", timeout=2
            ) as response:
                return bool(response.status == 200)
        except (OSError, http.client.HTTPException):
            return False

    def build_core(self) -> Path:
        """(Re)build the core directory: symlinks to Debian's WordPress, except our own wp-config.php."""
        if not (WORDPRESS_CORE / "wp-settings.php").is_file():
            raise ConfigError(f"WordPress core is missing at {WORDPRESS_CORE}; run scripts/setup.sh.")
        self.core_dir.mkdir(parents=True, exist_ok=True)
        files = {"wp-cron.php": _patched_wp_cron()}
        wanted: dict[str, Path] = {
            entry.name: entry
            for entry in WORDPRESS_CORE.iterdir()
            if entry.name not in ("wp-config.php", "wp-content", *files) and not entry.name.startswith(".")
        }
        wanted["wp-config.php"] = CORE_WP_CONFIG
        for entry in self.core_dir.iterdir():
            if entry.name in files and entry.is_file() and not entry.is_symlink():
                continue
            if entry.name not in wanted or not entry.is_symlink() or entry.readlink() != wanted[entry.name]:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        for name, target in wanted.items():
            link = self.core_dir / name
            if not link.is_symlink():
                link.symlink_to(target)
        for name, text in files.items():
            path = self.core_dir / name
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
        return self.core_dir

    def env(self) -> dict[str, str]:
        """Environment for PHP that loads a site outside the server (seed.php)."""
        return {
            **os.environ,
            "WPCLONE_SITES_DIR": str(self.settings.sites_dir),
            "WPCLONE_CORE_DIR": str(self.core_dir),
        }

    def start(self) -> None:
        if self.is_running():
            log.info("site host already running on 127.0.0.1:%s", self.port)
            return
        if self.pid() is not None:
            log.warning("site host process is not answering; restarting it")
            self.stop()
        if shutil.which("php") is None:
            raise ConfigError("php is not installed; run scripts/setup.sh.")
        self.base.mkdir(parents=True, exist_ok=True)
        self.settings.sites_dir.mkdir(parents=True, exist_ok=True)
        self.build_core()
        if _port_in_use(self.port):
            raise RuntimeError(
                f"port {self.port} is already in use by another program; "
                "set WPCLONE_HTTP_PORT to a free port."
            )
        env = {**self.env(), "PHP_CLI_SERVER_WORKERS": str(PHP_WORKERS)}
        argv = [
            "php",
            "-q",  # no access log: the log file holds PHP's errors and the server's own messages
            "-d",
            "display_errors=0",
            "-d",
            "log_errors=1",
            "-d",
            f"error_log={self.logfile}",  # PHP's errors and error_log() lines, from every worker
            "-d",
            "upload_max_filesize=64M",
            "-d",
            "post_max_size=64M",
            "-d",
            "memory_limit=512M",
            "-S",
            f"127.0.0.1:{self.port}",
            "-t",
            str(self.core_dir),
            str(ROUTER),
        ]
        with open(os.devnull, "rb") as devnull, open(self.logfile, "ab") as logf:
            process = subprocess.Popen(
                argv,
                cwd=self.core_dir,
                env=env,
                stdin=devnull,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills the server and its workers
            )
        self.pidfile.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._healthy():
            if process.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                raise RuntimeError(
                    f"the PHP site host exited with status {process.returncode}; see {self.logfile}."
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the PHP site host did not answer within {START_TIMEOUT_S:.0f} s.")
            time.sleep(0.05)
        log.info(
            "site host listening on 127.0.0.1:%s (sites at http://<site>.localhost:%s/)", self.port, self.port
        )

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return
        log.info("stopping site host (pid %s)", pid)
        kill_group(pid, STOP_TIMEOUT_S)
        self.pidfile.unlink(missing_ok=True)


WP_CRON_LOAD_RE = re.compile(
    r"if \( ! defined\( 'ABSPATH' \) \) \{\s*/\*\* Set up WordPress environment \*/\s*"
    r"require_once __DIR__ \. '/wp-load\.php';\s*\}"
)


def _patched_wp_cron() -> str:
    """Core's wp-cron.php, loading WordPress even though the router predefined ABSPATH.

    Stock wp-cron.php loads wp-load.php only when ABSPATH is undefined; the router must define it (so
    that wp-admin scripts, whose __DIR__ resolves into /usr/share/wordpress, load our wp-config.php).
    """
    source = (WORDPRESS_CORE / "wp-cron.php").read_text()
    patched, count = WP_CRON_LOAD_RE.subn(
        "/* wpclone: ABSPATH is predefined by the router; load WordPress regardless. */\n"
        "require_once ABSPATH . 'wp-load.php';",
        source,
    )
    if count != 1:
        raise RuntimeError(
            f"{WORDPRESS_CORE / 'wp-cron.php'} does not load WordPress as expected; "
            "update the site host's wp-cron patch."
        )
    return patched


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class _LocalhostConnection(http.client.HTTPConnection):
    """Connects ``*.localhost`` to 127.0.0.1 (RFC 6761) while the Host header keeps the site name."""

    def connect(self) -> None:
        host = self.host.lower()
        if host == "localhost" or host.endswith(".localhost"):
            self.sock = socket.create_connection(("127.0.0.1", self.port or 80), self.timeout)
        else:
            super().connect()


class _LocalhostHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_LocalhostConnection, req)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http_opener(
    cookies: http.cookiejar.CookieJar | None = None, *, follow_redirects: bool = True
) -> urllib.request.OpenerDirector:
    """A urllib opener for site URLs (``http://<site>.localhost:<port>/``), optionally with a cookie jar."""
    handlers: list[urllib.request.BaseHandler] = [_LocalhostHandler()]
    if cookies is not None:
        handlers.append(urllib.request.HTTPCookieProcessor(cookies))
    if not follow_redirects:
        handlers.append(_NoRedirect())
    return urllib.request.build_opener(*handlers)
