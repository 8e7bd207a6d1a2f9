"""The control plane's services: what the DAGs' tasks do, as plain functions of their dependencies.

One module per operation: :mod:`~wpclone.services.clone` (wp_clone), :mod:`~wpclone.services.delete`
(wp_delete, and the task group wp_ttl_cleanup maps), :mod:`~wpclone.services.cleanup` (wp_ttl_cleanup's
own tasks), :mod:`~wpclone.services.restore` (wp_backup and wp_restore); what they share is in
:mod:`~wpclone.services.common`, with :class:`~wpclone.services.common.Services`, the dependencies every
service function takes first: the registry, the MySQL admin access, the runtime (with the configuration)
and the settings. No Airflow: the DAG builders (wpclone.airflow.builders) build a ``Services`` once per task
and call these; the jobs API calls the request checks; the tests call them against the real MariaDB.

Every task is idempotent: a retry after a crash at any line converges. Errors are
:mod:`wpclone.errors`' (:class:`~wpclone.errors.BadRequest` for a request that cannot be carried out).
"""
