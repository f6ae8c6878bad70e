"""A day-one landmark submission's points (the demo ranks it): align one training skull to each
test skull by centroid and principal axes (the sign ambiguity settled by nearest-neighbour
distance) and carry its landmarks over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from competition.formats import meshes
from competition.tasks.base import Maps
from competition.tasks.landmarks.data import LandmarkData


def transferred(public: Path, inputs: LandmarkData) -> Maps:
    """Each input specimen's landmarks ({specimen: (landmarks, 3)}, in `inputs.landmarks`
    order), carried over from the first training skull."""
    template_ply = sorted((public / "train" / "Models").glob("*.ply"))[0]
    template = np.asarray(meshes.read_mesh(template_ply.read_bytes(), template_ply.name).vertices)
    marks_path = public / "train" / "LMs" / f"{template_ply.stem}.mrk.json"
    marks = meshes.read_markups(marks_path.read_bytes(), marks_path.name)
    t_center, t_axes = principal_axes(template)
    tree = cKDTree(template - t_center)
    out: Maps = {}
    for specimen, mesh in zip(inputs.ids, inputs.meshes, strict=True):
        target = np.asarray(mesh.vertices)
        center, axes = principal_axes(target)
        sample = (target - center)[:: max(1, len(target) // 2000)]
        best = None
        for signs in ([1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]):
            rotation = t_axes @ np.diag(signs) @ axes.T  # target frame -> template frame
            cost = tree.query(sample @ rotation.T)[0].mean()
            if best is None or cost < best[0]:
                best = (cost, rotation)
        assert best is not None
        rotation = best[1]
        target_tree = cKDTree(target)
        out[specimen] = np.array([target[target_tree.query((marks[name] - t_center)
                                                           @ rotation + center)[1]]
                                  for name in inputs.landmarks])
    return out


def principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = points.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((points - center).T))
    vectors = vectors[:, ::-1]
    if np.linalg.det(vectors) < 0:
        vectors[:, 2] *= -1
    return center, vectors
