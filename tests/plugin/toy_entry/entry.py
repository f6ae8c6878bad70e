"""Least squares on the toy task: y = a x + b."""

import numpy as np


def fit(task, train, config, on_epoch=None):
    if config["slope_only"]:
        return {"a": float(train.x @ train.y / (train.x @ train.x)), "b": 0.0}
    a, b = np.polyfit(train.x, train.y, 1)
    return {"a": float(a), "b": float(b)}


def probabilities(task, model, inputs, config):
    return {i: np.array([[model["a"] * x + model["b"]]])
            for i, x in zip(inputs.ids, inputs.x, strict=True)}


def predict(task, model, inputs, config):
    return probabilities(task, model, inputs, config)
