"""Ablation (a) of the landmark refiner: ALPACA plus a per-landmark bias correction, no images.

ALPACA's errors are partly systematic: in the common pose (each specimen rigidly fitted onto
the training mean shape by its estimates) a landmark's estimate tends to sit on the same
side of the truth. The correction learns each landmark's mean offset (truth minus estimate)
on the training specimens and moves a new estimate by a share of it, the share chosen by
leave-one-out over the training specimens. A refiner only counts as using its images where
it beats this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from competition.landmark_imaging import procrustes

SHARES = np.round(np.linspace(0, 1, 11), 2)


@dataclass(frozen=True)
class BiasCorrection:
    mean: np.ndarray  # (landmarks, 3) the common pose: the training mean shape
    offsets: np.ndarray  # (landmarks, 3) mean truth - estimate, in the common pose
    share: float  # of the offset applied
    # the mean error of the chosen share, each training specimen corrected by offsets
    # learned on the others (None: fewer than two specimens)
    validation_error: float | None = None

    def apply(self, estimate: np.ndarray) -> np.ndarray:
        """One specimen's corrected landmarks, in its own pose."""
        pose = procrustes.rigid_fit(estimate, self.mean)
        moved = procrustes.apply(estimate, pose) + self.share * self.offsets
        return procrustes.apply(moved, procrustes.invert(pose))


def offsets(estimates: np.ndarray, truths: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """(landmarks, 3): the mean of truth - estimate over specimens, each posed by a rigid fit
    of its estimates onto `mean` (the truth is never used to pose: a test specimen has none)."""
    moves = []
    for estimate, truth in zip(estimates, truths, strict=True):
        pose = procrustes.rigid_fit(estimate, mean)
        moves.append(procrustes.apply(truth, pose) - procrustes.apply(estimate, pose))
    out: np.ndarray = np.mean(moves, axis=0)
    return out


def learn(estimates: np.ndarray, truths: np.ndarray, shares: np.ndarray = SHARES,
          criterion: str = "wins") -> BiasCorrection:
    """The correction from training specimens' (leave-one-out) estimates and their truths.
    The share is chosen with each specimen corrected by offsets learned on the others:
    `wins`, the share that beats the estimates most often (ties: the lower mean error; the
    refiner's own shrinkage is chosen so); `error`, the one of lowest mean error."""
    if criterion not in ("wins", "error"):
        raise ValueError(f"criterion {criterion!r}: wins or error")
    estimates, truths = np.asarray(estimates, float), np.asarray(truths, float)
    mean = procrustes.mean_shape(truths)
    n = len(estimates)
    wins = np.zeros(len(shares))
    errors = np.zeros(len(shares))
    if n > 1:
        for k in range(n):
            rest = np.arange(n) != k
            left_out = offsets(estimates[rest], truths[rest], mean)
            base = np.linalg.norm(estimates[k] - truths[k], axis=1)
            for g, share in enumerate(shares):
                moved = BiasCorrection(mean, left_out, float(share)).apply(estimates[k])
                d = np.linalg.norm(moved - truths[k], axis=1)
                wins[g] += (d < base).sum()
                errors[g] += d.sum()
        if criterion == "wins":
            best = max(range(len(shares)), key=lambda g: (wins[g], -errors[g]))
        else:
            best = int(np.argmin(errors))
    else:
        best = 0
    validation = float(errors[best] / truths[:, :, 0].size) if n > 1 else None
    return BiasCorrection(mean, offsets(estimates, truths, mean), float(shares[best]),
                          validation)
