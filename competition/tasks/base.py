"""The Task interface: everything one task knows, in one place.

A task is a plugin: a class derived from `Task`, registered under the entry point group
`competition.tasks` (see `competition.tasks`). The board, training, ensembles, tracking, the
CLI and the portal call this interface and never name a task. A task says:

- how competitions are prepared from its data sets (`sources`);
- what a submission is and the limits that bound reading it (`limits`, `submission_suffix`),
  how to validate and score one (`validate`, `score`; item rows with their public/private
  usage; `direction`) and how item values aggregate into the score (`item_values`, `finish`);
- what training data and test inputs are (`load_train`, `load_inputs`, `hold_out`), how
  predictions become a submission file (`write_submission`);
- what a prediction map is (`map_channels`, `map_dtype`; `pixel_items` gives images and
  targets, and a map is keyed by its item's key), how maps become predictions
  (`predictions_from_maps`, with the config keys `postprocess_keys`) and predictions maps
  (`maps_from_predictions`), what a validation picture shows (`snapshot`);
- a naive day-one submission for the demo (`naive_submission`).

Maps are dicts of arrays keyed by item id, the same for every task, so ensembles combine them
without knowing the task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from competition.errors import CompetitionError, SourceDataError
from competition.formats.files import Limits, SubmissionFile
from competition.formats.jsonsafe import jsonable

Maps = dict[str, np.ndarray]


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"

    @property
    def higher_is_better(self) -> bool:
        return self is Direction.MAXIMIZE


@dataclass
class ScoreResult:
    """An official score, its public/private split and the task's detail fields.

    `public`/`private` are None where the solution has no Usage split. `items` holds one row per
    test item with its `usage`; `item_kind` names the rows and `item_key` their id field.
    """

    task: str
    score: float
    public: float | None
    private: float | None
    fields: dict[str, Any]
    items: list[dict[str, Any]]
    item_kind: str
    item_key: str
    higher_is_better: bool
    metric: str = ""
    notes: list[str] = field(default_factory=list)
    # The result of one split's items ("Public"/"Private") from this pass's per-item state,
    # exactly what `score(only=usage)` gives but without decoding the file again (issue 31).
    # None: the task keeps no such state (a caller scores that split again).
    subset: Callable[[str], ScoreResult] | None = field(default=None, repr=False,
                                                        compare=False)

    def of_usage(self, usage: str) -> ScoreResult | None:
        """The same scoring restricted to the items of `usage`, or None where the task
        cannot tell it from this result (see `subset`)."""
        return None if self.subset is None else self.subset(usage)

    def item_id(self, item: dict[str, Any]) -> Any:
        """The id of an item row (its ImageId, slice number, specimen name...)."""
        return item[self.item_key]

    def as_json(self, per_item: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "metric": self.metric,
            "score": self.score,
            "public": self.public,
            "private": self.private,
            "higher_is_better": self.higher_is_better,
            **self.fields,
        }
        if per_item:
            out[f"per_{self.item_kind}"] = self.items
        result: dict[str, Any] = jsonable(out)
        return result


def positions_of(usages: Sequence[str | None], usage: str) -> list[int]:
    """The positions of the items of `usage`, in order (what `only=usage` keeps)."""
    return [k for k, u in enumerate(usages) if u == usage]


def usage_masks(usages: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray] | None:
    """Boolean masks of public and private items, or None when there is no split."""
    if not usages or any(u is None for u in usages):
        return None
    u = np.array(usages)
    return u == "Public", u == "Private"


@dataclass(frozen=True)
class ItemMetric:
    """One number of every item row, with its direction: what a board shows beside the score
    (its mean over the board's items) and what a `ranking: mean_of_ranks` board ranks each
    item on. A task that declares item metrics returns exactly these values, in this order,
    from `item_values` (so `finish` sees them too)."""

    name: str  # the item row's field, e.g. "hd95"
    label: str  # as a board shows it, e.g. "HD95 (mm)"
    direction: Direction


@dataclass(frozen=True)
class Source:
    """A kind of data set a task prepares competitions from (`competition prepare KIND`).

    `prepare(source, stage, seed, public_fraction, name=, kind=, **options)` writes the
    competition into `stage` (a `competition.tasks.preparing.Staging`). A synthetic kind (a
    demo) also has `synthetic(folder, seed, spec=None)`, which writes a source in the real
    layout first: the demo runs the real preparer. `spec` is `competition prepare
    --synthetic SPEC` (e.g. a volume's size), None by default; a writer that takes none
    refuses one with `refuse_spec`.
    """

    prepare: Callable[..., None]
    description: str
    synthetic: Callable[..., None] | None = None
    options: dict[str, Any] = field(default_factory=dict)


def refuse_spec(spec: str | None, what: str) -> None:
    """A synthetic writer's answer to a `--synthetic SPEC` it does not understand."""
    if spec is not None:
        raise SourceDataError(f"{what} takes no --synthetic spec (got {spec!r}); leave it out")


@dataclass
class Validation:
    """One training item held out of training: its input (for the entry), its picture and
    its labels (per-epoch scores and pictures; participants may see training labels)."""

    name: str
    inputs: Any
    image: np.ndarray
    truth: np.ndarray


@dataclass
class PixelItem:
    """One image of a dense task as a network sees it.

    `image` (H, W) float32 grey, oriented the way the task's maps expect (e.g. nuclei bright);
    `targets` (H, W, K) the task's `map_channels` in [0, 1] (training data only); `objects`
    (H, W) int32 object labels, for weight maps (training data only).
    """

    key: str
    image: np.ndarray
    targets: np.ndarray | None = None
    objects: np.ndarray | None = None


class Task(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    metric: ClassVar[str]  # one line: what the score is
    metric_label: ClassVar[str]  # a short label, e.g. "mean AP"
    direction: ClassVar[Direction]
    item_kind: ClassVar[str]  # what a test item is: image, slice, specimen...
    item_key: ClassVar[str]  # the id field of an item row
    submission_suffix: ClassVar[str]  # of the file `competition run` writes and the store keeps
    limits: ClassVar[Limits] = Limits()  # max_bytes is replaced by the competition's rule
    prediction: ClassVar[str]  # what an entry's predict() gives per item, e.g. "instances"
    map_channels: ClassVar[tuple[str, ...]] = ()  # dense tasks: a prediction map's channels
    map_dtype: ClassVar[str] = "float16"
    maps_are_predictions: ClassVar[bool] = False  # maps need no post-processing at all
    postprocess_keys: ClassVar[tuple[str, ...]] = ()  # entry config keys maps -> predictions
    supports_reference: ClassVar[bool] = False  # scores against reference predictions
    # Per-item metrics that `item_values` carries, in order (boards show their means and may
    # rank by the mean of per-item ranks); empty: the item values are the score's alone.
    item_metrics: ClassVar[tuple[ItemMetric, ...]] = ()
    # Scoring limits this task needs at least (issue 16): None leaves them to the competition's
    # rules (RulesConfig.scoring_memory_mb, default 2048 MB, and scoring_cpu_seconds, 120 s);
    # a number is a floor, e.g. a task scoring large 3D volumes sets more: the scorer uses the
    # larger of the task's and the competition's value.
    scoring_memory_mb: ClassVar[int | None] = None
    scoring_cpu_seconds: ClassVar[int | None] = None

    @property
    def higher_is_better(self) -> bool:
        return self.direction.higher_is_better

    # --- preparing ---------------------------------------------------------------------------

    @abstractmethod
    def sources(self) -> dict[str, Source]:
        """The kinds this task prepares competitions from, by name."""

    # --- solutions, validation, scoring ---------------------------------------------------

    @abstractmethod
    def load_solution(self, path: Path) -> Any:
        """The hidden labels (with their Usage split, where the files have one)."""

    def solution_files(self, path: Path) -> list[Path]:
        """Every file the solution at `path` is read from (for its hash)."""
        return [Path(path)]

    def load_reference(self, path: Path, solution: Any) -> Any:
        """Reference predictions a score is compared with (e.g. a win rate)."""
        raise CompetitionError(f"the {self.name} task has no reference predictions")

    @abstractmethod
    def validate(self, submission: SubmissionFile, solution: Any) -> Any:
        """The parsed submission, or a SubmissionError that says where and why. Only public
        facts of the solution (ids, shapes) may reach a message."""

    @abstractmethod
    def describe(self, parsed: Any) -> str:
        """A short summary of a valid submission, e.g. "15 images, 120 objects"."""

    @abstractmethod
    def score(self, submission: SubmissionFile, solution: Any, reference: Any = None,
              only: str | None = None) -> ScoreResult:
        """Validate and score; `only` ("Public"/"Private") scores that split's items. A task
        that can, sets the result's `subset` so that one pass also gives each split's
        details (`ScoreResult.of_usage`), equal to what `only` gives."""

    @abstractmethod
    def item_values(self, item: dict[str, Any]) -> list[float]:
        """The numbers of one item row that `finish` aggregates (the bootstrap's input)."""

    @abstractmethod
    def finish(self, means: np.ndarray) -> np.ndarray:
        """The score from the items' mean values (..., k)."""

    @abstractmethod
    def usage(self, solution: Any) -> dict[str, str | None]:
        """Each test item's usage (Public, Private or None), by item id as maps key it."""

    # --- training data and predictions ---------------------------------------------------

    @abstractmethod
    def load_train(self, public: Path) -> Any:
        """The public training data, in arrays."""

    @abstractmethod
    def load_inputs(self, public: Path, folder: Path | None = None) -> Any:
        """The test inputs, or any folder of inputs in the data set's download layout."""

    @abstractmethod
    def write_submission(self, inputs: Any, predictions: Any) -> bytes:
        """A submission file from an entry's predictions of `inputs`."""

    def hold_out(self, train: Any, seed: int = 0) -> tuple[Any, Validation | None]:
        """Training data less one validation item, or unchanged with None."""
        return train, None

    def predictions_from_maps(self, maps: Maps, config: dict[str, Any]) -> Any:
        """Predictions (what `write_submission` takes) from probability maps."""
        return maps

    def maps_from_predictions(self, inputs: Any, predictions: Any) -> Maps:
        """The maps a prediction amounts to (hard 0/1 maps for masks): what an entry that
        predicts no probabilities contributes to an ensemble."""
        raise CompetitionError(f"the {self.name} task has no maps of predictions")

    def snapshot(self, maps: Maps, validation: Validation,
                 config: dict[str, Any]) -> tuple[np.ndarray, float]:
        """A picture (RGB) and the score of the validation item from its maps."""
        raise CompetitionError(f"the {self.name} task draws no validation pictures")

    def pixel_items(self, data: Any) -> list[PixelItem]:
        """Training data or inputs as images (with targets where labels are known)."""
        raise CompetitionError(f"the {self.name} task has no pixel maps")

    # --- demo --------------------------------------------------------------------------------

    @abstractmethod
    def naive_submission(self, public: Path) -> bytes:
        """What a participant might submit on day one (the demo ranks it)."""


def aggregate(task: Task, values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """A task's score of items with `values` (n_items, k), optionally under resampling
    `weights` (..., n_items) that sum to n_items: every task's score is a function of the
    (weighted) mean of its item values, which makes the bootstrap one matrix product."""
    values = np.asarray(values, dtype=np.float64)
    if weights is None:
        return task.finish(values.mean(axis=0))
    return task.finish(np.asarray(weights, dtype=np.float64) @ values / values.shape[0])
