"""2018 Data Science Bowl (Kaggle layout) -> nuclei competition.

Reads `stage1_train/<id>/images/<id>.png` with labels from `stage1_train_labels.csv` or from
`stage1_train/<id>/masks/*.png`. If the source also holds `stage1_test/` and an official
solution CSV (`ImageId,EncodedPixels,Height,Width,Usage`), that split is used as is; otherwise
a hidden test set is carved out of the labelled training images:

- `holdout=random` (the default): at random, stratified by modality;
- `holdout=mirrored` (`competition prepare dsb2018 --option holdout=mirrored`): so that its mix
  of image types, and within a type the images' appearance, mirrors another image set, by
  default the source's own `stage1_test/` (Kaggle's stage-1 test images, without labels);
  `--option mirror=DIR` names another folder in Kaggle's layout (see `protocol`).

Every hidden image's type (`appearance.TYPES`) goes into `private/solution_types.csv`, beside
the solution, so that scores break down per type; `private/protocol.json` records the split's
mix beside the training images' and the mirrored set's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from competition.errors import SourceDataError, SubmissionError
from competition.formats import nuclei_csv, rle
from competition.progress import track
from competition.tasks.nuclei import appearance, protocol
from competition.tasks.nuclei.appearance import Appearance
from competition.tasks.preparing import (
    Staging,
    assign_usage,
    competition_yaml,
    readme_rules,
    split_test,
)

TASK_NAME = "nuclei"
SOLUTION_NAMES = ("stage1_solution.csv", "stage2_solution_final.csv", "solution.csv")
DEFAULT_TEST_FRACTION = 0.2
HOLDOUTS = ("random", "mirrored")
DEFAULT_MIRROR = "stage1_test"
TYPES_SUFFIX = "_types.csv"  # the sidecar beside a solution: private/solution_types.csv
TYPES_HEADER = ["ImageId", "Type"]


def prepare(source: Path, stage: Staging, seed: int, public_fraction: float,
            test_fraction: float = DEFAULT_TEST_FRACTION, name: str = "dsb2018",
            kind: str = "dsb2018", holdout: str = "random", mirror: str | None = None) -> None:
    test_fraction = _fraction(test_fraction)
    if holdout not in HOLDOUTS:
        raise SourceDataError(f"option holdout={holdout!r}: choose one of "
                              f"{', '.join(HOLDOUTS)}")
    if mirror is not None and holdout != "mirrored":
        raise SourceDataError("option mirror=DIR goes with holdout=mirrored")
    train_dir = source / "stage1_train"
    if not train_dir.is_dir():
        raise SourceDataError(f"{source}: no stage1_train/ folder (Kaggle's DSB 2018 layout)")
    images = _find_images(train_dir)
    labels = _read_labels(source, train_dir, images)
    rng = np.random.default_rng(seed)

    official = _official_solution(source)
    report: dict[str, Any] = {"holdout": holdout}
    if official is not None:
        if holdout != "random":
            raise SourceDataError(f"{official[0]}: the source holds the official test split, "
                                  "which is used as it is; holdout=mirrored applies to a source "
                                  f"without one (move {official[0].name} away)")
        solution_path, solution = official
        test_dir = source / "stage1_test"
        test_images = _find_images(test_dir)
        missing = sorted(set(solution) - set(test_images))
        if missing:
            raise SourceDataError(f"{solution_path}: ImageId {missing[0]} has no image in "
                                  f"{test_dir}")
        train_ids = sorted(labels)
        test_ids = sorted(solution)
        usage = {i: solution[i].usage or "Private" for i in test_ids}
        test_objects = {i: _runs_to_rle(solution[i]) for i in test_ids}
        test_shapes = {i: solution[i].shape for i in test_ids}
        test_sources = test_images
        hidden = _appearances(test_images, test_ids, "Typing the test images")
    elif holdout == "mirrored":
        mirror_dir = source / DEFAULT_MIRROR if mirror is None else Path(mirror)
        if not mirror_dir.is_dir():
            raise SourceDataError(f"option holdout=mirrored: {mirror_dir} is not a folder of "
                                  "images in Kaggle's layout to mirror (name one with "
                                  "--option mirror=DIR)")
        ids = sorted(labels)
        reference_images = _find_images(mirror_dir)
        reference = _appearances(reference_images, sorted(reference_images),
                                 "Typing the images to mirror")
        train_all = _appearances(images, ids, "Typing the training images")
        n_hidden = int(round(len(ids) * test_fraction))
        test_ids, plan = protocol.mirrored_holdout(train_all, reference, n_hidden, rng)
        held = set(test_ids)
        train_ids = [i for i in ids if i not in held]
        if not train_ids:
            raise SourceDataError(f"{len(ids)} labelled image(s) are too few to split")
        usage = assign_usage(test_ids, public_fraction, rng)
        test_objects = {i: labels[i][1] for i in test_ids}
        test_shapes = {i: labels[i][0] for i in test_ids}
        test_sources = images
        hidden = {i: train_all[i] for i in test_ids}
        report.update(mirror=mirror_dir.name, plan=plan.as_json(), mix=protocol.mix_table({
            "labelled": train_all, "mirrored_set": reference, "hidden": hidden,
            "train": {i: train_all[i] for i in train_ids}}))
    else:
        ids = sorted(labels)
        strata = [modality(images[i]) for i in track(ids, "Reading modalities")]
        train_ids, test_ids = split_test(ids, test_fraction, rng, strata)
        usage = assign_usage(test_ids, public_fraction, rng)
        test_objects = {i: labels[i][1] for i in test_ids}
        test_shapes = {i: labels[i][0] for i in test_ids}
        test_sources = images
        hidden = _appearances(images, test_ids, "Typing the hidden images")
    if "mix" not in report:
        report["mix"] = protocol.mix_table({"hidden": hidden})

    for i in track(train_ids, "Writing training images"):
        stage.copy(f"public/train/{i}/images/{i}.png", images[i])
    train_rows = [(i, enc) for i in train_ids for enc in labels[i][1]]
    stage.write("public/train_labels.csv",
                nuclei_csv.write_csv(train_rows, nuclei_csv.SUBMISSION_HEADER))
    for i in track(test_ids, "Writing test images"):
        stage.copy(f"public/test/{i}/images/{i}.png", test_sources[i])
    stage.write("public/sample_submission.csv",
                nuclei_csv.write_csv([(i, "") for i in test_ids], nuclei_csv.SUBMISSION_HEADER))
    stage.write("private/solution.csv", solution_csv(test_ids, test_shapes, test_objects, usage))
    stage.write(f"private/solution{TYPES_SUFFIX}", types_csv(hidden))
    stage.write("private/protocol.json", (json.dumps(report, indent=1, sort_keys=True)
                                          + "\n").encode())
    counts = {"train": len(train_ids), "test": len(test_ids),
              "public": sum(u == "Public" for u in usage.values())}
    stage.write("public/README.md", readme(name, counts, holdout == "mirrored").encode())
    stage.write("competition.yaml", competition_yaml(
        name=name, kind=kind, task=TASK_NAME, title="Nuclei instance segmentation (DSB 2018)",
        seed=seed, public_fraction=public_fraction, counts=counts,
        files={"solution": "private/solution.csv"}))


def _fraction(value: Any) -> float:
    """test_fraction as given (a number; `--option test_fraction=0.25` arrives parsed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SourceDataError(f"option test_fraction={value!r}: a number between 0 and 1")
    return float(value)


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # Pillow raises many types on damaged files
        raise SourceDataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def _appearances(images: dict[str, Path], ids: list[str], what: str) -> dict[str, Appearance]:
    return {i: appearance.describe(read_rgb(images[i])) for i in track(ids, what)}


def solution_csv(ids: list[str], shapes: dict[str, tuple[int, int]],
                 objects: dict[str, list[str]], usage: dict[str, str] | None = None) -> bytes:
    """The hidden solution's CSV: a row per object (one empty row for an image without
    any), with Height and Width, and with each image's Usage where there is a split."""
    rows: list[tuple[Any, ...]] = []
    for i in ids:
        h, w = shapes[i]
        rows += [(i, enc, h, w, *([usage[i]] if usage else [])) for enc in objects[i] or [""]]
    header = [*nuclei_csv.SOLUTION_HEADER, *(["Usage"] if usage else [])]
    return nuclei_csv.write_csv(rows, header)


def types_csv(appearances: dict[str, Appearance]) -> bytes:
    """The per-type sidecar of a solution: `ImageId,Type` for every test image."""
    return nuclei_csv.write_csv([(i, appearances[i].type) for i in sorted(appearances)],
                                TYPES_HEADER)


def _find_images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise SourceDataError(f"{folder}: folder not found")
    images = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        png = d / "images" / f"{d.name}.png"
        if not png.is_file():
            raise SourceDataError(f"{d}: no images/{d.name}.png (Kaggle's layout)")
        images[d.name] = png
    if not images:
        raise SourceDataError(f"{folder}: no image folders")
    return images


def image_shape(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as e:
        raise SourceDataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
    return h, w


def modality(path: Path) -> str:
    """A coarse stratum: colour (stained tissue), bright-field (light background) or
    fluorescence (dark background), so that the hidden set mirrors the training mix."""
    return appearance.modality(read_rgb(path))


def _read_labels(source: Path, train_dir: Path,
                 images: dict[str, Path]) -> dict[str, tuple[tuple[int, int], list[str]]]:
    """Canonical RLE strings per image (re-encoded, so both layouts give equal files)."""
    csv_path = source / "stage1_train_labels.csv"
    out: dict[str, tuple[tuple[int, int], list[str]]] = {}
    if csv_path.is_file():
        shapes = {i: image_shape(p) for i, p in images.items()}
        try:
            decoded = nuclei_csv.read_submission(csv_path.read_bytes(), shapes)
        except SubmissionError as e:
            raise SourceDataError(str(e.located(str(csv_path)))) from None
        for image_id, image in decoded.items():
            try:
                labels = image.label_image(f"ImageId {image_id}")
            except SubmissionError as e:
                raise SourceDataError(str(e.located(str(csv_path)))) from None
            out[image_id] = (image.shape, rle.encode_labels(labels))
        return out
    for image_id, png in track(images.items(), "Reading masks"):
        mask_dir = train_dir / image_id / "masks"
        if not mask_dir.is_dir():
            raise SourceDataError(f"{train_dir / image_id}: no masks/ folder and no "
                                  f"{csv_path.name}: labels are needed")
        shape = image_shape(png)
        labels = np.zeros(shape, dtype=np.int32)
        for k, mask_path in enumerate(sorted(mask_dir.glob("*.png")), 1):
            try:
                with Image.open(mask_path) as im:
                    mask = np.asarray(im.convert("L")) > 0
            except Exception as e:
                raise SourceDataError(f"{mask_path}: unreadable mask ({e})") from None
            if mask.shape != shape:
                raise SourceDataError(f"{mask_path}: size {mask.shape} differs from the "
                                      f"image's {shape}")
            if (labels[mask] > 0).any():
                raise SourceDataError(f"{mask_path}: overlaps another mask of {image_id}")
            labels[mask] = k
        out[image_id] = (shape, rle.encode_labels(labels))
    return out


def _official_solution(
    source: Path,
) -> tuple[Path, dict[str, nuclei_csv.NucleiImage]] | None:
    if not (source / "stage1_test").is_dir():
        return None
    for name in SOLUTION_NAMES:
        path = source / name
        if path.is_file():
            try:
                solution = nuclei_csv.read_solution(path.read_bytes())
            except SubmissionError as e:
                raise SourceDataError(str(e.located(str(path)))) from None
            return path, solution
    return None


def _runs_to_rle(image: nuclei_csv.NucleiImage) -> list[str]:
    try:
        return rle.encode_labels(image.label_image("official solution"))
    except SubmissionError as e:
        raise SourceDataError(str(e)) from None


def readme(name: str, counts: dict[str, int], mirrored: bool = False) -> str:
    """The README a participant finds in `public/`: task, files, format, metric, rules."""
    mix = ("\nThe hidden test images were chosen so that their mix of image types (modality, "
           "nucleus\nsize, crowding) resembles another set of images, not the training set's "
           "mix.\n" if mirrored else "")
    return f"""# {name}: nuclei instance segmentation

Find every nucleus in each test image and outline it as its own object (instance
segmentation). Images come from fluorescence, bright-field and stained-tissue microscopy.
{mix}
## Files
- `train/<ImageId>/images/<ImageId>.png`: {counts['train']} training images.
- `train_labels.csv`: their nuclei, one row per nucleus (`ImageId,EncodedPixels`).
- `test/<ImageId>/images/<ImageId>.png`: {counts['test']} test images, labels hidden.
- `sample_submission.csv`: a valid submission that predicts no nuclei.

## Submission format
A CSV with header `ImageId,EncodedPixels`, one row per predicted nucleus. `EncodedPixels` is
Kaggle's run-length encoding: space-separated pairs `start length`, pixels numbered from 1,
top to bottom, then left to right (column-major). Every test image needs at least one row (an
empty `EncodedPixels` means no nuclei). Masks of one image must not overlap, runs must be
sorted and inside the image.

## Metric
Kaggle's 2018 Data Science Bowl score: for each image and each IoU threshold t in
0.50, 0.55, ..., 0.95, a predicted nucleus is a true positive if its IoU with a true nucleus is
strictly greater than t; precision(t) = TP / (TP + FP + FN). The image score is the mean over
thresholds, the competition score the mean over images. Higher is better.

{readme_rules(counts, "images")}"""


def label_images(source: Path) -> dict[str, np.ndarray]:
    """The training images' instance labels (from the CSV or the masks), by ImageId."""
    train_dir = source / "stage1_train"
    images = _find_images(train_dir)
    labels = _read_labels(source, train_dir, images)
    rows = [(i, enc) for i, (_, encs) in labels.items() for enc in encs or [""]]
    shapes = {i: shape for i, (shape, _) in labels.items()}
    try:
        decoded = nuclei_csv.read_submission(
            nuclei_csv.write_csv(rows, nuclei_csv.SUBMISSION_HEADER), shapes)
        return {i: decoded[i].label_image(f"ImageId {i}") for i in sorted(labels)}
    except SubmissionError as e:
        raise SourceDataError(str(e)) from None


def describe_folder(folder: Path, labels: dict[str, np.ndarray] | None = None,
                    what: str = "Typing images") -> dict[str, Appearance]:
    """The appearance of every image of a folder in Kaggle's layout (with labels where
    given: their measured scale too)."""
    images = _find_images(folder)
    return {i: appearance.describe(read_rgb(images[i]), None if labels is None
                                   else labels.get(i)) for i in track(sorted(images), what)}
