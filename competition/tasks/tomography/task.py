"""Three-phase tomography segmentation (matrix, fibre, pore), scored by class-wise Jaccard."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import CompetitionError, SubmissionError
from competition.formats.files import Limits, SubmissionFile
from competition.tasks.base import (
    Direction,
    Maps,
    ScoreResult,
    Source,
    Task,
    Validation,
    positions_of,
    usage_masks,
)
from competition.tasks.tomography import (
    naive,
    pictures,
    prepare,
    scoring,
    submission,
    synthetic,
)
from competition.tasks.tomography.data import (
    TomoData,
    TomoFiles,
    Volume,
    labels_from_maps,
    maps_from_labels,
    slice_ids,
)
from competition.tasks.tomography.synthetic import CLASSES

MIB = 1024 * 1024


@dataclass
class TomoSolution:
    """The hidden test slab's labels (a zarr store, read lazily) and each slice's usage."""

    folder: Path  # the solution.zarr store
    shape: tuple[int, int, int]
    usage: list[str | None]

    def labels(self) -> submission.LabelVolume:
        trusted = SubmissionFile(self.folder, Limits(max_bytes=1 << 62, max_files=1 << 30,
                                                     max_unpacked_bytes=1 << 62))
        return submission.open_labels(trusted, self.shape)


@dataclass
class Checked:
    """A valid submission's facts (for `describe`)."""

    format: str
    shape: tuple[int, int, int]
    dtype: str
    counts: list[int]  # voxels per label


class TomographyTask(TomoFiles, Task[TomoSolution, Checked, TomoData, Volume]):
    name = "tomography"
    title = "Three-phase tomography segmentation"
    metric = ("mean over matrix, fibre and pore of the class-wise Jaccard index, from the "
              "confusion matrix summed over the test slab's slices")
    metric_label = "mean Jaccard"
    direction = Direction.MAXIMIZE
    item_kind = "slice"
    item_key = "slice"
    submission_suffix = ".zip"
    # A 1300x1040x300 uint8 slab is 405 MB raw (386 MiB): over the default 200 MB upload.
    # Zarr stores hold a file per chunk. Prepared competitions write the upload limit their
    # slab needs into competition.yaml (max_submission_mb), which the board and portal read.
    limits = Limits(max_bytes=prepare.DEFAULT_MAX_SUBMISSION_MB * MIB, max_files=100_000,
                    max_unpacked_bytes=4096 * MIB)
    # Scoring streams both volumes: a 1300x1040x300 slab took 2.2 s and 370 MB (benchmarks/
    # bench_tomography.py); slower formats (gzip HDF5, deflated zips) get CPU time to spare.
    scoring_cpu_seconds = 300
    prediction = "labels"  # a (z, y, x) uint8 label volume (numpy, zarr or dask)
    map_channels = CLASSES
    map_dtype = "float16"

    def sources(self) -> dict[str, Source]:
        return {
            "tomography": Source(prepare.prepare, "a labelled tomography volume: grey and "
                                 "label volumes as raw files with sidecars (NAME.raw.info), "
                                 "HDF5 datasets or zarr arrays"),
            "demo-tomography": Source(prepare.prepare, "a synthetic glass-fibre composite "
                                      "(--synthetic XxYxZ[,key=value...] sets its size and "
                                      "generator)", synthetic=synthetic.write_tomography_source),
        }

    # --- solutions, validation, scoring ---------------------------------------------------

    def load_solution(self, path: Path) -> TomoSolution:
        """`solution.json` (shape, usage by slice ranges) beside the `solution.zarr` store."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
            shape = tuple(int(s) for s in doc["shape"])
            n = shape[0]
            usage: list[str | None] = [None] * n
            for name, (z0, z1) in doc.get("usage", {}).items():
                if name not in ("Public", "Private") or not 0 <= z0 <= z1 <= n:
                    raise ValueError(f"usage {name} {z0}..{z1}")
                usage[z0:z1] = [name] * (z1 - z0)
            folder = path.parent / doc["labels"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CompetitionError(f"{path}: not a tomography solution ({e})") from None
        if len(shape) != 3 or not folder.is_dir():
            raise CompetitionError(f"{path}: needs a 3-D shape and its labels store {folder}")
        if any(u is None for u in usage):
            usage = [None] * n
        return TomoSolution(folder, (shape[0], shape[1], shape[2]), usage)

    def solution_files(self, path: Path) -> list[Path]:
        """solution.json and every file of its label store."""
        solution = self.load_solution(path)
        return [Path(path)] + sorted(p for p in solution.folder.rglob("*") if p.is_file())

    def usage(self, solution: TomoSolution) -> dict[str, str | None]:
        return dict(zip(slice_ids(solution.shape[0]), solution.usage, strict=True))

    def validate(self, submission_file: SubmissionFile, solution: TomoSolution) -> Checked:
        """Metadata first (shape, data type, chunks), then every chunk's labels."""
        volume = submission.open_labels(submission_file, solution.shape)
        counts = np.zeros(submission.N_CLASSES, np.int64)
        try:
            for slab in volume.slabs():
                counts += np.bincount(slab.labels.ravel(), minlength=submission.N_CLASSES)
        finally:
            volume.close()
        return Checked(volume.format, solution.shape, volume.dtype, counts.tolist())

    def describe(self, parsed: Checked) -> str:
        z, y, x = parsed.shape
        shares = ", ".join(f"{name} {c / max(sum(parsed.counts), 1):.1%}"
                           for name, c in zip(CLASSES, parsed.counts, strict=True))
        return f"{parsed.format} {x}x{y}x{z} {parsed.dtype} labels ({shares})"

    def score(self, submission_file: SubmissionFile, solution: TomoSolution,
              reference: Checked | None = None, only: str | None = None) -> ScoreResult:
        """Both volumes stream past slab by slab; `only` ("Public"/"Private") scores that
        split's slices (the whole file is still validated)."""
        pred = submission.open_labels(submission_file, solution.shape)
        truth = solution.labels()
        try:
            confusions = scoring.confusion_by_slice(truth, pred)
        except ValueError as e:
            raise SubmissionError(str(e)) from None
        finally:
            pred.close()
            truth.close()
        keep = [z for z, u in enumerate(solution.usage) if only is None or u == only]
        return summarize(confusions[keep], [solution.usage[z] for z in keep], keep)

    def item_values(self, item: dict[str, Any]) -> list[float]:
        return [float(v) for v in item["intersection"] + item["union"]]

    def finish(self, means: np.ndarray) -> np.ndarray:
        """The mean Jaccard from the items' mean [intersection_c..., union_c...] (..., 2K):
        classes absent from truth and prediction (union 0) are left out, as `mean_iou`
        does."""
        k = submission.N_CLASSES
        inter, union = means[..., :k], means[..., k:]
        present = union > 0
        ratio = np.where(present, inter / np.where(present, union, 1), 0.0)
        count = present.sum(axis=-1)
        score: np.ndarray = np.where(count > 0, ratio.sum(axis=-1) / np.maximum(count, 1),
                                     np.nan)
        return score

    # --- predictions --------------------------------------------------------------------------

    def predictions_from_maps(self, maps: Maps, config: dict[str, Any]) -> np.ndarray:
        """Class maps by slice ((H, W, 3) each) -> the label volume (argmax)."""
        return labels_from_maps(maps)

    def maps_from_predictions(self, inputs: TomoData, predictions: Volume) -> Maps:
        return maps_from_labels(predictions)

    def snapshot(self, maps: Maps, validation: Validation[TomoData],
                 config: dict[str, Any]) -> tuple[np.ndarray, float]:
        """The held-out slab's middle slice (image | prediction | truth) and its mean
        Jaccard over the whole slab."""
        from competition.metrics.multiclass import confusion_matrix, mean_iou

        labels = labels_from_maps(maps)
        truth = np.asarray(validation.truth)
        score = mean_iou(confusion_matrix(truth, labels, submission.N_CLASSES))
        z = len(truth) // 2
        return pictures.frame(np.asarray(validation.image)[z], labels[z], truth[z]), score

    # --- demo --------------------------------------------------------------------------------

    def naive_submission(self, public: Path) -> bytes:
        inputs = self.load_inputs(public)
        cuts = naive.thresholds(self.load_train(public))
        return self.write_submission(inputs, naive.Thresholded(inputs.volume, cuts))


