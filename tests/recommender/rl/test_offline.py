"""Judging and training on a log of another policy, without Django: a synthetic
per-position log whose click probabilities are known."""

import numpy as np
import pytest

from recommender.rl import offline, ope
from recommender.rl.agent import DQNAgent
from recommender.rl.baselines import PopularityPolicy
from recommender.rl.config import DQNConfig
from recommender.rl.types import EventType, ItemCatalog, Observation, Slot
from tests.recommender.rl.factories import item_catalog

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_ITEMS, N_POSITIONS = 12, 3
POSITION_EFFECT = np.array([1.0, 0.7, 0.5])
SMALL = DQNConfig(
    id_dim=8, category_dim=4, item_hidden=32, embed_dim=16, state_hidden=32, batch_size=128
)


def catalog() -> ItemCatalog:
    return item_catalog(
        N_ITEMS,
        first_id=100,
        n_categories=4,
        prices=np.full(N_ITEMS, 10.0),
        attributes=np.eye(N_ITEMS, 3),
    )


APPEAL = np.linspace(0.02, 0.5, N_ITEMS)[np.random.default_rng(0).permutation(N_ITEMS)]


def synthetic_log(n: int, seed: int, logging: np.ndarray | None = None) -> offline.LoggedFeedback:
    """Rows at uniform positions; the logger shows item a with ``logging[a]``
    (default: a skew towards the first items, whatever their appeal); a click
    with probability appeal[a]·position_effect[k]. Contexts are the user's
    past clicks, unrelated to the clicks here."""
    rng = np.random.default_rng(seed)
    if logging is None:
        logging = np.exp(-0.25 * np.arange(N_ITEMS))
        logging /= logging.sum()
    positions = rng.integers(0, N_POSITIONS, n)
    actions = rng.choice(N_ITEMS, size=n, p=logging)
    rewards = (rng.random(n) < APPEAL[actions] * POSITION_EFFECT[positions]).astype(float)
    past = rng.integers(100, 100 + N_ITEMS, n)
    observations = [offline.observation_from_clicks({int(p): 1.0}) for p in past]
    return offline.LoggedFeedback(
        catalog=catalog(),
        observations=observations,
        actions=actions,
        positions=positions,
        propensities=logging[actions],
        rewards=rewards,
        n_positions=N_POSITIONS,
    )


def true_value(order: np.ndarray) -> float:
    """The exact click rate per position of showing ``order``'s first three."""
    return float(np.mean([APPEAL[order[k]] * POSITION_EFFECT[k] for k in range(N_POSITIONS)]))


def uniform_value() -> float:
    return float(APPEAL.mean() * POSITION_EFFECT.mean())


def test_the_logging_policy_is_valued_at_the_rows_own_click_rate():
    log = synthetic_log(3000, seed=1)
    rows = np.arange(len(log))
    result = offline.evaluate(log, rows, offline.LOGGED, n_bootstrap=200)
    assert result.logged_value == log.rewards.mean()
    for name in ("ips", "snips", "dr", "switch-dr"):
        assert result.estimates[name].value == pytest.approx(log.rewards.mean(), abs=1e-12)
    assert result.estimates["ips"].ess == pytest.approx(len(log))


def test_uniform_is_a_plain_inverse_propensity_average():
    log = synthetic_log(3000, seed=2)
    result = offline.evaluate(log, np.arange(len(log)), offline.UNIFORM, n_bootstrap=200)
    by_hand = np.mean(log.rewards * (1.0 / N_ITEMS) / log.propensities)
    assert result.estimates["ips"].value == pytest.approx(by_hand, rel=1e-12)
    low, high = result.estimates["ips"].ci_low, result.estimates["ips"].ci_high
    assert low <= uniform_value() <= high


def test_a_ranking_policys_estimates_cover_its_true_value():
    log = synthetic_log(20_000, seed=3)
    best = np.argsort(-APPEAL)
    scores = APPEAL.copy()  # a policy that knows the appeal and ranks by it
    result = offline.evaluate(
        log,
        np.arange(len(log)),
        lambda rows: np.broadcast_to(scores, (len(rows), N_ITEMS)),
        epsilon=0.2,
        n_bootstrap=300,
    )
    # ε-mixed: 0.8 of the greedy slate's value plus 0.2 of a uniform choice.
    truth = 0.8 * true_value(best) + 0.2 * uniform_value()
    for name in ("ips", "snips", "dr", "switch-dr"):
        estimate = result.estimates[name]
        assert estimate.ci_low <= truth <= estimate.ci_high, (name, estimate, truth)
    assert result.estimates["snips"].ci_low > uniform_value()


def test_crossfitted_baselines_never_score_a_row_they_learnt_from():
    log = synthetic_log(1000, seed=4)
    rows = np.arange(len(log))
    scorer = offline.baseline_scorer("popularity", log, rows, folds=4)
    first_block = np.array_split(rows, 4)[0]
    fitted = PopularityPolicy().fit(log.sessions_for_fitting(rows[len(first_block) :]))
    np.testing.assert_array_equal(scorer(first_block[:5])[0], fitted.scores(log.catalog.ids))
    held_out = offline.baseline_scorer("popularity", log, rows[800:], fit_rows=rows[:800])
    fitted = PopularityPolicy().fit(log.sessions_for_fitting(rows[:800]))
    np.testing.assert_array_equal(held_out(rows[800:801])[0], fitted.scores(log.catalog.ids))
    with pytest.raises(ValueError, match="overlap"):
        offline.baseline_scorer("popularity", log, rows, fit_rows=rows[:10])


