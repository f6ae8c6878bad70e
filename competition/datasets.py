"""What an entry trains on and predicts: a competition's public data, read into arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from competition.errors import CompetitionError, SubmissionError
from competition.formats import em_tiff, landmarks_csv, meshes, nuclei_csv, rle
from competition.prepared import PreparedCompetition


@dataclass
class NucleiData:
    ids: list[str]
    images: list[np.ndarray]  # RGB uint8 (H, W, 3)
    labels: list[np.ndarray] | None = None  # instance labels int32 (H, W), training only


@dataclass
class EmData:
    volume: np.ndarray  # (slices, H, W) uint8
    labels: np.ndarray | None = None  # 255 = cell, 0 = membrane; training only


@dataclass
class LandmarkData:
    ids: list[str]
    meshes: list  # trimesh.Trimesh, millimetres
    landmarks: list[str]  # names, in order
    points: np.ndarray | None = None  # (specimens, landmarks, 3); training only


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise CompetitionError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def kaggle_images(folder: Path) -> tuple[list[str], list[np.ndarray]]:
    """Images of a folder in Kaggle's layout: `<id>/images/<id>.png`."""
    folder = Path(folder)
    ids = sorted(p.name for p in folder.iterdir() if (p / "images" / f"{p.name}.png").is_file())
    if not ids:
        raise CompetitionError(f"{folder}: no images in Kaggle's layout (<id>/images/<id>.png)")
    return ids, [read_rgb(folder / i / "images" / f"{i}.png") for i in ids]


def load_train(comp: PreparedCompetition):
    public = comp.public_dir
    if comp.task.name == "nuclei":
        ids, images = kaggle_images(public / "train")
        shapes = {i: im.shape[:2] for i, im in zip(ids, images, strict=True)}
        try:
            decoded = nuclei_csv.read_submission((public / "train_labels.csv").read_bytes(),
                                                 shapes)
        except SubmissionError as e:
            raise CompetitionError(str(e.located(str(public / "train_labels.csv")))) from None
        labels = []
        for i in ids:
            flat, _ = decoded[i].labels_flat(i)
            h, w = shapes[i]
            labels.append(flat.reshape(w, h).T.copy())
        return NucleiData(ids, images, labels)
    if comp.task.name == "em":
        return EmData(em_tiff.read_stack((public / "train-volume.tif").read_bytes()),
                      em_tiff.read_stack((public / "train-labels.tif").read_bytes()))
    return _landmark_train(public)


def _landmark_names_and_points(public: Path) -> tuple[list[str], dict]:
    path = public / "train_landmarks.csv"
    try:
        points, _ = landmarks_csv.read_points(path.read_bytes())
    except SubmissionError as e:
        raise CompetitionError(str(e.located(str(path)))) from None
    except OSError as e:
        raise CompetitionError(f"{path}: unreadable ({e})") from None
    first = next(iter(points.values()))
    return list(first), points


def read_meshes(folder: Path) -> tuple[list[str], list]:
    folder = Path(folder)
    paths = sorted(folder.glob("*.ply")) if folder.is_dir() else []
    if not paths:
        raise CompetitionError(f"{folder}: no .ply meshes")
    return [p.stem for p in paths], [meshes.read_mesh(p.read_bytes(), str(p)) for p in paths]


def _landmark_train(public: Path) -> LandmarkData:
    names, points = _landmark_names_and_points(public)
    ids, surfaces = read_meshes(public / "train" / "Models")
    missing = [i for i in ids if i not in points]
    if missing:
        raise CompetitionError(f"{public / 'train_landmarks.csv'}: no landmarks for {missing[0]}")
    return LandmarkData(ids, surfaces, names,
                        np.array([[points[i][lm] for lm in names] for i in ids]))


def load_inputs(comp: PreparedCompetition, folder: Path | None = None):
    """The test inputs, or any folder of inputs in the task's download layout."""
    public = comp.public_dir
    if comp.task.name == "nuclei":
        return NucleiData(*kaggle_images(folder or public / "test"))
    if comp.task.name == "em":
        path = Path(folder) if folder else public / "test-volume.tif"
        return EmData(em_tiff.read_stack(path.read_bytes()))
    names, _ = _landmark_names_and_points(public)
    return LandmarkData(*read_meshes(folder or public / "test" / "Models"), names)


def submission_bytes(task: str, inputs, predictions) -> bytes:
    """Nuclei: instance label images by id -> Kaggle RLE CSV. EM: probabilities -> TIFF.
    Landmarks: {specimen: (landmarks, 3)} -> the landmark CSV."""
    if task == "nuclei":
        rows = []
        for image_id in inputs.ids:
            encoded = rle.encode_labels(predictions[image_id]) or [""]
            rows += [(image_id, enc) for enc in encoded]
        return nuclei_csv.write_csv(rows, nuclei_csv.SUBMISSION_HEADER)
    if task == "landmarks":
        return landmarks_csv.write_points([(i, lm, predictions[i][k]) for i in inputs.ids
                                           for k, lm in enumerate(inputs.landmarks)])
    stack = np.clip(np.asarray(predictions, dtype=np.float32), 0, 1)
    return em_tiff.write_stack(stack)


@dataclass
class Validation:
    """One training item held out of training: its input (for the entry) and its labels
    (for per-epoch scores and pictures; participants may see training labels)."""

    name: str
    inputs: NucleiData | EmData
    image: np.ndarray
    truth: np.ndarray


def hold_out(train, seed: int = 0) -> tuple[NucleiData | EmData, Validation | None]:
    """Training data less one validation item (nuclei: an image drawn with `seed`; EM: the
    last slice), or unchanged with None when there are fewer than two items. Landmark
    entries choose their own validation specimens (every specimen counts there)."""
    if isinstance(train, LandmarkData):
        return train, None
    if isinstance(train, NucleiData):
        if len(train.ids) < 2:
            return train, None
        k = int(np.random.default_rng(seed).integers(len(train.ids)))
        rest = [i for i in range(len(train.ids)) if i != k]
        return (NucleiData([train.ids[i] for i in rest], [train.images[i] for i in rest],
                           [train.labels[i] for i in rest]),
                Validation(train.ids[k], NucleiData([train.ids[k]], [train.images[k]]),
                           train.images[k], train.labels[k]))
    if len(train.volume) < 2:
        return train, None
    z = len(train.volume) - 1
    return (EmData(train.volume[:z], train.labels[:z]),
            Validation(f"slice {z}", EmData(train.volume[z:]), train.volume[z],
                       train.labels[z]))
