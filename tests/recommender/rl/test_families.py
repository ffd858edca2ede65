"""Shopper families: each is a population whose clicks follow what it looked
at in its own way; the default one is the simulator as it always was."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from recommender.rl.baselines import OraclePolicy, PopularityPolicy, RandomPolicy
from recommender.rl.evaluation import collect_sessions, evaluate_policy
from recommender.rl.simulator import ShopperParams, ShopperSimulator, make_catalog, run_sessions
from recommender.rl.simulator.families import (
    DEFAULT_FAMILY,
    FAMILIES,
    ShopperFamily,
    families,
    family,
)
from recommender.rl.types import EventType, ItemCatalog


@pytest.fixture(scope="module")
def catalog() -> ItemCatalog:
    return make_catalog(96, 6, 8, seed=0)


def _opened_then_clicked(logs) -> list[tuple[int, int, set[int]]]:
    """(id of the page opened last, id clicked, ids of the pages opened before)
    for every carousel click that followed an opened product page."""
    pairs = []
    for log in logs:
        last, opened = None, set()
        for item, kind in log.events:
            if kind not in (EventType.VIEW, EventType.CLICK):
                continue
            if kind == EventType.CLICK and last is not None:
                pairs.append((last, item, set(opened)))
            last = item
            opened.add(item)
    return pairs


def _random_traffic(catalog: ItemCatalog, params: ShopperParams, sessions: int = 400):
    simulator = ShopperSimulator(catalog, params, seed=0)
    return simulator, run_sessions(
        simulator, RandomPolicy(), [(7, i) for i in range(sessions)], k=4
    )


# --- the registry ------------------------------------------------------------------------------


def test_the_registry_lists_tuned_families_first_and_held_out_ones_last():
    names = list(FAMILIES)
    held_out = [n for n in names if FAMILIES[n].held_out]
    assert set(held_out) == {"brand", "bundle", "novelty"}
    assert names[-len(held_out) :] == held_out
    assert {"funnel", "category", "price_band", "position_insensitive"} <= set(names)
    assert all(f.description and "\n" not in f.description for f in FAMILIES.values())
    assert family("brand") is FAMILIES["brand"]


def test_an_unknown_family_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="unknown shopper family 'tourist'") as error:
        family("tourist")
    assert all(name in str(error.value) for name in FAMILIES)
    with pytest.raises(ValueError, match="tourist"):
        families("funnel,tourist")


def test_a_family_list_keeps_the_registry_order():
    assert [f.name for f in families("novelty, funnel")] == ["funnel", "novelty"]
    assert [f.name for f in families(None)] == list(FAMILIES)
    assert [f.name for f in families("")] == list(FAMILIES)


def test_the_default_family_is_todays_shopper():
    assert DEFAULT_FAMILY == "funnel"
    assert family(DEFAULT_FAMILY).params == ShopperParams()
    assert not family(DEFAULT_FAMILY).held_out


def test_default_shoppers_react_exactly_as_before_the_families():
    """Recorded from the simulator before the item-level mechanisms existed:
    the same seeds must give the same sessions, event by event."""
    simulator = ShopperSimulator(make_catalog(96, 6, 8, seed=3), seed=3)
    logs = run_sessions(simulator, RandomPolicy(), [(11, i) for i in range(40)], k=4)
    record = [(log.events, [(t.item, round(t.reward, 9)) for t in log.transitions]) for log in logs]
    digest = hashlib.sha256(repr(record).encode()).hexdigest()
    assert digest == "0d03bb6a25abddb22509b610f23bc0f24ee18ea31a1b399bca261b56e847a2ca"
    assert sum(log.clicks for log in logs) == 75
    planned = run_sessions(simulator, OraclePolicy(), [(12, i) for i in range(10)], k=4)
    assert sum(log.clicks for log in planned) == 47
    assert sum(log.total_reward for log in planned) == pytest.approx(713.2730015114402, abs=1e-6)


@pytest.mark.parametrize("bad", [{"price_band_follow": 1.5}, {"price_band_weight": -1.0}])
def test_bad_item_level_parameters_are_refused(bad):
    with pytest.raises(ValueError, match="price_band"):
        ShopperParams(**bad)


# --- every family ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_runs_sessions_and_is_deterministic_under_a_seed(name, catalog):
    chosen = family(name)
    assert isinstance(chosen, ShopperFamily)
    simulator = chosen.simulator(catalog, seed=2)
    assert simulator.params == chosen.params and simulator.seed == 2
    seeds = [(5, i) for i in range(30)]
    first = run_sessions(simulator, RandomPolicy(), seeds, k=4)
    again = run_sessions(chosen.simulator(catalog, seed=2), RandomPolicy(), seeds, k=4)
    assert [log.events for log in first] == [log.events for log in again]
    assert sum(log.clicks for log in first) > 0
    assert any(log.purchased for log in first)
    other = run_sessions(simulator, RandomPolicy(), [(6, i) for i in range(30)], k=4)
    assert [log.events for log in other] != [log.events for log in first]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_rewards_knowing_the_shopper(name, catalog):
    """A planner that sees inside the shopper earns well above popularity in
    every family: there is something for personalisation to gain."""
    simulator = family(name).simulator(catalog, seed=1)
    logs = collect_sessions(simulator, RandomPolicy(), 300, 1, k=3)
    popularity = PopularityPolicy().fit([log.events for log in logs])
    popular = evaluate_policy(simulator, popularity, 80, 1, k=3).mean_return
    informed = evaluate_policy(simulator, OraclePolicy(myopic=True), 80, 1, k=3).mean_return
    assert informed > 1.5 * popular


# --- each family's driver ------------------------------------------------------------------------


def test_brand_shoppers_click_the_brand_they_just_looked_at(catalog):
    """The last page's brand (first attribute group) predicts the next click's
    in the brand family far more than in the default one."""

    def brand_match(params: ShopperParams) -> float:
        simulator, logs = _random_traffic(catalog, params)
        brands = simulator.attributes[:, :4].argmax(1)
        pairs = _opened_then_clicked(logs)
        rows = simulator.rows_of([p[0] for p in pairs]), simulator.rows_of([p[1] for p in pairs])
        return float(np.mean(brands[rows[0]] == brands[rows[1]]))

    assert brand_match(family("brand").params) > brand_match(ShopperParams()) + 0.1


def test_attribute_interest_raises_the_viewed_brand_and_nothing_else(catalog):
    base = dataclasses.replace(family("brand").params, attribute_interest=0.0)
    with_interest = family("brand").params
    shopper = ShopperSimulator(catalog, with_interest, seed=0).new_shopper(3)
    without = ShopperSimulator(catalog, base, seed=0).new_shopper(3)
    assert shopper.intent_row >= 0  # landed on a product page: it looked at something
    viewed = catalog.attributes[shopper.intent_row]
    shared = catalog.attributes @ viewed
    rows = np.arange(len(catalog))
    gained = shopper.utilities(rows) - without.utilities(rows)
    np.testing.assert_allclose(gained, with_interest.attribute_interest * shared)
    same_brand = np.flatnonzero(shared >= 1)[:3]
    unrelated = np.flatnonzero(shared == 0)[:3]
    ids = catalog.ids[np.concatenate([same_brand, unrelated])]
    ratio = shopper.click_probabilities(ids) / without.click_probabilities(ids)
    assert np.all(ratio[:3] > ratio[3:])


def test_price_band_shoppers_click_near_the_prices_they_looked_at(catalog):
    def price_gap(params: ShopperParams) -> float:
        simulator, logs = _random_traffic(catalog, params)
        pairs = _opened_then_clicked(logs)
        before = simulator.log_price_ratio[simulator.rows_of([p[0] for p in pairs])]
        clicked = simulator.log_price_ratio[simulator.rows_of([p[1] for p in pairs])]
        return float(np.mean(np.abs(before - clicked)))

    assert price_gap(family("price_band").params) < 0.8 * price_gap(ShopperParams())


def test_the_price_anchor_follows_the_pages_opened(catalog):
    """Two copies of one shopper: the one that opened an expensive page now
    clicks expensive items more, the one that opened a cheap page cheap ones."""
    simulator = family("price_band").simulator(catalog, seed=0)
    order = np.argsort(simulator.log_price_ratio)
    cheap, pricey = order[:4], order[-4:]
    after_cheap, after_pricey = simulator.new_shopper(4), simulator.new_shopper(4)
    anchor = after_cheap.price_anchor
    assert anchor == after_pricey.price_anchor
    after_cheap._view(int(cheap[0]))
    after_pricey._view(int(pricey[0]))
    follow = simulator.params.price_band_follow
    moved_to = anchor + follow * (simulator.log_price_ratio[pricey[0]] - anchor)
    assert after_pricey.price_anchor == pytest.approx(moved_to)
    shown = simulator.ids[np.concatenate([cheap[1:], pricey[1:]])]
    p_cheap, p_pricey = (
        after_cheap.click_probabilities(shown),
        after_pricey.click_probabilities(shown),
    )
    assert p_pricey[3:].sum() > p_cheap[3:].sum() and p_cheap[:3].sum() > p_pricey[:3].sum()


def test_category_shoppers_stay_in_the_category_and_bundle_shoppers_move_on(catalog):
    def same_category(params: ShopperParams) -> float:
        simulator, logs = _random_traffic(catalog, params)
        pairs = _opened_then_clicked(logs)
        before = simulator.categories[simulator.rows_of([p[0] for p in pairs])]
        clicked = simulator.categories[simulator.rows_of([p[1] for p in pairs])]
        return float(np.mean(before == clicked))

    default = same_category(ShopperParams())
    assert same_category(family("category").params) > default + 0.15
    assert same_category(family("bundle").params) < default - 0.05


def test_bundle_shoppers_click_the_complement_of_what_they_looked_at(catalog):
    def complement(params: ShopperParams) -> float:
        simulator, logs = _random_traffic(catalog, params)
        pairs = _opened_then_clicked(logs)
        before = simulator.categories[simulator.rows_of([p[0] for p in pairs])]
        clicked = simulator.categories[simulator.rows_of([p[1] for p in pairs])]
        return float(np.mean(simulator.complement[before] == clicked))

    assert complement(family("bundle").params) > complement(family("category").params) + 0.15


def test_novelty_shoppers_click_categories_they_have_not_opened_yet(catalog):
    def fresh(params: ShopperParams) -> float:
        simulator, logs = _random_traffic(catalog, params)
        pairs = _opened_then_clicked(logs)
        categories = simulator.categories
        return float(
            np.mean(
                [
                    categories[simulator.rows_of([clicked])[0]]
                    not in set(categories[simulator.rows_of(list(opened))].tolist())
                    for _, clicked, opened in pairs
                ]
            )
        )

    assert fresh(family("novelty").params) > fresh(ShopperParams()) + 0.1


def test_novelty_bonus_goes_to_unopened_categories_only(catalog):
    params = family("novelty").params
    shopper = ShopperSimulator(catalog, params, seed=0).new_shopper(3)
    plain = ShopperSimulator(
        catalog, dataclasses.replace(params, novelty_bonus=0.0), seed=0
    ).new_shopper(3)
    rows = np.arange(len(catalog))
    gained = shopper.utilities(rows) - plain.utilities(rows)
    unopened = shopper.opened_categories[catalog.categories] == 0
    assert (~unopened).any() and unopened.any()
    np.testing.assert_allclose(gained, params.novelty_bonus * unopened)


def test_position_insensitive_shoppers_click_the_last_position_as_the_first(catalog):
    simulator = family("position_insensitive").simulator(catalog, seed=0)
    shopper = simulator.new_shopper(1)
    slate = [int(i) for i in catalog.ids[20:26]]
    forward = shopper.click_probabilities(slate)
    backward = shopper.click_probabilities(slate[::-1])[::-1]
    np.testing.assert_allclose(forward, backward)
    biased = ShopperSimulator(catalog, seed=0).new_shopper(1)
    assert not np.allclose(
        biased.click_probabilities(slate), biased.click_probabilities(slate[::-1])[::-1]
    )
