"""Evaluation numbers and intervals mean what the benchmark says they mean."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.rl.baselines import OraclePolicy, RandomPolicy
from recommender.rl.evaluation import (
    Interval,
    PolicyEvaluation,
    TrainingSchedule,
    collect_sessions,
    evaluate_policy,
    mean_interval,
    student_t_cdf,
    student_t_quantile,
    summarize_seeds,
)
from recommender.rl.simulator import ShopperSimulator, make_catalog


@pytest.fixture(scope="module")
def simulator() -> ShopperSimulator:
    return ShopperSimulator(make_catalog(60, 6, 4, seed=1), seed=1)


@pytest.mark.parametrize(
    ("df", "quantile"),
    [(1, 12.7062047), (2, 4.3026527), (4, 2.7764451), (9, 2.2621572), (30, 2.0422725)],
)
def test_student_t_quantiles_match_the_tables(df: int, quantile: float):
    assert student_t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-6)
    assert student_t_cdf(quantile, df) == pytest.approx(0.975, abs=1e-7)
    assert student_t_quantile(0.025, df) == pytest.approx(-quantile, abs=1e-6)


def test_interval_contains_the_mean_and_narrows_with_more_seeds():
    rng = np.random.default_rng(0)
    few = mean_interval(rng.normal(10.0, 2.0, size=5))
    many = mean_interval(rng.normal(10.0, 2.0, size=50))
    for interval in (few, many):
        assert interval.low < interval.mean < interval.high
    assert many.high - many.low < few.high - few.low
    assert few.to_dict() == {"mean": few.mean, "ci95": [few.low, few.high]}


def test_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    truth = Interval(3.0, 3.0, 3.0, 1)
    hits = sum(mean_interval(rng.normal(3.0, 2.0, size=5)).overlaps(truth) for _ in range(4000))
    assert 0.94 < hits / 4000 < 0.96  # exact for normal data, even with 5 seeds


def test_interval_of_one_value_or_no_spread_is_the_value():
    assert mean_interval([4.0]) == Interval(4.0, 4.0, 4.0, 1)
    assert mean_interval([2.0, 2.0, 2.0]).high == pytest.approx(2.0)
    with pytest.raises(ValueError):
        mean_interval([])


def test_metrics_are_per_carousel_ctr_and_per_session_purchase_rate(simulator: ShopperSimulator):
    evaluation = evaluate_policy(simulator, RandomPolicy(), 80, seed=3, k=4)
    assert evaluation.returns.shape == (80,)
    assert evaluation.ctr == pytest.approx(evaluation.clicks / evaluation.slates)
    assert evaluation.impression_ctr == pytest.approx(evaluation.clicks / (4 * evaluation.slates))
    assert 0.0 <= evaluation.purchase_rate == evaluation.purchases / 80 <= 1.0
    assert evaluation.mean_return == pytest.approx(evaluation.returns.mean())


def test_policies_meet_the_same_shoppers_and_never_the_training_ones(simulator: ShopperSimulator):
    a = evaluate_policy(simulator, RandomPolicy(), 30, seed=5, k=4)
    b = evaluate_policy(simulator, RandomPolicy(), 30, seed=5, k=4)
    np.testing.assert_array_equal(a.returns, b.returns)
    oracle = evaluate_policy(simulator, OraclePolicy(), 30, seed=5, k=4)
    assert oracle.mean_return > a.mean_return
    logged = collect_sessions(simulator, RandomPolicy(), 30, seed=5, k=4)
    assert [log.total_reward for log in logged] != a.returns.tolist()


def test_summary_over_seeds():
    evaluations = [
        PolicyEvaluation(
            "p", np.array([1.0, 3.0]), slates=10, clicks=5, impressions=40, purchases=1, revenue=0.0
        ),
        PolicyEvaluation(
            "p", np.array([2.0, 4.0]), slates=10, clicks=3, impressions=40, purchases=2, revenue=0.0
        ),
    ]
    summary = summarize_seeds(evaluations)
    assert summary["return"].mean == pytest.approx(2.5)
    assert summary["ctr"].mean == pytest.approx(0.4)
    assert summary["purchase_rate"].mean == pytest.approx(0.75)
    assert summary["return"].low < 2.5 < summary["return"].high


def test_training_schedule_rejects_nonsense():
    with pytest.raises(ValueError):
        TrainingSchedule(sessions=0)
    with pytest.raises(ValueError):
        TrainingSchedule(steps_per_round=-1)
