"""Validate and score submission files (the I/O edge around the pure tasks)."""

from __future__ import annotations

from pathlib import Path

from competition.errors import CompetitionError, SubmissionError
from competition.formats.text import DEFAULT_MAX_BYTES, check_size
from competition.prepared import PreparedCompetition
from competition.tasks import TASKS, ScoreResult


def read_submission_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise SubmissionError("file not found", file=str(path))
    try:
        check_size(path.stat().st_size, max_bytes)
        return path.read_bytes()
    except SubmissionError as e:
        raise e.located(str(path)) from None


def _located(path: Path, fn, *args):
    try:
        return fn(*args)
    except SubmissionError as e:
        raise e.located(str(path)) from None


def validate(comp: PreparedCompetition, path: Path) -> str:
    """Format checks only; returns a one-line summary of what was checked."""
    data = read_submission_file(path, comp.max_submission_bytes)
    parsed = _located(path, comp.task.validate, data, comp.load_solution())
    return f"{path}: valid {comp.task.name} submission ({comp.task.describe(parsed)})"


def score(comp: PreparedCompetition, path: Path) -> ScoreResult:
    data = read_submission_file(path, comp.max_submission_bytes)
    solution = comp.load_solution()
    reference = comp.load_reference(solution)
    return _located(path, comp.task.score, data, solution, reference)


def score_standalone(task_name: str, path: Path, solution_path: Path,
                     reference_path: Path | None = None) -> ScoreResult:
    if task_name not in TASKS:
        raise CompetitionError(f"unknown task {task_name!r}; choose one of {', '.join(TASKS)}")
    task = TASKS[task_name]
    if not Path(solution_path).is_file():
        raise CompetitionError(f"{solution_path}: solution file not found")
    solution = task.load_solution(Path(solution_path))
    reference = None
    if reference_path is not None:
        if not hasattr(task, "load_reference"):
            raise CompetitionError("--reference is only used by the landmarks task")
        reference = task.load_reference(Path(reference_path), solution)
    data = read_submission_file(path)
    return _located(path, task.score, data, solution, reference)

