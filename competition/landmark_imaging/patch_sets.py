"""`competition landmarks patches`: write the landmark patch images of a prepared landmark
competition (PNG files and an index CSV) for training elsewhere.

Training specimens: around estimates jittered from the manual landmarks (or around given
estimates), with the manual landmark's pixel position in every image. Test specimens: around
given estimates (e.g. the ALPACA baseline's submission), never with the hidden landmarks.
Patches are drawn in the common pose (`competition.patches.posed`: specimens moved onto the
training mean shape by their estimates, each landmark's x axis from one seed), as the
refiner draws them. Each row keeps what maps a pixel back to 3D, in the specimen's own
coordinates: the window centre, its axes and the scale (a ray cast down the view axis;
`competition.patches.render` with the row's x axis as seed redraws the height map).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from competition.board.prepared import PreparedCompetition
from competition.errors import CompetitionError, SubmissionError
from competition.formats import landmarks_csv
from competition.landmark_imaging import procrustes
from competition.landmark_imaging.patches import jittered_estimate, landmark_seeds, posed, views
from competition.progress import track

COLUMNS = ["specimen", "landmark", "view", "radius_mm", "shift_x_mm", "shift_y_mm", "image",
           "estimate_col", "estimate_row", "truth_col", "truth_row", "centre_x", "centre_y",
           "centre_z", "axes", "mm_per_pixel"]


def read_estimates(path: Path, ids: list[str], names: list[str]) -> dict[str, np.ndarray]:
    try:
        points, _ = landmarks_csv.read_points(Path(path).read_bytes(),
                                              expected={i: names for i in ids})
    except SubmissionError as e:
        raise CompetitionError(str(e.located(str(path)))) from None
    except OSError as e:
        raise CompetitionError(f"{path}: unreadable ({e})") from None
    return {i: np.array([points[i][n] for n in names]) for i in ids}


def write(comp_dir: Path, out: Path, split: str = "train", estimates: Path | None = None,
          radii: tuple[float, ...] = (1.0, 2.0, 4.0), shift_mm: float = 1.0,
          jitter_mm: float = 0.4, seed: int = 0) -> int:
    """Write the images and `index.csv`; returns the number of images."""
    comp = PreparedCompetition.open(comp_dir)
    task = comp.task
    if task.prediction != "points":
        raise CompetitionError(f"{comp_dir}: patches are drawn around landmark points; the "
                               f"{task.name} task predicts {task.prediction}")
    if split not in ("train", "test"):
        raise CompetitionError(f"--split {split}: choose train or test")
    data = task.load_train(comp.public_dir) if split == "train" else \
        task.load_inputs(comp.public_dir)
    if split == "test" and estimates is None:
        raise CompetitionError("test patches are centred on estimates: give --estimates "
                               "(e.g. the ALPACA baseline's submission)")
    given = read_estimates(estimates, data.ids, data.landmarks) if estimates else None
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train = data if split == "train" else task.load_train(comp.public_dir)
    mean = procrustes.mean_shape(train.points)
    radius = radii[len(radii) // 2]
    seeds = landmark_seeds([posed(m.vertices, m.faces, p, mean)[0]
                            for m, p in zip(train.meshes, train.points, strict=True)],
                           np.array([procrustes.apply(p, procrustes.rigid_fit(p, mean))
                                     for p in train.points]), radius)
    rows = []
    for s, (specimen, mesh) in enumerate(track(list(zip(data.ids, data.meshes, strict=True)),
                                               f"Rendering {split} patches")):
        truths = data.points[s] if split == "train" else None
        placed_by = given[specimen] if given else truths
        assert placed_by is not None  # test specimens always come with given estimates
        surface, _, pose = posed(mesh.vertices, mesh.faces, placed_by, mean)
        rotation, _ = pose
        back = procrustes.invert(pose)
        for k, name in enumerate(data.landmarks):
            truth = None if truths is None else procrustes.apply(truths[k], pose)
            if given:
                estimate = procrustes.apply(given[specimen][k], pose)
            else:
                assert truth is not None  # without given estimates the split is train
                estimate = jittered_estimate(surface, truth, jitter_mm, rng)
            for v, view in enumerate(views(radii, shift_mm)):
                patch = surface.render(estimate, view, seeds[k])
                file = f"images/{specimen}__{name}__{v}.png"
                Image.fromarray(patch.image).save(out / file)
                est_px = patch.to_pixel(estimate)[0]
                true_px = patch.to_pixel(truth)[0] if truth is not None else (None, None)
                rows.append([specimen, name, v, view.radius, *view.shift, file, *est_px,
                             *true_px, *procrustes.apply(patch.centre, back),
                             " ".join(f"{a:.9f}" for a in (patch.axes @ rotation).ravel()),
                             patch.mm_per_pixel])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    writer.writerows([[("" if v is None else v) for v in row] for row in rows])
    (out / "index.csv").write_text(buf.getvalue())
    return len(rows)
