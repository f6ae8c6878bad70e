"""Kaggle DSB 2018 CSVs: submissions `ImageId,EncodedPixels` and solutions with
`Height,Width` (and optionally `Usage`). Pure: bytes in, validated runs out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from competition.errors import SubmissionError
from competition.formats import rle
from competition.formats.text import read_csv_rows

SUBMISSION_HEADER = ["ImageId", "EncodedPixels"]
SOLUTION_HEADER = ["ImageId", "EncodedPixels", "Height", "Width"]
USAGES = ("Public", "Private")


@dataclass
class NucleiImage:
    """One image: its shape and its objects as 0-based runs (all objects' runs in order, and
    the number of runs of each object), with the objects' CSV line numbers."""

    shape: tuple[int, int]
    runs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    lines: list[int] = field(default_factory=list)
    usage: str | None = None

    @property
    def n_objects(self) -> int:
        return len(self.counts)

    def pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat column-major index and label (1..n) of every object pixel."""
        return rle.expand(self.runs, self.counts)

    def labels_flat(self, where: str) -> tuple[np.ndarray, int]:
        """Column-major flat label array (objects 1..n); overlapping masks are an error."""
        labels, first_bad = rle.paint(self.runs, self.counts, self.shape)
        if first_bad >= 0:
            raise SubmissionError(
                "this mask overlaps an earlier mask of the same image "
                "(masks are not allowed to overlap)",
                where=f"line {self.lines[first_bad]} ({where})",
            )
        return labels, self.n_objects

    def label_image(self, where: str) -> np.ndarray:
        """The (H, W) label image (objects 1..n, row-major); overlaps are an error."""
        flat, _ = self.labels_flat(where)
        h, w = self.shape
        return np.ascontiguousarray(flat.reshape(w, h).T)


def read_submission(data: bytes, shapes: dict[str, tuple[int, int]]) -> dict[str, NucleiImage]:
    """Validate a submission against the test images' ids and shapes (public facts only)."""
    rows = read_csv_rows(data, SUBMISSION_HEADER)
    images = _collect(rows, lambda line, image_id: _shape_of(shapes, line, image_id))
    missing = [i for i in shapes if i not in images]
    if missing:
        raise SubmissionError(
            f"{len(missing)} test ImageId(s) missing (first: {missing[0]}); every test image "
            "needs at least one row (an empty EncodedPixels means no nuclei)"
        )
    return images


def read_solution(data: bytes) -> dict[str, NucleiImage]:
    """A solution CSV; `Usage` (Public/Private) is optional."""
    first_line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    header = SOLUTION_HEADER + (["Usage"] if "Usage" in first_line else [])
    rows = read_csv_rows(data, header)
    shapes: dict[str, tuple[int, int]] = {}
    usages: dict[str, str] = {}
    for line, fields in rows:
        image_id = fields[0].strip()
        try:
            shape = (int(fields[2]), int(fields[3]))
        except ValueError:
            raise SubmissionError("Height and Width must be integers",
                                  where=f"line {line}") from None
        if shape[0] < 1 or shape[1] < 1:
            raise SubmissionError("Height and Width must be positive", where=f"line {line}")
        if shapes.setdefault(image_id, shape) != shape:
            raise SubmissionError(f"ImageId {image_id} has two sizes", where=f"line {line}")
        if len(fields) == 5:
            usage = fields[4].strip()
            if usage not in USAGES:
                raise SubmissionError(f"Usage {usage!r} is not Public or Private",
                                      where=f"line {line}")
            if usages.setdefault(image_id, usage) != usage:
                raise SubmissionError(f"ImageId {image_id} has two Usages", where=f"line {line}")
    images = _collect(rows, lambda line, image_id: shapes[image_id])  # no overlaps either
    for image_id, image in images.items():
        image.usage = usages.get(image_id)
    return images


