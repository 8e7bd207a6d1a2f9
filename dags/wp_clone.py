"""
### wp_clone — a short-lived staging clone of a registered WordPress site

Copies a **registered source** site into a new clone at its own URL, with its own database, database user
and wp-content, and an expiry (`ttl_minutes`); `wp_ttl_cleanup` deletes it when that passes.

**Params**: `source_url` (a registered source), `ttl_minutes` (10-10080, default 60), `clone_id` (empty:
generated), `copy_mode` (`everything`; `database`: without uploads; `files`: all of wp-content, and of the
database only settings and users), `source` (only for a source registered as an Airflow connection
`wpclone_source_<name>`: its name; the jobs API fills it in; docs/sources.md).

**The trigger form**: `source_url` offers the sources of the wpclone configuration (read when the DAG is
parsed; the first is the default) as suggestions, not as a closed list (`enum`): a source registered as an
Airflow connection `wpclone_source_<name>` cannot be listed when the DAG is parsed (Airflow 3's DAG processor
has no access to connections), so its URL can still be typed in, with its name in `source` (whose
suggestions are the configured names and the `AIRFLOW_CONN_WPCLONE_SOURCE_*` variables'). Each field's
description states its rule in words; the form checks no pattern itself, so a bad value is refused by
Airflow's trigger before a run is created, and the plugin says which rule it broke, in words
(wpclone.api.form). The TTL's bounds are exclusive ones, which the form's number field does not clamp: a
TTL out of range is refused, never silently changed. **New clone** in the UI's navigation (the plugin's page)
offers every registered source, connections included, as a closed choice and says each field's rule beside
the field as it is typed.

**Tasks**: validate_request (and reserves the clone) → create_database → copy_database ∥ copy_content →
finalize_clone (the staging safety first: noindex option, a fresh admin password, no sessions of the source;
then the site served with noindex header, no outgoing mail, no visitor cron, environment type `staging`; then
it waits until the site is right; then registry `ready`, and the result names the URL, admin user, where the
password is, and `expires_at`). If any task fails, **rollback_clone** removes everything this run
created and marks the registry `failed` with the reason; the run ends failed.
"""

from __future__ import annotations

from airflow.sdk import DAG

from wpclone.airflow.builders import build_clone_dag

dag: DAG = build_clone_dag("wp_clone", doc_md=__doc__)
