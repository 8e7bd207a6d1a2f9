"""Typed requests, configuration and names: the contracts every DAG, step and runtime shares.

Pure pydantic and stdlib: importable by the steps CLI and at DAG parse time without I/O.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# A clone id is a DNS label, a site name, a Kubernetes name and (with "wpc_", "-" as "_") a MySQL database
# and user name; MySQL 8 caps user names at 32 characters, hence 28 here.
CLONE_ID_PATTERN = r"^[a-z][a-z0-9-]{1,26}[a-z0-9]$"
CLONE_ID_RE = re.compile(CLONE_ID_PATTERN)
SOURCE_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"
URL_PATTERN = r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$"
BACKUP_URL_PATTERN = r"^(https?|file)://\S+$"  # the scheme and host are the URL policy's (wpclone.fetch)
TTL_MIN_MINUTES = 10
TTL_MAX_MINUTES = 7 * 24 * 60
TTL_DEFAULT_MINUTES = 60
CLONE_DB_PREFIX = "wpc_"
# The secret keys and salts every WordPress install defines in wp-config.php.
WORDPRESS_SALT_NAMES = (
    "AUTH_KEY",
    "SECURE_AUTH_KEY",
    "LOGGED_IN_KEY",
    "NONCE_KEY",
    "AUTH_SALT",
    "SECURE_AUTH_SALT",
    "LOGGED_IN_SALT",
    "NONCE_SALT",
)

# Clone ids that name what is not a clone's: the database server's system schemas and accounts (with '-'
# for '_'), and wpclone's and Airflow's own names (``wpclone-backups`` is the default backups claim,
# ``wpclone-clones`` the default namespace). Refused for every new clone (:func:`check_clone_id`); the
# kubernetes runtime also refuses ids whose object names the configuration uses (``check_clone_names``).
RESERVED_CLONE_IDS = frozenset(
    {
        "mysql",
        "sys",
        "information-schema",
        "performance-schema",
        "root",
        "admin",
        "administrator",
        "mariadb-sys",
        "debian-sys-maint",
        "localhost",
        "wpclone",
        "backups",
        "clones",
        "control",
        "airflow",
    }
)


def _not_reserved(clone_id: str) -> str:
    if clone_id in RESERVED_CLONE_IDS:
        raise ValueError(reserved_sentence(clone_id).removesuffix("."))
    return clone_id


CloneId = Annotated[
    str,
    Field(pattern=CLONE_ID_PATTERN, description="3-28 of a-z, 0-9 and '-', not a reserved word"),
    AfterValidator(_not_reserved),
]
BackupUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2000,
        pattern=BACKUP_URL_PATTERN,
        description="Where the archive is: https:// (or file:// and http:// on the local runtime).",
    ),
]


class CopyMode(StrEnum):
    """What a clone copies from its source."""

    EVERYTHING = "everything"  # the database and all of wp-content
    DATABASE = "database"  # the database, and wp-content without uploads/ (the media library)
    FILES = "files"  # all of wp-content; of the database only settings and users (content tables empty)


class CloneStatus(StrEnum):
    """A clone's state in the registry. Final states: deleted (and failed once cleaned up)."""

    ACCEPTED = "accepted"  # the jobs API took the id for a clone job that has not reserved it yet
    PROVISIONING = "provisioning"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


class RuntimeKind(StrEnum):
    LOCAL = "local"
    KUBERNETES = "kubernetes"


def normalize_url(url: str) -> str:
    """``HTTP://Host:8080/`` -> ``http://host:8080``: the form sources are registered and matched in."""
    return url.strip().rstrip("/").lower()


DEFAULT_PORTS = {"http": 80, "https": 443}


def url_spellings(url: str) -> tuple[str, ...]:
    """The spellings a registered site URL may have of what ``url`` names, normalized: with and without
    its scheme's default port (``HTTP://Host:80/`` -> ``http://host``, ``http://host:80``)."""
    url = normalize_url(url)
    scheme, _, rest = url.partition("://")
    port = DEFAULT_PORTS.get(scheme)
    if port is None or "/" in rest:
        return (url,)
    bare = rest.removesuffix(f":{port}")
    if ":" in bare:  # another port: one spelling
        return (url,)
    return (f"{scheme}://{bare}", f"{scheme}://{bare}:{port}")


def alias_origin(value: str) -> str:
    """A source alias as an origin: ``Example.com`` -> ``https://example.com`` (the rewrite covers
    ``http://``, ``https://`` and ``//`` of it alike); an origin is normalized as a site URL."""
    value = normalize_url(value)
    if "://" not in value:
        value = "https://" + value
    if not re.fullmatch(URL_PATTERN, value):
        raise ValueError(f"alias {value!r} must be a host name or http(s)://host[:port] with no path")
    return value


def _site_url(value: str) -> str:
    value = normalize_url(value)
    if not re.fullmatch(URL_PATTERN, value):
        raise ValueError("must be http(s)://host[:port] with no path")
    return value


