"""A toy task in a package of its own: predict y from x (one number per item), scored by the
mean absolute error. Everything a task must say, and nothing of the harness changed."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from competition.errors import CompetitionError, SourceDataError, SubmissionError
from competition.formats.files import SubmissionFile
from competition.tasks.base import (
    CvItem,
    Direction,
    Maps,
    ScoreResult,
    Source,
    Task,
    refuse_spec,
    usage_masks,
)
from competition.tasks.preparing import (
    Staging,
    assign_usage,
    competition_yaml,
    readme_rules,
    split_test,
)


@dataclass
class Numbers:
    ids: list[str]
    x: np.ndarray
    y: np.ndarray | None = None


def _rows(data: bytes, header: list[str], name: str) -> list[list[str]]:
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    first = next(reader, None)
    if first != header:
        raise SubmissionError(f"header must be {','.join(header)}", where="line 1")
    return list(reader)


def write_source(folder: Path, seed: int, spec: str | None = None) -> None:
    refuse_spec(spec, "the toy source")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, 40)
    y = 2 * x + 1 + rng.normal(0, 0.5, 40)
    lines = ["id,x,y"] + [f"item{k:03d},{a:.6f},{b:.6f}"
                          for k, (a, b) in enumerate(zip(x, y, strict=True))]
    (folder / "data.csv").write_text("\n".join(lines) + "\n")


def prepare(source: Path, stage: Staging, seed: int, public_fraction: float, *, name: str,
            kind: str, test_fraction: float = 0.25) -> None:
    path = source / "data.csv"
    if not path.is_file():
        raise SourceDataError(f"{source}: no data.csv")
    rows = {r[0]: (r[1], r[2]) for r in _rows(path.read_bytes(), ["id", "x", "y"], str(path))}
    rng = np.random.default_rng(seed)
    train, test = split_test(list(rows), test_fraction, rng)
    usage = assign_usage(test, public_fraction, rng)
    stage.write("public/train.csv", ("id,x,y\n" + "".join(
        f"{i},{rows[i][0]},{rows[i][1]}\n" for i in train)).encode())
    stage.write("public/test.csv", ("id,x\n" + "".join(f"{i},{rows[i][0]}\n"
                                                      for i in test)).encode())
    stage.write("public/sample_submission.csv", ("id,y\n" + "".join(f"{i},0\n"
                                                                   for i in test)).encode())
    stage.write("private/solution.csv", ("id,y,Usage\n" + "".join(
        f"{i},{rows[i][1]},{usage[i]}\n" for i in test)).encode())
    counts = {"train": len(train), "test": len(test),
              "public": sum(u == "Public" for u in usage.values())}
    stage.write("public/README.md", (f"# {name}\n\nPredict y from x.\n\n"
                                     + readme_rules(counts, "items")).encode())
    stage.write("competition.yaml", competition_yaml(
        name=name, kind=kind, task=ToyTask.name, title="Toy regression", seed=seed,
        public_fraction=public_fraction, counts=counts,
        files={"solution": "private/solution.csv"}))


class ToyTask(Task):
    name = "toy"
    title = "Toy regression"
    metric = "mean absolute error of y"
    metric_label = "MAE"
    direction = Direction.MINIMIZE
    item_kind = "item"
    item_key = "id"
    submission_suffix = ".csv"
    prediction = "values"
    map_dtype = "float64"
    maps_are_predictions = True

    def sources(self) -> dict[str, Source]:
        return {"demo-toy": Source(prepare, "forty noisy points on a line",
                                   synthetic=write_source)}

    def load_solution(self, path: Path) -> dict[str, tuple[float, str | None]]:
        return {r[0]: (float(r[1]), r[2] or None) for r in  # no Usage: training labels
                _rows(Path(path).read_bytes(), ["id", "y", "Usage"], str(path))}

    def usage(self, solution: Any) -> dict[str, str | None]:
        return {i: u for i, (_, u) in solution.items()}

    def validate(self, submission: SubmissionFile, solution: Any) -> dict[str, float]:
        values: dict[str, float] = {}
        for line, row in enumerate(_rows(submission.read_bytes(), ["id", "y"],
                                         submission.name), 2):
            if len(row) != 2 or row[0] not in solution or row[0] in values:
                raise SubmissionError("unknown or repeated id", where=f"line {line}")
            try:
                values[row[0]] = float(row[1])
            except ValueError:
                raise SubmissionError("y must be a number", where=f"line {line}") from None
            if not math.isfinite(values[row[0]]):
                raise SubmissionError("y must be finite", where=f"line {line}")
        if len(values) != len(solution):
            raise SubmissionError("every test id needs a row")
        return values

    def describe(self, parsed: Any) -> str:
        return f"{len(parsed)} values"

    def score(self, submission: SubmissionFile, solution: Any, reference: Any = None,
              only: str | None = None) -> ScoreResult:
        values = self.validate(submission, solution)
        items = [{"id": i, "usage": u, "abs_error": abs(values[i] - y)}
                 for i, (y, u) in solution.items() if only is None or u == only]
        errors = np.array([it["abs_error"] for it in items])
        masks = usage_masks([it["usage"] for it in items])
        public = private = None
        if masks is not None:
            public = float(errors[masks[0]].mean()) if masks[0].any() else None
            private = float(errors[masks[1]].mean()) if masks[1].any() else None
        return ScoreResult(task=self.name, score=float(errors.mean()), public=public,
                           private=private, fields={"n_items": len(items)}, items=items,
                           item_kind=self.item_kind, item_key=self.item_key,
                           higher_is_better=False, metric=self.metric)

    def item_values(self, item: dict[str, Any]) -> list[float]:
        return [item["abs_error"]]

    def finish(self, means: np.ndarray) -> np.ndarray:
        return means[..., 0]

    def load_train(self, public: Path) -> Numbers:
        rows = _rows((public / "train.csv").read_bytes(), ["id", "x", "y"], "train.csv")
        return Numbers([r[0] for r in rows], np.array([float(r[1]) for r in rows]),
                       np.array([float(r[2]) for r in rows]))

    def load_inputs(self, public: Path, folder: Path | None = None) -> Numbers:
        rows = _rows((public / "test.csv").read_bytes(), ["id", "x"], "test.csv")
        return Numbers([r[0] for r in rows], np.array([float(r[1]) for r in rows]))

    def write_submission(self, inputs: Numbers, predictions: Maps) -> bytes:
        return ("id,y\n" + "".join(f"{i},{float(np.ravel(predictions[i])[0]):.9f}\n"
                                  for i in inputs.ids)).encode()

    def naive_submission(self, public: Path) -> bytes:
        train, test = self.load_train(public), self.load_inputs(public)
        mean = float(train.y.mean())
        return self.write_submission(test, {i: np.array([[mean]]) for i in test.ids})

    # Cross-validation (`competition cv`, and greedy ensembles choosing on its out-of-fold
    # predictions): each item its own group, labels written as the hidden solution is.
    def cv_items(self, train: Numbers) -> list[CvItem]:
        return [CvItem(i, i) for i in train.ids]

    def take(self, data: Numbers, positions: Sequence[int]) -> Numbers:
        keep = list(positions)
        return Numbers([data.ids[k] for k in keep], data.x[keep],
                       None if data.y is None else data.y[keep])

    def inputs_of(self, data: Numbers) -> Numbers:
        return Numbers(data.ids, data.x)

    def write_solution(self, data: Numbers, folder: Path) -> Path:
        if data.y is None:
            raise CompetitionError("a solution needs labelled items")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "solution.csv"
        path.write_text("id,y,Usage\n" + "".join(
            f"{i},{y},\n" for i, y in zip(data.ids, data.y, strict=True)))
        return path
