"""Item catalogs for the RL core's tests. No Django here: ``recommender.rl``
and its tests run without it."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from recommender.rl.types import ItemCatalog


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
