"""A day-one MRI submission's masks (the demo ranks it): FLAIR hyperintensity, the brightest
voxels of each patient's FLAIR volume (its 99th percentile) taken as abnormal."""

from __future__ import annotations

import numpy as np

from competition.tasks.mri.data import FLAIR, Masks, MriData

PERCENTILE = 99.0


def brightest_flair(inputs: MriData) -> Masks:
    predictions = {}
    for case, volume in zip(inputs.cases, inputs.volumes, strict=True):
        flair = volume[..., FLAIR].astype(np.float32)
        inside = flair > 0
        cut = np.percentile(flair[inside], PERCENTILE) if inside.any() else np.inf
        predictions[case] = flair > cut
    return predictions
