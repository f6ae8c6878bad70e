"""The competition tasks, by name."""

from __future__ import annotations

from competition.tasks.base import ScoreResult, Task
from competition.tasks.em import EmTask
from competition.tasks.landmarks import LandmarksTask
from competition.tasks.nuclei import NucleiTask

TASKS: dict[str, Task] = {t.name: t for t in (NucleiTask(), EmTask(), LandmarksTask())}

__all__ = ["TASKS", "ScoreResult", "Task"]
