"""Brain MRI FLAIR abnormality segmentation (LGG): per-patient Dice, HD, HD95 and ASSD."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import SubmissionError
from competition.formats import nifti
from competition.formats.files import MIB, Limits, SubmissionFile
from competition.formats.text import read_csv_rows
from competition.metrics.surface import surface_scores
from competition.tasks.base import (
    Direction,
    Maps,
    ScoreResult,
    Source,
    Task,
    Validation,
    refuse_spec,
)
from competition.tasks.mri import naive, pictures, prepare, scoring, synthetic
from competition.tasks.mri.data import FLAIR, Masks, MriData, MriFiles, MriMaps, volumes_from_maps
from competition.tasks.mri.submission import Reference, read_volumes

Solution = dict[str, Reference]
SOLUTION_HEADER = ["case", "Usage", "first_slice"]


def _write_demo_source(root: Path, seed: int, spec: str | None = None) -> None:
    refuse_spec(spec, "demo-mri")
    synthetic.write_lgg_source(root, seed)


class MriTask(MriFiles, MriMaps, Task[Solution, Masks, MriData, Masks]):
    name = "mri"
    title = "Brain MRI FLAIR abnormality segmentation"
    metric = ("mean over patients of the per-patient Dice (3D); HD, HD95 and ASSD in mm "
              "shown beside it")
    metric_label = "mean Dice"
    direction = Direction.MAXIMIZE
    item_kind = "case"
    item_key = "case"
    submission_suffix = ".zip"
    # A volume per case: up to a few hundred members; each decodes to at most its case's
    # shape times 8 bytes, whatever its header or gzip stream claims.
    limits = Limits(max_files=512, max_unpacked_bytes=4096 * MIB)
    prediction = "masks"  # {case: (S, H, W) bool}
    map_channels = ("abnormality",)
    postprocess_keys = ("threshold", "largest_component")
    item_metrics = scoring.ITEM_METRICS

    def sources(self) -> dict[str, Source]:
        return {
            "lgg-mri": Source(prepare.prepare, "Kaggle LGG brain MRI (kaggle_3m/<case>/"
                              "<case>_<n>.tif + _mask.tif; optional spacing.csv)"),
            "demo-mri": Source(prepare.prepare, "synthetic 3-channel brain volumes",
                               synthetic=_write_demo_source),
        }

    # --- solutions, validation, scoring ---------------------------------------------------

    def load_solution(self, path: Path) -> Solution:
        """`solution.csv` (case,Usage,first_slice) and `solution/<case>.nii.gz` beside it."""
        path = Path(path)
        try:
            rows = read_csv_rows(path.read_bytes(), SOLUTION_HEADER)
        except SubmissionError as e:
            raise e.located(str(path)) from None
        solution: Solution = {}
        for _, (case, usage, first) in rows:
            volume = path.parent / "solution" / f"{case}.nii.gz"
            try:
                with gzip.open(volume, "rb") as f:
                    geometry = nifti.read_header(f).geometry  # type: ignore[arg-type]
                with volume.open("rb") as f:
                    truth = nifti.read_labels(f, geometry)
            except (SubmissionError, OSError) as e:
                raise SubmissionError(f"reference unreadable ({e})", file=str(volume)) \
                    from None
            solution[case] = Reference(case, geometry, int(first),
                                       usage.strip() or None, truth)
        return solution

    def solution_files(self, path: Path) -> list[Path]:
        path = Path(path)
        rows = read_csv_rows(path.read_bytes(), SOLUTION_HEADER)
        return [path] + [path.parent / "solution" / f"{row[0]}.nii.gz" for _, row in rows]

    def usage(self, solution: Solution) -> dict[str, str | None]:
        return {case: ref.usage for case, ref in solution.items()}

    def validate(self, submission: SubmissionFile, solution: Solution) -> Masks:
        return dict(read_volumes(submission, solution))

    def describe(self, parsed: Masks) -> str:
        voxels = sum(int(v.sum()) for v in parsed.values())
        return f"{len(parsed)} cases, {voxels} abnormal voxels"

    def score(self, submission: SubmissionFile, solution: Solution,
              reference: Masks | None = None, only: str | None = None) -> ScoreResult:
        """Every case is validated (read in turn); `only` scores that usage's cases."""
        rows = []
        for case, prediction in read_volumes(submission, solution):
            ref = solution[case]
            if only is not None and ref.usage != only:
                continue
            rows.append(scoring.case_row(case, ref.usage, ref.truth, prediction,
                                         ref.geometry.zooms, ref.geometry.diagonal_mm))
        return scoring.summarize(rows, self.name, self.metric, self.item_kind, self.item_key)

    def item_values(self, item: dict[str, Any]) -> list[float]:
        """Each item metric, an infinite distance as the case's diagonal (`for_mean`)."""
        return [scoring.for_mean(item, m.name) for m in self.item_metrics]

    def finish(self, means: np.ndarray) -> np.ndarray:
        """The score from the cases' mean values (..., 4): the mean Dice."""
        dice: np.ndarray = means[..., 0]
        return dice

    # --- predictions and the demo ------------------------------------------------------------

    def snapshot(self, maps: Maps, validation: Validation[MriData],
                 config: dict[str, Any]) -> tuple[np.ndarray, float]:
        """The held-out patient's montage and its Dice (after the configured
        post-processing)."""
        probability = volumes_from_maps(maps)[validation.name]
        mask = self.predictions_from_maps(maps, config)[validation.name]
        truth = np.asarray(validation.truth, bool)
        frame = pictures.montage(validation.image[..., FLAIR], probability, truth,
                                 float(config.get("threshold", 0.5)))
        return frame, surface_scores(truth, mask).dice

    def naive_submission(self, public: Path) -> bytes:
        inputs = self.load_inputs(public)
        return self.write_submission(inputs, naive.brightest_flair(inputs))
