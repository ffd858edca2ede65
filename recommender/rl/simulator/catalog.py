"""Synthetic catalogs shaped like the store's: categories with their own price
levels, log-normal prices around them, and one-hot brand / colour attributes."""

from __future__ import annotations

import numpy as np

from recommender.rl.types import ItemCatalog


def make_catalog(
    n_items: int = 1000,
    n_categories: int = 12,
    n_attributes: int = 8,
    seed: int = 0,
    *,
    mean_price: float = 50.0,
    category_price_spread: float = 0.6,
    item_price_spread: float = 0.35,
    first_id: int = 1,
) -> ItemCatalog:
    """A seeded random catalog.

    - ``n_items`` items spread as evenly as possible over ``n_categories``
      categories (every category gets at least one item when n_items >= n_categories).
    - Prices: category price levels are evenly spaced in log space from
      ``exp(-category_price_spread)`` to ``exp(+category_price_spread)`` times
      the mean and assigned to the categories in a seeded order; each item draws
      a log-normal factor around its category's level (sigma
      ``item_price_spread``). The catalog is rescaled to ``mean_price`` and
      rounded to cents, never below 0.50. Every seed thus has the same economics
      (cheap, middle and expensive categories) in a different arrangement,
      which keeps benchmark seeds comparable.
    - Attributes: two one-hot groups like the store's brand and colour
      (``ceil(n_attributes / 2)`` brand buckets, the rest colour buckets);
      ``n_attributes=0`` gives an (N, 0) array.
    - Ids are ``first_id, first_id + 1, ...`` like database primary keys.
    """
    if n_items < 1 or n_categories < 1 or n_attributes < 0:
        raise ValueError("make_catalog needs n_items >= 1, n_categories >= 1, n_attributes >= 0")
    rng = np.random.default_rng(seed)
    categories = rng.permutation(np.arange(n_items) % n_categories).astype(np.int64)

    category_level = rng.permutation(
        np.linspace(-category_price_spread, category_price_spread, n_categories)
    )
    log_price = category_level[categories] + rng.normal(0.0, item_price_spread, size=n_items)
    prices = np.exp(log_price)
    prices *= mean_price / prices.mean()
    prices = np.maximum(np.round(prices, 2), 0.5).astype(np.float32)

    attributes = np.zeros((n_items, n_attributes), dtype=np.float32)
    n_brands = (n_attributes + 1) // 2
    n_colours = n_attributes - n_brands
    rows = np.arange(n_items)
    if n_brands:
        attributes[rows, rng.integers(n_brands, size=n_items)] = 1.0
    if n_colours:
        attributes[rows, n_brands + rng.integers(n_colours, size=n_items)] = 1.0

    return ItemCatalog(
        ids=np.arange(first_id, first_id + n_items, dtype=np.int64),
        categories=categories,
        prices=prices,
        attributes=attributes,
    )
