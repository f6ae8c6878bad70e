"""The tomography task: three-phase segmentation of X-ray volumes (matrix, fibre, pore)."""

from competition.tasks.tomography.task import TomographyTask

__all__ = ["TomographyTask"]