def summarize(confusions: np.ndarray, usage: list[str | None], slices: list[int]) -> ScoreResult:
    total = scoring.Totals(confusions.sum(axis=0))
    masks = usage_masks(usage)
    public = private = None
    if masks is not None:
        if masks[0].any():
            public = scoring.Totals(confusions[masks[0]].sum(axis=0)).mean
        if masks[1].any():
            private = scoring.Totals(confusions[masks[1]].sum(axis=0)).mean
    items = scoring.item_rows(confusions, usage)
    for row, z in zip(items, slices, strict=True):
        row["slice"] = z
    jaccard = total.jaccard
    voxels = int(total.confusion.sum())
    return ScoreResult(
        task=TomographyTask.name,
        metric=TomographyTask.metric,
        score=total.mean,
        public=public,
        private=private,
        fields={
            "mean_jaccard": total.mean,
            **{f"jaccard_{name}": float(j) for name, j in zip(CLASSES, jaccard, strict=True)},
            "accuracy": float(np.trace(total.confusion) / voxels) if voxels else float("nan"),
            "voxels": voxels,
            "confusion": total.confusion.tolist(),
            "classes": list(CLASSES),
            "definitions": {
                "confusion": "voxels of true class (row) predicted as class (column)",
                "jaccard_*": "C_cc / (row_c + col_c - C_cc) of the summed confusion matrix",
            },
        },
        items=items,
        item_kind=TomographyTask.item_kind,
        item_key=TomographyTask.item_key,
        higher_is_better=True,
        subset=lambda only: _split(confusions, usage, slices, only),
    )


def _split(confusions: np.ndarray, usage: list[str | None], slices: list[int],
           only: str) -> ScoreResult:
    """The slices of one usage summarized alone: their confusion matrices are kept from the
    pass (the split's Jaccard is of its own summed matrix, not a function of the whole's)."""
    keep = positions_of(usage, only)
    return summarize(confusions[keep], [usage[k] for k in keep], [slices[k] for k in keep])
