"""What a runtime provides to the services: one small interface, two implementations.

Control-plane work (the clone's secrets, its site's objects, its wp-content storage) runs in the Airflow
worker through these methods; data-plane steps (``python -m wpclone.steps ...``) run where the runtime
runs them: a local process or a Kubernetes pod (the operator follows the runtime's kind:
wpclone.airflow.steps), with the same command line and environment, the runtime's rendering of one
:class:`~wpclone.runtimes.stepspec.StepSpec` (:meth:`Runtime.step_spec`). Task ids are the builders' and
identical in both runtimes. No Airflow here.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wpclone.db import DbTls
from wpclone.errors import CloneNameTaken
from wpclone.fetch import FetchPolicy
from wpclone.models import ClonePlan, RuntimeKind, WpcloneConfig, check_clone_id
from wpclone.readiness import Fetch
from wpclone.runtimes.stepspec import Step, StepSpec, step_spec

# Labels and annotations every object of a clone carries (Kubernetes objects; local site configs too).
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "wpclone"
CLONE_ID_LABEL = "wpclone.io/clone-id"
EXPIRES_AT_ANNOTATION = "wpclone.io/expires-at"


@dataclass(frozen=True)
class CloneSecrets:
    """A clone's secrets, generated once by ``prepare_clone`` and kept by the runtime (never in XCom)."""

    db_password: str = field(repr=False)
    admin_password: str = field(repr=False)
    salts: Mapping[str, str] = field(repr=False)


