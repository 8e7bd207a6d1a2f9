"""wpclone's plugin for Airflow's plugins folder (``[core] plugins_folder`` pointing at this directory).

Airflow imports every ``.py`` file under its plugins folder as a top-level module named after the file;
``.airflowignore`` keeps it out of the ``wpclone`` package, which this module imports as a package (Airflow
puts the plugins folder on ``sys.path``). Installed as a distribution, the package registers the same plugin
through its ``airflow.plugins`` entry point; Airflow keeps one of the two.
"""

from __future__ import annotations

from wpclone.plugin import WpclonePlugin

__all__ = ["WpclonePlugin"]
