"""
### wp_backup — archive a clone

Writes the clone's database (`mariadb-dump`) and wp-content, with a manifest (site URL, table prefix,
checksums, sizes), to the backup location as `<clone_id>/<clone_id>-<UTC stamp>.tar.gz` plus a `.sha256`
sidecar; the result names it (`backup_url`). The clone keeps serving meanwhile; other jobs on it wait.

**Params**: `clone_id` (a `ready` clone), `source` (the name of the clone's source when it is an Airflow
connection; the jobs API fills it in).

**Tasks**: validate_request → lock_clone → backup_clone → release_clone (always: releases the clone).
"""

from __future__ import annotations

from airflow.sdk import DAG

from wpclone.airflow.builders import build_backup_dag

dag: DAG = build_backup_dag("wp_backup", doc_md=__doc__)