class Runtime(abc.ABC):
    kind: RuntimeKind
    # Host part of the clone's MySQL account: where its site connects from.
    db_user_host: str = "%"
    # Where a link in wp-content may point when the source sets no content_link_roots (wpclone.steps).
    default_link_roots: tuple[str, ...] = ()

    def __init__(self, config: WpcloneConfig) -> None:
        self.config = config

    # -- task time (in the worker) -------------------------------------------------------------------

    @abc.abstractmethod
    def clone_db_server(self, plan: ClonePlan) -> tuple[str, int]:
        """Where the clone's database lives, as its site and its steps reach it: (host, port)."""

    def step_spec(
        self, step: Step, plan: ClonePlan, *, job_id: str | None = None, db_tls: DbTls | None = None
    ) -> StepSpec:
        """What ``step`` gets for the clone of ``plan`` here (wpclone.runtimes.stepspec); the runtime hands
        over the passwords, trees, backups and params as it renders the spec. ``db_tls`` is the TLS of the
        clones' server (the ``wpclone_mysql`` connection's), its files as :meth:`step_tls` places them."""
        return step_spec(
            step,
            plan,
            clone_server=self.clone_db_server(plan),
            default_link_roots=self.default_link_roots,
            fetch_policy=self.fetch_policy(),
            backups=self.config.backups,
            job_id=job_id,
            clone_tls=self.step_tls(db_tls) if db_tls else None,
        )

    def step_tls(self, tls: DbTls) -> DbTls:
        """``tls`` with its files where a step sees them (here: where they are)."""
        return tls

    @abc.abstractmethod
    def clone_url(self, clone_id: str) -> str:
        """Where a clone is served: ``http(s)://host[:port]`` with no trailing slash."""

    @abc.abstractmethod
    def prepare_clone(self, plan: ClonePlan) -> CloneSecrets:
        """Create (or read back, on a retry) the clone's secrets and its empty wp-content storage."""

    @abc.abstractmethod
    def deploy_site(
        self, plan: ClonePlan, constants: Mapping[str, str | int | bool], mu_plugin_php: str
    ) -> None:
        """Serve the clone at its URL with these wp-config constants and must-use plugin (apply semantics).

        The plugin is installed as ``wp-content/mu-plugins/wpclone-staging.php``.
        """

    @abc.abstractmethod
    def site_ready(self, plan: ClonePlan, *, preview: bool = False) -> bool:
        """Whether the clone's site (or its restore preview) is deployed as last asked: registered, or its
        workload rolled out. What it serves is judged over HTTP (``page_fetcher``, wpclone.readiness)."""

    @abc.abstractmethod
    def page_fetcher(self, plan: ClonePlan, *, preview: bool = False) -> Fetch:
        """A GET of a path of the clone's site (or of its restore preview) with the clone's own Host
        header, redirects not followed: returns a readiness.Page, raises readiness.NotAnswering."""

    def site_errors(self, plan: ClonePlan) -> Callable[[], list[str]]:
        """A reader of the PHP error lines the clone's site logs from now on (where the runtime keeps a
        log it can read; none by default)."""
        return list

    @abc.abstractmethod
    def deploy_preview(
        self, plan: ClonePlan, constants: Mapping[str, str | int | bool], mu_plugin_php: str
    ) -> None:
        """Serve the restore's database and staged wp-content as the clone's private preview (the clone's
        URL and Host, reachable only by ``page_fetcher(preview=True)``), beside the live site."""

    @abc.abstractmethod
    def remove_preview(self, clone_id: str) -> bool:
        """Stop serving the clone's restore preview; idempotent; returns whether one existed."""

    @abc.abstractmethod
    def secret_location(self, clone_id: str, key: str) -> str:
        """Where a user finds a clone secret, e.g. a file path or ``secret/<name> key <key>``."""

    @abc.abstractmethod
    def delete_clone_objects(self, clone_id: str) -> list[str]:
        """Remove the site, its content and its secrets; idempotent; returns what was removed."""

    def record_gone(self, clone_id: str, *, expired: bool) -> None:
        """Remember a deleted clone so its URL answers a page saying it was deleted (or expired), where the
        runtime serves clones itself (the local site host); nothing by default: on Kubernetes the shipped
        default backend of the clone domain answers every host that has no clone."""
        return None

    # -- backup and restore (task time) ---------------------------------------------------------------

    @abc.abstractmethod
    def restore_db_password(self, clone_id: str) -> str:
        """The password of the login a restore loads the backup with (created, or read back on a retry)."""

    @abc.abstractmethod
    def fetch_policy_overrides(self) -> tuple[tuple[Path, ...], bool]:
        """What this runtime adds to the configured URL policy of restores (wpclone.fetch.FetchPolicy):
        directories ``file://`` may read, and whether private and loopback addresses (and plain http, which
        the machine's own sites speak) are allowed."""

    def fetch_policy(self) -> FetchPolicy:
        """The URL policy a restore fetches its archive under (wpclone.fetch): the configuration's, widened
        by :meth:`fetch_policy_overrides` (the local runtime may read its backup directory and the machine's
        own addresses, which its sites serve over plain http)."""
        backups = self.config.backups
        file_roots, allow_private = self.fetch_policy_overrides()
        schemes = tuple(dict.fromkeys([*backups.schemes, *(["http"] if allow_private else [])]))
        return FetchPolicy(
            schemes=schemes,
            allowed_hosts=tuple(backups.allowed_hosts),
            allowed_networks=tuple(backups.allowed_networks),
            max_bytes=backups.max_bytes,
            file_roots=file_roots,
            allow_private=allow_private,
        )

    @abc.abstractmethod
    def switch_content(self, clone_id: str, *, restored: bool) -> bool:
        """Serve the staged restored wp-content (``restored``) or put the previous one back; idempotent;
        returns whether anything moved."""

    @abc.abstractmethod
    def discard_restore_content(self, clone_id: str) -> None:
        """Remove what a restore staged or set aside of the clone's wp-content."""

    def check_clone_names(self, clone_id: str) -> None:
        """Refuse (ValueError, :class:`CloneNameTaken`: one sentence) a clone id that would name what is not
        that clone's: a reserved word, a name the configuration uses, an existing object without our labels.
        Cheap (reads only the objects under the clone's own names): the request validation runs it before
        a clone is accepted, and the runtime again before it creates anything."""
        check_clone_id(clone_id)
        for source in self.config.sources:
            if clone_id == source.name:
                raise CloneNameTaken(
                    f"clone id {clone_id} is the name of a source site; choose another clone id."
                )

    def clone_exists(self, clone_id: str) -> bool:
        """Whether anything of ``clone_id`` exists here (a quicker answer than listing every clone)."""
        return clone_id in self.list_clone_ids()

    @abc.abstractmethod
    def list_clone_ids(self) -> set[str]:
        """Clone ids that have objects here (sites, content, secrets): the orphan sweep's input."""
