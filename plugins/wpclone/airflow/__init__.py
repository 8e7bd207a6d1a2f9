"""The Airflow adapters: what turns the services into DAGs, and what Airflow calls back.

- :mod:`~wpclone.airflow.builders`: one builder per DAG shape (the DAG files call them); each task builds
  its dependencies once (:func:`wpclone.airflow.services.services`) and calls a service.
- :mod:`~wpclone.airflow.services`: the one factory of the services' dependencies from Airflow's connections
  ``wpclone_registry`` and ``wpclone_mysql`` and the configuration (the registry, the MySQL access, the
  runtime, the settings); which login does what (least privilege) is said there.
- :mod:`~wpclone.airflow.xcom`: the error protocol: a failing task records its sentence as XCom ``error``.
- :mod:`~wpclone.airflow.steps`: the operator of a data-plane step, by runtime (a local process, or a pod).
- :mod:`~wpclone.airflow.runparams`: run params that may carry a credential, kept out of the run's conf.
- :mod:`~wpclone.airflow.listener`: writes each job's outcome as its run's note (the plugin's listener).

The plugin itself is :mod:`wpclone.plugin` (the package's ``airflow.plugins`` entry point).
"""
