"""file:// restore URLs on kubernetes: the backups claim is mounted only in the restore step's pod, so the
validating task checks the URL's form (the pod's fetch then checks the file itself, symlinks resolved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wpclone.errors import FetchError
from wpclone.services.restore import check_pod_file_url as _check_pod_file_url

ROOTS = (Path("/backups"),)


def test_a_file_under_the_backups_mount_passes() -> None:
    _check_pod_file_url("file:///backups/qa-1/qa-1-20261128T233020Z.tar.gz", ROOTS)
    _check_pod_file_url("file://localhost/backups/a%20b.sql.gz", ROOTS)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file:///etc/passwd", "outside the backup directory (/backups)"),
        ("file:///backups/../etc/passwd", "not a plain absolute"),
        ("file:///backupsevil/x.tar", "outside the backup directory"),
        ("file://otherhost/backups/x.tar", "not a plain absolute"),
        ("file:backups/x.tar", "not a plain absolute"),
    ],
)
def test_anything_else_is_refused_with_a_sentence(url: str, says: str) -> None:
    with pytest.raises(FetchError, match=says.replace("(", r"\(").replace(")", r"\)")):
        _check_pod_file_url(url, ROOTS)
