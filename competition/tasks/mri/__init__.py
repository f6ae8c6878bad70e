"""The MRI task: brain FLAIR abnormality segmentation on the Kaggle LGG data (NIfTI label
volumes or slice RLE CSV; per-patient Dice, HD, HD95, ASSD)."""

from competition.tasks.mri.task import MriTask

__all__ = ["MriTask"]
