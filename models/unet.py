"""U-Net (Ronneberger et al. 2015) with same padding, and the multi-arm variant.

Inputs of any size divisible by 2**depth (whole images are predicted by tiles, see
`models.tiling`). Channels-last.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers


def conv_block(x: Any, filters: int, batch_norm: bool, dropout: float, name: str) -> Any:
    for k in range(2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                          kernel_initializer="he_normal", name=f"{name}_conv{k}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{k}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{k}")(x)
    if dropout:
        x = layers.SpatialDropout2D(dropout, name=f"{name}_drop")(x)
    return x


def encoder(x: Any, depth: int, base_filters: int, batch_norm: bool, dropout: float,
            name: str) -> tuple[list[Any], Any]:
    """Feature maps at every level (for the skips) and the bottom of the encoder."""
    skips = []
    for level in range(depth):
        x = conv_block(x, base_filters * 2**level, batch_norm, dropout if level else 0.0,
                       f"{name}_down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"{name}_pool{level}")(x)
    return skips, x


def decoder(x: Any, skips: list[Any], base_filters: int, batch_norm: bool,
            dropout: float) -> Any:
    for level in reversed(range(len(skips))):
        x = layers.Conv2DTranspose(base_filters * 2**level, 2, strides=2, padding="same",
                                   name=f"up{level}_transpose")(x)
        x = layers.Concatenate(name=f"up{level}_skip")([x, skips[level]])
        x = conv_block(x, base_filters * 2**level, batch_norm, dropout if level else 0.0,
                       f"up{level}")
    return x


def build_unet(in_channels: int = 1, out_channels: int = 1, depth: int = 4,
               base_filters: int = 16, batch_norm: bool = True, dropout: float = 0.1,
               name: str = "unet") -> keras.Model:
    """A U-Net with sigmoid outputs (one probability map per output channel)."""
    inputs = keras.Input((None, None, in_channels), name="image")
    skips, x = encoder(inputs, depth, base_filters, batch_norm, dropout, "enc")
    x = conv_block(x, base_filters * 2**depth, batch_norm, dropout, "bottom")
    x = decoder(x, skips, base_filters, batch_norm, dropout)
    outputs = layers.Conv2D(out_channels, 1, activation="sigmoid", dtype="float32",
                            name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


ARMS = ("raw", "preprocessed", "adaptive_threshold")


def build_multiarm_unet(in_channels: int = 1, out_channels: int = 1, depth: int = 4,
                        base_filters: int = 16, batch_norm: bool = True,
                        dropout: float = 0.1, name: str = "multiarm_unet") -> keras.Model:
    """Three encoders, fed the raw image, the preprocessed image and its adaptive threshold,
    joined (concatenated) at every skip level and at the bottom; one decoder."""
    inputs = [keras.Input((None, None, in_channels), name=arm) for arm in ARMS]
    arms = [encoder(x, depth, base_filters, batch_norm, dropout, arm)
            for x, arm in zip(inputs, ARMS, strict=True)]
    skips = [layers.Concatenate(name=f"join{level}")([a[0][level] for a in arms])
             for level in range(depth)]
    x = layers.Concatenate(name="join_bottom")([a[1] for a in arms])
    x = conv_block(x, base_filters * 2**depth, batch_norm, dropout, "bottom")
    x = decoder(x, skips, base_filters, batch_norm, dropout)
    outputs = layers.Conv2D(out_channels, 1, activation="sigmoid", dtype="float32",
                            name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def build_unet_nd(dims: int = 3, in_channels: int = 1, n_classes: int = 3, depth: int = 3,
                  base_filters: int = 8, batch_norm: bool = True, dropout: float = 0.0,
                  name: str | None = None) -> keras.Model:
    """A 2-D or 3-D U-Net with softmax class outputs (one probability per class and voxel),
    for multi-class volumes: inputs (..., in_channels) of any size divisible by 2**depth."""
    conv, pool, up, drop = {
        2: (layers.Conv2D, layers.MaxPooling2D, layers.Conv2DTranspose, layers.SpatialDropout2D),
        3: (layers.Conv3D, layers.MaxPooling3D, layers.Conv3DTranspose, layers.SpatialDropout3D),
    }[dims]

    def block(x: Any, filters: int, rate: float, label: str) -> Any:
        for k in range(2):
            x = conv(filters, 3, padding="same", use_bias=not batch_norm,
                     kernel_initializer="he_normal", name=f"{label}_conv{k}")(x)
            if batch_norm:
                x = layers.BatchNormalization(name=f"{label}_bn{k}")(x)
            x = layers.Activation("relu", name=f"{label}_relu{k}")(x)
        return drop(rate, name=f"{label}_drop")(x) if rate else x

    inputs = keras.Input((None,) * dims + (in_channels,), name="image")
    x, skips = inputs, []
    for level in range(depth):
        x = block(x, base_filters * 2**level, dropout if level else 0.0, f"down{level}")
        skips.append(x)
        x = pool(2, name=f"pool{level}")(x)
    x = block(x, base_filters * 2**depth, dropout, "bottom")
    for level in reversed(range(depth)):
        x = up(base_filters * 2**level, 2, strides=2, padding="same",
               name=f"up{level}_transpose")(x)
        x = layers.Concatenate(name=f"up{level}_skip")([x, skips[level]])
        x = block(x, base_filters * 2**level, dropout if level else 0.0, f"up{level}")
    outputs = conv(n_classes, 1, activation="softmax", dtype="float32",
                   name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name or f"unet{dims}d")
