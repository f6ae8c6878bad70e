"""The sample entry a code competition publishes (public/sample_entry/): the smallest entry
that writes a valid submission, for a participant to copy and improve."""

ENTRY = '''"""Sample entry: Otsu threshold and connected components. Copy this folder, improve
fit() and predict(), pack it with `competition pack FOLDER --out entry.zip` and submit the
zip. The harness calls fit() on the public training data, then predict() on the hidden test
images, and writes the submission file from what predict() returns."""
import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def fit(task, train, config, on_epoch=None):
    return {}  # nothing learned: a real entry trains here


def predict(task, model, inputs, config):
    """{ImageId: instance labels (H, W)}: 0 background, 1..n the nuclei."""
    out = {}
    for item in task.pixel_items(inputs):  # grey images, nuclei bright
        image = np.asarray(item.image, np.float32)
        level = threshold_otsu(image) if image.max() > image.min() else image.max()
        labels, _ = ndimage.label(image > level)
        out[item.key] = labels.astype(np.int32)
    return out
'''

CONFIG = "tasks: [nuclei]\nseed: 0\n"
