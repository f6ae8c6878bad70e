"""The Task interface: everything one task knows, in one place.

A task is a plugin: a class derived from `Task`, registered under the entry point group
`competition.tasks` (see `competition.tasks`). The board, training, ensembles, tracking, the
CLI and the portal call this interface and never name a task. It comes in parts, each typed by
what it reads and gives, so that a caller depends on the part it uses:

- `TaskInfo`: names, the score's `direction`, what an item is (`item_kind`, `item_key`) and
  the suffix of submission files;
- `Preparing`: how competitions are prepared from its data sets (`sources`), and a naive
  day-one submission for the demo (`naive_submission`);
- `DataFiles[D, P]`: what training data and test inputs are (`load_train`, `load_inputs`,
  `hold_out`, `pixel_items`: images and targets for pixel models), how predictions `P` become
  a submission file (`write_submission`);
- `PredictionMaps[D, P]`: what a prediction map is (`map_channels`, `map_dtype`; a map is
  keyed by its item's key), how maps become predictions (`predictions_from_maps`, with the
  config keys `postprocess_keys`) and predictions maps (`maps_from_predictions`), what a
  validation picture shows (`snapshot`);
- `Scoring[S, V]`: what a solution `S` is (`load_solution`, `usage`), what a submission is and
  the limits that bound reading it (`limits`, `validate` giving `V`, `describe`), how one is
  scored (`score`; item rows with their public/private usage; `direction`), how item values
  aggregate into the score (`item_values`, `finish`) and which detail fields are tables
  (`detail_tables`).

`Task[S, V, D, P]` is all of them; a plugin names its own types.

Maps are dicts of arrays keyed by item id, the same for every task, so ensembles combine them
without knowing the task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

import numpy as np

from competition.errors import CompetitionError, SourceDataError
from competition.formats.files import Limits, SubmissionFile
from competition.formats.jsonsafe import jsonable

Maps = dict[str, np.ndarray]

S = TypeVar("S")  # the solution: the hidden labels as `load_solution` reads them
V = TypeVar("V")  # a valid submission as `validate` parses it (reference predictions too)
D = TypeVar("D")  # training data and test inputs as `load_train`/`load_inputs` read them
P = TypeVar("P")  # an entry's predictions of inputs, as `write_submission` takes them


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
class Validation(Generic[D]):
    """One training item held out of training: its input (for the entry), its picture and
    its labels (per-epoch scores and pictures; participants may see training labels)."""

    name: str
    inputs: D
    image: np.ndarray
    truth: np.ndarray


@dataclass(frozen=True)
class CvItem:
    """A training item as cross-validation splits it (`competition cv`): its id, its group
    (the items of one group stay in one fold: a patient's slices, a specimen) and its stratum
    (folds keep the strata in proportion: an image type, an institution)."""

    key: str
    group: str
    stratum: str = ""


@dataclass(frozen=True)
class Column:
    """A column of a detail table as a console shows it: the row field, its heading and a
    format spec for numbers (e.g. ".3f"; empty: as it is)."""

    key: str
    heading: str
    spec: str = ""

    def cell(self, row: Mapping[str, Any]) -> str:
        value = row.get(self.key)
        if value is None:
            return "-"
        return format(value, self.spec) if self.spec and isinstance(value, (int, float)) \
            else str(value)


@dataclass(frozen=True)
class DetailTable:
    """A table among a score's detail fields (rows of one kind, e.g. one per landmark).
    Tracking logs its rows as `scores/<name>_<split>.csv` (every field); `competition score`
    prints `columns` under `title`."""

    name: str
    title: str
    rows: list[dict[str, Any]]
    columns: tuple[Column, ...]


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


# --- the parts of a task: each caller depends on the part it uses --------------------------

class TaskInfo(ABC):
    """What every part of a task says of it: its names, its score and its items."""

    name: ClassVar[str]
    title: ClassVar[str]
    metric: ClassVar[str]  # one line: what the score is
    metric_label: ClassVar[str]  # a short label, e.g. "mean AP"
    direction: ClassVar[Direction]
    item_kind: ClassVar[str]  # what a test item is: image, slice, specimen...
    item_key: ClassVar[str]  # the id field of an item row
    submission_suffix: ClassVar[str]  # of the file `competition run` writes and the store keeps

    @property
    def higher_is_better(self) -> bool:
        return self.direction.higher_is_better


class Preparing(TaskInfo):
    """Competitions from data sets (`competition prepare`), and the demo's day-one file."""

    @abstractmethod
    def sources(self) -> dict[str, Source]:
        """The kinds this task prepares competitions from, by name."""

    @abstractmethod
    def naive_submission(self, public: Path) -> bytes:
        """What a participant might submit on day one (the demo ranks it)."""


class DataFiles(TaskInfo, Generic[D, P]):
    """The data set as entries see it: training data and test inputs read from a prepared
    competition's public files (`D`), predictions (`P`) written as a submission file."""

    prediction: ClassVar[str]  # what an entry's predict() gives per item, e.g. "instances"

    @abstractmethod
    def load_train(self, public: Path) -> D:
        """The public training data, in arrays."""

    @abstractmethod
    def load_inputs(self, public: Path, folder: Path | None = None) -> D:
        """The test inputs, or any folder of inputs in the data set's download layout."""

    @abstractmethod
    def write_submission(self, inputs: D, predictions: P) -> bytes:
        """A submission file from an entry's predictions of `inputs`."""

    # Where `load_inputs(public)` reads the test inputs, relative to public/ (files or
    # folders). A code competition (issue 32) keeps them under private/inputs/ instead and
    # shows them, at these paths, to the sandboxed entry only. Empty: no code competitions.
    test_inputs: ClassVar[tuple[str, ...]] = ()

    def sample_entry(self) -> dict[str, str]:
        """The entry a code competition publishes as public/sample_entry/ (file name ->
        text): the smallest one that writes a valid submission. Empty: none."""
        return {}

    def hold_out(self, train: D, seed: int = 0) -> tuple[D, Validation[D] | None]:
        """Training data less one validation item, or unchanged with None."""
        return train, None

    def with_hidden(self, train: D, inputs: D, solution: Any) -> D:
        """The training data joined with the hidden items (their `inputs` and the hidden
        `solution`'s labels): what an organizers' final fit trains on (`competition run
        --final`), once every choice is made. Tasks without one refuse."""
        raise CompetitionError(f"the {self.name} task has no final fit (--final)")

    def pixel_items(self, data: D) -> list[PixelItem]:
        """Training data or inputs as images (with targets where labels are known)."""
        raise CompetitionError(f"the {self.name} task has no pixel maps")

    # --- cross-validation on the training data (`competition cv`) ------------------------
    # Folds of contiguous items in order (slices of one stack, where neighbours nearly
    # repeat), with `cv_gap` items either side of a held-out block left out of training;
    # otherwise stratified folds of whole groups.
    cv_contiguous: ClassVar[bool] = False
    cv_gap: ClassVar[int] = 0
    # Other ways the items may group (`competition cv --groups NAME`, `cv_grouped`): each
    # name with what its folds hold out together.
    cv_groupings: ClassVar[dict[str, str]] = {}

    def item_ids(self, data: D) -> list[str]:
        """The ids its maps are keyed by, in order (images, slices, specimens; an MRI
        patient's slices): by default the data's `ids`."""
        ids = getattr(data, "ids", None)
        if ids is None:
            raise CompetitionError(f"the {self.name} task's data has no item ids")
        return [str(i) for i in ids]

    def cv_items(self, train: D) -> list[CvItem]:
        """The training items in order, with the group and stratum each belongs to."""
        raise CompetitionError(f"the {self.name} task has no cross-validation")

    def cv_grouped(self, train: D, groups: str) -> list[CvItem]:
        """`cv_items` with the groups one of `cv_groupings` names (the strata kept)."""
        raise CompetitionError(f"the {self.name} task has no other grouping of its "
                               f"{self.item_kind}s")

    def item_features(self, data: D) -> np.ndarray:
        """What can be seen of each item without its labels, (items, features) in
        `cv_items`' order (inputs alike): what `competition cv --toward` tells training
        from test items by, to weigh the folds toward the test items."""
        raise CompetitionError(f"the {self.name} task does not describe its items "
                               "(--toward)")

    def take(self, data: D, positions: Sequence[int]) -> D:
        """The items at `positions` (of `cv_items`' order), labels included where known."""
        raise CompetitionError(f"the {self.name} task has no cross-validation")

    def inputs_of(self, data: D) -> D:
        """The same items without their labels: what `predict` may see."""
        raise CompetitionError(f"the {self.name} task has no cross-validation")

    def write_solution(self, data: D, folder: Path) -> Path:
        """Labelled items written in the layout of this task's hidden solution (no Usage
        split), into `folder`; returns the path `load_solution` reads. Cross-validation
        scores held-out training items with the official scorer through it."""
        raise CompetitionError(f"the {self.name} task has no cross-validation")


class PredictionMaps(TaskInfo, Generic[D, P]):
    """Prediction maps (dicts of arrays keyed by item id, what ensembles combine) and the
    predictions they amount to."""

    map_channels: ClassVar[tuple[str, ...]] = ()  # dense tasks: a prediction map's channels
    map_dtype: ClassVar[str] = "float16"
    maps_are_predictions: ClassVar[bool] = False  # maps need no post-processing at all
    postprocess_keys: ClassVar[tuple[str, ...]] = ()  # entry config keys maps -> predictions

    def predictions_from_maps(self, maps: Maps, config: dict[str, Any]) -> P:
        """Predictions (what `write_submission` takes) from probability maps. By default the
        maps themselves: a task whose maps are its predictions has `P` = `Maps`."""
        return cast(P, maps)

    def maps_from_predictions(self, inputs: D, predictions: P) -> Maps:
        """The maps a prediction amounts to (hard 0/1 maps for masks): what an entry that
        predicts no probabilities contributes to an ensemble."""
        raise CompetitionError(f"the {self.name} task has no maps of predictions")

    def snapshot(self, maps: Maps, validation: Validation[D],
                 config: dict[str, Any]) -> tuple[np.ndarray, float]:
        """A picture (RGB) and the score of the validation item from its maps."""
        raise CompetitionError(f"the {self.name} task draws no validation pictures")


class Scoring(TaskInfo, Generic[S, V]):
    """Solutions (`S`) read, submission files validated (`V`) and scored, scores aggregated
    and their details shown."""

    limits: ClassVar[Limits] = Limits()  # max_bytes is replaced by the competition's rule
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

    @abstractmethod
    def load_solution(self, path: Path) -> S:
        """The hidden labels (with their Usage split, where the files have one)."""

    def solution_files(self, path: Path) -> list[Path]:
        """Every file the solution at `path` is read from (for its hash)."""
        return [Path(path)]

    def load_reference(self, path: Path, solution: S) -> V:
        """Reference predictions a score is compared with (e.g. a win rate)."""
        raise CompetitionError(f"the {self.name} task has no reference predictions")

    @abstractmethod
    def usage(self, solution: S) -> dict[str, str | None]:
        """Each test item's usage (Public, Private or None), by item id as maps key it."""

    @abstractmethod
    def validate(self, submission: SubmissionFile, solution: S) -> V:
        """The parsed submission, or a SubmissionError that says where and why. Only public
        facts of the solution (ids, shapes) may reach a message."""

    @abstractmethod
    def describe(self, parsed: V) -> str:
        """A short summary of a valid submission, e.g. "15 images, 120 objects"."""

    @abstractmethod
    def score(self, submission: SubmissionFile, solution: S, reference: V | None = None,
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

    def detail_tables(self, fields: Mapping[str, Any]) -> list[DetailTable]:
        """The tables among a score's detail fields (`ScoreResult.fields`, or one split's as
        stored): each is logged as a CSV artifact and printed by `competition score`."""
        return []


class Task(Preparing, DataFiles[D, P], PredictionMaps[D, P], Scoring[S, V], Generic[S, V, D, P]):
    """A whole task: every part, over its solution `S`, parsed submission `V`, data `D` and
    predictions `P`. A plugin derives from it with its own types, e.g.
    `class NucleiTask(Task[Solution, dict[str, NucleiImage], NucleiData, Instances])`."""


AnyTask = Task[Any, Any, Any, Any]  # a task whose types the caller does not know


def aggregate(task: Scoring[Any, Any], values: np.ndarray,
              weights: np.ndarray | None = None) -> np.ndarray:
    """A task's score of items with `values` (n_items, k), optionally under resampling
    `weights` (..., n_items) that sum to n_items: every task's score is a function of the
    (weighted) mean of its item values, which makes the bootstrap one matrix product."""
    values = np.asarray(values, dtype=np.float64)
    if weights is None:
        return task.finish(values.mean(axis=0))
    return task.finish(np.asarray(weights, dtype=np.float64) @ values / values.shape[0])
