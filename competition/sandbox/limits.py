"""The limits of one run of a participant's code (competition.yaml's `code:` section)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeLimits:
    wall_seconds: int = 900
    cpu_seconds: int = 1800  # of the whole process tree
    memory_mb: int = 4096  # address space per process, summed resident memory of the tree
    processes: int = 64
    disk_mb: int = 1024  # what the entry writes to its output folder (and its /tmp)
    log_kb: int = 256  # of stdout and of stderr kept (the tails); 64 x that ends the run
