"""Why a carousel item is there: the session item that raises its score most.

``reasons`` scores the shown items in the session's state reduced to nothing
(no interaction, cart, history or page product: the baseline) and reduced to
each of its items in turn; an item's reason is the session item that, alone,
raises its score most over the baseline. Alone rather than left out: a session
of three tents pools to the same "camping" context with any one of them left
out, so leaving one out would credit none of them for the camping gear they
brought. It asks nothing of the model but item scores, so it holds for any
network the agents use; a cold session, or an item no session item raised,
has no reason.

The states are handed to the scorer as one ``EachAlone`` batch: a sequence of
observations to any scorer, which the agents' encoder encodes from the state's
arrays at once (``ObservationEncoder.encode``) rather than one observation at
a time, with the same result. An agent that serves a slate can also encode
them with the slate's own state and run the state tower once for all
(``DQNAgent.act_explained``); ``reasons`` is the reference that path keeps to.

A store judges a reason against a yardstick (``relative``): what the session
item does to the shown item beyond what it does to the other candidates
(``reference_items``), since raising every candidate alike changes no ranking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, overload

import numpy as np

from recommender.rl.types import Observation, Slate

ItemScorer = Callable[[Sequence[Observation], np.ndarray], np.ndarray]
"""(observations, item ids (C,)) -> (B, C) scores of those items in each state."""


class Reason(NamedTuple):
    """The session item (``None``: no reason) and how much it raised the score."""

    item: int | None
    contribution: float


class ExplainedSlate(NamedTuple):
    """A slate and the means to explain it: ``reasons(min_contribution)``, one
    ``Reason`` per slate item (what ``reasons`` would find), computed when
    called, so that a failure to explain can spare the slate."""

    slate: Slate
    reasons: Callable[..., list[Reason]]


def session_items(obs: Observation) -> list[int]:
    """The distinct items a state holds, newest interaction first, then cart,
    history and the page's product."""
    ordered = [*reversed(obs.recent_items), *reversed(obs.cart_items), *reversed(obs.history_items)]
    if obs.current_item is not None:
        ordered.append(obs.current_item)
    return list(dict.fromkeys(int(i) for i in ordered))


def alone(obs: Observation, item: int | None) -> Observation:
    """``obs`` as if the shopper had touched nothing but ``item`` (``None``:
    nothing at all), on the same page at the same depth."""
    keep = [j for j, i in enumerate(obs.recent_items) if int(i) == item]
    return Observation(
        slot=obs.slot,
        current_item=obs.current_item if item is not None and obs.current_item == item else None,
        recent_items=tuple(obs.recent_items[j] for j in keep),
        recent_events=tuple(obs.recent_events[j] for j in keep),
        recent_ages=tuple(obs.recent_ages[j] for j in keep),
        cart_items=tuple(i for i in obs.cart_items if int(i) == item),
        history_items=tuple(i for i in obs.history_items if int(i) == item),
        page_depth=obs.page_depth,
    )


class EachAlone(Sequence[Observation]):
    """``alone(state, None)``, then ``alone(state, item)`` for each of ``items``."""

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
        return alone(self.state, None if index == 0 else self.items[index - 1])


def reasons(
    score: ItemScorer,
    obs: Observation,
    item_ids: Sequence[int] | np.ndarray,
    min_contribution: float = 0.0,
) -> list[Reason]:
    """One ``Reason`` per item of ``item_ids``: the session item that, alone,
    raises that item's score most over the empty state, if it raises it by
    more than ``min_contribution``."""
    items = np.asarray(item_ids, dtype=np.int64)
    anchors = session_items(obs)
    if not len(items) or not anchors:
        return [Reason(None, 0.0) for _ in items]
    return pick_reasons(anchors, score(EachAlone(obs, anchors), items), min_contribution)


def pick_reasons(
    anchors: Sequence[int], scores: np.ndarray, min_contribution: float = 0.0
) -> list[Reason]:
    """``reasons`` from the scores (1 + A, C) of C items in ``EachAlone(obs,
    anchors)``: per item, the anchor whose state alone raised it most over the
    empty state, if by more than ``min_contribution``."""
    contributions = scores[1:] - scores[0][None, :]  # (anchors, items)
    best = contributions.argmax(axis=0)
    found = []
    for column, row in enumerate(best):
        value = float(contributions[row, column])
        found.append(Reason(anchors[row], value) if value > min_contribution else Reason(None, 0.0))
    return found


def reference_items(candidates: np.ndarray, size: int) -> np.ndarray:
    """Up to ``size`` of ``candidates``, evenly spread over them: the items
    whose mean score is a reason's yardstick (``relative``)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    n = min(len(candidates), size)
    return candidates[np.linspace(0, len(candidates) - 1, n).astype(np.int64)]


def relative(score: ItemScorer, reference: np.ndarray) -> ItemScorer:
    """``score`` less each state's mean score over ``reference`` items: a session
    item that raises or lowers every candidate alike changes no ranking, so it
    explains none of them; only what it does to an item beyond the rest is its
    contribution."""
    reference = np.asarray(reference, dtype=np.int64)

    def scored(observations: Sequence[Observation], item_ids: np.ndarray) -> np.ndarray:
        items = np.asarray(item_ids, dtype=np.int64)
        q = score(observations, np.concatenate([items, reference]))
        return less_reference(q, len(items))

    return scored


def less_reference(q: np.ndarray, n_items: int) -> np.ndarray:
    """(B, C) scores of the first ``n_items`` columns of ``q`` less each row's
    mean over the rest (the reference items')."""
    return q[:, :n_items] - q[:, n_items:].mean(axis=1, keepdims=True)
