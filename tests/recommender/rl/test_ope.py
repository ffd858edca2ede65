import numpy as np
import pytest

from recommender.rl import ope
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


# --- synthetic per-position logs with a known value --------------------------------------

N_ITEMS, N_POSITIONS, N_CONTEXTS = 8, 3, 4


def synthetic_world(context_matters: bool):
    """Click probabilities q(x, a, k), a context-dependent logging policy μ(a|x, k)
    and a different target π(a|x, k), both full distributions, and the target's
    true value E_x,k Σ_a π(a|x, k)·q(x, a, k) (contexts and positions uniform)."""
    rng = np.random.default_rng(123)
    appeal = rng.uniform(0.02, 0.3, N_ITEMS)
    position_effect = np.array([1.0, 0.8, 0.6])
    q = np.broadcast_to(
        appeal[None, None, :] * position_effect[None, :, None],
        (N_CONTEXTS, N_POSITIONS, N_ITEMS),
    ).copy()
    if context_matters:
        # Each context loves two items the others do not: a model of (item,
        # position) alone cannot see it.
        for x in range(N_CONTEXTS):
            q[x, :, 2 * x : 2 * x + 2] = np.minimum(q[x, :, 2 * x : 2 * x + 2] * 3.0, 0.95)
    logits = rng.normal(0, 1.0, (N_CONTEXTS, N_POSITIONS, N_ITEMS))
    logging = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    logging = 0.8 * logging + 0.2 / N_ITEMS  # every item has some chance
    scores = rng.normal(0, 1.0, (N_CONTEXTS, N_ITEMS))
    if context_matters:
        # A personalised target: it shows each context the items it loves.
        for x in range(N_CONTEXTS):
            scores[x, 2 * x : 2 * x + 2] += 10.0
    target = np.stack(
        [
            ope.ranking_distribution(
                np.repeat(scores[x : x + 1], N_POSITIONS, 0),
                np.ones((N_POSITIONS, N_ITEMS), dtype=bool),
                np.arange(N_POSITIONS),
                epsilon=0.3,
            )
            for x in range(N_CONTEXTS)
        ]
    )
    truth = float((target * q).sum(-1).mean())
    return q, logging, target, truth


def draw_log(world, n: int, seed: int):
    q, logging, target, _ = world
    rng = np.random.default_rng(seed)
    contexts = rng.integers(0, N_CONTEXTS, n)
    positions = rng.integers(0, N_POSITIONS, n)
    cumulative = logging[contexts, positions].cumsum(1)
    actions = (rng.random((n, 1)) > cumulative).sum(1)
    rewards = (rng.random(n) < q[contexts, positions, actions]).astype(float)
    return {
        "actions": actions,
        "positions": positions,
        "rewards": rewards,
        "propensities": logging[contexts, positions, actions],
        "distribution": target[contexts, positions],
    }


def all_estimates(log, *, n_bootstrap: int = 200, seed: int = 0, max_weight=None):
    """Every estimator on one log, with the reward model refitted per replicate."""
    model = ope.RewardModel.fit(
        log["actions"],
        log["positions"],
        log["rewards"],
        n_actions=N_ITEMS,
        n_positions=N_POSITIONS,
    )
    distribution = log["distribution"]
    target = distribution[np.arange(len(distribution)), log["actions"]]
    predicted = model.predict(log["actions"], log["positions"])
    direct = model.expected(distribution, log["positions"])
    refit = ope.RewardRefit(
        model,
        ope.cell_index(log["actions"], log["positions"], N_ITEMS, N_POSITIONS),
        ope.target_mass(distribution, log["positions"], N_POSITIONS),
    )
    args = (log["rewards"], log["propensities"], target)
    kwargs = {"n_bootstrap": n_bootstrap, "seed": seed}
    return {
        "ips": ope.ips(*args, max_weight=max_weight, **kwargs),
        "snips": ope.snips(*args, **kwargs),
        "dm": ope.direct_method(*args, predicted, direct, refit=refit, **kwargs),
        "dr": ope.doubly_robust(*args, predicted, direct, refit=refit, **kwargs),
        "switch-dr": ope.switch_doubly_robust(
            *args, predicted, direct, refit=refit, max_weight=max_weight or 100.0, **kwargs
        ),
    }


def test_every_estimators_interval_covers_the_true_value_in_most_draws():
    world = synthetic_world(context_matters=False)
    truth = world[3]
    draws = 30
    covered = dict.fromkeys(ope.ESTIMATORS, 0)
    for seed in range(draws):
        for name, estimate in all_estimates(draw_log(world, 3000, seed), seed=seed).items():
            covered[name] += estimate.ci_low <= truth <= estimate.ci_high
    # Nominal 95%: 30 draws covering fewer than 24 times would be a broken interval.
    assert all(count >= 24 for count in covered.values()), (truth, covered)


def test_model_intervals_without_the_refit_are_too_narrow():
    # The reward model's own uncertainty is most of DM's: an interval that holds
    # the fitted model fixed misses the truth far more often than 5%.
    world = synthetic_world(context_matters=False)
    truth = world[3]
    fixed = refitted = 0
    for seed in range(20):
        log = draw_log(world, 3000, seed)
        model = ope.RewardModel.fit(
            log["actions"], log["positions"], log["rewards"], n_actions=N_ITEMS, n_positions=3
        )
        target = log["distribution"][np.arange(3000), log["actions"]]
        direct = model.expected(log["distribution"], log["positions"])
        predicted = model.predict(log["actions"], log["positions"])
        held = ope.direct_method(
            log["rewards"], log["propensities"], target, predicted, direct, n_bootstrap=200
        )
        fixed += held.ci_low <= truth <= held.ci_high
        dm = all_estimates(log, seed=seed)["dm"]
        refitted += dm.ci_low <= truth <= dm.ci_high
    assert fixed <= 12 < refitted


