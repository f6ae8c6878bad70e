"""Cross-validated landmark evaluation the way morphometricians report it (pure numpy).

Errors are (specimens, landmarks) Euclidean distances to the manual landmarks, one array
per method, every specimen predicted once while held out. Per landmark: mean error, win
rate against the reference (ALPACA) with its exact binomial 95 % interval, and a Wilcoxon
signed-rank test across specimens. Overall: the same, with the Wilcoxon test on per-specimen
mean errors, since a skull's points are not independent; and the mean error's 95 % bootstrap
interval, resampling specimens (the same resamples for every method, so that a pair's
difference has a paired interval).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from competition.metrics import landmarks as metric
from competition.tasks import comparison
from competition.tasks.comparison import resampling_weights

N_BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 0


def folds(count: int, k: int, seed: int) -> list[np.ndarray]:
    """`k` disjoint folds of specimen indices covering all `count`, sizes within one, fixed by
    `seed`."""
    if not 2 <= k <= count:
        raise ValueError(f"{k} folds of {count} specimens: need 2 <= folds <= specimens")
    order = np.random.default_rng(seed).permutation(count)
    return [np.sort(part) for part in np.array_split(order, k)]


def resampled_means(per_specimen: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The mean of per-specimen values under each row of multinomial resampling weights."""
    out: np.ndarray = weights @ np.asarray(per_specimen, np.float64) / weights[0].sum()
    return out


def percentile_interval(samples: np.ndarray) -> list[float]:
    return list(comparison.percentile_interval(samples))


def compare(errors: dict[str, np.ndarray], landmarks: list[str], reference: str,
            against: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Every method's errors summarised against `reference`, per landmark and overall.
    `against` adds pairs (method, other) whose per-specimen mean errors are also tested
    (e.g. the refiner against the bias correction); pairs naming a missing method are
    left out."""
    base = errors[reference]
    n = base.shape[0]
    weights = resampling_weights(n, N_BOOTSTRAP, BOOTSTRAP_SEED)
    methods: dict[str, Any] = {}
    for name, d in errors.items():
        d = np.asarray(d, np.float64)
        if d.shape != base.shape:
            raise ValueError(f"{name}: errors {d.shape}, {reference}: {base.shape}")
        row: dict[str, Any] = {
            "mean_error": float(d.mean()),
            "mean_error_ci": percentile_interval(resampled_means(d.mean(axis=1), weights)),
            "median_error": float(np.median(d)),
            "rmse": metric.rmse(d),
            "per_landmark_mean": d.mean(axis=0).tolist()}
        if name != reference:
            wins = metric.win_rate(d, base)
            row["win_rate"] = wins.percent
            row["wins"], row["ties"], row["points"] = wins.wins, wins.ties, wins.n
            row["win_rate_ci"] = list(metric.win_rate_interval(wins.wins, wins.n))
            row["p_specimens"] = metric.paired_test(d.mean(axis=1), base.mean(axis=1))
            per = [metric.win_rate(d[:, k], base[:, k]) for k in range(d.shape[1])]
            row["per_landmark_win_rate"] = [w.percent for w in per]
            row["per_landmark_win_rate_ci"] = [list(metric.win_rate_interval(w.wins, w.n))
                                               for w in per]
            row["per_landmark_p"] = [metric.paired_test(d[:, k], base[:, k])
                                     for k in range(d.shape[1])]
        methods[name] = row
    pairs = {}
    for name, other in against or []:
        if name in errors and other in errors:
            a, b = np.asarray(errors[name]), np.asarray(errors[other])
            wins = metric.win_rate(a, b)
            pairs[f"{name} vs {other}"] = {
                "p_specimens": metric.paired_test(a.mean(axis=1), b.mean(axis=1)),
                "mean_error_difference": float(a.mean() - b.mean()),
                "mean_error_difference_ci": percentile_interval(
                    resampled_means(a.mean(axis=1) - b.mean(axis=1), weights)),
                "specimens_better": int((a.mean(axis=1) < b.mean(axis=1)).sum()),
                "win_rate": wins.percent}
    return {"reference": reference, "landmark_names": list(landmarks),
            "specimens": int(base.shape[0]), "methods": methods, "pairs": pairs}


def markdown_table(summary: dict[str, Any], methods: list[str] | None = None) -> str:
    """One row per landmark, then the overall row: each method's mean error (mm) and, for
    each method but the reference, its win rate against it with the 95 % interval and the
    Wilcoxon p value (per landmark: across specimens; overall: on per-specimen mean errors);
    the published table's columns (landmark, win rate, errors). `methods`: which (default
    all), the reference always."""
    reference = summary["reference"]
    names = [reference] + [n for n in (methods or summary["methods"])
                           if n != reference and n in summary["methods"]]
    others = names[1:]
    head = (["landmark"] + [f"{n} mean error (mm)" for n in names]
            + [f"{n} win rate (95 % CI); p" for n in others])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(errors: list[float], rates: list[str]) -> str:
        return " | ".join([f"{e:.3f}" for e in errors] + rates)

    for k, landmark in enumerate(summary["landmark_names"]):
        errors = [summary["methods"][n]["per_landmark_mean"][k] for n in names]
        rates = []
        for n in others:
            m = summary["methods"][n]
            low, high = m["per_landmark_win_rate_ci"][k]
            rates.append(f"{m['per_landmark_win_rate'][k]:.1f} % ({low:.0f}-{high:.0f}); "
                         f"{m['per_landmark_p'][k]:.2g}")
        lines.append(f"| {landmark} | {cells(errors, rates)} |")
    errors = [summary["methods"][n]["mean_error"] for n in names]
    rates = []
    for n in others:
        m = summary["methods"][n]
        low, high = m["win_rate_ci"]
        rates.append(f"**{m['win_rate']:.1f} %** ({low:.1f}-{high:.1f}); "
                     f"{m['p_specimens']:.2g}")
    lines.append(f"| **all** | {cells(errors, rates)} |")
    return "\n".join(lines) + "\n"