# Each input field's rule in words, with an example: what a refusal says instead of a pattern or a schema
# dump. Callers put the field's name in their own vocabulary in front (the jobs API: ``clone_id``; the CLI:
# ``--id``; the trigger form: its title), e.g. "--id must be 3-28 lowercase letters, ... e.g. qa-checkout".
FIELD_RULES: dict[str, str] = {
    "clone_id": "must be 3-28 lowercase letters, digits or '-', starting with a letter and not ending "
    "with '-', e.g. qa-checkout",
    "ttl_minutes": f"must be a whole number of minutes from {TTL_MIN_MINUTES} to {TTL_MAX_MINUTES} "
    f"({TTL_MAX_MINUTES // (24 * 60)} days), e.g. 120 for two hours",
    "source_url": "must be a registered source site's address, http:// or https:// and the host, "
    "with no path, e.g. https://www.example.com",
    "copy_mode": "must be one of " + ", ".join(mode.value for mode in CopyMode) + ", e.g. everything",
    "source": "must be a registered source's name: 2-32 lowercase letters, digits or '-', e.g. shop",
    "source_backup_url": "must be a backup archive's address, https:// (file:// or http:// on the local "
    "runtime), e.g. https://backups.example.com/qa-checkout.tar.zst",
}

# The same fields' titles in Airflow's trigger form (their params), which its refusals name.
FIELD_TITLES: dict[str, str] = {
    "clone_id": "Clone id",
    "ttl_minutes": "Time to live (minutes)",
    "source_url": "Source site URL",
    "copy_mode": "What to copy",
    "source": "Source name",
    "source_backup_url": "Backup URL",
}

# A site's origin, normalized: http(s)://host[:port], no path.
SiteUrl = Annotated[str, AfterValidator(_site_url)]
SourceName = Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]


