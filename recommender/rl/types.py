"""Plain data the RL core works on. Nothing here knows about Django: the app
converts ORM rows into these arrays in one place (recommender/features.py), and
the simulator produces them directly.

Item ids are the store's stable product ids (any non-negative int64). Row
indices into an ``ItemCatalog`` are positions in its arrays; code that crosses
the boundary converts with ``ItemCatalog.index_of``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

import numpy as np


class Slot(IntEnum):
    """Where a carousel is shown."""

    HOME = 0
    CART = 1
    PRODUCT = 2


class EventType(IntEnum):
    """Shopper interactions, in funnel order."""

    VIEW = 0
    CLICK = 1
    ADD_TO_CART = 2
    PURCHASE = 3


@dataclass(frozen=True)
class ItemCatalog:
    """The candidate universe as arrays, one row per item.

    ``attributes`` holds dense numeric features (one-hot brand / colour buckets,
    normalised rating, ...); its width is fixed per model (``n_attributes``).
    """

    ids: np.ndarray  # int64 (N,) stable item ids
    categories: np.ndarray  # int64 (N,) category index in [0, n_categories)
    prices: np.ndarray  # float32 (N,) price in store currency
    attributes: np.ndarray  # float32 (N, A)
    _index: dict[int, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.categories) == len(self.prices) == len(self.attributes) == n):
            raise ValueError("ItemCatalog arrays must all have one row per item")
        self._index.update({int(i): row for row, i in enumerate(self.ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, item_ids) -> np.ndarray:
        """Rows of the given ids; -1 where an id is not in the catalog."""
        return np.fromiter((self._index.get(int(i), -1) for i in item_ids), dtype=np.int64)


@dataclass(frozen=True)
class Observation:
    """A shopper session at the moment a recommendation is requested.

    Sequences are ordered oldest first. ``recent_ages`` are seconds before the
    request and drive recency weighting inside the encoder.
    """

    slot: Slot
    current_item: int | None = None  # item id on the page (slot=PRODUCT)
    recent_items: tuple[int, ...] = ()
    recent_events: tuple[int, ...] = ()  # EventType per recent item
    recent_ages: tuple[float, ...] = ()
    cart_items: tuple[int, ...] = ()
    history_items: tuple[int, ...] = ()  # longer history of signed-in shoppers
    page_depth: int = 0  # recommendation requests so far in this session

    def to_dict(self) -> dict:
        """JSON-safe form, stored as an impression's state snapshot."""
        return {
            "slot": int(self.slot),
            "current_item": self.current_item,
            "recent_items": list(self.recent_items),
            "recent_events": list(self.recent_events),
            "recent_ages": list(self.recent_ages),
            "cart_items": list(self.cart_items),
            "history_items": list(self.history_items),
            "page_depth": self.page_depth,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Observation:
        return cls(
            slot=Slot(data["slot"]),
            current_item=data.get("current_item"),
            recent_items=tuple(data.get("recent_items", ())),
            recent_events=tuple(data.get("recent_events", ())),
            recent_ages=tuple(float(a) for a in data.get("recent_ages", ())),
            cart_items=tuple(data.get("cart_items", ())),
            history_items=tuple(data.get("history_items", ())),
            page_depth=int(data.get("page_depth", 0)),
        )


class Slate(NamedTuple):
    """What a policy chose for one request: item ids by position, and the
    exact probability with which each was picked for its slot."""

    items: np.ndarray  # int64 (K,) item ids, position 0 first
    propensities: np.ndarray  # float64 (K,)
    scores: np.ndarray  # float32 (K,) the policy's score (Q) of each shown item


class Transition(NamedTuple):
    """One shown item's step: (s, a, r, s', done) with the next candidate set."""

    state: Observation
    item: int  # item id shown (the action for its slot)
    reward: float
    next_state: Observation | None  # None when done
    done: bool
    propensity: float = 1.0
    # None: every catalog item the next request could show, i.e. all but the
    # next state's page product and cart items (the store's eligibility rule)
    # and the items it could not show besides (``next_unavailable``)
    next_candidates: tuple[int, ...] | None = None
    # With next_candidates None: catalog items the next request left out
    # besides its page product and cart items (sold out when it was served)
    next_unavailable: tuple[int, ...] = ()
