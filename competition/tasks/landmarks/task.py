"""Landmark placement on 3D meshes, scored by RMSE and the win rate against a reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import SubmissionError
from competition.formats import landmarks_csv
from competition.formats.files import SubmissionFile
from competition.metrics import landmarks as metric
from competition.tasks.base import (
    Column,
    DetailTable,
    Direction,
    Maps,
    ScoreResult,
    Source,
    Task,
    positions_of,
    usage_masks,
)
from competition.tasks.landmarks import naive, prepare, synthetic
from competition.tasks.landmarks.data import LandmarkData, LandmarkFiles


@dataclass
class LandmarkSolution:
    specimens: list[str]
    landmarks: list[str]
    truth: np.ndarray  # (specimens, landmarks, 3)
    usage: list[str] | None


class LandmarksTask(LandmarkFiles,
                    Task[LandmarkSolution, np.ndarray, LandmarkData, Maps]):
    name = "landmarks"
    title = "Landmarks on 3D meshes"
    metric = "RMSE of the Euclidean landmark error over all test points (mm; lower is better)"
    metric_label = "RMSE (mm)"
    direction = Direction.MINIMIZE
    item_kind = "specimen"
    item_key = "specimen"
    submission_suffix = ".csv"
    prediction = "points"  # {specimen: (landmarks, 3)} in the test mesh's coordinates
    map_dtype = "float64"
    maps_are_predictions = True  # coordinates: what ensembles combine point by point
    supports_reference = True

    def sources(self) -> dict[str, Source]:
        return {
            "mouse-landmarks": Source(prepare.prepare, "SlicerMorph mouse skulls (Models/*.ply "
                                      "with LMs/*.mrk.json or .fcsv)"),
            "demo-landmarks": Source(prepare.prepare, "synthetic skull-like meshes",
                                     synthetic=synthetic.write_landmarks_source),
        }

    def load_solution(self, path: Path) -> LandmarkSolution:
        data = Path(path).read_bytes()
        with_usage = b"Usage" in data.split(b"\n", 1)[0]
        try:
            points, usages = landmarks_csv.read_points(data, with_usage=with_usage)
        except SubmissionError as e:
            raise e.located(str(path)) from None
        specimens = sorted(points)
        landmarks = list(points[specimens[0]])
        for s in specimens:
            if list(points[s]) != landmarks and sorted(points[s]) != sorted(landmarks):
                raise SubmissionError(f"specimen {s} has other landmarks than {specimens[0]}",
                                      file=str(path))
        truth = np.array([[points[s][lm] for lm in landmarks] for s in specimens])
        usage = [usages[s] for s in specimens] if with_usage else None
        return LandmarkSolution(specimens, landmarks, truth, usage)

    def expected(self, solution: LandmarkSolution) -> dict[str, list[str]]:
        return {s: solution.landmarks for s in solution.specimens}

    def usage(self, solution: LandmarkSolution) -> dict[str, str | None]:
        usages: Sequence[str | None] = solution.usage or [None] * len(solution.specimens)
        return dict(zip(solution.specimens, usages, strict=True))

    def validate(self, submission: SubmissionFile, solution: LandmarkSolution) -> np.ndarray:
        return self._points(submission.read_bytes(), solution)

    def _points(self, data_: bytes, solution: LandmarkSolution) -> np.ndarray:
        points, _ = landmarks_csv.read_points(data_, expected=self.expected(solution))
        return np.array([[points[s][lm] for lm in solution.landmarks]
                         for s in solution.specimens])

    def item_values(self, item: dict[str, Any]) -> list[float]:
        return [item["mse"]]

    def finish(self, means: np.ndarray) -> np.ndarray:
        """RMSE from the specimens' mean squared error (..., 1); every specimen has the same
        landmarks, so this is the RMSE over all points."""
        rmse: np.ndarray = np.sqrt(means[..., 0])
        return rmse

    def describe(self, points: np.ndarray) -> str:
        return f"{points.shape[0]} specimens x {points.shape[1]} landmarks"

    def load_reference(self, path: Path, solution: LandmarkSolution) -> np.ndarray:
        try:
            return self._points(Path(path).read_bytes(), solution)
        except SubmissionError as e:
            raise e.located(str(path)) from None

    def score(self, submission: SubmissionFile, solution: LandmarkSolution,
              reference: np.ndarray | None = None, only: str | None = None) -> ScoreResult:
        """`only` ("Public"/"Private"): the whole file is validated, the specimens of that
        usage scored (detail metrics of one split)."""
        pred = self.validate(submission, solution)
        if only is not None:
            keep = [i for i, u in enumerate(solution.usage or []) if u == only]
            solution = LandmarkSolution([solution.specimens[i] for i in keep],
                                        solution.landmarks, solution.truth[keep],
                                        [only] * len(keep))
            pred = pred[keep]
            reference = None if reference is None else reference[keep]
        d = metric.distances(pred, solution.truth)  # (specimens, landmarks)
        d_ref = None if reference is None else metric.distances(reference, solution.truth)
        return summarize(d, d_ref, solution)

    def detail_tables(self, fields: Mapping[str, Any]) -> list[DetailTable]:
        """`per_landmark` in the published layout: landmark, specimens, errors, and how often
        the submission beats the reference (e.g. ALPACA) on that landmark."""
        rows = fields.get("per_landmark")
        if not rows:
            return []
        columns = [Column("landmark", "landmark"), Column("n", "specimens"),
                   Column("rmse", "RMSE", ".3f"), Column("mean", "mean", ".3f"),
                   Column("median", "median", ".3f")]
        if "win_rate" in rows[0]:
            columns += [Column("win_rate", "% better than reference", ".1f"),
                        Column("ties", "ties"),
                        Column("reference_mean", "reference mean", ".3f")]
        return [DetailTable("per_landmark", "per landmark (mm)", list(rows), tuple(columns))]

    # --- predictions and the demo ------------------------------------------------------------

    def maps_from_predictions(self, inputs: LandmarkData, predictions: Maps) -> Maps:
        return {k: np.asarray(v, np.float64) for k, v in predictions.items()}

    def naive_submission(self, public: Path) -> bytes:
        inputs = self.load_inputs(public)
        return self.write_submission(inputs, naive.transferred(public, inputs))


def summarize(d: np.ndarray, d_ref: np.ndarray | None, solution: LandmarkSolution) -> ScoreResult:
    masks = usage_masks(solution.usage or [])
    public = private = None
    if masks is not None:
        public = metric.rmse(d[masks[0]]) if masks[0].any() else None
        private = metric.rmse(d[masks[1]]) if masks[1].any() else None
    per_lm = metric.per_landmark(d)
    fields: dict[str, Any] = {
        "rmse": metric.rmse(d),
        "mean_error": float(d.mean()),
        "median_error": float(np.median(d)),
        "n_specimens": len(solution.specimens),
        "n_landmarks": len(solution.landmarks),
        "units": "mm",
    }
    table = [
        {"landmark": lm, "n": int(d.shape[0]), "rmse": float(per_lm["rmse"][k]),
         "mean": float(per_lm["mean"][k]), "median": float(per_lm["median"][k])}
        for k, lm in enumerate(solution.landmarks)
    ]
    if d_ref is not None:
        wr = metric.win_rate(d, d_ref)
        fields.update(win_rate=wr.percent, wins=wr.wins, ties=wr.ties, n_points=wr.n,
                      reference_rmse=metric.rmse(d_ref))
        for k, row in enumerate(table):
            w = metric.win_rate(d[:, k], d_ref[:, k])
            row.update(win_rate=w.percent, ties=w.ties, reference_mean=float(d_ref[:, k].mean()))
    fields["per_landmark"] = table
    items = [
        {"specimen": s, "usage": solution.usage[i] if solution.usage else None,
         "rmse": metric.rmse(d[i]), "mse": float((d[i] ** 2).mean()),
         "mean_error": float(d[i].mean()),
         "max_error": float(d[i].max())}
        for i, s in enumerate(solution.specimens)
    ]
    return ScoreResult(
        task=LandmarksTask.name,
        metric=LandmarksTask.metric,
        score=fields["rmse"],
        public=public,
        private=private,
        fields=fields,
        items=items,
        item_kind=LandmarksTask.item_kind,
        item_key=LandmarksTask.item_key,
        higher_is_better=LandmarksTask.direction.higher_is_better,
        subset=lambda usage: _split(d, d_ref, solution, usage),
    )


def _split(d: np.ndarray, d_ref: np.ndarray | None, solution: LandmarkSolution,
           usage: str) -> ScoreResult:
    """The specimens of one usage summarized alone: distances are per point, so the rows of
    the pass are those `only=usage` computes."""
    keep = positions_of(solution.usage or [], usage)
    part = LandmarkSolution([solution.specimens[i] for i in keep], solution.landmarks,
                            solution.truth[keep], [usage] * len(keep))
    return summarize(d[keep], None if d_ref is None else d_ref[keep], part)
