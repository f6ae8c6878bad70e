"""The start method of the concurrency tests' many processes.

A fork of the test process copies the locks of whatever threads earlier tests left running
(dask and zarr I/O, scoring pools, SQLAlchemy's caches) into each child, where a lock that
was held at that moment never opens again: one child hung inside a transaction holds a row
lock that stalls all the others. Spawned children start from a fresh interpreter with this
process's environment, working directory and import path; their arguments are pickled."""

from __future__ import annotations

import multiprocessing
from typing import Any


def clean_context() -> Any:
    return multiprocessing.get_context("spawn")
