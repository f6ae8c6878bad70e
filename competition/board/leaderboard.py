"""Public and private leaderboards, with bootstrap intervals over the test items.

Public board: each team's best public score; ties go to the earlier submission; missing or
NaN scores never rank. Private board: each team's final selections (chosen, else its best
public ones) ranked by their best private score, with the move from the public rank.
Each score carries a bootstrap 95 % interval (resampling the board's test items), and a
paired bootstrap against the leader (the same resamples for both) marks the teams whose
difference from the leader is not significant at the 5 % level.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from competition.board.status import Status
from competition.board.store import db
from competition.board.store.schema import item_scores, selections, submissions, teams
from competition.board.views import Entry
from competition.tasks.base import aggregate

if TYPE_CHECKING:
    from competition.board.board import Board

N_BOOTSTRAP = 1000
BOOTSTRAP_SEED = 20180416  # fixed: the same board gives the same intervals every time


def _valid(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _load(store: Board) -> list[dict[str, Any]]:
    with db.read(store.engine) as conn:
        return [dict(r) for r in conn.execute(
            select(submissions.c.id, submissions.c.team_id, submissions.c.public_score,
                   submissions.c.private_score, submissions.c.submitted_at,
                   teams.c.name.label("team"), teams.c.baseline)
            .join(teams, teams.c.id == submissions.c.team_id)
            .where(submissions.c.status == Status.SCORED)).mappings()]


def _order_key(higher_is_better: bool, score_key: str) -> Any:
    sign = -1.0 if higher_is_better else 1.0
    return lambda r: (sign * r[score_key], r["submitted_at"], r["id"])


def _rank_public(rows: list[dict[str, Any]], higher_is_better: bool) -> list[Entry]:
    """Each team's best public submission, ranked (pure)."""
    key = _order_key(higher_is_better, "public_score")
    counts: dict[str, int] = {}
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        counts[row["team"]] = counts.get(row["team"], 0) + 1
        if not _valid(row["public_score"]):
            continue
        if row["team"] not in best or key(row) < key(best[row["team"]]):
            best[row["team"]] = row
    ranked = sorted(best.values(), key=key)
    return [Entry(rank=k + 1, team=r["team"], baseline=bool(r["baseline"]),
                  score=r["public_score"], submission_id=r["id"],
                  submitted_at=r["submitted_at"], entries=counts[r["team"]])
            for k, r in enumerate(ranked)]


def public_board(store: Board) -> list[Entry]:
    board = _rank_public(_load(store), store.rules.higher_is_better)
    _add_intervals(store, board, "Public")
    return board


def private_board(store: Board) -> list[Entry]:
    rows = _load(store)
    public_key = _order_key(store.rules.higher_is_better, "public_score")
    private_key = _order_key(store.rules.higher_is_better, "private_score")
    with db.read(store.engine) as conn:
        chosen: dict[int, set[int]] = {}
        for sel in conn.execute(select(selections.c.team_id, selections.c.submission_id)):
            chosen.setdefault(sel.team_id, set()).add(sel.submission_id)
    by_team: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_team.setdefault(row["team"], []).append(row)
    public_rank = {e.team: e.rank for e in _rank_public(rows, store.rules.higher_is_better)}
    finals: list[tuple[dict[str, Any], list[int], int]] = []
    for team_rows in by_team.values():
        picked = [r for r in team_rows if r["id"] in chosen.get(r["team_id"], set())]
        if not picked:  # automatic: the team's best public submissions
            ranked = sorted((r for r in team_rows if _valid(r["public_score"])),
                            key=public_key)
            picked = ranked[: store.rules.final_selections]
        scored = [r for r in picked if _valid(r["private_score"])]
        if scored:
            top = min(scored, key=private_key)
            finals.append((top, sorted(r["id"] for r in picked), len(team_rows)))
    finals.sort(key=lambda f: private_key(f[0]))
    board = []
    for k, (row, ids, n) in enumerate(finals):
        rank = k + 1
        pub = public_rank.get(row["team"])
        board.append(Entry(rank=rank, team=row["team"], baseline=bool(row["baseline"]),
                           score=row["private_score"],
                           submission_id=row["id"], submitted_at=row["submitted_at"],
                           entries=n, public_rank=pub,
                           rank_change=None if pub is None else pub - rank, selections=ids))
    _add_intervals(store, board, "Private")
    return board


def _add_intervals(store: Board, board: list[Entry], usage: str) -> None:
    """Bootstrap 95 % intervals and the paired comparison with the leader, in place."""
    if not board:
        return
    ids = [e.submission_id for e in board]
    with db.read(store.engine) as conn:
        rows = conn.execute(select(item_scores.c.submission_id, item_scores.c.position,
                                   item_scores.c.item_values)
                            .where(item_scores.c.submission_id.in_(ids),
                                   item_scores.c.usage == usage)
                            .order_by(item_scores.c.submission_id, item_scores.c.position)
                            ).all()
    values: dict[int, list[list[float]]] = {}
    for item in rows:
        values.setdefault(item.submission_id, []).append(json.loads(item.item_values))
    n_items = {len(v) for v in values.values()}
    if len(values) != len(ids) or len(n_items) != 1 or n_items == {0}:
        return  # items missing (e.g. scored before item scores were kept): no intervals
    n = n_items.pop()
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    # Multinomial resampling weights, shared by every team: a paired bootstrap.
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=N_BOOTSTRAP).astype(np.float64)
    task = store.comp.task
    samples = {sid: aggregate(task, np.array(v), weights) for sid, v in values.items()}
    sign = 1.0 if store.rules.higher_is_better else -1.0
    leader = samples[board[0].submission_id]
    for entry in board:
        s = samples[entry.submission_id]
        entry.ci_low, entry.ci_high = (float(q) for q in np.percentile(s, [2.5, 97.5]))
        if entry.rank == 1:
            entry.indistinguishable_from_leader = True
            continue
        diff = sign * (leader - s)  # > 0 where the leader is better on that resample
        entry.indistinguishable_from_leader = bool(np.percentile(diff, 2.5) <= 0)
