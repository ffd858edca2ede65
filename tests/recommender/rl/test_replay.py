from functools import partial

import numpy as np
import pytest

from recommender.rl.config import DQNConfig
from recommender.rl.replay import ReplayBuffer
from recommender.rl.types import Observation, Slot, Transition
from tests.recommender.rl.factories import item_catalog

CONFIG = DQNConfig(max_recent=3, max_cart=2, max_history=2, max_next_candidates=4)
# Ids from 100, the items the transitions below name.
catalog = partial(item_catalog, first_id=100, max_price=50)


def transition(
    reward: float = 0.0, item: int = 100, next_candidates=None, done=False
) -> Transition:
    state = Observation(slot=Slot.HOME, cart_items=(101,))
    return Transition(
        state=state,
        item=item,
        reward=reward,
        next_state=None if done else Observation(slot=Slot.CART, cart_items=(101, item)),
        done=done,
        propensity=0.25,
        next_candidates=next_candidates,
    )


def test_ring_buffer_is_bounded_and_overwrites_the_oldest():
    replay = ReplayBuffer(CONFIG, capacity=3)
    items = catalog(10)
    replay.add_many([transition(reward=r) for r in (1, 2)], items)
    replay.add_many([transition(reward=r) for r in (3, 4, 5)], items)
    assert len(replay) == 3
    stored = set(replay.sample(200, np.random.default_rng(0)).rewards.tolist())
    assert stored == {3.0, 4.0, 5.0}
    replay.add_many([transition(reward=r) for r in range(10, 20)], items)  # more than fit at once
    assert set(replay.sample(200, np.random.default_rng(0)).rewards.tolist()) == {17.0, 18.0, 19.0}


def test_sample_returns_encoded_arrays_of_the_batch_size():
    replay = ReplayBuffer(CONFIG)
    replay.add_many([transition(reward=1.0, item=103)], catalog(10))
    batch = replay.sample(5, np.random.default_rng(0))
    assert batch.actions.tolist() == [3] * 5  # catalog row of item 103
    assert batch.states.rows.shape == (5, 3 + 2 + 2 + 1)  # recent, cart, history, focus
    assert batch.propensities.tolist() == [0.25] * 5
    assert batch.dones.tolist() == [0.0] * 5


def test_next_candidates_are_stored_as_the_set_or_its_complement():
    replay = ReplayBuffer(CONFIG)
    items = catalog(10)
    replay.add_many(
        [
            transition(reward=0, next_candidates=(105, 102, 999)),  # 999 is not in the catalog
            transition(reward=1, next_candidates=tuple(range(100, 108))),  # 8 > 4: the 2 left out
            # No set: every item the next request could show, so all but its cart (101, 100).
            transition(reward=2, next_candidates=None),
            transition(reward=3, done=True),
        ],
        items,
    )
    batch = replay.sample(64, np.random.default_rng(1))
    by_reward = {int(r): i for i, r in enumerate(batch.rewards)}
    assert set(by_reward) == {0, 1, 2, 3}

    def stored(reward):
        i = by_reward[reward]
        rows = batch.next_candidates[i]
        return sorted(rows[rows >= 0].tolist()), bool(batch.next_exclude[i])

    assert stored(0) == ([2, 5], False)
    assert stored(1) == ([8, 9], True)
    assert stored(2) == ([0, 1], True)
    assert stored(3) == ([], False)
    assert batch.dones[by_reward[3]] == 1.0
    assert (batch.next_states.weights[by_reward[3]] == 0).all()


def test_items_the_next_request_could_not_show_are_left_out_of_its_set():
    replay = ReplayBuffer(CONFIG)
    sold_out = transition(reward=4)._replace(next_unavailable=(107, 999))  # 999: not in the catalog
    replay.add_many([sold_out], catalog(10))
    batch = replay.sample(1, np.random.default_rng(0))
    rows = batch.next_candidates[0]
    # All but its cart (101, 100) and the sold-out 107: the max never looks at 107.
    assert sorted(rows[rows >= 0].tolist()) == [0, 1, 7]
    assert bool(batch.next_exclude[0])


def test_sets_fitting_neither_way_are_rejected():
    with pytest.raises(ValueError, match="max_next_candidates"):
        ReplayBuffer(CONFIG).add_many(
            [transition(next_candidates=tuple(range(100, 106)))], catalog(12)
        )


def test_transitions_on_items_outside_the_catalog_are_skipped():
    replay = ReplayBuffer(CONFIG)
    assert replay.add_many([transition(item=999), transition(item=100)], catalog(10)) == 1
    assert len(replay) == 1


def test_a_buffer_stays_bound_to_its_catalog():
    replay = ReplayBuffer(CONFIG)
    replay.add_many([transition()], catalog(10))
    replay.add_many([transition()], catalog(10))  # same ids, another object: fine
    with pytest.raises(ValueError, match="another catalog"):
        replay.add_many([transition()], catalog(11))


def test_sampling_weights_draw_transitions_in_proportion():
    replay = ReplayBuffer(CONFIG, capacity=4)
    replay.add_many([transition(reward=r) for r in (0, 1, 2)], catalog(10))
    replay.set_sampling_weights(np.array([0.0, 1.0, 3.0]))
    rewards = replay.sample(20_000, np.random.default_rng(1)).rewards
    assert 0.0 not in rewards
    assert np.mean(rewards == 2.0) == pytest.approx(0.75, abs=0.02)
    replay.set_sampling_weights(None)
    assert 0.0 in replay.sample(200, np.random.default_rng(1)).rewards
    replay.set_sampling_weights(np.array([1.0, 0.0, 0.0]))
    replay.add_many([transition(reward=5)], catalog(10))  # new rows: back to uniform
    assert set(replay.sample(400, np.random.default_rng(1)).rewards.tolist()) == {0, 1, 2, 5}


def test_sampling_weights_must_match_an_unwrapped_buffer():
    replay = ReplayBuffer(CONFIG, capacity=2)
    replay.add_many([transition(), transition()], catalog(10))
    with pytest.raises(ValueError, match="one weight per stored transition"):
        replay.set_sampling_weights(np.ones(3))
    with pytest.raises(ValueError, match="not all zero"):
        replay.set_sampling_weights(np.zeros(2))
    replay.add_many([transition()], catalog(10))  # the ring wraps
    with pytest.raises(ValueError, match="wrapped"):
        replay.set_sampling_weights(np.ones(2))
