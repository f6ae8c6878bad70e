"""The sample entry a code competition publishes (public/sample_entry/): the smallest entry
that writes a valid submission, for a participant to copy and improve."""

ENTRY = '''"""Sample entry: the stretched intensity as the cell probability (membranes are dark).
Copy this folder, improve fit() and predict(), pack it with `competition pack FOLDER --out
entry.zip` and submit the zip. The harness calls fit() on the public training stack, then
predict() on the hidden test stack, and writes the submission file from what predict()
returns."""
import numpy as np


def fit(task, train, config, on_epoch=None):
    return {}  # nothing learned: a real entry trains here


def predict(task, model, inputs, config):
    """Cell probabilities (slices, H, W) in [0, 1]."""
    volume = np.asarray(inputs.volume, np.float32)
    low, high = np.percentile(volume, (1, 99))
    return np.clip((volume - low) / max(high - low, 1e-6), 0, 1)
'''

CONFIG = "tasks: [em]\nseed: 0\n"
