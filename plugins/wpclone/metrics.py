"""Process measurements our steps report."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB.

    ``VmHWM`` belongs to the process's own address space since its exec, so unlike ``ru_maxrss`` it does
    not include the memory of a large parent (a pytest run, an Airflow worker) that spawned it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
