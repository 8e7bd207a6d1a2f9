"""
### wp_delete — delete a clone

Removes the clone's site, database, database user, content and secrets, and marks it `deleted` in the
registry. Idempotent: deleting a clone that is already deleted succeeds and changes nothing. Refused for an
unknown clone, and while a backup or restore works on the clone: try again when that job ends. A clone
still being made is waited for until its job has rolled back (the jobs API's delete cancels that job first;
at most `WPCLONE_DELETE_WAIT` seconds, default 900).

**Params**: `clone_id`.

**Tasks**: validate_request → delete_clone (begin_delete → delete_site → drop_database → mark_deleted,
the same task group `wp_ttl_cleanup` maps over expired clones) → record_delete_failure (only on failure:
the clone is marked `failed` with the reason and freed for another attempt).
"""

from __future__ import annotations

from airflow.sdk import DAG

from wpclone.airflow.builders import build_delete_dag

dag: DAG = build_delete_dag("wp_delete", doc_md=__doc__)
