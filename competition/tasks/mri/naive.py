"""A day-one MRI submission (the demo ranks it): FLAIR hyperintensity, the brightest voxels
of each patient's FLAIR volume (its 99th percentile) taken as abnormal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from competition.tasks.mri import data

PERCENTILE = 99.0


def naive_submission(public: Path) -> bytes:
    inputs = data.load_inputs(public)
    predictions = {}
    for case, volume in zip(inputs.cases, inputs.volumes, strict=True):
        flair = volume[..., data.FLAIR].astype(np.float32)
        inside = flair > 0
        cut = np.percentile(flair[inside], PERCENTILE) if inside.any() else np.inf
        predictions[case] = flair > cut
    return data.write_submission(inputs, predictions)
