"""SlicerMorph mouse skulls (`Models/*.ply`, `LMs/*.mrk.json` or `.fcsv`) -> landmark
competition.

Hidden test specimens are renamed and moved by a random rigid motion (uniform rotation,
translation up to 50 mm per axis), so that neither the source's pre-alignment nor its names
give the answer away; the motions are private data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial.transform import Rotation

from competition.errors import SourceDataError
from competition.formats import landmarks_csv, meshes
from competition.progress import note, track
from competition.tasks.preparing import (
    Staging,
    assign_usage,
    competition_yaml,
    readme_rules,
    split_test,
)

TASK_NAME = "landmarks"
DEFAULT_TEST_FRACTION = 1 / 3
MAX_TRANSLATION_MM = 50.0


def find_specimens(source: Path) -> dict[str, tuple[Path, Path]]:
    models, lms = source / "Models", source / "LMs"
    if not models.is_dir() or not lms.is_dir():
        raise SourceDataError(f"{source}: expected Models/ (PLY meshes) and LMs/ (markups)")
    specimens = {}
    for ply in sorted(models.glob("*.ply")):
        name = ply.stem
        candidates = [lms / f"{name}.mrk.json", lms / f"{name}.json", lms / f"{name}.fcsv"]
        markup = next((c for c in candidates if c.is_file()), None)
        if markup is None:
            raise SourceDataError(f"{ply}: no landmarks file {name}.mrk.json or {name}.fcsv in "
                                  f"{lms}")
        specimens[name] = (ply, markup)
    if not specimens:
        raise SourceDataError(f"{models}: no .ply meshes")
    return specimens


def load_clean_mesh(ply: Path) -> trimesh.Trimesh:
    """Read a mesh, dropping NaN vertices (and saying so): participants get finite meshes."""
    mesh, n_vertices, n_faces = meshes.drop_nonfinite(meshes.read_mesh(ply.read_bytes(), str(ply)))
    if n_vertices:
        note(f"{ply.name}: dropped {n_vertices} non-finite vertices and the {n_faces} faces "
             "using them")
    return mesh


def rigid_motion(rng: np.random.Generator) -> np.ndarray:
    """A 4x4 homogeneous rigid transform: rotation uniform on SO(3), bounded translation."""
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.random(rng=rng).as_matrix()
    matrix[:3, 3] = rng.uniform(-MAX_TRANSLATION_MM, MAX_TRANSLATION_MM, 3)
    return matrix


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    moved: np.ndarray = points @ matrix[:3, :3].T + matrix[:3, 3]
    return moved


def prepare(source: Path, stage: Staging, seed: int, public_fraction: float,
            test_fraction: float = DEFAULT_TEST_FRACTION, name: str = "mouse-landmarks",
            kind: str = "mouse-landmarks") -> None:
    specimens = find_specimens(source)
    points = {}
    for specimen, (_, markup) in specimens.items():
        points[specimen] = meshes.read_markups(markup.read_bytes(), str(markup))
    names = list(points[next(iter(points))])
    for specimen, pts in points.items():
        if sorted(pts) != sorted(names):
            raise SourceDataError(f"{specimens[specimen][1]}: landmarks {sorted(pts)[:5]}... "
                                  f"differ from the other specimens' ({len(names)} landmarks)")
    rng = np.random.default_rng(seed)
    train, test = split_test(list(specimens), test_fraction, rng)
    order = rng.permutation(len(test))
    test_names = {test[k]: f"specimen_{j + 1:03d}" for j, k in enumerate(order)}
    usage = assign_usage(list(test_names.values()), public_fraction, rng)

    train_rows = []
    for specimen in track(train, "Writing training specimens"):
        mesh = load_clean_mesh(specimens[specimen][0])
        stage.write(f"public/train/Models/{specimen}.ply", meshes.write_mesh(mesh))
        pts = {lm: points[specimen][lm] for lm in names}
        stage.write(f"public/train/LMs/{specimen}.mrk.json", meshes.write_mrk_json(pts))
        train_rows += [(specimen, lm, pts[lm]) for lm in names]
    stage.write("public/train_landmarks.csv", landmarks_csv.write_points(train_rows))

    solution_rows, transforms = [], {}
    for specimen in track(test, "Moving test specimens"):
        mesh = load_clean_mesh(specimens[specimen][0])
        motion = rigid_motion(rng)
        mesh.vertices = apply(motion, np.asarray(mesh.vertices))
        new = test_names[specimen]
        stage.write(f"public/test/Models/{new}.ply", meshes.write_mesh(mesh))
        for lm in names:
            moved = apply(motion, points[specimen][lm][None])[0]
            solution_rows.append((new, lm, moved, usage[new]))
        transforms[new] = {"source_specimen": specimen, "matrix": motion.round(12).tolist()}
    solution_rows.sort(key=lambda r: (r[0], names.index(r[1])))
    stage.write("private/solution.csv", landmarks_csv.write_points(solution_rows, usage=True))
    stage.write("private/transforms.json",
                (json.dumps(transforms, indent=1, sort_keys=True) + "\n").encode())
    test_ids = sorted(test_names.values())
    sample = [(s, lm, np.zeros(3)) for s in test_ids for lm in names]
    stage.write("public/sample_submission.csv", landmarks_csv.write_points(sample))
    counts = {"train": len(train), "test": len(test), "landmarks": len(names),
              "public": sum(u == "Public" for u in usage.values())}
    stage.write("public/README.md", readme(name, counts).encode())
    stage.write("competition.yaml", competition_yaml(
        name=name, kind=kind, task=TASK_NAME, title="Landmarks on 3D mouse skulls",
        seed=seed, public_fraction=public_fraction, counts=counts,
        files={"solution": "private/solution.csv", "reference": "private/reference.csv"}))


def readme(name: str, counts: dict[str, int]) -> str:
    """The README a participant finds in `public/`: task, files, format, metric, rules."""
    return f"""# {name}: landmarks on 3D skull meshes

Place {counts['landmarks']} anatomical landmarks on each test skull surface mesh.

## Files
- `train/Models/<specimen>.ply`: {counts['train']} training meshes (mm, LPS coordinates;
  the few non-finite vertices of the source meshes, and the faces using them, are removed).
- `train/LMs/<specimen>.mrk.json`: their landmarks (3D Slicer markups);
  `train_landmarks.csv` holds the same points as a table.
- `test/Models/<specimen>.ply`: {counts['test']} test meshes. Each was moved by an unknown
  rigid motion (rotation and translation): do not rely on a common orientation.
- `sample_submission.csv`: the submission format (all zeros).

## Submission format
CSV with header `specimen,landmark,x,y,z`, every test specimen and landmark exactly once,
coordinates in the test mesh's own space (mm).

## Metric
RMSE of the Euclidean distance between your landmarks and the manual ones, over all test
points (not per coordinate). Lower is better. Mean and median errors per landmark and, where
the organizer provides it, the share of points on which you beat the ALPACA registration
baseline (win rate; ties are not wins) are reported too.

{readme_rules(counts, "specimens")}"""
