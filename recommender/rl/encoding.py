"""Observations to fixed-width numpy arrays: the only path from ``Observation``
to the networks.

A state is a row of L catalog rows (recent interactions grouped by event type,
cart, history, the focus item) split into N_POOLS bags, each position with a
pooling weight (recency-decayed for recent interactions, equal otherwise, 0 on
padding and on items the catalog does not know), plus the slot and page depth.
The focus is the product the shopper is looking at: the page's product, or
elsewhere (home, cart) the newest interaction.
Fixed widths let the replay buffer store states as plain arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from recommender.rl.config import DQNConfig
from recommender.rl.explain import EachAlone
from recommender.rl.types import EventType, ItemCatalog, Observation

# Pools the state tower averages item vectors over: one per event type of the
# recent interactions, then the cart, the signed-in history and the focus item.
CART_POOL = len(EventType)
HISTORY_POOL = CART_POOL + 1
# The product the shopper is looking at: the page's product, or on a page
# without one the newest interaction. What a shopper looks at says most about
# what it wants next, and in its event type's pool the newest item is averaged
# with the whole visit. One pool for both lets what product pages teach about
# "the product in view" carry over to the home and cart pages.
FOCUS_POOL = CART_POOL + 2
N_POOLS = CART_POOL + 3

# Dense id -> row tables are used while they stay this small relative to the
# catalog (store ids are autoincrement keys, so they normally are).
_DENSE_FACTOR = 8
_DENSE_SLACK = 4096


class ItemIndex:
    """Vectorised item id -> row lookup; -1 for ids it does not hold.

    ``ItemCatalog.index_of`` is a Python loop; this is the same mapping as one
    numpy gather (a dense table for compact ids, binary search otherwise).
    """

    def __init__(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self.size = len(ids)
        self._table: np.ndarray | None = None
        self._offset = 0  # the table's first id (a few negative sentinel ids stay dense)
        self._sorted = self._order = np.empty(0, dtype=np.int64)
        if not len(ids):
            return
        low = min(int(ids.min()), 0)
        if low >= -_DENSE_SLACK and ids.max() - low <= _DENSE_FACTOR * len(ids) + _DENSE_SLACK:
            self._offset = low
            table = np.full(int(ids.max()) - low + 1, -1, dtype=np.int64)
            table[ids - low] = np.arange(len(ids))
            if np.count_nonzero(table >= 0) != len(ids):
                raise ValueError("item ids must be unique")
            self._table = table
        else:
            self._order = np.argsort(ids, kind="stable")
            self._sorted = ids[self._order]
            if np.any(self._sorted[1:] == self._sorted[:-1]):
                raise ValueError("item ids must be unique")

    @classmethod
    def of(cls, catalog: ItemCatalog) -> ItemIndex:
        return cls(catalog.ids)

    def rows(self, item_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """int64 rows of ``item_ids`` (any shape), -1 where unknown."""
        query = np.asarray(item_ids, dtype=np.int64)
        if self._table is not None:
            shifted = query - self._offset if self._offset else query
            rows = self._table.take(shifted, mode="clip")
            rows[(shifted < 0) | (shifted >= len(self._table))] = -1
            return rows
        if not self.size:
            return np.full(query.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, query), self.size - 1)
        return np.where(self._sorted[pos] == query, self._order[pos], -1)


class IdVocabulary:
    """Item ids that own an id-embedding row. Row 0 is the shared "unknown id"
    row; the vocabulary only grows, so trained rows never move."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64).copy()
        self._index = ItemIndex(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, item_ids: np.ndarray) -> np.ndarray:
        """Embedding rows of ``item_ids``: 1.. for known ids, 0 for the rest."""
        return self._index.rows(item_ids) + 1

    def extend(self, item_ids: np.ndarray) -> int:
        """Append the ids not yet known (in first-seen order); returns how many."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        new = item_ids[self._index.rows(item_ids) < 0]
        new = new[np.sort(np.unique(new, return_index=True)[1])]
        if len(new):
            self.ids = np.concatenate([self.ids, new])
            self._index = ItemIndex(self.ids)
        return len(new)


class CategoryVocabulary:
    """Which row of a model's category table (``size`` rows plus the "unknown
    category" row, ``size``) each category label takes.

    Labels are whatever the catalog uses; a store's are primary keys, which
    grow with every category ever created, so using them as rows would size
    the context term (quadratic in the table) by the highest key rather than
    by the categories there are. A new model's labels take rows in sorted
    order, so that the same categories under other keys (another database,
    keys shifted by earlier deletes) give the same model. Rows never move;
    labels seen later take the free rows while there are any, and then share
    the unknown row, as negative labels ("no category") always do. (Models
    saved before labels were kept used the labels as rows: they load as the
    identity.)
    """

    def __init__(self, size: int, labels: Sequence[int] | np.ndarray = ()) -> None:
        self.size = int(size)
        self.labels = np.asarray(labels, dtype=np.int64).copy()
        if len(self.labels) > self.size:
            raise ValueError(f"{len(self.labels)} category labels for a table of {self.size}")
        self._index = ItemIndex(self.labels)

    @classmethod
    def for_catalog(cls, size: int, categories: np.ndarray) -> CategoryVocabulary:
        """Rows for a new model of ``size`` rows over a catalog's category labels."""
        present = np.unique(np.asarray(categories, dtype=np.int64))
        present = present[present >= 0]
        return cls(size, present[:size])

    def rows(self, categories: np.ndarray) -> np.ndarray:
        """Table rows of ``categories``: the unknown row (``size``) for labels without one."""
        rows = self._index.rows(np.asarray(categories, dtype=np.int64))
        return np.where(rows >= 0, rows, self.size)

    def extend(self, categories: np.ndarray) -> int:
        """Give labels not yet known the free rows, in sorted order; returns how many."""
        categories = np.unique(np.asarray(categories, dtype=np.int64))
        new = categories[(categories >= 0) & (self._index.rows(categories) < 0)]
        new = new[: self.size - len(self.labels)]
        if len(new):
            self.labels = np.concatenate([self.labels, new])
            self._index = ItemIndex(self.labels)
        return len(new)


