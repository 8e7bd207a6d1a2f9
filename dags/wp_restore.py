"""
### wp_restore — restore a clone from a backup archive

Loads a backup (a wpclone archive, any tar/zip with `database.sql[.gz]` and `wp-content/`, or a bare
`.sql`/`.sql.gz`) into an existing clone. **The clone keeps serving what it served until the restored site
answers**: the backup goes into a fresh database with a login that may touch only it, its URLs are
rewritten to the clone's, its wp-content is staged beside the clone's, and only then are both switched in
(one atomic `RENAME TABLE`). If anything fails, the switch is undone and nothing of the restore is left.

**Params**: `clone_id` (a `ready` clone), `source_backup_url` (`https://`; on the local runtime also
`http://` and `file://` under the backup directory), `source` (the name of the clone's source when it is an
Airflow connection; the jobs API fills it in). URLs, archives and SQL are checked: see
docs/backup-restore.md.

**Tasks**: validate_request → lock_clone → prepare_restore (a fresh database and login) → load_backup (fetch,
verify, guard, rewrite, load, stage) → verify_restore (a complete WordPress site) → apply_staging_safety →
deploy_preview → await_preview_ready (the restored site, privately, at the clone's URL) → backup_clone (a
safety backup of what the clone serves) → switch_site → await_site_ready → finish_restore (drops what was
replaced) → release_clone (always; on failure it switches back and removes the restore's leftovers, and the
clone records why).
"""

from __future__ import annotations

from airflow.sdk import DAG

from wpclone.airflow.builders import build_restore_dag

dag: DAG = build_restore_dag("wp_restore", doc_md=__doc__)
