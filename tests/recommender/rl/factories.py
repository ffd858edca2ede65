"""Catalogs, observations and transitions for the RL core's tests. No Django
here: ``recommender.rl`` and its tests run without it."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from recommender.rl.config import DQNConfig
from recommender.rl.types import EventType, ItemCatalog, Observation, Slot, Transition

# Tiny networks and windows: quick to train, enough to tell values apart.
SMALL = DQNConfig(
    id_dim=4,
    category_dim=4,
    item_hidden=16,
    embed_dim=8,
    state_hidden=16,
    max_recent=4,
    max_cart=2,
    max_history=2,
    batch_size=32,
    max_next_candidates=8,
    epsilon_decay_steps=100,
)


def item_catalog(
    n: int | None = None,
    *,
    ids: ArrayLike | None = None,
    first_id: int = 1,
    categories: ArrayLike | None = None,
    n_categories: int = 3,
    prices: ArrayLike | None = None,
    max_price: float = 100,
    attributes: ArrayLike | None = None,
    n_attributes: int = 2,
    seed: int | None = None,
) -> ItemCatalog:
    """``n`` items with ids ``first_id`` upwards (or the given ``ids``).

    Unless given: categories cycle through ``n_categories``; with a ``seed``,
    prices are uniform in [5, 100) and then ``n_attributes`` attributes uniform
    in [0, 1), both drawn in that order from ``default_rng(seed)``; without
    one, prices rise evenly from 5 to ``max_price`` and attributes are zero. Prices and
    attributes are float32, as the agents read them.
    """
    if ids is None:
        if n is None:
            raise TypeError("item_catalog needs n or ids")
        ids = np.arange(first_id, first_id + n)
    ids = np.asarray(ids)
    n = len(ids)
    rng = np.random.default_rng(seed) if seed is not None else None
    if categories is None:
        categories = np.arange(n) % n_categories
    if prices is None:
        prices = rng.uniform(5, 100, n) if rng is not None else np.linspace(5, max_price, n)
    if attributes is None:
        attributes = (
            rng.random((n, n_attributes)) if rng is not None else np.zeros((n, n_attributes))
        )
    return ItemCatalog(
        ids=ids,
        categories=np.asarray(categories),
        prices=np.asarray(prices).astype(np.float32),
        attributes=np.asarray(attributes).astype(np.float32),
    )


def observation(slot: Slot = Slot.HOME, **kwargs) -> Observation:
    return Observation(slot=slot, **kwargs)


def random_transitions(
    items: ItemCatalog, n: int, rng: np.random.Generator, n_candidates: int = 5
) -> list[Transition]:
    ids = items.ids.tolist()
    out = []
    for _ in range(n):
        recent = tuple(int(i) for i in rng.choice(ids, 3))
        state = observation(
            Slot(int(rng.integers(3))),
            recent_items=recent,
            recent_events=(EventType.VIEW, EventType.CLICK, EventType.VIEW),
            recent_ages=(30.0, 20.0, 10.0),
        )
        done = bool(rng.random() < 0.3)
        out.append(
            Transition(
                state=state,
                item=int(rng.choice(ids)),
                reward=float(rng.random()),
                next_state=None
                if done
                else observation(Slot.CART, cart_items=recent[:1], page_depth=1),
                done=done,
                next_candidates=None
                if done
                else tuple(int(i) for i in rng.choice(ids, n_candidates, replace=False)),
            )
        )
    return out
