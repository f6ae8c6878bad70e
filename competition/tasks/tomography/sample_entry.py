"""The sample entry a code competition publishes (public/sample_entry/): the smallest entry
that writes a valid submission, for a participant to copy and improve."""

ENTRY = '''"""Sample entry: three phases by grey level, at thresholds chosen from the training
labels' phase fractions. Copy this folder, improve fit() and predict(), pack it with
`competition pack FOLDER --out entry.zip` and submit the zip. The harness calls fit() on the
public training slab, then predict() on the hidden test slab, and writes the submission file
from what predict() returns (slice by slice: volumes may be large)."""
import numpy as np


def fit(task, train, config, on_epoch=None):
    step = max(1, train.shape[0] // 8)  # a few slices are enough for grey-level statistics
    grey = np.concatenate([np.ravel(train.volume[z]) for z in range(0, train.shape[0], step)])
    labels = np.concatenate([np.ravel(train.labels[z]) for z in range(0, train.shape[0], step)])
    means = [grey[labels == c].mean() if (labels == c).any() else np.nan for c in range(3)]
    order = np.argsort(np.nan_to_num(means, nan=np.inf))  # classes from darkest to brightest
    fractions = [np.mean(labels == c) for c in order]
    cuts = np.percentile(grey, 100 * np.cumsum(fractions)[:-1])
    return {"order": order.tolist(), "cuts": cuts.tolist()}


def predict(task, model, inputs, config):
    """A (z, y, x) uint8 label volume: 0 matrix, 1 fibre, 2 pore."""
    order = np.asarray(model["order"], np.uint8)
    out = np.zeros(inputs.shape, np.uint8)
    for z in range(inputs.shape[0]):
        out[z] = order[np.digitize(np.asarray(inputs.volume[z]), model["cuts"])]
    return out
'''

CONFIG = "tasks: [tomography]\nseed: 0\n"
