"""The nuclei task: DSB 2018 instance segmentation (Kaggle's RLE CSV, mean AP)."""

from competition.tasks.nuclei.task import NucleiTask

__all__ = ["NucleiTask"]
