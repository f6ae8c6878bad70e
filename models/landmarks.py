"""The landmark refiner: a CNN backbone and the published regression head (pure Keras).

Head as published: MaxPooling2D 4x4, Flatten, Dense 512 relu with L1/L2 regularisation,
Dropout 0.5, BatchNormalization, Dense 2 (the landmark's pixel position, here scaled to
[-1, 1] across the image). Backbones: Keras' Xception (weights from a local file when given,
random otherwise: nothing is downloaded), or a light one for CPU-only training.
"""

from __future__ import annotations

import keras
from keras import layers, regularizers

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
                  width: int = 16, l1: float = 1e-5, l2: float = 1e-4) -> keras.Model:
    inputs = keras.Input((size, size, 3), name="patch")
    features = backbone(backbone_name, size, weights, width)(inputs)
    x = layers.MaxPooling2D(pool_size=(4, 4))(features)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu",
                     kernel_regularizer=regularizers.L1L2(l1=l1, l2=l2))(x)
    x = layers.Dropout(0.5)(x)
    x = layers.BatchNormalization()(x)
    outputs = layers.Dense(2, name="position")(x)
    return keras.Model(inputs, outputs, name=f"refiner_{backbone_name}")
