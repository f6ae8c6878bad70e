"""Public and private leaderboards, with bootstrap intervals over the test items.

Only submissions made before the deadline rank: a late one (rule `late_submissions`) is on
the late board alone (board.late). Public board: each team's best public score; ties go to
the earlier submission; missing or NaN scores never rank. Private board: each team's final
selections (chosen, else its best public ones) ranked by their best private score, with the
move from the public rank.
Each score carries a bootstrap 95 % interval (resampling the board's test items), and a
paired bootstrap against the leader (the same resamples for both) marks the teams whose
difference from the leader is not significant at the 5 % level.

A task with per-item metrics (`Task.item_metrics`) has each metric's mean over the board's
items shown beside the score. Under the rule `ranking: mean_of_ranks` the teams chosen as
above (best public score; best private score among the final selections) are ordered instead
by the mean of their ranks: each test item ranks the teams on each item metric (ties share
the average rank), and a team's ranks are averaged over items and metrics, lower first (as
BraTS ranks). Ties in the mean rank go to the better score, then the earlier submission.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from competition.board.store import db, scores, selections, submissions
from competition.board.views import Entry
from competition.errors import CompetitionError
from competition.tasks.base import aggregate
from competition.tasks.comparison import percentile_interval, resampling_weights

if TYPE_CHECKING:
    from competition.board.board import Board


def _valid(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _load(store: Board) -> list[dict[str, Any]]:
    """The scored submissions the boards rank: those made before the deadline (a late one
    is never ranked, nor a final selection: see board.late)."""
    with db.read(store.engine) as conn:
        rows = submissions.scored_with_teams(conn)
    return [r for r in rows if not store.rules.is_late(r["submitted_at"])]


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
                  submitted_at=r["submitted_at"], entries=counts[r["team"]],
                  wall_seconds=r.get("wall_seconds"), peak_memory_mb=r.get("peak_memory_mb"))
            for k, r in enumerate(ranked)]


def public_board(store: Board) -> list[Entry]:
    board = _rank_public(_load(store), store.rules.higher_is_better)
    _finish(store, board, "Public")
    return board


def private_board(store: Board) -> list[Entry]:
    rows = _load(store)
    public_key = _order_key(store.rules.higher_is_better, "public_score")
    private_key = _order_key(store.rules.higher_is_better, "private_score")
    with db.read(store.engine) as conn:
        chosen = selections.by_team(conn)
    by_team: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_team.setdefault(row["team"], []).append(row)
    public_rank = {e.team: e.rank for e in (
        public_board(store) if _by_mean_rank(store) else
        _rank_public(rows, store.rules.higher_is_better))}
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
                           rank_change=None if pub is None else pub - rank, selections=ids,
                           wall_seconds=row.get("wall_seconds"),
                           peak_memory_mb=row.get("peak_memory_mb")))
    _finish(store, board, "Private")
    for entry in board:  # the order may have changed (mean of ranks)
        pub = entry.public_rank
        entry.rank_change = None if pub is None else pub - entry.rank
    return board


def _by_mean_rank(store: Board) -> bool:
    return store.comp.rules.ranking == "mean_of_ranks"


def _finish(store: Board, board: list[Entry], usage: str) -> None:
    """Item metrics, the mean-of-ranks order where the rules ask for it, and the bootstrap
    intervals, from the board's item values (in place)."""
    if not board:
        return
    task = store.comp.task
    if _by_mean_rank(store) and not task.item_metrics:
        raise CompetitionError(f"ranking: mean_of_ranks needs per-item metrics; the "
                               f"{task.name} task declares none (set rules.ranking: score)")
    values = _item_values(store, [e.submission_id for e in board], usage)
    k = len(task.item_metrics)
    for entry in board:
        table = values.get(entry.submission_id)
        if k and table is not None and table.ndim == 2 and table.shape[1] == k:
            entry.metrics = {m.label: float(table[:, j].mean())
                             for j, m in enumerate(task.item_metrics)}
    if _by_mean_rank(store):
        _order_by_mean_rank(store, board, values)
    _add_intervals(store, board, values)


