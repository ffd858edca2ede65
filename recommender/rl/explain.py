"""Why a carousel item is there: the session item that raised its score most.

``reasons`` scores the shown items once with the whole state and once with each
of the session's items left out (recent interactions, cart, signed-in history,
the page's product); an item's reason is the left-out item whose absence lowers
its score most. It asks nothing of the model but item scores, so it holds for
any network the agents use; a cold session, or an item no session item raised,
has no reason.

The states are handed to the scorer as one ``LeaveOneOut`` batch: a sequence
of observations to any scorer, which the agents' encoder encodes at about the
cost of the one state (``ObservationEncoder.encode``) rather than one
observation at a time, with the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, overload

import numpy as np

from recommender.rl.types import Observation

ItemScorer = Callable[[Sequence[Observation], np.ndarray], np.ndarray]
"""(observations, item ids (C,)) -> (B, C) scores of those items in each state."""


class Reason(NamedTuple):
    """The session item (``None``: no reason) and how much it raised the score."""

    item: int | None
    contribution: float


def session_items(obs: Observation) -> list[int]:
    """The distinct items a state holds, newest interaction first, then cart,
    history and the page's product."""
    ordered = [*reversed(obs.recent_items), *reversed(obs.cart_items), *reversed(obs.history_items)]
    if obs.current_item is not None:
        ordered.append(obs.current_item)
    return list(dict.fromkeys(int(i) for i in ordered))


def without(obs: Observation, item: int) -> Observation:
    """``obs`` as if the shopper had never touched ``item``."""
    keep = [j for j, i in enumerate(obs.recent_items) if int(i) != item]
    return Observation(
        slot=obs.slot,
        current_item=None if obs.current_item == item else obs.current_item,
        recent_items=tuple(obs.recent_items[j] for j in keep),
        recent_events=tuple(obs.recent_events[j] for j in keep),
        recent_ages=tuple(obs.recent_ages[j] for j in keep),
        cart_items=tuple(i for i in obs.cart_items if int(i) != item),
        history_items=tuple(i for i in obs.history_items if int(i) != item),
        page_depth=obs.page_depth,
    )


class LeaveOneOut(Sequence[Observation]):
    """``state`` followed by ``without(state, item)`` for each of ``items``."""

    def __init__(self, state: Observation, items: Sequence[int]) -> None:
        self.state = state
        self.items = [int(i) for i in items]

    def __len__(self) -> int:
        return 1 + len(self.items)

    @overload
    def __getitem__(self, index: int) -> Observation: ...

    @overload
    def __getitem__(self, index: slice) -> list[Observation]: ...

    def __getitem__(self, index: int | slice) -> Observation | list[Observation]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.state if index == 0 else without(self.state, self.items[index - 1])


def reasons(
    score: ItemScorer,
    obs: Observation,
    item_ids: Sequence[int] | np.ndarray,
    min_contribution: float = 0.0,
) -> list[Reason]:
    """One ``Reason`` per item of ``item_ids``: the session item whose removal
    lowers that item's score most, if it lowers it by more than
    ``min_contribution``."""
    items = np.asarray(item_ids, dtype=np.int64)
    anchors = session_items(obs)
    if not len(items) or not anchors:
        return [Reason(None, 0.0) for _ in items]
    scores = score(LeaveOneOut(obs, anchors), items)
    contributions = scores[0][None, :] - scores[1:]  # (anchors, items)
    best = contributions.argmax(axis=0)
    found = []
    for column, row in enumerate(best):
        value = float(contributions[row, column])
        found.append(Reason(anchors[row], value) if value > min_contribution else Reason(None, 0.0))
    return found
