"""What landmark entries train on and predict: surface meshes with their landmarks."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import CompetitionError, SubmissionError
from competition.formats import landmarks_csv, meshes
from competition.tasks.base import CvItem, DataFiles, Maps
from competition.tasks.landmarks import prepare


@dataclass
class LandmarkData:
    ids: list[str]
    meshes: list[Any]  # trimesh.Trimesh, millimetres
    landmarks: list[str]  # names, in order
    points: np.ndarray | None = None  # (specimens, landmarks, 3); training only


def _names_and_points(public: Path) -> tuple[list[str], dict[str, dict[str, np.ndarray]]]:
    path = public / "train_landmarks.csv"
    try:
        points, _ = landmarks_csv.read_points(path.read_bytes())
    except SubmissionError as e:
        raise CompetitionError(str(e.located(str(path)))) from None
    except OSError as e:
        raise CompetitionError(f"{path}: unreadable ({e.strerror or e})") from None
    first = next(iter(points.values()))
    return list(first), points


def read_meshes(folder: Path) -> tuple[list[str], list[Any]]:
    folder = Path(folder)
    paths = sorted(folder.glob("*.ply")) if folder.is_dir() else []
    if not paths:
        raise CompetitionError(f"{folder}: no .ply meshes")
    return [p.stem for p in paths], [meshes.read_mesh(p.read_bytes(), str(p)) for p in paths]


class LandmarkFiles(DataFiles[LandmarkData, Maps]):
    """The `DataFiles` part of the landmarks task: meshes and landmark tables read,
    predicted points ({specimen: (landmarks, 3)}) written as the landmark CSV."""

    test_inputs = ("test",)

    def sample_entry(self) -> dict[str, str]:
        from competition.tasks.landmarks import sample_entry

        return {"entry.py": sample_entry.ENTRY, "config.yaml": sample_entry.CONFIG}

    def load_train(self, public: Path) -> LandmarkData:
        names, points = _names_and_points(public)
        ids, surfaces = read_meshes(public / "train" / "Models")
        missing = [i for i in ids if i not in points]
        if missing:
            raise CompetitionError(f"{public / 'train_landmarks.csv'}: no landmarks for "
                                   f"{missing[0]}")
        return LandmarkData(ids, surfaces, names,
                            np.array([[points[i][lm] for lm in names] for i in ids]))

    def load_inputs(self, public: Path, folder: Path | None = None) -> LandmarkData:
        names, _ = _names_and_points(public)
        return LandmarkData(*read_meshes(folder or public / "test" / "Models"), names)

    def write_submission(self, inputs: LandmarkData, predictions: Maps) -> bytes:
        """{specimen: (landmarks, 3)} -> the landmark CSV."""
        return landmarks_csv.write_points([(i, lm, predictions[i][k]) for i in inputs.ids
                                           for k, lm in enumerate(inputs.landmarks)])

    def cv_items(self, train: LandmarkData) -> list[CvItem]:
        """One group per specimen."""
        return [CvItem(i, i) for i in train.ids]

    def take(self, data: LandmarkData, positions: Sequence[int]) -> LandmarkData:
        keep = list(positions)
        return LandmarkData([data.ids[k] for k in keep], [data.meshes[k] for k in keep],
                            data.landmarks, None if data.points is None else data.points[keep])

    def inputs_of(self, data: LandmarkData) -> LandmarkData:
        """The meshes without landmarks, each moved by its own rigid motion, as `prepare`
        moves every hidden specimen (the source's common pose must not help)."""
        moved = []
        for specimen, mesh in zip(data.ids, data.meshes, strict=True):
            copy = mesh.copy()
            copy.vertices = prepare.apply(held_out_motion(specimen),
                                          np.asarray(mesh.vertices))
            moved.append(copy)
        return LandmarkData(data.ids, moved, data.landmarks)

    def write_solution(self, data: LandmarkData, folder: Path) -> Path:
        """`solution.csv`: the specimens' landmarks, in the layout `prepare` writes, moved
        as `inputs_of` moves their meshes (no Usage column)."""
        if data.points is None:
            raise CompetitionError("a solution needs specimens with landmarks")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "solution.csv"
        moved = [prepare.apply(held_out_motion(i), data.points[k])
                 for k, i in enumerate(data.ids)]
        path.write_bytes(landmarks_csv.write_points(
            [(i, lm, moved[k][j]) for k, i in enumerate(data.ids)
             for j, lm in enumerate(data.landmarks)]))
        return path


def held_out_motion(specimen: str) -> np.ndarray:
    """The rigid motion (4x4) of a specimen held out in cross-validation: drawn as `prepare`
    draws a hidden specimen's, seeded by its name (its mesh and its truth move alike)."""
    return prepare.rigid_motion(np.random.default_rng(zlib.crc32(specimen.encode())))
