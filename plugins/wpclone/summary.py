"""What a job did, for people: the figures ``wp search-replace`` users expect, and the run's note.

Pure functions of the steps' JSON results and the job's status (no Airflow): the clone job's result carries
:func:`copy_summary`, the CLI prints :func:`copy_lines`, and the scheduler writes :func:`run_note` on every
job's run when it ends (wpclone.airflow.listener), so the Airflow UI shows the outcome where people look
first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from wpclone.jobs import JobStatus, JobStatusResponse, JobType
from wpclone.timewords import utc_text

NOTE_LIMIT = 1000  # Airflow's dag_run_note.content
FOLLOWED_SHOWN = 3
API_PREFIX = "/wpclone/api/v1"  # where Airflow's API server mounts the jobs API (wpclone.plugin)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def copy_summary(database: Mapping[str, Any] | None, content: Mapping[str, Any] | None) -> dict[str, Any]:
    """The copy's figures from the copy-database and copy-content results (either may be missing)."""
    summary: dict[str, Any] = {}
    if database:
        rewrite = database.get("rewrite") or {}
        summary["database"] = {
            "tables": _int(database.get("tables")),
            "rows": _int(database.get("rows")),
            "verified": True,  # the step fails unless every row count matched and no old URL was left
            "path": str(database.get("path") or "dump"),  # same-server: copied on the server
            "fields_rewritten": _int(rewrite.get("fields_rewritten")),
            "replacements": {str(k): _int(v) for k, v in (database.get("replacements") or {}).items()},
            "serialized_rebuilt": _int(database.get("serialized_rebuilt", rewrite.get("serialized_rebuilt"))),
            "left_over": {str(k): _int(v) for k, v in (database.get("leftovers") or {}).items() if v},
        }
    if content:
        summary["content"] = {
            "files": _int(content.get("files")),
            "bytes": _int(content.get("bytes_total")),
            "files_copied": _int(content.get("files_copied")),
            "bytes_copied": _int(content.get("bytes_copied")),
            "links_kept": _int(content.get("links_kept")),
            "links_followed": _int(content.get("links_followed")),
            "followed": [str(f) for f in content.get("followed") or []],
            "dangling": [str(d) for d in content.get("dangling") or []],
            "skipped": [str(s) for s in content.get("skipped") or []],
        }
    return summary


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _list(items: Sequence[str], shown: int = FOLLOWED_SHOWN) -> str:
    head = ", ".join(items[:shown])
    return head + (f" and {len(items) - shown} more" if len(items) > shown else "")


def copy_lines(summary: Mapping[str, Any]) -> list[str]:
    """One line for the database, one for wp-content: what was copied, verified, replaced and linked."""
    lines = []
    db = summary.get("database")
    if db:
        forms = db.get("replacements") or {}
        replaced = sum(forms.values()) if forms else db.get("fields_rewritten", 0)
        by_form = ", ".join(f"{form} {n:,}" for form, n in sorted(forms.items(), key=lambda kv: -kv[1]) if n)
        line = (
            f"Database: {_count(db['tables'], 'table')}, {_count(db['rows'], 'row')} copied and verified; "
            f"{_count(replaced, 'URL')} replaced" + (f" ({by_form})" if by_form else "")
        )
        line += f"; {_count(db.get('serialized_rebuilt', 0), 'serialized value')} rebuilt"
        if db.get("left_over"):
            left = ", ".join(f"{form} {n:,}" for form, n in db["left_over"].items())
            line += f"; LEFT OVER: {left}"
        lines.append(line + ".")
    content = summary.get("content")
    if content:
        line = f"wp-content: {_count(content['files'], 'file')}, {_size(content['bytes'])}"
        if content["files_copied"] != content["files"]:
            line += f" ({_count(content['files_copied'], 'file')} copied now, the rest already there)"
        line += f"; {_count(content['links_kept'], 'link')} kept"
        if content["links_followed"]:
            line += (
                f", {content['links_followed']:,} copied as what they point to ({_list(content['followed'])})"
            )
        if content["dangling"]:
            line += f"; dangling, not copied: {_list(content['dangling'])}"
        if content["skipped"]:
            line += f"; skipped: {_list(content['skipped'])}"
        lines.append(line + ".")
    return lines


