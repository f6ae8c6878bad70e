"""The landmark refiner: a CNN backbone and the published regression head (pure Keras).

Head as published: MaxPooling2D 4x4, Flatten, Dense 512 relu with L1/L2 regularisation,
Dropout 0.5, BatchNormalization, Dense 2 (the landmark's pixel position, here scaled to
[-1, 1] across the image). Backbones: Keras' Xception (weights from a local file when given,
random otherwise: nothing is downloaded), or a light one for CPU-only training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import layers, regularizers

if TYPE_CHECKING:
    import numpy as np

BACKBONES = ("xception", "light")


def light_backbone(size: int = 224, width: int = 16) -> keras.Model:
    """Five stride-2 blocks of separable convolutions: 224 -> 7, like Xception's last map."""
    inputs = keras.Input((size, size, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    for k in range(5):
        filters = width * 2 ** k
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    return keras.Model(inputs, x, name="light_backbone")


def backbone(name: str, size: int = 224, weights: str | None = None,
             width: int = 16) -> keras.Model:
    if name == "xception":
        base = keras.applications.Xception(include_top=False, weights=None,
                                           input_shape=(size, size, 3))
        if weights:  # a local .h5/.weights.h5 file, e.g. ImageNet weights copied by hand
            base.load_weights(weights)
        inputs = keras.Input((size, size, 3))
        x = keras.applications.xception.preprocess_input(inputs)
        return keras.Model(inputs, base(x), name="xception_backbone")
    if name == "light":
        return light_backbone(size, width)
    raise ValueError(f"backbone {name!r}: choose one of {', '.join(BACKBONES)}")


def build_refiner(backbone_name: str = "light", size: int = 224, weights: str | None = None,
                  width: int = 16, l1: float = 1e-5, l2: float = 1e-4,
                  kinds: int = 1) -> keras.Model:
    """One kind of patch: the published model, a patch in, a pixel position out. Several
    (e.g. each landmark and view): they share the backbone and the head's hidden layer, and
    each kind has its own last Dense layer, starting at zero weights (a second input, the
    kind's one-hot code, picks its output; `start_outputs` sets where they start)."""
    patch = keras.Input((size, size, 3), name="patch")
    features = backbone(backbone_name, size, weights, width)(patch)
    x = layers.MaxPooling2D(pool_size=(4, 4))(features)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu",
                     kernel_regularizer=regularizers.L1L2(l1=l1, l2=l2))(x)
    x = layers.Dropout(0.5)(x)
    x = layers.BatchNormalization()(x)
    if kinds == 1:
        return keras.Model(patch, layers.Dense(2, name="position")(x),
                           name=f"refiner_{backbone_name}")
    which = keras.Input((kinds,), name="kind")
    every = layers.Dense(2 * kinds, kernel_initializer="zeros", name="positions")(x)
    position = layers.Dot(axes=1, name="position")([which, layers.Reshape((kinds, 2))(every)])
    return keras.Model([patch, which], position, name=f"refiner_{backbone_name}")


def start_outputs(model: keras.Model, targets: np.ndarray, kinds: np.ndarray) -> None:
    """Start each kind's output at its mean training target: with zero weights the untrained
    model predicts where the landmark lies on average relative to the estimate, and
    training learns what the image adds (the output layer's bias would move too slowly at
    Adam's published 1e-4 to get there)."""
    import numpy as np

    layer = model.get_layer("positions")
    count = layer.units // 2
    means = np.zeros((count, 2), np.float32)
    for k in range(count):
        if (kinds == k).any():
            means[k] = targets[kinds == k].mean(axis=0)
    kernel, _ = layer.get_weights()
    layer.set_weights([kernel, means.ravel()])
