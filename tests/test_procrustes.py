"""Rigid Procrustes alignment: the pose the refiner brings every specimen into."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from competition.landmark_imaging import procrustes


def moved(points, seed):
    rng = np.random.default_rng(seed)
    pose = Rotation.random(rng=rng).as_matrix(), rng.uniform(-50, 50, 3)
    return procrustes.apply(points, pose), pose


def test_rigid_fit_recovers_a_rigid_motion_and_inverts():
    points = np.random.default_rng(0).normal(0, 10, (51, 3))
    for seed in range(5):
        target, (rotation, shift) = moved(points, seed)
        fitted = procrustes.rigid_fit(points, target)
        assert np.allclose(fitted[0], rotation) and np.allclose(fitted[1], shift)
        assert np.isclose(np.linalg.det(fitted[0]), 1.0)
        back = procrustes.apply(target, procrustes.invert(fitted))
        assert np.allclose(back, points)


def test_rigid_fit_never_reflects():
    points = np.random.default_rng(1).normal(0, 10, (20, 3))
    mirrored = points * [-1, 1, 1]
    rotation, _ = procrustes.rigid_fit(points, mirrored)
    assert np.isclose(np.linalg.det(rotation), 1.0)  # the best proper rotation, not a mirror


def test_mean_shape_ignores_pose_and_keeps_the_first_frame():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 10, (30, 3))
    shapes = [base + rng.normal(0, 0.1, base.shape) for _ in range(6)]
    posed = [shapes[0]] + [moved(s, seed)[0] for seed, s in enumerate(shapes[1:])]
    mean = procrustes.mean_shape(np.array(posed))
    # Close to the unmoved average, in the first shape's frame: rotations did not matter.
    assert np.abs(mean - np.mean(shapes, axis=0)).max() < 0.15
    assert np.abs(mean - base).max() < np.abs(shapes[0] - base).max()