def test_doubly_robust_corrects_a_reward_model_that_misses_the_context():
    world = synthetic_world(context_matters=True)
    truth = world[3]
    dm_covers = dr_covers = 0
    for seed in range(20):
        estimates = all_estimates(draw_log(world, 4000, seed), seed=seed)
        dm_covers += estimates["dm"].ci_low <= truth <= estimates["dm"].ci_high
        dr_covers += estimates["dr"].ci_low <= truth <= estimates["dr"].ci_high
    assert dr_covers >= 16
    assert dm_covers <= 4  # the model of (item, position) alone is biased here


def test_the_logging_policy_is_valued_at_the_logs_own_mean_reward():
    log = draw_log(synthetic_world(context_matters=True), 2000, seed=7)
    mean = log["rewards"].mean()
    model = ope.RewardModel.fit(
        log["actions"], log["positions"], log["rewards"], n_actions=N_ITEMS, n_positions=3
    )
    predicted = model.predict(log["actions"], log["positions"])
    refit = ope.RewardRefit(model, ope.cell_index(log["actions"], log["positions"], 8, 3), None)
    args = (log["rewards"], log["propensities"], log["propensities"], predicted, predicted)
    for estimator in (ope.doubly_robust, ope.switch_doubly_robust):
        estimate = estimator(*args, refit=refit)
        assert estimate.value == pytest.approx(mean, abs=1e-12)
        assert estimate.ci_low < mean < estimate.ci_high
    assert ope.ips(*args[:3]).value == pytest.approx(mean, abs=1e-12)
    assert ope.snips(*args[:3]).value == pytest.approx(mean, abs=1e-12)
    # DM is the model's own mean over the logged items: close, not exact.
    assert ope.direct_method(*args, refit=refit).value == pytest.approx(mean, abs=0.01)


def test_switch_dr_and_clipped_ips_say_when_their_threshold_was_needed():
    log = draw_log(synthetic_world(context_matters=False), 2000, seed=3)
    generous = all_estimates(log, max_weight=1e6)
    assert generous["switch-dr"].clipped == 0 and generous["ips"].clipped == 0
    assert generous["switch-dr"].value == pytest.approx(generous["dr"].value)
    tight = all_estimates(log, max_weight=2.0)
    weights = log["distribution"][np.arange(2000), log["actions"]] / log["propensities"]
    assert tight["switch-dr"].clipped == tight["ips"].clipped == int((weights > 2.0).sum()) > 0
    assert tight["ips"].value < generous["ips"].value
    assert tight["ips"].to_dict()["clipped"] == tight["ips"].clipped
    assert "clipped" not in tight["snips"].to_dict()


def test_reward_model_shrinks_cells_towards_their_item_and_position():
    actions = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    positions = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    rewards = np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    exact = ope.RewardModel.fit(
        actions, positions, rewards, n_actions=3, n_positions=2, strength=0.0
    )
    np.testing.assert_allclose(exact.table[:, :2], [[1.0, 0.0], [0.0, 0.0]])
    shrunk = ope.RewardModel.fit(actions, positions, rewards, n_actions=3, n_positions=2)
    # An item never shown gets the global mean times the position's effect.
    assert shrunk.table[0, 2] > shrunk.table[1, 2] > 0
    assert 0 < shrunk.table[1, 0] < shrunk.table[0, 0] < 1
    assert shrunk.predict(np.array([0]), np.array([0]))[0] == shrunk.table[0, 0]


def test_estimates_round_trip_through_their_json_form():
    estimate = ope.Estimate(0.25, 0.2, 0.3, 100, 42.0, 50.0, 3)
    assert ope.Estimate.from_dict(estimate.to_dict()) == estimate
    undefined = ope.Estimate(float("nan"), float("nan"), float("nan"), 0, 0.0).to_dict()
    assert undefined == {"value": None, "ci95": [None, None], "n": 0, "ess": 0.0}
    assert ope.Estimate.from_dict(undefined) is None
    assert ope.Estimate.from_dict(0.5).value == 0.5
    assert ope.Estimate.from_dict({"value": "x"}) is None


def test_ranking_distribution_fills_positions_greedily():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [0.1, 0.9, 0.5, 0.9], [0.1, 0.9, 0.5, 0.9]])
    mask = np.array([[True, True, True, True], [True, True, True, True], [True, False, True, True]])
    greedy = ope.ranking_distribution(scores, mask, np.array([0, 1, 1]))
    # Ties go to the earlier column: position 0 shows column 1, position 1 column 3.
    assert greedy.tolist() == [[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    mixed = ope.ranking_distribution(scores, mask, np.array([0, 1, 1]), epsilon=0.4)
    np.testing.assert_allclose(mixed[0], [0.1, 0.7, 0.1, 0.1])
    np.testing.assert_allclose(mixed[2], [0.4 / 3, 0, 0.6 + 0.4 / 3, 0.4 / 3])
    uniform = ope.ranking_distribution(scores, mask, np.array([0, 2, 3]), epsilon=1.0)
    np.testing.assert_allclose(uniform[0], 0.25)
    np.testing.assert_allclose(uniform[1], 0.25)
    assert not uniform[2].any()  # three candidates fill no fourth position