class EncodedStates(NamedTuple):
    """A batch of encoded observations: B states of L item positions each.

    Within a state the positions are in pool order (recent items grouped by
    event type, then cart, history, current item), so each (state, pool) is one
    contiguous bag and the state tower pools with a single ``embedding_bag``.
    """

    rows: np.ndarray  # int32 (B, L) catalog rows, -1 on padding / unknown items
    weights: np.ndarray  # float32 (B, L) pooling weights, summing to 1 within each non-empty bag
    pools: np.ndarray  # int8 (B, L) pool of each position, non-decreasing along a state
    masses: np.ndarray  # float32 (B, N_POOLS) total raw weight per pool (recency-decayed count)
    slots: np.ndarray  # int8 (B,) Slot
    page_depths: np.ndarray  # float32 (B,)

    def take(self, index: np.ndarray) -> EncodedStates:
        """The states at ``index`` (a batch gather)."""
        return EncodedStates(*(a[index] for a in self))

    @classmethod
    def concat(cls, parts: Sequence[EncodedStates]) -> EncodedStates:
        """The states of ``parts`` (encoded by one encoder), one batch after another."""
        return cls(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))


class ObservationEncoder:
    """Encodes batches of observations against a catalog's ``ItemIndex``."""

    def __init__(self, config: DQNConfig) -> None:
        self.max_recent = config.max_recent
        self.max_cart = config.max_cart
        self.max_history = config.max_history
        self.half_life_s = config.recency_half_life_s
        self._cart_start = self.max_recent
        self._history_start = self._cart_start + self.max_cart
        self._focus = self._history_start + self.max_history
        self.width = self._focus + 1
        # Pools of an empty state: the recent padding belongs to the last event pool.
        self._empty_pools = np.repeat(
            np.array([len(EventType) - 1, CART_POOL, HISTORY_POOL, FOCUS_POOL], dtype=np.int8),
            [self.max_recent, self.max_cart, self.max_history, 1],
        )

    def empty(self, n: int) -> EncodedStates:
        """``n`` all-padding states (what a terminal next state encodes to)."""
        return EncodedStates(
            rows=np.full((n, self.width), -1, dtype=np.int32),
            weights=np.zeros((n, self.width), dtype=np.float32),
            pools=np.tile(self._empty_pools, (n, 1)),
            masses=np.zeros((n, N_POOLS), dtype=np.float32),
            slots=np.zeros(n, dtype=np.int8),
            page_depths=np.zeros(n, dtype=np.float32),
        )

    def encode(self, observations: Sequence[Observation], index: ItemIndex) -> EncodedStates:
        """Encode ``observations``; items missing from ``index`` get weight 0.

        Keeps the newest ``max_recent`` / ``max_cart`` / ``max_history`` items of
        each sequence (sequences are ordered oldest first). An ``EachAlone``
        batch is encoded without building its observations
        (``encode_each_alone``).
        """
        if isinstance(observations, EachAlone):
            return self.encode_each_alone(observations.state, observations.items, index)
        n, r = len(observations), self.max_recent
        ids = np.full((n, self.width), -1, dtype=np.int64)
        pools = np.tile(self._empty_pools, (n, 1))
        ages = np.zeros((n, r), dtype=np.float32)
        slots = np.empty(n, dtype=np.int8)
        depths = np.empty(n, dtype=np.float32)
        for b, obs in enumerate(observations):
            if not len(obs.recent_items) == len(obs.recent_events) == len(obs.recent_ages):
                raise ValueError(
                    "Observation.recent_items, recent_events and recent_ages must have equal lengths"
                )
            m = min(len(obs.recent_items), r)
            if m:
                # Group the recent items by event type; the sort is stable, so time
                # order is kept within a type.
                items, events, item_ages = (
                    obs.recent_items[-m:],
                    obs.recent_events[-m:],
                    obs.recent_ages[-m:],
                )
                order = sorted(range(m), key=events.__getitem__)
                grouped = [int(events[i]) for i in order]
                if grouped[0] < 0 or grouped[-1] >= len(EventType):
                    raise ValueError("Observation.recent_events must hold EventType values")
                ids[b, :m] = [items[i] for i in order]
                ids[b, self._focus] = items[-1]
                pools[b, :m] = grouped
                ages[b, :m] = [item_ages[i] for i in order]
            m = min(len(obs.cart_items), self.max_cart)
            if m:
                ids[b, self._cart_start : self._cart_start + m] = obs.cart_items[-m:]
            m = min(len(obs.history_items), self.max_history)
            if m:
                ids[b, self._history_start : self._history_start + m] = obs.history_items[-m:]
            if obs.current_item is not None:
                ids[b, self._focus] = obs.current_item
            slots[b] = obs.slot
            depths[b] = obs.page_depth
        return self._weigh(ids, pools, ages, slots, depths, index)

    def encode_each_alone(
        self, obs: Observation, items: Sequence[int], index: ItemIndex
    ) -> EncodedStates:
        """``encode(explain.EachAlone(obs, items), index)`` as observations would
        encode, the same arrays, computed from ``obs``'s sequences once: each
        state keeps the positions of one item (the first state none), and each
        sequence's window (its newest items) is taken among them."""
        if not len(obs.recent_items) == len(obs.recent_events) == len(obs.recent_ages):
            raise ValueError(
                "Observation.recent_items, recent_events and recent_ages must have equal lengths"
            )
        kept_items = np.asarray(items, dtype=np.int64)
        n, r = len(kept_items) + 1, self.max_recent
        ids = np.full((n, self.width), -1, dtype=np.int64)
        pools = np.tile(self._empty_pools, (n, 1))
        ages = np.zeros((n, r), dtype=np.float32)

        recent = np.asarray(obs.recent_items, dtype=np.int64)
        events = np.asarray(obs.recent_events, dtype=np.int64)
        window = _newest(_alone(recent, kept_items), r)  # (n, len(recent))
        if window.any():
            shown = events[window.any(axis=0)]
            if shown.min() < 0 or shown.max() >= len(EventType):
                raise ValueError("Observation.recent_events must hold EventType values")
            # Grouped by event type, time order kept within a type (a stable sort),
            # then each state's window packed to the front.
            order = np.argsort(events, kind="stable")
            grouped = window[:, order]
            states, positions = np.nonzero(grouped)
            columns = np.cumsum(grouped, axis=1)[states, positions] - 1
            ids[states, columns] = recent[order][positions]
            pools[states, columns] = events[order][positions]
            ages[states, columns] = np.asarray(obs.recent_ages, dtype=np.float32)[order][positions]
            # Without a page product the focus is each state's newest interaction.
            some = window.any(axis=1)
            newest = len(recent) - 1 - np.argmax(window[:, ::-1], axis=1)
            ids[some, self._focus] = recent[newest[some]]
        for sequence, start, size in (
            (obs.cart_items, self._cart_start, self.max_cart),
            (obs.history_items, self._history_start, self.max_history),
        ):
            values = np.asarray(sequence, dtype=np.int64)
            window = _newest(_alone(values, kept_items), size)
            states, positions = np.nonzero(window)
            columns = np.cumsum(window, axis=1)[states, positions] - 1
            ids[states, start + columns] = values[positions]
        if obs.current_item is not None:
            current = int(obs.current_item)
            on_page = np.concatenate([[False], kept_items == current])
            ids[on_page, self._focus] = current
        return self._weigh(
            ids,
            pools,
            ages,
            np.full(n, obs.slot, dtype=np.int8),
            np.full(n, obs.page_depth, dtype=np.float32),
            index,
        )

    def _weigh(
        self,
        ids: np.ndarray,
        pools: np.ndarray,
        ages: np.ndarray,
        slots: np.ndarray,
        depths: np.ndarray,
        index: ItemIndex,
    ) -> EncodedStates:
        """Encoded states from their item ids (B, width) in pool order, pools
        and recent items' ages (B, max_recent)."""
        n, r = len(ids), self.max_recent
        rows = index.rows(ids)
        # Padding holds id -1 but is no item, even where -1 names a row (SlateQ's no-click row).
        rows[ids == -1] = -1
        weights = (rows >= 0).astype(np.float32)
        # Recency decay: an interaction recency_half_life_s old weighs half as much.
        weights[:, :r] *= np.exp2(-np.maximum(ages, 0.0) / self.half_life_s)
        # Normalise each (state, pool) bag to a weighted mean; keep its mass as a feature.
        bags = pools + N_POOLS * np.arange(n)[:, None]  # int64: the int8 pools are upcast
        masses = np.bincount(bags.ravel(), weights.ravel(), minlength=n * N_POOLS)
        denominators = masses[bags]
        weights = np.divide(
            weights, denominators, out=np.zeros_like(weights), where=denominators > 0
        )
        return EncodedStates(
            rows=rows.astype(np.int32),
            weights=weights.astype(np.float32, copy=False),
            pools=pools,
            masses=masses.reshape(n, N_POOLS).astype(np.float32),
            slots=slots,
            page_depths=depths,
        )


def _alone(values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(1 + len(items), len(values)): none of ``values``, then the positions of each item."""
    kept = np.zeros((len(items) + 1, len(values)), dtype=bool)
    np.equal(values[None, :], items[:, None], out=kept[1:])
    return kept


def _newest(kept: np.ndarray, size: int) -> np.ndarray:
    """The newest ``size`` kept positions of each row (positions are oldest first)."""
    newer = np.cumsum(kept[:, ::-1], axis=1)[:, ::-1]  # kept positions from here on
    return kept & (newer <= size)
