"""The step programs that the toolbox pods (and the local runtime) run: ``python -m wpclone.steps <step>``.

Only the standard library, PyMySQL and the MariaDB client tools are used here, so this package imports and
runs without Airflow. Configuration comes from the environment; progress is logged as one line per event on
stderr; the result is one JSON object on the last line of stdout; a failure exits non-zero with one sentence.
"""

from __future__ import annotations