class CloneRequest(BaseModel):
    """A request to clone a registered source site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_url: SiteUrl = Field(description="URL of a registered source site, e.g. https://www.example.com")
    ttl_minutes: int = Field(
        TTL_DEFAULT_MINUTES,
        ge=TTL_MIN_MINUTES,
        le=TTL_MAX_MINUTES,
        description=f"Minutes until the clone is deleted ({TTL_MIN_MINUTES}-{TTL_MAX_MINUTES}).",
    )
    clone_id: CloneId | None = Field(None, description="Name of the clone; generated when empty.")
    copy_mode: CopyMode = Field(CopyMode.EVERYTHING, description="What to copy from the source.")
    source: SourceName | None = Field(
        None,
        description="The source's name; needed for a source registered as an Airflow connection when the "
        "job is not started by the jobs API (which finds it by URL).",
    )

    @field_validator("clone_id", "source", mode="before")
    @classmethod
    def _empty_id(cls, value: object) -> object:
        return None if value == "" else value


class RestoreRequest(BaseModel):
    """Restore a clone from a backup archive (the seed plan's shape: clone_id and source_backup_url)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clone_id: CloneId
    source_backup_url: BackupUrl


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clone_id: CloneId


class SourceConfig(BaseModel):
    """A registered live site: only these can be cloned (also the SSRF and abuse guard)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: SourceName
    url: SiteUrl
    db_host: str = Field(pattern=r"^[A-Za-z0-9.:-]{1,255}$")
    db_port: int = Field(3306, ge=1, le=65535)
    db_name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    db_user: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    # The login's password: a file (local runtime) or a Kubernetes Secret with key "password"; for a source
    # registered as an Airflow connection, that connection's password (``db_conn_id``: wpclone.sources).
    db_password_file: str | None = None
    db_password_secret: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    table_prefix: str = Field("wp_", pattern=r"^[a-z0-9_]{1,20}_$")
    # Where its wp-content lives: a directory (local runtime) or a PersistentVolumeClaim (kubernetes).
    content_dir: str | None = None
    content_claim: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    # Other names the site has had or answers to: each becomes the clone's URL too, in every form the URL
    # rewrite knows (a bare domain such as "example.com", or an origin such as "https://old-brand.com").
    aliases: list[str] = Field(default_factory=list, max_length=20)
    # Directories outside wp-content that a symlink inside it may point into: such a link is copied as
    # what it points to. Any other link that leaves wp-content fails the copy, naming the link. None: the
    # runtime's default (local: WordPress's core directory; kubernetes: none).
    content_link_roots: list[str] | None = None
    # The Airflow connection this source was registered as (wpclone.airflow.sources); None: the configuration.
    db_conn_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,250}$")

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, values: list[str]) -> list[str]:
        return [alias_origin(v) for v in values]

    @field_validator("content_link_roots")
    @classmethod
    def _roots(cls, values: list[str] | None) -> list[str] | None:
        if values is not None and any(not v.startswith("/") or "\0" in v for v in values):
            raise ValueError("content_link_roots must be absolute directory paths")
        return values


class BackupConfig(BaseModel):
    """Where backups go and which backup URLs a restore may fetch (the SSRF guard, wpclone.fetch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Local runtime: a directory (default <state dir>/backups); restores may also read file:// there.
    directory: str | None = None
    # The URL policy of restores. On the local runtime http(s) to loopback and private addresses is also
    # allowed (the machine's own sites); on kubernetes never.
    schemes: list[str] = Field(default_factory=lambda: ["https"])
    allowed_hosts: list[str] = Field(default_factory=list, description="host globs; empty: any host")
    allowed_networks: list[str] = Field(default_factory=list, description="private CIDRs still allowed")
    max_bytes: int = Field(20 << 30, ge=1)
    # Retention, applied after each backup: per clone, the newest ``keep_per_clone`` backups no older
    # than ``max_age_days``; a clone's backups go with it when it is deleted unless ``keep_after_delete``.
    keep_per_clone: int = Field(5, ge=1, le=1000)
    max_age_days: int = Field(30, ge=1, le=3650)
    keep_after_delete: bool = False


class WpcloneConfig(BaseModel):
    """Deployment configuration: the sources and where clones live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: RuntimeKind = RuntimeKind.LOCAL
    sources: list[SourceConfig] = Field(default_factory=list)
    # kubernetes: clones are served at https://<clone_id>.<clone_domain>/
    clone_domain: str | None = Field(None, pattern=r"^[a-z0-9.-]+$")
    clone_scheme: str = Field("https", pattern=r"^https?$")
    backups: BackupConfig = Field(default_factory=BackupConfig)

    @model_validator(mode="after")
    def _unique(self) -> WpcloneConfig:
        for attr in ("name", "url"):
            values = [getattr(s, attr) for s in self.sources]
            if len(values) != len(set(values)):
                raise ValueError(f"two sources share a {attr}")
        return self

    def source_for(self, url: str) -> SourceConfig:
        """The registered source at ``url``, or ValueError with one sentence."""
        url = normalize_url(url)
        for source in self.sources:
            if source.url == url:
                return source
        known = ", ".join(s.url for s in self.sources) or "none"
        raise ValueError(f"{url} is not a registered source site (registered: {known}).")


# -- names ------------------------------------------------------------------------------------------------


def reserved_sentence(clone_id: str) -> str:
    return (
        f"clone id {clone_id!r} is reserved: it names a system schema or account of the database server or "
        "one of wpclone's own objects; choose another clone id."
    )


def check_clone_id(clone_id: str) -> str:
    """``clone_id`` if it has the clone id's shape and is not reserved, else ValueError with one sentence."""
    if not CLONE_ID_RE.fullmatch(clone_id):
        raise ValueError(
            f"clone id {clone_id!r} is not valid: use 3-28 lower-case letters, digits and '-', "
            "starting with a letter and not ending with '-'."
        )
    if clone_id in RESERVED_CLONE_IDS:
        raise ValueError(reserved_sentence(clone_id))
    return clone_id


def is_clone_id(value: str) -> bool:
    """Whether ``value`` could be one of our clone ids (what the orphan sweep may take as ours)."""
    return bool(CLONE_ID_RE.fullmatch(value)) and value not in RESERVED_CLONE_IDS


def generate_clone_id(source: SourceConfig) -> str:
    """``<source name>-<6 random chars>``, within the clone id pattern."""
    suffix = "".join(secrets.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(6))
    return f"{source.name[:21].rstrip('-')}-{suffix}"


def clone_db_name(clone_id: str) -> str:
    """The clone's database (and database user) name."""
    return CLONE_DB_PREFIX + check_clone_id(clone_id).replace("-", "_")


RESTORE_DB_PREFIX = "wpr_"  # the fresh database a backup is loaded into (and its login)
OLD_DB_PREFIX = "wpo_"  # where the clone's previous tables wait until the restored site answers


def restore_db_name(clone_id: str) -> str:
    return RESTORE_DB_PREFIX + clone_db_name(clone_id).removeprefix(CLONE_DB_PREFIX)


def old_db_name(clone_id: str) -> str:
    return OLD_DB_PREFIX + clone_db_name(clone_id).removeprefix(CLONE_DB_PREFIX)


def clone_id_from_db_name(name: str) -> str | None:
    """Inverse of :func:`clone_db_name` for names we made (orphan sweep), else None."""
    if not name.startswith(CLONE_DB_PREFIX):
        return None
    candidate = name[len(CLONE_DB_PREFIX) :].replace("_", "-")
    return candidate if is_clone_id(candidate) else None


class ClonePlan(BaseModel):
    """What a clone job will create: the validated request resolved against the configuration.

    Passed between tasks through XCom, so it holds names and places, never secrets.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    clone_id: str
    source: SourceConfig
    url: str
    db_name: str
    ttl_minutes: int
    copy_mode: CopyMode
    expires_at: datetime