def in_words(left: timedelta) -> str:
    """A time left in words, as the staging banner says it (mu-plugin.php's ``wpclone_staging_in_words``):
    ``expired``, ``expires in 45 min``, ``expires in 2 h``, ``expires in 3 d``."""
    seconds = left.total_seconds()
    if seconds <= 0:
        return "expired"
    if seconds < 90 * 60:
        return f"expires in {max(1, round(seconds / 60))} min"
    if seconds < 48 * 3600:
        return f"expires in {round(seconds / 3600)} h"
    return f"expires in {round(seconds / 86400)} d"


def expiry_text(expires_at: datetime | str | None, now: datetime | None = None) -> str | None:
    """``expires in 2 h (2026-12-06 07:48 UTC)``: relative to ``now``, then absolute; None without one."""
    if not expires_at:
        return None
    moment = datetime.fromisoformat(expires_at) if isinstance(expires_at, str) else expires_at
    return f"{in_words(moment - (now or datetime.now(UTC)))} ({utc_text(moment)})"


def login_line(clone_id: str) -> str:
    """How to get into a clone's wp-admin: a one-time link (wpclone.login)."""
    return (
        f"Log in: `wpclone login {clone_id}` (or `POST {API_PREFIX}/clones/{clone_id}/login`) "
        "gives a one-time wp-admin link."
    )


def _way_in(clone_id: str, result: Mapping[str, Any], now: datetime | None) -> str:
    """Where the clone serves, how to log in and when it expires, on one line (the Airflow UI shows a note's
    first line on the run's page)."""
    expiry = expiry_text(result.get("expires_at"), now)
    parts = [
        str(result.get("url", "-")),
        f"log in with `wpclone login {clone_id}`",
        *([expiry] if expiry else []),
    ]
    return " · ".join(parts)


def run_note(job: JobStatusResponse, now: datetime | None = None) -> str:
    """The note on a job's run when it ends (Markdown, within Airflow's 1,000 characters): on success the
    clone's URL, how to log in and its expiry (relative to ``now``, and absolute), on failure the error."""
    result = job.result or {}
    subject = f"clone {job.clone_id}" if job.clone_id else "the job"
    clone_id = job.clone_id or "-"
    if job.status is JobStatus.COMPLETED:
        if job.type is JobType.CLONE:
            lines = [
                f"**Clone {clone_id} is ready**: {_way_in(clone_id, result, now)}",
                login_line(clone_id),
                *copy_lines(result.get("copied") or {}),
            ]
        elif job.type is JobType.DELETE:
            lines = [f"**Clone {clone_id} is deleted.**"]
        elif job.type is JobType.BACKUP:
            lines = [
                f"**Clone {clone_id} is backed up**: {result.get('backup_url', '-')}",
                f"It keeps serving: {_way_in(clone_id, result, now)}",
                login_line(clone_id),
            ]
        else:
            lines = [
                f"**Clone {clone_id} serves the restored backup**: {_way_in(clone_id, result, now)}",
                f"Restored from {result.get('backup_site_url', '-')}; "
                f"backup made first: {result.get('safety_backup_url', '-')}",
                login_line(clone_id),
            ]
    else:
        verb = "cancelled" if job.status is JobStatus.CANCELLED else "failed"
        lines = [f"**The {job.type.value} job for {subject} {verb}**: {job.error or 'no reason recorded.'}"]
    note = "\n\n".join(lines)
    return note if len(note) <= NOTE_LIMIT else note[: NOTE_LIMIT - 1] + "…"
