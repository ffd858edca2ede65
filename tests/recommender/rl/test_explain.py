"""Carousel reasons name the session item that raised a shown item's score."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.rl.agent import DQNAgent
from recommender.rl.config import DQNConfig
from recommender.rl.encoding import ObservationEncoder
from recommender.rl.explain import (
    EachAlone,
    Reason,
    alone,
    reasons,
    reference_items,
    relative,
    session_items,
)
from recommender.rl.slateq import SlateQAgent
from recommender.rl.types import EventType, ItemCatalog, Observation, Slot
from tests.recommender.rl.factories import item_catalog

pytestmark = pytest.mark.usefixtures("one_torch_thread")

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


def test_a_session_item_is_a_reason_even_when_others_like_it_are_there():
    # Three tents and a lamp: each tent alone raises the camping stove as the
    # three together do, so leaving one out would change nothing; alone, the
    # newest tent gets the credit.
    lift = {1: {10: 1.0}, 2: {10: 1.0}, 3: {10: 1.0}, 4: {20: 0.5}}

    def camping(observations, items):
        out = np.ones((len(observations), len(items)))
        for b, obs in enumerate(observations):
            # The camping signal is "any tent in the session", not how many.
            tents = [a for a in session_items(obs) if a in (1, 2, 3)]
            for c, item in enumerate(items):
                out[b, c] += max((lift[a].get(int(item), 0.0) for a in tents), default=0.0)
                if 4 in session_items(obs):
                    out[b, c] += lift[4].get(int(item), 0.0)
        return out

    obs = Observation(
        slot=Slot.HOME,
        recent_items=(1, 2, 3, 4),
        recent_events=(VIEW,) * 4,
        recent_ages=(40.0, 30.0, 20.0, 10.0),
    )
    found = reasons(camping, obs, [10, 20])
    assert found == [Reason(3, 1.0), Reason(4, 0.5)]


def test_alone_keeps_every_trace_of_one_item_and_nothing_else():
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
    only = alone(obs, 4)
    assert only.current_item == 4
    assert only.recent_items == (4, 4) and only.recent_events == (VIEW, CLICK)
    assert only.recent_ages == (30.0, 10.0)
    assert only.cart_items == (4,) and only.history_items == (4,)
    assert (only.slot, only.page_depth) == (Slot.PRODUCT, 3)
    other = alone(obs, 6)
    assert other.current_item is None and other.recent_items == () and other.cart_items == (6,)
    empty = alone(obs, None)
    assert session_items(empty) == [] and empty.page_depth == 3


# Windows shorter than the sessions below, so that an item's older occurrences
# fall outside the full state's window but inside its own.
SMALL = DQNConfig(
    id_dim=4,
    category_dim=4,
    item_hidden=16,
    embed_dim=8,
    state_hidden=16,
    max_recent=5,
    max_cart=2,
    max_history=3,
)
N_ITEMS = 30


def _catalog() -> ItemCatalog:
    # Ids 1..N_ITEMS - 3: the sessions below also hold ids the catalog does not know.
    return item_catalog(N_ITEMS - 3, n_categories=4, n_attributes=3, seed=7)


def _sessions(n: int, seed: int = 0) -> list[Observation]:
    """Busy sessions over few items: repeats, a page product also in the
    recent items or cart, sequences longer than SMALL's windows."""
    rng = np.random.default_rng(seed)
    sessions = []
    for _ in range(n):
        recent = int(rng.integers(0, 9))

        def some(size: int) -> tuple[int, ...]:
            return tuple(int(i) for i in rng.integers(1, N_ITEMS + 1, size))

        sessions.append(
            Observation(
                slot=Slot(int(rng.integers(len(Slot)))),
                current_item=int(rng.integers(1, N_ITEMS + 1)) if rng.random() < 0.6 else None,
                recent_items=some(recent),
                recent_events=tuple(int(e) for e in rng.integers(0, len(EventType), recent)),
                recent_ages=tuple(float(a) for a in np.sort(rng.exponential(900.0, recent))[::-1]),
                cart_items=some(int(rng.integers(0, 5))),
                history_items=some(int(rng.integers(0, 6))),
                page_depth=int(rng.integers(0, 9)),
            )
        )
    return sessions


def _reference_reasons(score, obs, items, min_contribution=0.0):
    """Each session item alone in turn, the states built as observations."""
    anchors = session_items(obs)
    if not anchors:
        return [Reason(None, 0.0)] * len(items)
    states = [alone(obs, None), *(alone(obs, a) for a in anchors)]
    scores = score(states, np.asarray(items))
    found = []
    for column in range(len(items)):
        raised = scores[1:, column] - scores[0, column]
        row = int(np.argmax(raised))
        value = float(raised[row])
        found.append(Reason(anchors[row], value) if value > min_contribution else Reason(None, 0.0))
    return found


