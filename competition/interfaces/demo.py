"""`competition demo`: the whole loop on every task's synthetic competition, in seconds.

For each synthetic kind it prepares the competition, writes the task's naive day-one
prediction, validates and submits it and the sample submission as two teams, and ranks them
on the public leaderboard. These are not the baselines (see `submissions/`); they show that
scores move with prediction quality.

Idempotent: a demo folder already prepared with the same seed, whose two submissions are
stored, is reused as it is (nothing is submitted or logged to MLflow again).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from competition.board import leaderboard, scoring
from competition.board.board import Board, migrate
from competition.board.prepared import PreparedCompetition
from competition.errors import CompetitionError
from competition.tasks import all_sources
from competition.tasks.preparing import prepare

TEAMS = ("sample", "day-one")


def synthetic_kinds() -> list[str]:
    return sorted(kind for kind, (_, source) in all_sources().items()
                  if source.synthetic is not None)


def _reusable(folder: Path, kind: str, seed: int) -> Board | None:
    """The board of an earlier demo of `kind` with `seed` in `folder`, if it is complete."""
    try:
        comp = PreparedCompetition.open(folder)
    except CompetitionError:
        return None
    if comp.config.kind != kind or comp.config.seed != seed:
        return None
    # A demo folder of an earlier version: its store brought up to date, its id given.
    migrate(comp)
    comp.give_id()
    board = Board(comp)
    try:
        done = all(board.submissions.of_team(team) for team in TEAMS)
    except CompetitionError:
        return None
    return board if done else None


def run(out: Path, seed: int = 0) -> list[dict[str, Any]]:
    """Prepare, validate, submit (two teams) and rank; returns one row per submission with
    its public and private score, its public rank and whether the demo was reused."""
    out = Path(out)
    rows = []
    for kind in synthetic_kinds():
        folder = out / kind
        board = _reusable(folder, kind, seed)
        reused = board is not None
        if board is None:
            comp = PreparedCompetition.open(prepare(kind, folder, seed=seed, force=True))
            migrate(comp)  # the new competition's store, at the schema's head revision
            board = Board(comp)
            naive = folder / ("day-one" + comp.task.submission_suffix)
            naive.write_bytes(comp.task.naive_submission(comp.public_dir))
            sample = next(comp.public_dir.glob("sample_submission.*"))
            for team, path in zip(TEAMS, (sample, naive), strict=True):
                scoring.validate(comp, path)
                board.submissions.submit(path, team)
        ranks = {e.team: e.rank for e in leaderboard.public_board(board)}
        for team in TEAMS:
            last = board.submissions.of_team(team)[-1]
            rows.append({"competition": kind, "team": team, "submission": last.file_name,
                         "metric": board.comp.task.metric_label,
                         "public": last.public_score, "private": last.private_score,
                         "rank": ranks.get(team), "reused": reused})
    return rows