def _collect(rows: list[tuple[int, list[str]]],
             shape_of: Callable[[int, str], tuple[int, int]]) -> dict[str, NucleiImage]:
    images: dict[str, NucleiImage] = {}
    seen: dict[str, dict[str, int]] = defaultdict(dict)
    order: dict[str, int] = {}
    texts, lines, ids, image_of_row, n_pixels = [], [], [], [], []
    for line, fields in rows:
        image_id, encoded = fields[0].strip(), fields[1].strip()
        if not image_id:
            raise SubmissionError("empty ImageId", where=f"line {line}")
        shape = shape_of(line, image_id)
        if image_id not in images:
            images[image_id] = NucleiImage(shape)
            order[image_id] = len(order)
        if not encoded:
            continue  # an empty prediction for this image
        earlier = seen[image_id].get(encoded)
        if earlier is not None:
            raise SubmissionError(
                f"duplicate of line {earlier}: the same mask twice (masks are not allowed to "
                "overlap)",
                where=f"line {line} (ImageId {image_id})",
            )
        seen[image_id][encoded] = line
        texts.append(encoded)
        lines.append(line)
        ids.append(image_id)
        image_of_row.append(order[image_id])
        n_pixels.append(shape[0] * shape[1])
    try:
        runs, n_runs = rle.parse_many(texts, np.array(n_pixels, dtype=np.int64))
    except rle.RLEError as e:
        k = e.index
        h, w = images[ids[k]].shape
        raise SubmissionError(
            f"bad RLE: {e}", where=f"line {lines[k]} (ImageId {ids[k]}, {h}x{w})"
        ) from None
    # Group rows (and their runs) by image, keeping the file order within an image.
    row_image = np.array(image_of_row, dtype=np.int64)
    row_order = np.argsort(row_image, kind="stable")
    run_row = np.repeat(np.arange(len(texts)), n_runs)
    runs = runs[np.argsort(row_image[run_row], kind="stable")]
    rows_per_image = np.bincount(row_image, minlength=len(order))
    runs_per_image = np.bincount(row_image, weights=n_runs, minlength=len(order))
    row_end = np.cumsum(rows_per_image)
    run_end = np.cumsum(runs_per_image).astype(np.int64)
    sorted_lines = np.array(lines, dtype=np.int64)[row_order]
    sorted_counts = n_runs[row_order]
    for image_id, k in order.items():
        r0, r1 = row_end[k] - rows_per_image[k], row_end[k]
        image = images[image_id]
        image.runs = runs[run_end[k] - int(runs_per_image[k]):run_end[k]]
        image.counts = sorted_counts[r0:r1]
        image.lines = sorted_lines[r0:r1].tolist()
    _check_masks(images, runs, runs_per_image.astype(np.int64))
    return images


def _check_masks(images: dict[str, NucleiImage], runs: np.ndarray,
                 runs_per_image: np.ndarray) -> None:
    """Masks of one image may not overlap: checked from the runs (grouped by image, in
    `images` order), before any mask or label image is painted, so a file of overlapping rows
    costs no more memory than its runs. First the pixels each image's rows cover, added up
    (more than the image holds is an overlap, whatever the runs), then each image's runs
    sorted by start."""
    if len(runs) == 0:
        return
    ids = list(images)
    run_image = np.repeat(np.arange(len(ids)), runs_per_image)
    area = np.array([h * w for h, w in (images[i].shape for i in ids)], dtype=np.float64)
    covered = np.bincount(run_image, weights=runs[:, 1], minlength=len(ids))  # exact < 2**53
    over = np.flatnonzero(covered > area)
    if len(over):
        line, image_id = min((_coverage_line(images[ids[k]]), ids[k]) for k in over)
        h, w = images[image_id].shape
        raise SubmissionError(
            f"the masks of this image cover more pixels than its {h * w} ({h}x{w}) by this "
            "line: masks overlap (masks are not allowed to overlap)",
            where=f"line {line} (ImageId {image_id})")
    found = [(image.lines[first], image_id) for image_id, image in images.items()
             if image.n_objects > 1 and (first := rle.first_overlap(image.runs,
                                                                    image.counts)) >= 0]
    if found:
        line, image_id = min(found)
        raise SubmissionError(
            "this mask overlaps an earlier mask of the same image (masks are not allowed to "
            "overlap)", where=f"line {line} (ImageId {image_id})")


def _coverage_line(image: NucleiImage) -> int:
    """The line at which an image's rows, added up in file order, pass its pixel count."""
    h, w = image.shape
    per_row = np.add.reduceat(image.runs[:, 1], np.cumsum(image.counts) - image.counts)
    return image.lines[int(np.flatnonzero(np.cumsum(per_row) > h * w)[0])]


def _shape_of(shapes: dict[str, tuple[int, int]], line: int,
              image_id: str) -> tuple[int, int]:
    try:
        return shapes[image_id]
    except KeyError:
        raise SubmissionError(
            f"ImageId {image_id[:80]!r} is not a test image of this competition",
            where=f"line {line}",
        ) from None


def write_csv(rows: list[tuple[Any, ...]], header: list[str]) -> bytes:
    """Deterministic CSV bytes (LF line ends); fields here never need quoting."""
    lines = [",".join(header)] + [",".join(str(f) for f in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()
