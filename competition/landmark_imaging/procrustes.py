"""Rigid (Procrustes) alignment of landmark configurations (pure numpy).

The refiner brings every specimen into one pose before it draws patches: hidden test
specimens are rotated at random, and a patch's in-plane axes are only comparable across
specimens when the specimens share a frame.
"""

from __future__ import annotations

import numpy as np


def rigid_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rotation R and translation t (no reflection, no scaling) that minimise
    |source @ R.T + t - target|^2 over corresponding (k, 3) points (Kabsch)."""
    source, target = np.asarray(source, float), np.asarray(target, float)
    sc, tc = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((source - sc).T @ (target - tc))
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = (u @ np.diag([1.0, 1.0, d]) @ vt).T
    return rotation, tc - sc @ rotation.T


def apply(points: np.ndarray, pose: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    rotation, translation = pose
    moved: np.ndarray = np.asarray(points, float) @ rotation.T + translation
    return moved


def invert(pose: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    rotation, translation = pose
    return rotation.T, -translation @ rotation


def mean_shape(configurations: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Generalised Procrustes mean (rigid, unscaled) of (n, k, 3) configurations, in the
    frame of the first one."""
    configurations = np.asarray(configurations, float)
    mean = configurations[0]
    for _ in range(iterations):
        mean = np.mean([apply(c, rigid_fit(c, mean)) for c in configurations], axis=0)
    return apply(mean, rigid_fit(mean, configurations[0]))
