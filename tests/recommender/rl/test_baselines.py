"""Baseline policies: what a store operator would check before trusting them
as fallbacks or as yardsticks for the learned policy."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.rl.baselines import (
    CooccurrencePolicy,
    OraclePolicy,
    Policy,
    PopularityPolicy,
    RandomPolicy,
    SameCategoryPolicy,
    myopic_config,
)
from recommender.rl.config import DQNConfig
from recommender.rl.simulator import ShopperSimulator, make_catalog, run_session
from recommender.rl.types import EventType, ItemCatalog, Observation, Slot
from tests.recommender.rl.factories import item_catalog

CLICK, ADD, BUY, VIEW = (
    int(EventType.CLICK),
    int(EventType.ADD_TO_CART),
    int(EventType.PURCHASE),
    int(EventType.VIEW),
)


def test_random_policy_propensities_are_exact_per_slot():
    candidates = np.arange(100, 110)
    slate = RandomPolicy().slate(
        Observation(slot=Slot.HOME), candidates, 4, np.random.default_rng(0)
    )
    assert len(set(slate.items.tolist())) == 4
    assert set(slate.items.tolist()) <= set(candidates.tolist())
    # Slot j draws uniformly among the n - j candidates not taken yet.
    np.testing.assert_allclose(slate.propensities, [1 / 10, 1 / 9, 1 / 8, 1 / 7])


def test_random_policy_is_uniform_over_candidates():
    rng = np.random.default_rng(1)
    counts = np.zeros(10)
    for _ in range(4000):
        slate = RandomPolicy().slate(Observation(slot=Slot.HOME), np.arange(10), 1, rng)
        counts[slate.items[0]] += 1
    # Each candidate expects 400 draws (sd 19): all within 5 sd.
    assert np.all(np.abs(counts - 400) < 95)


def test_random_policy_with_fewer_candidates_than_slots():
    slate = RandomPolicy().slate(
        Observation(slot=Slot.HOME), np.array([7, 8]), 5, np.random.default_rng(0)
    )
    assert sorted(slate.items.tolist()) == [7, 8]
    np.testing.assert_allclose(slate.propensities, [1 / 2, 1])
    empty = RandomPolicy().slate(
        Observation(slot=Slot.HOME), np.array([], dtype=np.int64), 3, np.random.default_rng(0)
    )
    assert len(empty.items) == 0


def test_popularity_ranks_the_most_clicked_item_first():
    sessions = [[(5, CLICK), (6, CLICK)], [(5, CLICK)], [(5, CLICK), (7, VIEW)], [(6, CLICK)]]
    policy = PopularityPolicy().fit(sessions)
    slate = policy.slate(
        Observation(slot=Slot.HOME), np.array([6, 7, 8, 5]), 3, np.random.default_rng(0)
    )
    assert slate.items.tolist() == [5, 6, 7]
    np.testing.assert_allclose(slate.propensities, 1.0)  # greedy: chosen with certainty


def test_popularity_weighs_purchases_above_clicks():
    sessions = [[(1, CLICK), (1, CLICK), (1, CLICK)], [(2, CLICK), (2, ADD), (2, BUY)]]
    policy = PopularityPolicy().fit(sessions)
    slate = policy.slate(Observation(slot=Slot.HOME), np.array([1, 2]), 1, np.random.default_rng(0))
    assert slate.items.tolist() == [2]


def test_popularity_exploration_logs_exact_propensities():
    policy = PopularityPolicy(epsilon=0.5).fit([[(1, CLICK)]])
    slate = policy.slate(Observation(slot=Slot.HOME), np.arange(4), 2, np.random.default_rng(3))
    for propensity in slate.propensities:
        assert 0.0 < propensity <= 1.0
    # Slot 0: the greedy item has 0.5 + 0.5 / 4, any other 0.5 / 4.
    assert slate.propensities[0] in (pytest.approx(0.625), pytest.approx(0.125))


def test_cooccurrence_recommends_the_co_clicked_item():
    sessions = [
        [(10, CLICK), (20, CLICK)],
        [(10, CLICK), (20, ADD)],
        [(30, CLICK), (40, CLICK)],
        [(30, CLICK)],
        [(30, CLICK)],
        [(30, CLICK)],
        [(30, CLICK)],
        [(40, CLICK)],  # 30 is the best-seller
    ]
    policy = CooccurrencePolicy().fit(sessions)
    on_page = Observation(slot=Slot.PRODUCT, current_item=10)
    slate = policy.slate(on_page, np.array([20, 30, 40]), 3, np.random.default_rng(0))
    assert slate.items[0] == 20
    # Without anything to relate to it falls back to popularity.
    home = policy.slate(
        Observation(slot=Slot.HOME), np.array([20, 30, 40]), 3, np.random.default_rng(0)
    )
    assert home.items[0] == 30


def test_cooccurrence_uses_recent_items_and_the_cart():
    sessions = [[(1, CLICK), (2, CLICK)], [(3, CLICK), (4, CLICK)], [(4, CLICK)], [(4, CLICK)]]
    policy = CooccurrencePolicy().fit(sessions)
    after_click = Observation(
        slot=Slot.HOME, recent_items=(1,), recent_events=(CLICK,), recent_ages=(30.0,)
    )
    assert policy.slate(after_click, np.array([2, 3, 4]), 1, np.random.default_rng(0)).items[0] == 2
    with_cart = Observation(slot=Slot.CART, cart_items=(3,))
    assert policy.slate(with_cart, np.array([1, 2, 4]), 1, np.random.default_rng(0)).items[0] == 4


def _two_category_catalog() -> ItemCatalog:
    """Items 1-3 in category 0, 4-6 in category 1."""
    return item_catalog(6, categories=[0, 0, 0, 1, 1, 1], prices=np.full(6, 10.0), n_attributes=0)


def test_same_category_follows_the_page_and_the_recent_items():
    # Item 5 is the best-seller; items 1-3 share the tent category.
    policy = SameCategoryPolicy(_two_category_catalog()).fit([[(5, BUY)], [(5, CLICK)]])
    rng = np.random.default_rng(0)
    on_tent = Observation(slot=Slot.PRODUCT, current_item=1)
    slate = policy.slate(on_tent, np.array([2, 3, 4, 5, 6]), 2, rng)
    assert set(slate.items.tolist()) == {2, 3}
    viewed_tents = Observation(
        slot=Slot.HOME, recent_items=(2, 3), recent_events=(VIEW, VIEW), recent_ages=(60.0, 30.0)
    )
    assert set(policy.slate(viewed_tents, np.arange(1, 7), 3, rng).items.tolist()) == {1, 2, 3}
    # Popularity orders items of equal relatedness, and ranks everything without context.
    home = policy.slate(Observation(slot=Slot.HOME), np.arange(1, 7), 1, rng)
    assert home.items[0] == 5
    assert policy.slate(on_tent, np.array([4, 5, 6]), 1, rng).items[0] == 5


def test_same_category_weighs_the_product_on_the_page_above_an_old_view():
    policy = SameCategoryPolicy(_two_category_catalog()).fit([])
    obs = Observation(
        slot=Slot.PRODUCT,
        current_item=4,
        recent_items=(1,),
        recent_events=(VIEW,),
        recent_ages=(600.0,),
    )
    slate = policy.slate(obs, np.array([2, 5]), 2, np.random.default_rng(0))
    assert slate.items.tolist() == [5, 2]


def test_myopic_is_the_same_agent_config_with_gamma_zero():
    config = DQNConfig(gamma=0.95, lr=5e-4)
    myopic = myopic_config(config)
    assert myopic.gamma == 0.0
    assert myopic.lr == config.lr and myopic.batch_size == config.batch_size


def test_every_policy_fills_distinct_slots_in_the_simulator():
    catalog = make_catalog(60, 6, 4, seed=0)
    simulator = ShopperSimulator(catalog, seed=0)
    logs = [run_session(simulator, RandomPolicy(), (0, i), k=4) for i in range(30)]
    events = [log.events for log in logs]
    for policy in (
        RandomPolicy(),
        PopularityPolicy().fit(events),
        CooccurrencePolicy().fit(events),
        SameCategoryPolicy(catalog).fit(events),
        OraclePolicy(),
    ):
        assert isinstance(policy, Policy)
        log = run_session(simulator, policy, 7, k=4)
        steps = {}
        for t in log.transitions:
            steps.setdefault(id(t.state), []).append(t.item)
        for items in steps.values():
            assert len(items) == len(set(items)) == 4


def test_dqn_policy_batched_slates_match_the_agent():
    from recommender.rl.agent import DQNAgent
    from recommender.rl.baselines import DQNPolicy

    catalog = make_catalog(40, 4, 4, seed=2)
    agent = DQNAgent(DQNConfig(seed=2), catalog)
    policy = DQNPolicy(agent)
    observations = [
        Observation(slot=Slot.HOME),
        Observation(
            slot=Slot.PRODUCT,
            current_item=int(catalog.ids[3]),
            recent_items=(int(catalog.ids[3]),),
            recent_events=(CLICK,),
            recent_ages=(12.0,),
            page_depth=1,
        ),
    ]
    candidates = [catalog.ids, catalog.ids[catalog.ids != catalog.ids[3]]]
    batched = policy.slates(
        observations, candidates, 3, [np.random.default_rng(0), np.random.default_rng(0)]
    )
    for obs, cands, slate in zip(observations, candidates, batched, strict=True):
        single = policy.slate(obs, cands, 3, np.random.default_rng(0))
        assert slate.items.tolist() == single.items.tolist()
        np.testing.assert_allclose(slate.propensities, single.propensities)
