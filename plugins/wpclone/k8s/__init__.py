"""Kubernetes pieces of the kubernetes runtime (docs/architecture.md#runtimes).

- :mod:`wpclone.k8s.settings`: where and how clones are deployed (namespace, images, classes, resources),
  read from ``WPCLONE_K8S_*`` environment variables.
- :mod:`wpclone.k8s.manifests`: pure functions returning the clone's objects as dicts (no I/O).
- :mod:`wpclone.k8s.apply`: apply, read, list and delete those objects through the provider's
  ``KubernetesHook``.
- :mod:`wpclone.k8s.pod`: the ``KubernetesPodOperator`` that runs a data-plane step in the toolbox image.

Only :mod:`wpclone.k8s.pod` and :mod:`wpclone.k8s.apply` import Airflow or the Kubernetes client: the pod
operator's module when it is imported (wpclone.airflow.steps imports it for the kubernetes runtime only),
:mod:`~wpclone.k8s.apply` at its first API call.
"""