def test_each_alone_states_are_the_empty_state_then_each_item_alone():
    obs = _sessions(1, seed=3)[0]
    anchors = session_items(obs)
    batch = EachAlone(obs, anchors)
    expected = [alone(obs, None), *(alone(obs, a) for a in anchors)]
    assert len(batch) == len(expected)
    assert list(batch) == expected
    assert batch[-1] == expected[-1] and batch[1:3] == expected[1:3]
    with pytest.raises(IndexError):
        batch[len(expected)]


def test_each_alone_batches_encode_as_their_observations_do():
    encoder = ObservationEncoder(SMALL)
    index = DQNAgent(SMALL, _catalog()).index
    for obs in _sessions(200):
        # Session items, and an item the session never held.
        kept = [*session_items(obs), N_ITEMS + 5]
        fast = encoder.encode(EachAlone(obs, kept), index)
        slow = encoder.encode([alone(obs, None), *(alone(obs, a) for a in kept)], index)
        for name, got, want in zip(fast._fields, fast, slow, strict=True):
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got, want, err_msg=f"{name} of {obs}")


def test_each_alone_batches_reject_what_observations_are_rejected_for():
    encoder = ObservationEncoder(SMALL)
    index = DQNAgent(SMALL, _catalog()).index
    misaligned = Observation(
        slot=Slot.HOME, recent_items=(1, 2), recent_events=(0,), recent_ages=(0.0, 1.0)
    )
    with pytest.raises(ValueError, match="equal lengths"):
        encoder.encode(EachAlone(misaligned, [1]), index)
    # An unknown event type outside the full state's window enters item 1's own.
    unknown_event = Observation(
        slot=Slot.HOME,
        recent_items=(1, 2, 3, 4, 5, 2),
        recent_events=(9, 0, 0, 0, 0, 0),
        recent_ages=(6.0, 5.0, 4.0, 3.0, 2.0, 1.0),
    )
    # Outside every state's window: accepted, as the observations are.
    encoder.encode([alone(unknown_event, None), alone(unknown_event, 2)], index)
    encoder.encode(EachAlone(unknown_event, [2]), index)
    with pytest.raises(ValueError, match="EventType"):
        encoder.encode([alone(unknown_event, 1)], index)
    with pytest.raises(ValueError, match="EventType"):
        encoder.encode(EachAlone(unknown_event, [2, 1]), index)


def test_an_agents_reasons_are_those_of_each_session_item_alone():
    agent = DQNAgent(SMALL, _catalog())
    items = agent.catalog.ids[::3]
    explained = 0
    for obs in _sessions(40, seed=1):
        found = reasons(agent.q_values_batch, obs, items, min_contribution=0.001)
        assert found == _reference_reasons(agent.q_values_batch, obs, items, 0.001)
        explained += sum(r.item is not None for r in found)
    assert explained > 40  # the sessions do raise scores: the comparison has reasons to compare


@pytest.mark.parametrize("kind", [DQNAgent, SlateQAgent])
def test_a_served_slate_is_explained_as_the_reference_explains_it(kind):
    # The slate's own pass of the model (act_explained) against reasons() with
    # the agent's scores relative to the reference items: same slate, same reasons.
    agent = kind(SMALL, _catalog())
    ids = agent.catalog.ids
    explained = 0
    for b, obs in enumerate(_sessions(60, seed=2)):
        candidates = np.setdiff1d(ids, [*obs.cart_items, obs.current_item or 0])
        reference = reference_items(candidates, 8)
        served = agent.act_explained(
            obs, candidates, 6, np.random.default_rng(b), epsilon=0.3, reference_ids=reference
        )
        slate = agent.act(obs, candidates, 6, np.random.default_rng(b), epsilon=0.3)
        np.testing.assert_array_equal(served.slate.items, slate.items)
        np.testing.assert_array_equal(served.slate.propensities, slate.propensities)
        found = served.reasons(0.001)
        expected = reasons(
            relative(agent.q_values_batch, reference), obs, slate.items, min_contribution=0.001
        )
        assert [r.item for r in found] == [r.item for r in expected], obs
        np.testing.assert_allclose(
            [r.contribution for r in found], [r.contribution for r in expected], atol=1e-5
        )
        explained += sum(r.item is not None for r in found)
    assert explained > 40  # the sessions do raise scores: the comparison has reasons to compare


def test_a_cold_session_served_has_no_reasons():
    agent = DQNAgent(SMALL, _catalog())
    served = agent.act_explained(
        Observation(slot=Slot.HOME),
        agent.catalog.ids,
        4,
        np.random.default_rng(0),
        reference_ids=agent.catalog.ids,
    )
    assert len(served.slate.items) == 4
    assert served.reasons() == [Reason(None, 0.0)] * 4
