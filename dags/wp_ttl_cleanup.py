"""
### wp_ttl_cleanup — delete expired clones, sweep orphans, drop old job rows

Every 5 minutes, one run at a time, no catch-up. Deletes every clone whose `expires_at` has passed (and
that no job is working on) with the same `delete_clone` task group as `wp_delete`, mapped over them; then
sweeps orphans: databases, database users, sites and runtime objects that carry our prefix (`wpc_`) or
labels but have no live registry row. `purge_old_jobs` removes the registry's rows of ended jobs asked for
more than `WPCLONE_JOBS_RETENTION_DAYS` (default 30) days ago; a job that has not ended keeps its row.
`report` summarises what was done.
"""

from __future__ import annotations

from airflow.sdk import DAG

from wpclone.airflow.builders import build_ttl_cleanup_dag

dag: DAG = build_ttl_cleanup_dag("wp_ttl_cleanup", doc_md=__doc__)
