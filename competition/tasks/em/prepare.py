"""ISBI 2012 EM stacks -> membrane segmentation competition.

Reads `train-volume.tif` and `train-labels.tif` (or folders `train-volume/` and
`train-labels/` of PNG slices). The official test labels were never published, so the hidden
test set is a seeded contiguous block of labelled slices: neighbouring serial sections are
nearly identical, and interleaving them with training slices would leak the answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from competition.errors import SourceDataError, SubmissionError
from competition.formats import em_tiff
from competition.tasks.preparing import Staging, assign_usage, competition_yaml, readme_rules

TASK_NAME = "em"
DEFAULT_TEST_FRACTION = 1 / 3


def prepare(source: Path, stage: Staging, seed: int, public_fraction: float,
            test_fraction: float = DEFAULT_TEST_FRACTION, name: str = "isbi2012",
            kind: str = "isbi2012") -> None:
    volume = read_volume(source, "train-volume")
    labels = read_volume(source, "train-labels")
    if volume.shape != labels.shape:
        raise SourceDataError(f"{source}: train-volume {volume.shape} and train-labels "
                              f"{labels.shape} differ in shape")
    values = np.unique(labels)
    if not set(values.tolist()) <= {0, 255}:
        raise SourceDataError(f"{source}: train-labels must hold 0 (membrane) and 255 (cell); "
                              f"found values {values[:10].tolist()}")
    n = len(volume)
    n_test = int(round(n * test_fraction))
    if n < 3 or not 0 < n_test < n:
        raise SourceDataError(f"{source}: {n} slices are too few to split into train and test")
    rng = np.random.default_rng(seed)
    first = int(rng.integers(0, n - n_test + 1))
    test_idx = np.arange(first, first + n_test)
    train_idx = np.setdiff1d(np.arange(n), test_idx)
    usage = assign_usage([f"{k:04d}" for k in range(n_test)], public_fraction, rng)

    stage.write("public/train-volume.tif", em_tiff.write_stack(volume[train_idx]))
    stage.write("public/train-labels.tif", em_tiff.write_stack(labels[train_idx]))
    stage.write("public/test-volume.tif", em_tiff.write_stack(volume[test_idx]))
    stage.write("public/sample_submission.tif",
                em_tiff.write_stack(np.full((n_test, *volume.shape[1:]), 0.5, np.float32)))
    stage.write("private/solution.tif", em_tiff.write_stack(labels[test_idx]))
    rows = ["Slice,Usage"] + [f"{k},{usage[f'{k:04d}']}" for k in range(n_test)]
    stage.write("private/solution.csv", ("\n".join(rows) + "\n").encode())
    stage.write("private/source_slices.csv", (
        "test_slice,source_slice\n" + "".join(f"{k},{s}\n" for k, s in enumerate(test_idx))
    ).encode())
    counts = {"train": len(train_idx), "test": n_test,
              "public": sum(u == "Public" for u in usage.values()),
              "height": int(volume.shape[1]), "width": int(volume.shape[2])}
    stage.write("public/README.md", readme(name, counts).encode())
    stage.write("competition.yaml", competition_yaml(
        name=name, kind=kind, task=TASK_NAME, title="EM membrane segmentation (ISBI 2012)",
        seed=seed, public_fraction=public_fraction, counts=counts,
        files={"solution": "private/solution.tif"}))


def read_volume(source: Path, stem: str) -> np.ndarray:
    tif = source / f"{stem}.tif"
    folder = source / stem
    if tif.is_file():
        try:
            stack = em_tiff.read_stack(tif.read_bytes())
        except SubmissionError as e:
            raise SourceDataError(str(e.located(str(tif)))) from None
    elif folder.is_dir():
        slices = sorted(folder.glob("*.png"))
        if not slices:
            raise SourceDataError(f"{folder}: no PNG slices")
        arrays = []
        for path in slices:
            try:
                with Image.open(path) as im:
                    arrays.append(np.asarray(im.convert("L")))
            except Exception as e:
                raise SourceDataError(f"{path}: unreadable slice ({e})") from None
            if arrays[-1].shape != arrays[0].shape:
                raise SourceDataError(f"{path}: size {arrays[-1].shape} differs from "
                                      f"{slices[0].name}'s {arrays[0].shape}")
        stack = np.stack(arrays)
    else:
        raise SourceDataError(f"{source}: neither {stem}.tif nor a {stem}/ folder of PNG slices")
    if stack.dtype != np.uint8:
        raise SourceDataError(f"{source / stem}: expected 8-bit slices, got {stack.dtype}")
    return stack


def readme(name: str, counts: dict[str, int]) -> str:
    """The README a participant finds in `public/`: task, files, format, metric, rules."""
    return f"""# {name}: EM membrane segmentation

Segment the neuronal membranes of serial-section electron microscopy (ssTEM) slices: predict,
for every pixel, the probability that it lies inside a cell (not on a membrane).

## Files
- `train-volume.tif`: {counts['train']} training slices ({counts['height']}x{counts['width']},
  8-bit).
- `train-labels.tif`: their labels, 255 = cell interior, 0 = membrane.
- `test-volume.tif`: {counts['test']} contiguous test slices, labels hidden.
- `sample_submission.tif`: a valid (constant) submission.

## Submission format
One multi-page TIFF of the test volume's shape ({counts['test']} slices), with the **same
polarity as the labels** (high = cell): float32 probabilities in [0, 1], or 8-bit (0..255).

## Metric
The final ISBI 2012 score: the foreground-restricted Rand score after border thinning
(V_rand). At each threshold 0.0, 0.1, ..., 1.0 your map is binarised, its cell regions grown
over the membrane with 1-pixel boundaries, and compared with the true cells; the score is the
best threshold's mean over slices. Higher is better. V_info, pixel error and foreground IoU
are reported too.

{readme_rules(counts, "slices")}"""
