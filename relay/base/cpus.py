"""How many worker processes `relay serve --workers auto` starts (os only: cheap to import early)."""
from __future__ import annotations

import os

# SQLite takes one writer at a time: past two processes they mostly wait for each other's
# commits (README: more workers want PostgreSQL), so `auto` stops there on SQLite.
SQLITE_AUTO_WORKERS = 2


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which taskset and cgroup cpusets set)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def auto_workers(storage_url: str) -> int:
    """`relay serve --workers auto`: one process per usable CPU, at most SQLITE_AUTO_WORKERS on SQLite."""
    cpus = usable_cpus()
    if storage_url.startswith("sqlite"):
        return max(1, min(cpus, SQLITE_AUTO_WORKERS))
    return max(1, min(cpus, 64))