def test_a_log_without_sessions_fits_baselines_on_its_rewarded_rows():
    log = synthetic_log(200, seed=5)
    sessions = log.sessions_for_fitting(np.arange(len(log)))
    assert len(sessions) == int(log.rewards.sum())
    clicked = log.catalog.ids[log.actions[log.rewards > 0]]
    for session, item in zip(sessions, clicked, strict=True):
        # The user's past clicks as light evidence, then the click.
        assert session[-1] == (item, EventType.CLICK)
        assert all(event == EventType.VIEW for _, event in session[:-1])


def test_training_on_a_skewed_log_learns_the_items_that_get_clicked():
    log = synthetic_log(6000, seed=6)
    train_rows, test_rows = offline.time_split(len(log), 0.25)
    agent = DQNAgent(SMALL, log.catalog)
    result = offline.train(
        agent, log, train_rows, steps=400, rng=np.random.default_rng(0), max_weight=20.0
    )
    assert result.transitions == len(train_rows) == result.terminal  # no sessions: all done
    order = np.argsort(-agent.q_table([Observation(slot=Slot.HOME)])[0], kind="stable")
    learned = true_value(order)
    assert learned > 1.5 * uniform_value()
    assert learned > 0.8 * true_value(np.argsort(-APPEAL))
    # The offline evaluation on held-out rows sees it too.
    estimate = offline.evaluate(
        log, test_rows, offline.policy_scorer(agent, log), epsilon=0.2, n_bootstrap=200
    ).estimates["snips"]
    assert estimate.value > uniform_value()


def test_importance_weights_spread_learning_as_a_uniform_logger_would():
    log = synthetic_log(500, seed=7)
    rows = np.arange(len(log))
    weights = offline.training_weights(log, rows, max_weight=1e9)
    np.testing.assert_allclose(weights, (1.0 / N_ITEMS) / log.propensities)
    clipped = offline.training_weights(log, rows, max_weight=2.0)
    assert clipped.max() == 2.0 and clipped.min() == weights.min()
    uniform = synthetic_log(300, seed=8, logging=np.full(N_ITEMS, 1.0 / N_ITEMS))
    np.testing.assert_allclose(offline.training_weights(uniform, np.arange(300)), 1.0)


def test_transitions_are_terminal_unless_the_log_chains_them():
    log = synthetic_log(4, seed=9)
    assert all(t.done and t.next_state is None for t in offline.transitions(log, np.arange(4)))
    chained = offline.LoggedFeedback(
        catalog=log.catalog,
        observations=log.observations,
        actions=log.actions,
        positions=log.positions,
        propensities=log.propensities,
        rewards=log.rewards,
        n_positions=N_POSITIONS,
        unavailable=[(), (), (105,), ()],
        sessions=["a", "a", "a", "b"],
        next_rows=np.array([2, 2, -1, -1]),
    )
    first, _, last, _ = offline.transitions(chained, np.arange(4))
    assert not first.done and first.next_state == log.observations[2]
    assert first.next_unavailable == (105,)
    assert first.propensity == log.propensities[0]
    assert first.item == log.catalog.ids[log.actions[0]]
    assert last.done and last.next_state is None


def test_candidates_leave_out_the_cart_the_page_and_what_was_unavailable():
    log = synthetic_log(2, seed=10)
    observation = Observation(slot=Slot.PRODUCT, current_item=101, cart_items=(102,))
    store = offline.LoggedFeedback(
        catalog=log.catalog,
        observations=[observation, Observation(slot=Slot.HOME)],
        actions=np.array([0, 0]),
        positions=np.array([0, 1]),
        propensities=np.array([0.5, 0.5]),
        rewards=np.array([0.0, 1.0]),
        n_positions=2,
        unavailable=[(103, 999), ()],
    )
    mask = store.candidate_mask(np.array([0, 1]))
    assert mask[0].tolist() == [True, False, False, False] + [True] * (N_ITEMS - 4)
    assert mask[1].all()


def test_a_log_must_hold_one_value_per_row_and_known_items():
    log = synthetic_log(3, seed=11)
    with pytest.raises(ValueError, match="one value per row"):
        offline.LoggedFeedback(
            catalog=log.catalog,
            observations=log.observations[:2],
            actions=log.actions,
            positions=log.positions,
            propensities=log.propensities,
            rewards=log.rewards,
            n_positions=N_POSITIONS,
        )
    with pytest.raises(ValueError, match="columns of its catalog"):
        offline.LoggedFeedback(
            catalog=log.catalog,
            observations=log.observations,
            actions=np.array([0, 1, N_ITEMS]),
            positions=log.positions,
            propensities=log.propensities,
            rewards=log.rewards,
            n_positions=N_POSITIONS,
        )
    with pytest.raises(ValueError, match="unknown estimators"):
        offline.evaluate(log, np.arange(3), offline.UNIFORM, estimators=["ipw"])


def test_a_users_past_clicks_become_recent_clicks():
    observation = offline.observation_from_clicks({7: 2.0, 3: 1.0, 9: 0.0})
    assert observation.recent_items == (3, 7, 7)
    assert set(observation.recent_events) == {int(EventType.CLICK)}
    assert observation.slot == Slot.HOME


def test_time_split_holds_out_the_latest_rows():
    train, test = offline.time_split(10, 0.3)
    assert train.tolist() == list(range(7)) and test.tolist() == [7, 8, 9]
    with pytest.raises(ValueError):
        offline.time_split(10, 1.0)


def test_estimators_default_to_the_full_set():
    assert (
        tuple(
            offline.evaluate(
                synthetic_log(50, 12), np.arange(50), "uniform", n_bootstrap=20
            ).estimates
        )
        == ope.ESTIMATORS
    )