def _item_values(store: Board, ids: list[int], usage: str) -> dict[int, np.ndarray]:
    """Each submission's item values (n_items, k) on the items of `usage`, in item order."""
    with db.read(store.engine) as conn:
        values = scores.item_values(conn, ids, usage)
    return {sid: np.array(v, dtype=np.float64) for sid, v in values.items()}


def mean_ranks(tables: list[np.ndarray], higher_is_better: list[bool]) -> np.ndarray:
    """Each submission's mean rank over items and metrics (1 = best; ties share the average
    rank) from its (n_items, k) table; every table has the same items in the same order.

    >>> a = np.array([[0.9, 2.0], [0.5, 9.0]]); b = np.array([[0.8, 1.0], [0.5, 3.0]])
    >>> mean_ranks([a, b], [True, False]).tolist()
    [1.625, 1.375]
    """
    from scipy.stats import rankdata

    stack = np.stack(tables)  # (n_subs, n_items, k)
    sign = np.where(np.asarray(higher_is_better), -1.0, 1.0)
    ranks = rankdata(stack * sign, axis=0, method="average")
    means: np.ndarray = ranks.reshape(len(tables), -1).mean(axis=1)
    return means


def _order_by_mean_rank(store: Board, board: list[Entry],
                        values: dict[int, np.ndarray]) -> None:
    """Reorder the board by mean rank (in place); submissions without a full item table
    (scored before item scores were kept) follow, in their score order."""
    task = store.comp.task
    k = len(task.item_metrics)
    full = {sid: t for sid, t in values.items() if t.ndim == 2 and t.shape[1] == k and len(t)}
    counts = Counter(len(t) for t in full.values())
    n = counts.most_common(1)[0][0] if counts else 0  # the board's items (all alike)
    ranked = [e for e in board if e.submission_id in full and len(full[e.submission_id]) == n]
    rest = [e for e in board if e not in ranked]
    if ranked:
        means = mean_ranks([values[e.submission_id] for e in ranked],
                           [m.direction.higher_is_better for m in task.item_metrics])
        for entry, mean in zip(ranked, means, strict=True):
            entry.mean_rank = float(mean)
    sign = -1.0 if store.rules.higher_is_better else 1.0
    ranked.sort(key=lambda e: (e.mean_rank, sign * e.score, e.submitted_at, e.submission_id))
    board[:] = ranked + rest
    for position, entry in enumerate(board):
        entry.rank = position + 1


def _add_intervals(store: Board, board: list[Entry], tables: dict[int, np.ndarray]) -> None:
    """Bootstrap 95 % intervals and the paired comparison with the leader, in place."""
    ids = [e.submission_id for e in board]
    values = {sid: tables[sid] for sid in ids if sid in tables}
    n_items = {len(v) for v in values.values()}
    if len(values) != len(ids) or len(n_items) != 1 or n_items == {0}:
        return  # items missing (e.g. scored before item scores were kept): no intervals
    n = n_items.pop()
    # Multinomial resampling weights, shared by every team: a paired bootstrap.
    weights = resampling_weights(n)
    task = store.comp.task
    samples = {sid: aggregate(task, v, weights) for sid, v in values.items()}
    sign = 1.0 if store.rules.higher_is_better else -1.0
    leader = samples[board[0].submission_id]
    for entry in board:
        s = samples[entry.submission_id]
        entry.ci_low, entry.ci_high = percentile_interval(s)
        if entry.rank == 1:
            entry.indistinguishable_from_leader = True
            continue
        diff = sign * (leader - s)  # > 0 where the leader is better on that resample
        entry.indistinguishable_from_leader = bool(np.percentile(diff, 2.5) <= 0)
