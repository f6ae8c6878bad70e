"""The grade rule (competition.yaml `grading:`, configs.GradingConfig): each participant
team's grade from its final private score, pure (the grades export, competition.interfaces.
web.exports, gives it to each of the team's students).

A team gets the grade of the first step it reaches, `below` if none, and `missing` if it has
no private score (it is not in `ranked`); baseline teams get no grade.
"""

from __future__ import annotations

import math

from competition.configs import GradeStep, GradingConfig
from competition.errors import ConfigError


def grades(config: GradingConfig, ranked: list[tuple[str, float]],
           baselines: dict[str, float], higher_is_better: bool) -> dict[str, str]:
    """The grade of each team of `ranked` (participant teams with their private score, in
    private-board order: the first is rank 1). `baselines`: each baseline team's private
    score (the `baselines` scheme compares with them)."""
    if config.scheme == "baselines":
        _check_baselines(config, baselines, higher_is_better)
    n = len(ranked)
    result = {}
    for rank, (team, score) in enumerate(ranked, 1):
        reached = (s for s in config.steps
                   if _reaches(s, rank, n, score, baselines, higher_is_better))
        result[team] = next((s.grade for s in reached), config.below)
    return result


def _reaches(step: GradeStep, rank: int, n: int, score: float, baselines: dict[str, float],
             higher_is_better: bool) -> bool:
    if step.min is not None:
        return score >= step.min
    if step.max is not None:
        return score <= step.max
    if step.top is not None:
        # The top 10 % of 25 teams are ranks 1 and 2 (2.5 rounded down); the epsilon keeps
        # 0.1 * 30 a whole 3 despite binary floats.
        return rank <= math.floor(step.top * n + 1e-9)
    assert step.beat is not None
    # "Beat the baseline": strictly better; a tie is not a win.
    bar = baselines[step.beat]
    return score > bar if higher_is_better else score < bar


def _check_baselines(config: GradingConfig, baselines: dict[str, float],
                     higher_is_better: bool) -> None:
    """Every named baseline has a private score, and each is harder to beat than the next
    (else a later step could never be reached): refused naming the step, not guessed."""
    names = [s.beat for s in config.steps]
    for k, name in enumerate(names):
        if name not in baselines:
            raise ConfigError(f"competition.yaml: grading.steps.{k}.beat: the baseline team "
                              f"{name!r} has no private score (known baselines: "
                              f"{', '.join(sorted(baselines)) or 'none'})")
    for k in range(1, len(names)):
        before, now = baselines[names[k - 1]], baselines[names[k]]  # type: ignore[index]
        if (now >= before) if higher_is_better else (now <= before):
            raise ConfigError(
                f"competition.yaml: grading.steps are not monotone: steps.{k}.beat "
                f"({names[k]}, {now:g}) is not easier to beat than steps.{k - 1}.beat "
                f"({names[k - 1]}, {before:g}); list the hardest baseline first")
