"""Shared fixtures: the local stack (real MariaDB + PHP site host) and the seeded source site.

The stack is brought up through the same Python API as ``python -m wpclone.local up`` and is left running
at the end of the session (``make down`` stops it): other test sessions may share it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from wpclone.db import DbEndpoint
from wpclone.local.__main__ import up
from wpclone.local.mariadb import LocalMariaDB
from wpclone.local.seed import seed_source
from wpclone.local.settings import StackSettings
from wpclone.local.sitehost import SiteConfig

log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def settings() -> StackSettings:
    """The stack's settings (state dir, ports) as the CLI would load them."""
    return StackSettings.load()


@pytest.fixture(scope="session")
def stack(settings: StackSettings) -> Iterator[StackSettings]:
    """MariaDB and the site host, running (started if needed; idempotent)."""
    up(settings)
    yield settings


@pytest.fixture(scope="session")
def source_site(stack: StackSettings) -> SiteConfig:
    """The realistic source site, seeded at the default size (a no-op when it already is)."""
    return seed_source(stack)


@pytest.fixture(scope="session")
def admin_db(stack: StackSettings) -> DbEndpoint:
    """The local MariaDB's admin login (may create databases and users), like the shared server's."""
    return LocalMariaDB(stack).admin
