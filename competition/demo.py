"""`competition demo`: the whole loop on the three synthetic competitions, in seconds.

For each demo it prepares the competition, writes a naive prediction (what a participant might
write on day one), validates and submits it and the sample submission as two teams, and ranks
them on the public leaderboard. These are
not the baselines (see `submissions/`); they show that scores move with prediction quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.filters import threshold_otsu

from competition import leaderboard, scoring
from competition.formats import em_tiff, landmarks_csv, meshes, nuclei_csv, rle
from competition.prepare import prepare
from competition.prepared import PreparedCompetition
from competition.submissions import SubmissionStore


def naive_nuclei(public: Path) -> bytes:
    """Otsu threshold of the (inverted if bright) grey image, connected components."""
    rows = []
    for folder in sorted((public / "test").iterdir()):
        image_id = folder.name
        with Image.open(folder / "images" / f"{image_id}.png") as im:
            gray = np.asarray(im.convert("L"), dtype=np.float64)
        if gray.mean() > 127:
            gray = 255 - gray
        mask = gray > threshold_otsu(gray)
        labels, _ = ndimage.label(ndimage.binary_opening(mask))
        sizes = np.bincount(labels.ravel())
        labels[sizes[labels] < 10] = 0
        encoded = rle.encode_labels(labels) or [""]
        rows += [(image_id, enc) for enc in encoded]
    return nuclei_csv.write_csv(rows, nuclei_csv.SUBMISSION_HEADER)


def naive_em(public: Path) -> bytes:
    """The smoothed raw intensity as cell probability (membranes are dark)."""
    raw = em_tiff.read_stack((public / "test-volume.tif").read_bytes()).astype(np.float32)
    return em_tiff.write_stack(ndimage.gaussian_filter(raw / 255.0, (0, 1, 1)))


def naive_landmarks(public: Path) -> bytes:
    """Align one training skull to each test skull by centroid and principal axes (the sign
    ambiguity settled by nearest-neighbour distance) and carry its landmarks over."""
    template_ply = sorted((public / "train" / "Models").glob("*.ply"))[0]
    template = np.asarray(meshes.read_mesh(template_ply.read_bytes(), template_ply.name).vertices)
    marks_path = public / "train" / "LMs" / f"{template_ply.stem}.mrk.json"
    marks = meshes.read_markups(marks_path.read_bytes(), marks_path.name)
    t_center, t_axes = _principal_axes(template)
    tree = cKDTree(template - t_center)
    rows = []
    for ply in sorted((public / "test" / "Models").glob("*.ply")):
        target = np.asarray(meshes.read_mesh(ply.read_bytes(), ply.name).vertices)
        center, axes = _principal_axes(target)
        sample = (target - center)[:: max(1, len(target) // 2000)]
        best = None
        for signs in ([1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]):
            rotation = t_axes @ np.diag(signs) @ axes.T  # target frame -> template frame
            cost = tree.query(sample @ rotation.T)[0].mean()
            if best is None or cost < best[0]:
                best = (cost, rotation)
        rotation = best[1]
        target_tree = cKDTree(target)
        for name, point in marks.items():
            moved = (point - t_center) @ rotation + center
            rows.append((ply.stem, name, target[target_tree.query(moved)[1]]))
    return landmarks_csv.write_points(rows)


def _principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = points.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((points - center).T))
    vectors = vectors[:, ::-1]
    if np.linalg.det(vectors) < 0:
        vectors[:, 2] *= -1
    return center, vectors


NAIVE = {
    "demo-nuclei": ("naive-otsu.csv", naive_nuclei),
    "demo-em": ("naive-intensity.tif", naive_em),
    "demo-landmarks": ("naive-pca-template.csv", naive_landmarks),
}


def run(out: Path, seed: int = 0) -> list[dict]:
    """Prepare, validate, submit (two teams) and rank; returns one row per submission with
    its public and private score and its public rank."""
    out = Path(out)
    rows = []
    for kind, (file_name, predict) in NAIVE.items():
        comp_dir = prepare(kind, out / kind, seed=seed, force=True)
        comp = PreparedCompetition.open(comp_dir)
        store = SubmissionStore(comp)
        sample = next(comp.public_dir.glob("sample_submission.*"))
        naive = out / kind / file_name
        naive.write_bytes(predict(comp.public_dir))
        for team, path in (("sample", sample), ("day-one", naive)):
            scoring.validate(comp, path)
            outcome = store.submit(path, team)
            rows.append({"competition": kind, "team": team, "submission": path.name,
                         "metric": "RMSE (mm)" if kind == "demo-landmarks" else
                         ("V_rand" if kind == "demo-em" else "mean AP"),
                         "public": outcome.public_score,
                         "private": store.get(outcome.id)["private_score"]})
        ranks = {e.team: e.rank for e in leaderboard.public_board(store)}
        for row in rows[-2:]:
            row["rank"] = ranks[row["team"]]
    return rows
