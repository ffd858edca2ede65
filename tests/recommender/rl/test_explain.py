"""Carousel reasons name the session item that raised a shown item's score."""

from __future__ import annotations

import numpy as np

from recommender.rl.explain import Reason, reasons, session_items, without
from recommender.rl.types import EventType, Observation, Slot

VIEW, CLICK = int(EventType.VIEW), int(EventType.CLICK)

# How much session item (row: 1, 2, 3) raises candidate (column: 10, 20, 30).
LIFT = {1: {10: 2.0, 20: 0.1, 30: 0.0}, 2: {10: 0.5, 20: 1.0, 30: 0.0}, 3: {10: 0.0, 20: 0.0}}


def _scorer(observations, items):
    """Base score 1 per item plus each session item's lift (additive)."""
    out = np.ones((len(observations), len(items)))
    for b, obs in enumerate(observations):
        for anchor in session_items(obs):
            for c, item in enumerate(items):
                out[b, c] += LIFT.get(anchor, {}).get(int(item), 0.0)
    return out


def test_each_item_is_explained_by_the_session_item_that_lifted_it_most():
    obs = Observation(
        slot=Slot.HOME,
        recent_items=(1, 2),
        recent_events=(VIEW, CLICK),
        recent_ages=(60.0, 20.0),
        cart_items=(3,),
    )
    found = reasons(_scorer, obs, [10, 20, 30])
    assert found[0] == Reason(1, 2.0)
    assert found[1] == Reason(2, 1.0)
    assert found[2].item is None  # nothing in the session raised it


def test_a_cold_session_has_no_reasons():
    assert reasons(_scorer, Observation(slot=Slot.HOME), [10, 20]) == [Reason(None, 0.0)] * 2


def test_small_contributions_give_no_reason():
    obs = Observation(slot=Slot.HOME, recent_items=(2,), recent_events=(VIEW,), recent_ages=(5.0,))
    assert reasons(_scorer, obs, [10], min_contribution=0.6)[0].item is None


def test_without_removes_every_trace_of_an_item():
    obs = Observation(
        slot=Slot.PRODUCT,
        current_item=4,
        recent_items=(4, 5, 4),
        recent_events=(VIEW, VIEW, CLICK),
        recent_ages=(30.0, 20.0, 10.0),
        cart_items=(4, 6),
        history_items=(4,),
        page_depth=3,
    )
    stripped = without(obs, 4)
    assert stripped.current_item is None
    assert stripped.recent_items == (5,) and stripped.recent_ages == (20.0,)
    assert stripped.cart_items == (6,) and stripped.history_items == ()
    assert stripped.page_depth == 3
