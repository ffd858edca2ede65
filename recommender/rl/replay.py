"""Bounded replay of encoded transitions, sampled uniformly.

Transitions are encoded once, on the way in, against the catalog the buffer is
bound to; item references are rows of that catalog. Each transition keeps its
next state's candidate set for the Double-DQN target, fixed-width: either the
candidates themselves, or (for sets nearly as large as the catalog, such as
"everything not in the cart") the catalog rows they leave out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from recommender.rl.config import DQNConfig
from recommender.rl.encoding import EncodedStates, ItemIndex, ObservationEncoder
from recommender.rl.types import ItemCatalog, Transition


class ReplayBatch(NamedTuple):
    """A sampled minibatch; item references are rows of the buffer's catalog."""

    states: EncodedStates
    actions: np.ndarray  # int64 (B,) row of the shown item
    rewards: np.ndarray  # float32 (B,)
    next_states: EncodedStates  # all padding where done
    dones: np.ndarray  # float32 (B,) 1.0 when the session ended
    propensities: np.ndarray  # float32 (B,) logging probability of the shown item
    next_candidates: np.ndarray  # int32 (B, W) rows, -1 padding
    next_exclude: np.ndarray  # bool (B,) True: the set is every catalog row except next_candidates


class ReplayBuffer:
    """Ring buffer of the ``capacity`` most recent transitions."""

    def __init__(self, config: DQNConfig, capacity: int | None = None) -> None:
        self.capacity = int(capacity if capacity is not None else config.replay_capacity)
        if self.capacity < 1:
            raise ValueError("replay capacity must be at least 1")
        self.encoder = ObservationEncoder(config)
        self.candidate_width = config.max_next_candidates
        self.catalog: ItemCatalog | None = None
        self._size = 0
        self._next = 0  # slot the next transition is written to
        c, w = self.capacity, self.candidate_width
        self._states = self.encoder.empty(c)
        self._next_states = self.encoder.empty(c)
        self._actions = np.zeros(c, dtype=np.int64)
        self._rewards = np.zeros(c, dtype=np.float32)
        self._dones = np.zeros(c, dtype=np.float32)
        self._propensities = np.zeros(c, dtype=np.float32)
        self._next_candidates = np.full((c, w), -1, dtype=np.int32)
        self._next_exclude = np.zeros(c, dtype=bool)
        self._added = 0  # transitions ever accepted (slot i holds the i-th until the ring wraps)
        self._sampling_cdf: np.ndarray | None = None  # None: uniform sampling

    def __len__(self) -> int:
        return self._size

    def add_many(self, transitions: Sequence[Transition], catalog: ItemCatalog) -> int:
        """Encode and store ``transitions``; returns how many were accepted (the newest
        ``capacity`` of them remain).

        Transitions whose shown item is not in ``catalog`` are skipped (Q(s, a)
        needs the item's features). Candidates missing from the catalog are
        dropped from their set. The first call binds the buffer to ``catalog``;
        later calls must pass a catalog with the same ids in the same order.
        """
        self._bind(catalog)
        index = ItemIndex.of(catalog)
        actions = index.rows([t.item for t in transitions])
        transitions = [t for t, row in zip(transitions, actions, strict=True) if row >= 0]
        actions = actions[actions >= 0]
        n = len(transitions)
        if not n:
            return 0
        states = self.encoder.encode([t.state for t in transitions], index)
        next_states = self.encoder.empty(n)
        live = [i for i, t in enumerate(transitions) if not t.done and t.next_state is not None]
        if live:
            encoded = self.encoder.encode([transitions[i].next_state for i in live], index)
            for target, source in zip(next_states, encoded, strict=True):
                target[live] = source
        candidates = np.full((n, self.candidate_width), -1, dtype=np.int32)
        exclude = np.zeros(n, dtype=bool)
        for i in live:  # a terminal transition has no next candidates: nothing to bootstrap
            exclude[i] = self._encode_candidates(transitions[i], index, candidates[i])

        # Keep only the newest `capacity` if more arrive at once; write them round the ring.
        keep = slice(max(0, n - self.capacity), n)
        slots = (self._next + np.arange(keep.stop - keep.start)) % self.capacity
        for target, source in zip(self._states, states, strict=True):
            target[slots] = source[keep]
        for target, source in zip(self._next_states, next_states, strict=True):
            target[slots] = source[keep]
        self._actions[slots] = actions[keep]
        self._rewards[slots] = [t.reward for t in transitions[keep]]
        self._dones[slots] = [float(t.done or t.next_state is None) for t in transitions[keep]]
        self._propensities[slots] = [t.propensity for t in transitions[keep]]
        self._next_candidates[slots] = candidates[keep]
        self._next_exclude[slots] = exclude[keep]
        self._next = int((slots[-1] + 1) % self.capacity)
        self._size = min(self.capacity, self._size + len(slots))
        self._added += n
        self._sampling_cdf = None  # weights set before no longer match the stored rows
        return n

    def set_sampling_weights(self, weights: np.ndarray | None) -> None:
        """Sample the stored transitions with probability proportional to
        ``weights`` (one non-negative weight per stored transition, in the order
        they were added), or uniformly again with None. Resampling by importance
        weights gives, in expectation, the gradient of the importance-weighted
        loss (``recommender.rl.offline``). Adding transitions resets to uniform.

        Only before the ring wraps (at most ``capacity`` transitions added), so
        that the order of addition is the order of the slots.
        """
        if weights is None:
            self._sampling_cdf = None
            return
        weights = np.asarray(weights, dtype=np.float64)
        if self._added > self.capacity:
            raise ValueError("sampling weights need a buffer that has not wrapped around")
        if weights.shape != (self._size,):
            raise ValueError(f"need one weight per stored transition ({self._size})")
        if not np.isfinite(weights).all() or np.any(weights < 0) or not weights.sum() > 0:
            raise ValueError("sampling weights must be finite, non-negative and not all zero")
        self._sampling_cdf = np.cumsum(weights)

    def _bind(self, catalog: ItemCatalog) -> None:
        if self.catalog is None:
            self.catalog = catalog
        elif catalog is not self.catalog and not np.array_equal(catalog.ids, self.catalog.ids):
            raise ValueError(
                "this replay buffer's rows refer to another catalog; build a new buffer "
                "for a changed catalog"
            )

    def _encode_candidates(self, transition: Transition, index: ItemIndex, out: np.ndarray) -> bool:
        """Write one next-candidate set into ``out``; returns True when what was
        written is the complement (the rows the set leaves out).

        Without an explicit set (``next_candidates=None``) the next request could
        show every catalog item except the product on its page, its cart's items
        (the store's own eligibility rule, read from the next state) and the
        items it could not show besides (``next_unavailable``: sold out).
        """
        candidates = transition.next_candidates
        if candidates is None:
            following = transition.next_state
            on_page = () if following.current_item is None else (following.current_item,)
            left_out = np.unique(
                index.rows([*following.cart_items, *on_page, *transition.next_unavailable])
            )
            # Beyond the stored width some stay in the set, which only widens the max.
            left_out = left_out[left_out >= 0][: self.candidate_width]
            out[: len(left_out)] = left_out
            return True
        rows = np.unique(index.rows(candidates))
        rows = rows[rows >= 0]
        if len(rows) <= self.candidate_width:
            out[: len(rows)] = rows
            return False
        left_out = np.setdiff1d(np.arange(index.size), rows, assume_unique=True)
        if len(left_out) > self.candidate_width:
            raise ValueError(
                f"a next-candidate set of {len(rows)} items in a catalog of {index.size} "
                f"fits neither itself nor its complement in max_next_candidates="
                f"{self.candidate_width}; raise DQNConfig.max_next_candidates"
            )
        out[: len(left_out)] = left_out
        return True

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch:
        """``batch_size`` transitions drawn with replacement: uniformly, or by the
        weights of ``set_sampling_weights``."""
        if not self._size:
            raise ValueError("cannot sample from an empty replay buffer")
        cdf = self._sampling_cdf
        if cdf is None:
            return self.batch(rng.integers(0, self._size, size=batch_size))
        index = np.searchsorted(cdf, rng.random(batch_size) * cdf[-1], side="right")
        return self.batch(np.minimum(index, self._size - 1))

    def batch(self, index: np.ndarray) -> ReplayBatch:
        """The stored transitions at positions ``index`` (each in [0, len(self)))."""
        return ReplayBatch(
            states=self._states.take(index),
            actions=self._actions[index],
            rewards=self._rewards[index],
            next_states=self._next_states.take(index),
            dones=self._dones[index],
            propensities=self._propensities[index],
            next_candidates=self._next_candidates[index],
            next_exclude=self._next_exclude[index],
        )
