"""One paired comparison for the harness: the leaderboard, `competition cv` and the report
tools compare two results over the same items with it."""

from __future__ import annotations

import numpy as np
import pytest

from competition.tasks import get_task
from competition.tasks.comparison import estimate, paired, resampling_weights


def test_a_constant_gain_on_every_item_is_a_win_both_ways():
    task = get_task("nuclei")  # mean of image scores, higher is better
    rng = np.random.default_rng(0)
    b = rng.uniform(0.2, 0.7, (40, 1))
    a = b + 0.1
    result = paired(task, a, b)
    assert result.difference == pytest.approx(0.1)
    assert result.low == pytest.approx(0.1) and result.high == pytest.approx(0.1)
    assert result.a_is_better and not result.b_is_better
    assert result.wilcoxon_p < 1e-6
    assert "beats" in result.sentence("A", "B")
    swapped = paired(task, b, a)
    assert swapped.b_is_better and swapped.difference == pytest.approx(-0.1)


def test_noise_around_the_same_scores_is_not_a_win():
    task = get_task("nuclei")
    rng = np.random.default_rng(1)
    b = rng.uniform(0.2, 0.7, (60, 1))
    a = b + rng.normal(0, 0.05, b.shape)
    result = paired(task, a, b)
    assert result.low < 0 < result.high and result.wilcoxon_p > 0.05
    assert "not distinguishable" in result.sentence("A", "B")
    same = paired(task, b, b)
    assert same.difference == 0 and same.wilcoxon_p == 1.0


def test_lower_is_better_tasks_count_a_smaller_error_as_the_gain():
    task = get_task("landmarks")  # RMSE from the specimens' mean squared errors
    assert not task.higher_is_better
    mse_b = np.random.default_rng(2).uniform(0.5, 2.0, (12, 1))
    mse_a = mse_b / 4  # every error halved
    result = paired(task, mse_a, mse_b)
    assert result.difference == pytest.approx(np.sqrt(mse_b.mean()) / 2)
    assert result.a_is_better and result.low > 0


def test_estimates_are_reproducible_and_resamples_keep_the_item_count():
    task = get_task("nuclei")
    values = np.linspace(0, 1, 25)[:, None]
    first = estimate(task, values)
    assert first.score == pytest.approx(0.5) and first.low < 0.5 < first.high
    assert estimate(task, values) == first  # a fixed seed: the same interval every time
    weights = resampling_weights(25)
    assert weights.shape == (1000, 25) and (weights.sum(axis=1) == 25).all()
