"""What a runtime provides to the DAG builders: one small interface, two implementations (DESIGN §5).

Control-plane work (registry, database and user, secrets, the site's objects) runs in the Airflow worker
through these methods; data-plane steps (``python -m wpclone.steps copy-database|copy-content``) run where
the runtime runs them: a local process or a Kubernetes pod, with the same command line and environment.
Task ids are the builders' and identical in both runtimes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wpclone.errors import CloneNameTaken
from wpclone.fetch import FetchPolicy
from wpclone.models import ClonePlan, RuntimeKind, SourceConfig, WpcloneConfig, check_clone_id
from wpclone.readiness import Fetch

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

# Labels and annotations every object of a clone carries (Kubernetes objects; local site configs too).
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "wpclone"
CLONE_ID_LABEL = "wpclone.io/clone-id"
EXPIRES_AT_ANNOTATION = "wpclone.io/expires-at"

STEP_COMMAND = ("python", "-m", "wpclone.steps")


@dataclass(frozen=True)
class CloneSecrets:
    """A clone's secrets, generated once by ``prepare_clone`` and kept by the runtime (never in XCom)."""

    db_password: str = field(repr=False)
    admin_password: str = field(repr=False)
    salts: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class Step:
    """A data-plane step as the builders declare it; the runtime turns it into an operator.

    ``arguments`` and ``env`` values may be Jinja templates (rendered by Airflow). ``db_env`` names the
    database logins the step needs, by env prefix: ``{"SOURCE_DB": "source", "TARGET_DB": "clone"}``.
    ``content`` names the wp-content trees it needs: ``{"SOURCE_CONTENT_DIR": "source", ...}``.
    """

    task_id: str
    step: str
    arguments: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    db_env: Mapping[str, str] = field(default_factory=dict)
    content: Mapping[str, str] = field(default_factory=dict)
    heavy: bool = False  # runs in the pool that bounds load on the shared MySQL
    # Env vars filled from the run's params when the step runs, never through a rendered template (a
    # backup URL may carry a token): ``{"WPCLONE_BACKUP_URL": "source_backup_url"}``.
    param_env: Mapping[str, str] = field(default_factory=dict)


class Runtime(abc.ABC):
    kind: RuntimeKind
    # Host part of the clone's MySQL account: where its site connects from.
    db_user_host: str = "%"

    def __init__(self, config: WpcloneConfig) -> None:
        self.config = config

    # -- parse time ------------------------------------------------------------------------------------

    @abc.abstractmethod
    def step_operator(self, step: Step, *, plan_xcom: str, **operator_kwargs: object) -> BaseOperator:
        """The operator running ``step`` for the clone whose ClonePlan (JSON) is the XCom of ``plan_xcom``.

        Must be buildable at parse time with no I/O. On failure it pushes XCom key ``error``: one sentence.
        """

    # -- task time (in the worker) -------------------------------------------------------------------

    @abc.abstractmethod
    def clone_url(self, clone_id: str) -> str:
        """Where a clone is served: ``http(s)://host[:port]`` with no trailing slash."""

    @abc.abstractmethod
    def prepare_clone(self, plan: ClonePlan) -> CloneSecrets:
        """Create (or read back, on a retry) the clone's secrets and its empty wp-content storage."""

    @abc.abstractmethod
    def source_db_password(self, source: SourceConfig) -> str:
        """The password of the source database's login (for the worker's own checks)."""

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

    def deploy_preview(
        self, plan: ClonePlan, constants: Mapping[str, str | int | bool], mu_plugin_php: str
    ) -> None:
        """Serve the restore's database and staged wp-content as the clone's private preview (the clone's
        URL and Host, reachable only by ``page_fetcher(preview=True)``), beside the live site."""
        raise NotImplementedError(f"restoring a backup is not available on the {self.kind} runtime yet.")

    def remove_preview(self, clone_id: str) -> bool:
        """Stop serving the clone's restore preview; idempotent; returns whether one existed."""
        raise NotImplementedError(f"restoring a backup is not available on the {self.kind} runtime yet.")

    @abc.abstractmethod
    def secret_location(self, clone_id: str, key: str) -> str:
        """Where a user finds a clone secret, e.g. a file path or ``secret/<name> key <key>``."""

    @abc.abstractmethod
    def delete_clone_objects(self, clone_id: str) -> list[str]:
        """Remove the site, its content and its secrets; idempotent; returns what was removed."""

    # -- backup and restore (task time) ---------------------------------------------------------------

    def restore_db_password(self, clone_id: str) -> str:
        """The password of the login a restore loads the backup with (created, or read back on a retry)."""
        raise NotImplementedError(f"restoring a backup is not available on the {self.kind} runtime yet.")

    def fetch_policy_overrides(self) -> tuple[tuple[Path, ...], bool]:
        """What this runtime adds to the configured URL policy of restores (wpclone.fetch.FetchPolicy):
        directories ``file://`` may read, and whether private and loopback addresses (and plain http, which
        the machine's own sites speak) are allowed."""
        return (), False

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

    def switch_content(self, clone_id: str, *, restored: bool) -> bool:
        """Serve the staged restored wp-content (``restored``) or put the previous one back; idempotent;
        returns whether anything moved."""
        raise NotImplementedError(f"restoring a backup is not available on the {self.kind} runtime yet.")

    def discard_restore_content(self, clone_id: str) -> None:
        """Remove what a restore staged or set aside of the clone's wp-content."""
        raise NotImplementedError(f"restoring a backup is not available on the {self.kind} runtime yet.")

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
