"""The sample entry a code competition publishes (public/sample_entry/): the smallest entry
that writes a valid submission, for a participant to copy and improve."""

ENTRY = '''"""Sample entry: the brightest FLAIR voxels of each patient as the tumour, at the
percentile that matched the training masks' share of voxels. Copy this folder, improve fit()
and predict(), pack it with `competition pack FOLDER --out entry.zip` and submit the zip.
The harness calls fit() on the public training patients, then predict() on the hidden test
patients, and writes the submission file from what predict() returns."""
import numpy as np

FLAIR = 1  # channels: pre-contrast, FLAIR, post-contrast


def fit(task, train, config, on_epoch=None):
    share = np.mean([mask.mean() for mask in train.masks])
    return {"percentile": float(100 * (1 - share))}


def predict(task, model, inputs, config):
    """{case: (slices, H, W) mask}."""
    out = {}
    for case, volume in zip(inputs.cases, inputs.volumes):
        flair = volume[..., FLAIR]
        out[case] = flair > np.percentile(flair, model["percentile"])
    return out
'''

CONFIG = "tasks: [mri]\nseed: 0\n"
