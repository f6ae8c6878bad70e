"""Validate and score submission files (the I/O edge around the tasks).

A `Scorer` loads what every score of a competition needs once: its task, the solution, the
reference predictions and the solution's hash (recorded with each score).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from competition import __version__
from competition.board.prepared import PreparedCompetition
from competition.errors import CompetitionError, SubmissionError
from competition.formats.files import SubmissionFile
from competition.tasks import get_task
from competition.tasks.base import ScoreResult, Scoring, TaskInfo

T = TypeVar("T")


def located(file: SubmissionFile, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` with the file's name filled into any SubmissionError."""
    try:
        return fn(*args)
    except SubmissionError as e:
        raise e.located(file.name) from None


@dataclass
class Scorer:
    """Everything a competition's scores are computed against, loaded once."""

    task: Scoring[Any, Any]
    solution: Any
    reference: Any
    solution_sha256: str
    version: str

    @classmethod
    def load(cls, comp: PreparedCompetition) -> Scorer:
        solution = comp.load_solution()
        return cls(comp.task, solution, comp.load_reference(solution), comp.solution_sha256(),
                   scorer_version(comp.task))

    def validate(self, submission: SubmissionFile) -> Any:
        return located(submission, self.task.validate, submission, self.solution)

    def score(self, submission: SubmissionFile, only: str | None = None) -> ScoreResult:
        return located(submission, self.task.score, submission, self.solution,
                       self.reference, only)


def scorer_version(task: TaskInfo) -> str:
    return f"competition {__version__} ({task.name})"


def validate(comp: PreparedCompetition, path: Path) -> str:
    """Format checks only; returns a one-line summary of what was checked."""
    submission = comp.submission(path)
    parsed = located(submission, comp.task.validate, submission, comp.load_solution())
    return f"{path}: valid {comp.task.name} submission ({comp.task.describe(parsed)})"


def score(comp: PreparedCompetition, path: Path) -> ScoreResult:
    return Scorer.load(comp).score(comp.submission(path))


def score_standalone(task_name: str, path: Path, solution_path: Path,
                     reference_path: Path | None = None) -> ScoreResult:
    """A file scored against any solution file of a task, without a prepared competition."""
    task = get_task(task_name)
    if not Path(solution_path).is_file():
        raise CompetitionError(f"{solution_path}: solution file not found")
    solution = task.load_solution(Path(solution_path))
    reference = None
    if reference_path is not None:
        reference = task.load_reference(Path(reference_path), solution)
    submission = SubmissionFile(path, task.limits)
    return located(submission, task.score, submission, solution, reference)
