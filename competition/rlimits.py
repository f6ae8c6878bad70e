"""Memory and CPU-time limits of a scoring process tree (`resource.setrlimit`).

A scoring child calls `apply` before it loads anything: from then on it may add at most
`memory_mb` of address space to what it held when it started (a child forked from a large
server inherits the server's mappings, which it does not touch) and use `cpu_seconds` of CPU.

- Memory: the soft RLIMIT_AS is the budget; the hard limit sits `RESERVE_MB` above it, so that
  after a MemoryError `release_reserve` lifts the soft limit and the child can still build and
  send its report.
- CPU: the soft RLIMIT_CPU is the budget. Its signal, SIGXCPU, keeps its default action (the
  process ends at once, even inside a long C call), so the parent, which knows the limits it
  asked for, reads "killed by SIGXCPU" as the CPU limit. The hard limit a few seconds later
  is a backstop.
- Worker pools (the EM scorer spreads slices over processes) would inherit the limits per
  process; `shared` gives each worker (and the pool's parent, meanwhile) an equal share of
  what the tree has left, so the whole tree stays within one budget, and a worker's breach
  comes back to the child as an exception.

Linux semantics; where a limit cannot be set (no /proc, a lower hard limit) it is skipped or
clamped, never an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import resource
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MIB = 1024 * 1024
RESERVE_MB = 64  # room to report a MemoryError in
CPU_GRACE_S = 5  # between SIGXCPU and the kernel's SIGKILL

_ACTIVE: ScoringLimits | None = None  # what `apply` set in this process


@dataclass(frozen=True)
class ScoringLimits:
    memory_mb: int
    cpu_seconds: int

    def memory_message(self) -> str:
        return (f"the scorer needed more than {self.memory_mb} MB of memory (this "
                "competition's scoring limit), so the submission was stopped; it is not "
                "counted. Check the file's sizes and shapes against the test data's")

    def cpu_message(self) -> str:
        return (f"the scorer needed more than {self.cpu_seconds} s of CPU time (this "
                "competition's scoring limit), so the submission was stopped; it is not "
                "counted")


class CpuLimitExceeded(Exception):
    """A worker of the scoring tree used up its share of the CPU time."""


def active() -> ScoringLimits | None:
    """The limits `apply` set in this process (inherited by forked workers), or None."""
    return _ACTIVE


def address_space() -> int | None:
    """This process's address space in bytes (Linux /proc), or None where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


def cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _set(which: int, soft: int, hard: int) -> None:
    """Set a limit, clamped to the current hard limit (only root may raise that)."""
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    try:
        resource.setrlimit(which, (soft, hard))
    except (ValueError, OSError) as e:
        log.warning("could not set resource limit %s to %s: %s", which, (soft, hard), e)


def apply(limits: ScoringLimits) -> None:
    """Bound this process (and what it forks) from now on."""
    global _ACTIVE
    _ACTIVE = limits
    _set(resource.RLIMIT_CORE, 0, 0)  # SIGXCPU's default action would dump core
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    base = address_space()
    if base is not None:
        soft = base + limits.memory_mb * MIB
        _set(resource.RLIMIT_AS, soft, soft + RESERVE_MB * MIB)
    cpu = math.ceil(cpu_used()) + limits.cpu_seconds
    _set(resource.RLIMIT_CPU, cpu, cpu + CPU_GRACE_S)


def release_reserve() -> None:
    """After a MemoryError: lift the soft memory limit to the hard one (the reserve)."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


@contextlib.contextmanager
def shared(workers: int) -> Iterator[dict[str, Any]]:
    """`initializer`/`initargs` for a process pool of `workers` started inside a bounded
    process (an empty dict where no limits are set). While the pool runs, this process and
    each worker hold an equal share of the memory this process has left, and the workers an
    equal share of its CPU time (it only waits meanwhile): the tree stays within one budget.
    This process gets its whole remainder back afterwards."""
    if _ACTIVE is None:
        yield {}
        return
    soft_as, hard_as = resource.getrlimit(resource.RLIMIT_AS)
    base = address_space()
    memory_share = None
    if soft_as != resource.RLIM_INFINITY and base is not None:
        memory_share = max(soft_as - base, 0) // (workers + 1)
        _set(resource.RLIMIT_AS, base + memory_share, hard_as)
    soft_cpu, _ = resource.getrlimit(resource.RLIMIT_CPU)
    cpu_share = None
    if soft_cpu != resource.RLIM_INFINITY:
        cpu_share = max(1, math.floor((soft_cpu - cpu_used()) / workers))
    try:
        yield {"initializer": _worker_init, "initargs": (_ACTIVE, memory_share, cpu_share)}
    finally:
        if memory_share is not None:
            _set(resource.RLIMIT_AS, soft_as, hard_as)


def _raise_cpu_limit(signum: int, frame: Any) -> None:
    raise CpuLimitExceeded("the worker's share of the scoring CPU time is used up")


def _worker_init(limits: ScoringLimits, memory_share: int | None,
                 cpu_share: int | None) -> None:
    """In a pool worker: its share of the limits; a breach raises in the task it runs (the
    pool sends the exception back) instead of killing the worker."""
    global _ACTIVE
    _ACTIVE = limits
    die_with_parent()
    base = address_space()
    if memory_share is not None and base is not None:
        _set(resource.RLIMIT_AS, base + memory_share, base + memory_share + RESERVE_MB * MIB)
    if cpu_share is not None:
        signal.signal(signal.SIGXCPU, _raise_cpu_limit)
        cpu = math.ceil(cpu_used()) + cpu_share
        _set(resource.RLIMIT_CPU, cpu, cpu + CPU_GRACE_S)


def die_with_parent() -> None:
    """This process ends (SIGKILL) when its parent does: a scoring child whose worker was
    killed, or a pool worker whose scoring child a limit killed, never runs on outside any
    process tree (Linux prctl PR_SET_PDEATHSIG; elsewhere skipped). A parent that died
    before the signal was armed is caught by the check after it."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent == 1 or os.getppid() != parent:
        os._exit(1)
