"""The sample entry a code competition publishes (public/sample_entry/): the smallest entry
that writes a valid submission, for a participant to copy and improve."""

ENTRY = '''"""Sample entry: each landmark at the mesh's centroid plus its mean offset over the
training skulls (test meshes come in poses of their own: a real entry registers them).
Copy this folder, improve fit() and predict(), pack it with `competition pack FOLDER --out
entry.zip` and submit the zip. The harness calls fit() on the public training meshes and
landmarks, then predict() on the hidden test meshes, and writes the submission file from
what predict() returns."""
import numpy as np


def centroid(mesh):
    return np.asarray(mesh.vertices, np.float64).mean(axis=0)


def fit(task, train, config, on_epoch=None):
    offsets = [train.points[k] - centroid(mesh) for k, mesh in enumerate(train.meshes)]
    return {"offset": np.mean(offsets, axis=0)}


def predict(task, model, inputs, config):
    """{specimen: (landmarks, 3)} in the mesh's millimetres."""
    return {i: centroid(mesh) + model["offset"] for i, mesh in zip(inputs.ids, inputs.meshes)}
'''

CONFIG = "tasks: [landmarks]\nseed: 0\n"
