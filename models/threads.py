"""How many CPU cores a process may really use, and TensorFlow's thread pools sized to them.

A container limited to 2 cores by a CPU quota (cgroups) still shows the host's cores to
`os.cpu_count()`; TensorFlow then starts a thread per host core for each pool and the quota
throttles them all, several times slower than 2 threads. The usable count is the smallest of
the affinity mask, the cgroup v2 `cpu.max` and the cgroup v1 CFS quota.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
CGROUP = Path("/sys/fs/cgroup")


def _quota_cores(root: Path = CGROUP) -> float | None:
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1_quota, v1_period = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if v1_quota.is_file() and v1_period.is_file():
            quota_us = int(v1_quota.read_text())
            return None if quota_us <= 0 else quota_us / int(v1_period.read_text())
    except (OSError, ValueError):
        return None
    return None


def usable_cpus(root: Path = CGROUP) -> dict[str, Any]:
    """{"usable": n, "affinity": ..., "cpu_count": ..., "quota": ...} (quota None: none)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    count = os.cpu_count() or 1
    quota = _quota_cores(root)
    candidates = [c for c in (affinity, count, math.ceil(quota) if quota else None) if c]
    return {"usable": max(1, min(candidates)), "affinity": affinity, "cpu_count": count,
            "quota": quota}


def configure_tensorflow(threads: int | str = "auto") -> dict[str, Any]:
    """Size TensorFlow's intra-op and inter-op pools (`threads`: a number, "auto" = the
    usable cores, or "default" to leave TensorFlow's choice); returns what was set. Pools can
    only be sized before TensorFlow's first operation: later calls report the sizes in
    force."""
    import tensorflow as tf

    cpus = usable_cpus()
    wanted = cpus["usable"] if threads == "auto" else None if threads == "default" \
        else int(threads)
    if wanted is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(wanted)
            tf.config.threading.set_inter_op_parallelism_threads(min(wanted, 2))
        except RuntimeError:  # already initialised (a second model in one process)
            log.debug("TensorFlow's thread pools were already initialised")
    return {**cpus, "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
