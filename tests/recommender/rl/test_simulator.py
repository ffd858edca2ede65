"""The shopper simulator behaves like the shoppers it claims to model, works on
any catalog, and turns sessions into the transitions the store would build."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recommender.rl.baselines import OraclePolicy, RandomPolicy
from recommender.rl.simulator import (
    Arrival,
    RewardWeights,
    ShopperParams,
    ShopperSimulator,
    make_catalog,
    run_session,
    run_sessions,
)
from recommender.rl.simulator.model import GATEWAY, PREMIUM, REGULAR
from recommender.rl.slate import best_carousels
from recommender.rl.types import EventType, ItemCatalog, Slate, Slot
from tests.recommender.rl.factories import item_catalog


@pytest.fixture(scope="module")
def catalog() -> ItemCatalog:
    return make_catalog(96, 6, 8, seed=0)


@pytest.fixture(scope="module")
def simulator(catalog: ItemCatalog) -> ShopperSimulator:
    return ShopperSimulator(catalog, seed=0)


def _quiet(**overrides) -> ShopperParams:
    """Shoppers that never leave or wander off on their own, to isolate one effect."""
    return ShopperParams(
        **{
            "patience_min": 50,
            "patience_max": 50,
            "leave_probability": 0.0,
            "leave_after_add_probability": 0.0,
            "browse_probability": 0.0,
            **overrides,
        }
    )


class _Fixed:
    """A policy that shows the first k candidates of a fixed preference list."""

    def __init__(self, preferred: list[int], name: str = "fixed") -> None:
        self.preferred = preferred
        self.name = name

    def slate(self, obs, candidate_ids, k, rng) -> Slate:
        allowed = set(int(i) for i in candidate_ids)
        items = np.array([i for i in self.preferred if i in allowed][:k], dtype=np.int64)
        return Slate(items, np.ones(len(items)), np.zeros(len(items), dtype=np.float32))


# --- catalogs --------------------------------------------------------------------------------


def test_make_catalog_is_seeded_and_store_shaped():
    a, b = make_catalog(120, 12, 6, seed=3), make_catalog(120, 12, 6, seed=3)
    np.testing.assert_array_equal(a.prices, b.prices)
    assert len(a) == 120 and a.attributes.shape == (120, 6)
    assert sorted(set(a.categories.tolist())) == list(range(12))
    # Two one-hot groups (brand, colour): exactly two attributes set per item.
    np.testing.assert_array_equal(a.attributes.sum(1), 2.0)
    assert a.prices.min() >= 0.5 and abs(a.prices.mean() - 50.0) < 1.0
    assert not np.array_equal(a.prices, make_catalog(120, 12, 6, seed=4).prices)


def test_simulator_works_on_any_catalog():
    # Sparse ids, a gap in the category indices, no attributes, very few items.
    catalog = item_catalog(
        ids=[1005, 17, 400, 9, 33],
        categories=[0, 3, 3, 5, 0],
        prices=[10.0, 250.0, 99.0, 5.0, 12.5],
        n_attributes=0,
    )
    simulator = ShopperSimulator(catalog, seed=1)
    assert simulator.n_categories == 6
    logs = run_sessions(simulator, RandomPolicy(), range(20), k=3)
    assert all(log.slates >= 1 for log in logs)
    assert {t.item for log in logs for t in log.transitions} <= set(catalog.ids.tolist())
    run_session(simulator, OraclePolicy(), 5, k=3)  # the oracle plans on it too


def test_category_roles_follow_price_levels(simulator: ShopperSimulator, catalog: ItemCatalog):
    levels = {c: np.log(catalog.prices[catalog.categories == c]).mean() for c in range(6)}
    gateways = [c for c in range(6) if simulator.roles[c] == GATEWAY]
    premiums = [c for c in range(6) if simulator.roles[c] == PREMIUM]
    regulars = [c for c in range(6) if simulator.roles[c] == REGULAR]
    assert len(gateways) == len(premiums) == len(regulars) == 2
    assert max(levels[c] for c in gateways) < min(levels[c] for c in regulars)
    assert max(levels[c] for c in regulars) < min(levels[c] for c in premiums)
    # Gateways lead into the premium loop, which stays closed on itself.
    assert {int(simulator.complement[c]) for c in gateways} == set(premiums)
    assert {int(simulator.complement[c]) for c in premiums} == set(premiums)


# --- behaviour a shopper would show --------------------------------------------------------


def test_position_bias_same_item_clicked_more_at_the_top(
    simulator: ShopperSimulator, catalog: ItemCatalog
):
    target = int(catalog.ids[0])
    others = [int(i) for i in catalog.ids[1:6]]
    clicks_top = clicks_bottom = 0
    for seed in range(3000):
        top = simulator.new_shopper(seed).react([target, *others])
        bottom = simulator.new_shopper(seed).react([*others, target])
        clicks_top += top.clicked == target
        clicks_bottom += bottom.clicked == target
    assert clicks_top > 1.8 * clicks_bottom  # attention 1 vs 0.75 ** 5 ~ 0.24
    assert clicks_bottom > 0


def test_fatigue_an_item_shown_again_and_again_gets_less_attractive(catalog: ItemCatalog):
    # Nobody clicks (huge no-click utility), so only the impressions change the shopper.
    simulator = ShopperSimulator(catalog, _quiet(no_click_utility=30.0), seed=0)
    slate = [int(i) for i in catalog.ids[10:14]]
    fresh = simulator.new_shopper(11)
    tired = simulator.new_shopper(11)
    for _ in range(5):
        assert tired.react(slate).clicked is None
    assert np.all(tired.click_probabilities(slate) < 0.7 * fresh.click_probabilities(slate))


def test_disappointing_carousels_shorten_sessions(simulator: ShopperSimulator):
    # Showing nothing the shopper can click uses up patience: sessions end within it.
    nothing = _Fixed([], name="nothing")
    empty = run_sessions(simulator, nothing, range(200), k=4)
    assert max(log.slates for log in empty) <= simulator.params.patience_max
    good = run_sessions(simulator, OraclePolicy(myopic=True), range(200), k=4)
    assert np.mean([log.slates for log in good]) > 1.5 * np.mean([log.slates for log in empty])


def test_purchase_reward_scales_with_price():
    weights = RewardWeights()
    rewards = weights.purchase_reward(np.array([10.0, 50.0, 200.0]), mean_price=50.0)
    np.testing.assert_allclose(rewards, [5 + 5 * 0.2, 5 + 5 * 1.0, 5 + 5 * 4.0])
    store_formula = RewardWeights(purchase_per_unit_price=0.02, purchase_per_mean_price=0.0)
    assert store_formula.purchase_reward(200.0, 50.0) == pytest.approx(5 + 0.02 * 200)


def test_a_purchase_pays_the_impression_that_sold_the_item(catalog: ItemCatalog):
    simulator = ShopperSimulator(catalog, ShopperParams(checkout_probability=1.0), seed=0)
    weights = simulator.rewards
    checked = 0
    for seed in range(300):
        log = run_session(simulator, OraclePolicy(myopic=True), seed, k=4)
        if not log.purchased:
            continue
        bought = {item for item, kind in log.events if kind == EventType.PURCHASE}
        for t in log.transitions:
            if t.item in bought and t.reward > weights.click:
                price = float(catalog.prices[catalog.index_of([t.item])[0]])
                expected = (
                    weights.click
                    + weights.add_to_cart
                    + weights.purchase_reward(price, catalog.prices.mean())
                )
                assert t.reward == pytest.approx(float(expected), rel=1e-5)
                checked += 1
        assert log.total_reward == pytest.approx(sum(t.reward for t in log.transitions))
    assert checked >= 20


def test_a_click_moves_interest_to_the_complement_category(
    simulator: ShopperSimulator, catalog: ItemCatalog
):
    gateway = int(np.flatnonzero(simulator.roles == GATEWAY)[0])
    premium = int(simulator.complement[gateway])
    gateway_item = int(catalog.ids[np.flatnonzero(catalog.categories == gateway)[0]])
    premium_items = [int(i) for i in catalog.ids[catalog.categories == premium][:4]]
    moved = 0
    for seed in range(300):
        shopper = simulator.new_shopper(seed)
        if shopper.page.slot != Slot.HOME:
            continue  # landed on a product page: its interest has already moved
        before = shopper.click_probabilities(premium_items).sum()
        if shopper.react([gateway_item]).clicked != gateway_item or shopper.done:
            continue
        assert shopper.page.slot in (Slot.PRODUCT, Slot.CART)
        assert shopper.click_probabilities(premium_items).sum() > 5 * before
        moved += 1
    assert moved >= 5


def test_same_seed_same_session(simulator: ShopperSimulator):
    a = run_session(simulator, RandomPolicy(), (4, 2), k=4)
    b = run_session(simulator, RandomPolicy(), (4, 2), k=4)
    assert [(t.item, t.reward, t.done) for t in a.transitions] == [
        (t.item, t.reward, t.done) for t in b.transitions
    ]
    assert a.events == b.events
    others = [run_session(simulator, RandomPolicy(), (5, i), k=4) for i in range(5)]
    assert any(o.events != a.events for o in others)


def test_lockstep_runner_matches_one_session_at_a_time(simulator: ShopperSimulator):
    seeds = [(9, i) for i in range(12)]
    one_by_one = [run_session(simulator, RandomPolicy(), s, k=4) for s in seeds]
    together = run_sessions(simulator, RandomPolicy(), seeds, k=4)
    for a, b in zip(one_by_one, together, strict=True):
        assert a.total_reward == b.total_reward and a.events == b.events


# --- observations and transitions as the store builds them --------------------------------


def test_transitions_follow_the_store_format(simulator: ShopperSimulator):
    log = run_session(simulator, RandomPolicy(), 21, k=4, next_candidates=True)
    assert len(log.transitions) == 4 * log.slates == log.impressions
    steps = [log.transitions[i : i + 4] for i in range(0, len(log.transitions), 4)]
    for depth, step in enumerate(steps):
        obs = step[0].state
        assert all(t.state is obs for t in step)
        assert obs.page_depth == depth
        assert len(obs.recent_items) == len(obs.recent_events) == len(obs.recent_ages)
        assert list(obs.recent_ages) == sorted(obs.recent_ages, reverse=True)  # oldest first
        if obs.slot == Slot.PRODUCT:
            assert obs.current_item is not None and obs.current_item not in [t.item for t in step]
        assert not set(obs.cart_items) & {t.item for t in step}
        np.testing.assert_allclose(
            [t.propensity for t in step],
            [1 / (96 - len(obs.cart_items) - (obs.current_item is not None) - j) for j in range(4)],
        )
        last = depth == len(steps) - 1
        assert all(t.done == last for t in step)
        if not last:
            assert all(t.next_state is steps[depth + 1][0].state for t in step)
            assert set(step[0].next_candidates) == set(
                simulator.candidates(
                    _page_of(steps[depth + 1][0].state), steps[depth + 1][0].state.cart_items
                ).tolist()
            )
        else:
            assert all(t.next_state is None for t in step)
    # At most one click per carousel: a rewarded item per step at most.
    assert all(sum(t.reward > 0 for t in step) <= 1 for step in steps)


def _page_of(obs):
    from recommender.rl.simulator import Page

    return Page(obs.slot, obs.current_item, Arrival.CLICK)


def test_step_api_for_an_http_driver(simulator: ShopperSimulator, catalog: ItemCatalog):
    shopper = simulator.new_shopper(2024)
    pages = 0
    while not shopper.done:
        page = shopper.page
        assert page.slot in (Slot.HOME, Slot.PRODUCT, Slot.CART)
        assert (page.current_item is not None) == (page.slot == Slot.PRODUCT)
        shown = [int(i) for i in shopper.candidates()[:4]]
        reaction = shopper.react(shown)
        pages += 1
        if reaction.clicked is not None:
            assert reaction.clicked == shown[reaction.position]
        else:
            assert not reaction.added_to_cart
        if reaction.checked_out:
            assert reaction.left and set(reaction.purchased) == set(shopper.cart_items)
        if reaction.left:
            assert shopper.done and shopper.page is None
    assert pages == shopper.requests
    with pytest.raises(RuntimeError):
        shopper.react([int(catalog.ids[0])])


def test_unknown_and_empty_carousels_are_never_clicked(simulator: ShopperSimulator):
    shopper = simulator.new_shopper(3)
    assert shopper.click_probabilities([10**9, 10**9 + 1]).sum() == 0.0
    reaction = shopper.react([])
    assert reaction.clicked is None


# --- the oracle ----------------------------------------------------------------------------


def test_carousel_optimiser_is_exact_against_brute_force():
    rng = np.random.default_rng(0)
    attention = 0.75 ** np.arange(3)
    for _ in range(30):
        v = rng.lognormal(0.0, 1.0, size=6)
        g = rng.normal(1.0, 2.0, size=6)
        value, chosen = best_carousels(v[None, :], g[None, :], attention, v0=2.0)
        best = max(
            (attention * v[list(p)] * g[list(p)]).sum() / (2.0 + (attention * v[list(p)]).sum())
            for p in itertools.permutations(range(6), 3)
        )
        assert value[0] == pytest.approx(best, rel=1e-9)
        picked = list(chosen[0])
        assert (attention * v[picked] * g[picked]).sum() / (
            2.0 + (attention * v[picked]).sum()
        ) == pytest.approx(best)


def test_oracle_plans_for_the_long_term(simulator: ShopperSimulator):
    seeds = range(150)
    oracle = np.mean(
        [log.total_reward for log in run_sessions(simulator, OraclePolicy(), seeds, k=4)]
    )
    greedy = np.mean(
        [log.total_reward for log in run_sessions(simulator, OraclePolicy(myopic=True), seeds, k=4)]
    )
    rand = np.mean(
        [log.total_reward for log in run_sessions(simulator, RandomPolicy(), seeds, k=4)]
    )
    assert oracle > 1.2 * greedy > 1.2 * rand
