"""The EM task: ISBI 2012 membrane segmentation (TIFF stacks, V_rand)."""

from competition.tasks.em.task import EmTask

__all__ = ["EmTask"]
