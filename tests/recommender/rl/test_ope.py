import numpy as np
import pytest

from recommender.rl.ope import (
    Estimate,
    doubly_robust,
    epsilon_greedy_distribution,
    epsilon_greedy_probabilities,
    expected_under,
    ips,
    slot_candidate_masks,
    snips,
)

CLICK_PROBABILITIES = np.array([0.05, 0.10, 0.30, 0.15, 0.20])


def uniform_log(n: int, seed: int):
    """Uniform logging over 5 items with known click probabilities; the target
    policy always shows item 2, whose true value is 0.30."""
    rng = np.random.default_rng(seed)
    shown = rng.integers(0, 5, n)
    rewards = (rng.random(n) < CLICK_PROBABILITIES[shown]).astype(float)
    logging = np.full(n, 0.2)
    target = (shown == 2).astype(float)
    return shown, rewards, logging, target


@pytest.mark.parametrize("estimator", [ips, snips])
def test_importance_sampling_intervals_contain_the_true_value(estimator):
    _, rewards, logging, target = uniform_log(20_000, seed=0)
    estimate = estimator(rewards, logging, target, seed=1)
    assert isinstance(estimate, Estimate) and estimate.n == 20_000
    assert estimate.ci_low <= 0.30 <= estimate.ci_high
    assert estimate.ci_low < estimate.value < estimate.ci_high
    assert estimate.ci_high - estimate.ci_low < 0.05


def test_doubly_robust_interval_contains_the_true_value_with_a_rough_reward_model():
    shown, rewards, logging, target = uniform_log(20_000, seed=2)
    model = CLICK_PROBABILITIES + 0.05  # biased reward model
    estimate = doubly_robust(
        rewards, logging, target, model[shown], np.full(len(shown), model[2]), seed=3
    )
    assert estimate.ci_low <= 0.30 <= estimate.ci_high
    plain = ips(rewards, logging, target, seed=3)
    # The reward model takes out most of the variance.
    assert estimate.ci_high - estimate.ci_low < plain.ci_high - plain.ci_low


def test_on_policy_ips_is_the_empirical_mean_reward():
    rng = np.random.default_rng(4)
    rewards = rng.random(1000)
    propensities = rng.uniform(0.05, 1.0, 1000)
    estimate = ips(rewards, propensities, propensities)
    assert estimate.value == pytest.approx(rewards.mean(), rel=1e-12)


def test_snips_normalises_the_weights():
    propensities = np.array([0.5, 0.25, 0.1, 0.8])
    target = np.array([0.9, 0.0, 0.3, 0.2])
    assert snips(np.full(4, 0.7), propensities, target).value == pytest.approx(0.7)
    rewards = np.array([1.0, 0.0, 2.0, 0.5])
    weights = target / propensities
    assert snips(rewards, propensities, target).value == pytest.approx(
        (weights * rewards).sum() / weights.sum()
    )


def test_effective_sample_size_counts_the_rows_an_estimate_rests_on():
    # Uniform logging, target always item 2: a fifth of the rows carry equal weight.
    _, rewards, logging, target = uniform_log(1000, seed=6)
    matching = int((target > 0).sum())
    for estimator in (ips, snips):
        assert estimator(rewards, logging, target).ess == pytest.approx(matching)
    # One row the logger chose by rare exploration (w = 100) beside 99 common ones
    # (w = 1 / 0.99): by hand, (100 + 100)² / (100² + 99 / 0.99²) = 3.96, not 100.
    propensities = np.array([0.01] + [0.99] * 99)
    estimate = snips(np.zeros(100), propensities, np.ones(100))
    assert estimate.ess == pytest.approx(200.0**2 / (100.0**2 + 99 / 0.99**2))
    assert estimate.ess == pytest.approx(3.96, abs=0.005)
    assert np.isnan(snips(np.array([]), np.array([]), np.array([])).value)
    assert snips(np.array([]), np.array([]), np.array([])).ess == 0.0


def test_bootstrap_is_reproducible_from_its_seed():
    rng = np.random.default_rng(5)
    rewards, logging, target = rng.random(500), rng.uniform(0.1, 1, 500), rng.random(500)
    assert ips(rewards, logging, target, seed=9) == ips(rewards, logging, target, seed=9)
    assert ips(rewards, logging, target, seed=9) != ips(rewards, logging, target, seed=10)


def test_empty_logs_give_an_undefined_estimate_and_bad_inputs_are_rejected():
    empty = ips(np.array([]), np.array([]), np.array([]))
    assert empty.n == 0 and np.isnan(empty.value)
    with pytest.raises(ValueError, match="propensities"):
        ips(np.array([1.0]), np.array([0.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="one value per logged row"):
        snips(np.array([1.0, 0.0]), np.array([0.5]), np.array([1.0]))


def test_epsilon_greedy_probabilities_of_logged_items():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.1, 0.9, 0.5, 0.7]])
    mask = np.array([[True, True, True, True], [True, False, True, True]])  # item 1 already shown
    distribution = epsilon_greedy_distribution(scores, mask, 0.2)
    np.testing.assert_allclose(distribution[0], [0.05, 0.85, 0.05, 0.05])
    np.testing.assert_allclose(distribution[1], [0.2 / 3, 0, 0.2 / 3, 0.8 + 0.2 / 3])
    np.testing.assert_allclose(distribution.sum(1), 1.0)
    np.testing.assert_allclose(
        epsilon_greedy_probabilities(scores, mask, np.array([1, 3]), 0.0), [1.0, 1.0]
    )
    np.testing.assert_allclose(
        epsilon_greedy_probabilities(scores, mask, np.array([0, 2]), 0.2), [0.05, 0.2 / 3]
    )
    np.testing.assert_allclose(expected_under(distribution, np.ones_like(scores)), [1.0, 1.0])


def test_slot_masks_remove_the_items_shown_before_each_position():
    candidates = np.array([[True, True, True, False]])
    masks = slot_candidate_masks(candidates, np.array([[2, 0, -1]]))
    assert masks[0].tolist() == [
        [True, True, True, False],
        [True, True, False, False],
        [False, True, False, False],
    ]
