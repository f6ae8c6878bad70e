"""A synthetic SlicerMorph source, written in the real layout (the demo runs the real preparer
on it): skull-like meshes whose landmarks sit on features, in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from competition.formats import meshes
from competition.tasks.base import refuse_spec

# Unit directions of the landmark features on the template (bumps and ridges of a "skull").
_LANDMARK_DIRECTIONS = np.array([
    [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1],
    [1, 1, 1], [-1, 1, 1], [1, -1, 1], [-1, -1, 1], [0.3, 0.8, -0.5],
], dtype=np.float64)
_LANDMARK_DIRECTIONS /= np.linalg.norm(_LANDMARK_DIRECTIONS, axis=1, keepdims=True)


def skull_mesh(rng: np.random.Generator) -> tuple[trimesh.Trimesh, dict[str, np.ndarray]]:
    """An ellipsoid with a bump at each landmark direction, shape varying per specimen."""
    sphere = trimesh.creation.icosphere(subdivisions=4)
    axes = np.array([12.0, 8.0, 6.0]) * rng.uniform(0.9, 1.1, 3)
    heights = rng.uniform(0.8, 1.6, len(_LANDMARK_DIRECTIONS))
    wobble = rng.normal(0, 0.25, (3, 3))

    def deform(u: np.ndarray) -> np.ndarray:
        cos = u @ _LANDMARK_DIRECTIONS.T
        bumps = (heights * np.exp((cos - 1) / 0.02)).sum(axis=1)
        radial = 1 + 0.04 * np.einsum("ni,ij,nj->n", u, wobble, u)
        moved: np.ndarray = u * axes * radial[:, None] + u * bumps[:, None]
        return moved

    vertices = deform(np.asarray(sphere.vertices))
    mesh = trimesh.Trimesh(vertices, sphere.faces, process=False)
    points = deform(_LANDMARK_DIRECTIONS)
    # Specimens come roughly pre-aligned, as in the real data: a small residual pose.
    angle = rng.normal(0, 0.05, 3)
    # trimesh is unannotated
    pose = trimesh.transformations.euler_matrix(*angle)  # type: ignore[no-untyped-call]
    pose[:3, 3] = rng.normal(0, 0.5, 3)
    mesh.apply_transform(pose)
    points = points @ pose[:3, :3].T + pose[:3, 3]
    return mesh, {str(k + 1): p for k, p in enumerate(points)}


def write_landmarks_source(root: Path, seed: int, n_specimens: int = 12, *,
                           spec: str | None = None) -> None:
    """The SlicerMorph layout: Models/<name>.ply and LMs/<name>.mrk.json."""
    refuse_spec(spec, "the synthetic landmarks source")
    rng = np.random.default_rng(seed)
    (root / "Models").mkdir(parents=True)
    (root / "LMs").mkdir(parents=True)
    for k in range(n_specimens):
        mesh, points = skull_mesh(rng)
        name = f"strain_{k + 1:02d}"
        (root / "Models" / f"{name}.ply").write_bytes(meshes.write_mesh(mesh))
        (root / "LMs" / f"{name}.mrk.json").write_bytes(meshes.write_mrk_json(points))
