import numpy as np
import pytest
import torch

from recommender.rl.agent import DQNAgent, greedy_in_catalog, greedy_next
from recommender.rl.config import DQNConfig
from recommender.rl.core import td_target
from recommender.rl.replay import ReplayBuffer
from recommender.rl.simulator import make_catalog
from recommender.rl.types import EventType, Observation, Slot, Transition
from tests.recommender.rl.factories import SMALL, item_catalog, observation, random_transitions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_greedy_in_catalog_matches_a_dense_mask_for_both_kinds_of_sets():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(6, 9)).astype(np.float32)
    candidates = np.array(
        [
            [1, 4, -1],  # the set leaves out items 1 and 4
            [2, 7, 5],  # the set is items 2, 7, 5
            [-1, -1, -1],  # an empty set (a finished session)
            [-1, -1, -1],  # leaves out nothing: every item
            [3, -1, -1],  # the set is item 3 alone
            [0, 1, 2],  # leaves out three items
        ]
    )
    exclude = np.array([True, False, False, True, False, True])
    mask = np.zeros(scores.shape, dtype=bool)
    for row, (listed, leaves_out) in enumerate(zip(candidates, exclude, strict=True)):
        mask[row] = leaves_out
        mask[row, listed[listed >= 0]] = not leaves_out
    expected_best, expected_has = greedy_next(torch.from_numpy(scores), torch.from_numpy(mask))

    best, has_next = greedy_in_catalog(scores.copy(), candidates, exclude)

    assert has_next.tolist() == expected_has.tolist() == [True, True, False, True, True, True]
    has = expected_has.numpy()
    assert best.numpy()[has].tolist() == expected_best.numpy()[has].tolist()
    assert best[4] == 3


def test_double_dqn_target_selects_with_online_and_evaluates_with_target():
    online = torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0], [0.0, 0.0, 0.0], [5.0, 1.0, 0.0]])
    target = torch.tensor(
        [[10.0, 20.0, 30.0], [10.0, 20.0, 30.0], [7.0, 7.0, 7.0], [4.0, 8.0, 9.0]]
    )
    mask = torch.tensor(
        [[True, True, True], [True, False, True], [False, False, False], [True, True, True]]
    )
    best, has_next = greedy_next(online, mask)
    assert best[:2].tolist() == [1, 2]  # index 1 is masked out in row 1
    assert has_next.tolist() == [True, True, False, True]
    next_values = target.gather(1, best.unsqueeze(1)).squeeze(1)
    y = td_target(
        rewards=torch.tensor([1.0, 1.0, 1.0, 2.0]),
        dones=torch.tensor([0.0, 0.0, 0.0, 1.0]),
        gamma=0.5,
        next_values=next_values,
        has_next=has_next,
    )
    # 1 + 0.5·20; 1 + 0.5·30; no candidates: 1; done: 2.
    assert y.tolist() == [11.0, 16.0, 1.0, 2.0]


def test_agent_td_targets_match_a_hand_computed_transition():
    items = item_catalog(12, seed=12)
    config = DQNConfig(**{**SMALL.to_dict(), "gamma": 0.8, "target_update_interval": 0})
    agent = DQNAgent(config, items)
    rng = np.random.default_rng(0)
    warmup = ReplayBuffer(config)
    warmup.add_many(random_transitions(items, 200, rng), items)
    agent.train_steps(warmup, 30, rng)  # online and target now differ
    next_state = observation(Slot.PRODUCT, current_item=4, cart_items=(2,), page_depth=2)
    candidates = np.array([3, 5, 7, 11])
    replay = ReplayBuffer(config)
    replay.add_many(
        [Transition(observation(), 6, 0.5, next_state, False, 0.2, tuple(candidates.tolist()))],
        items,
    )
    online_q = agent.q_values(next_state, candidates, network="online")
    target_q = agent.q_values(next_state, candidates, network="target")
    assert not np.allclose(online_q, target_q)
    expected = 0.5 + 0.8 * target_q[np.argmax(online_q)]
    y = agent.td_targets(replay.sample(1, rng))
    assert y.item() == pytest.approx(expected, abs=1e-5)


def test_targets_over_every_catalog_item_except_some_match_hand_computation():
    items = item_catalog(12, seed=12)
    config = DQNConfig(**{**SMALL.to_dict(), "target_update_interval": 0, "max_next_candidates": 3})
    agent = DQNAgent(config, items)
    rng = np.random.default_rng(2)
    warmup = ReplayBuffer(config)
    warmup.add_many(random_transitions(items, 100, rng, n_candidates=3), items)
    agent.train_steps(warmup, 20, rng)
    next_state = observation(Slot.CART, cart_items=(1, 2))
    eligible = np.array([i for i in items.ids if i not in (1, 2)])  # 10 of 12: stored as complement
    replay = ReplayBuffer(config)
    replay.add_many(
        [Transition(observation(), 6, 1.0, next_state, False, 1.0, tuple(eligible))], items
    )
    batch = replay.sample(1, rng)
    assert batch.next_exclude[0]
    online_q = agent.q_values(next_state, eligible)
    target_q = agent.q_values(next_state, eligible, network="target")
    expected = 1.0 + config.gamma * target_q[np.argmax(online_q)]
    assert agent.td_targets(batch).item() == pytest.approx(expected, abs=1e-5)
    # Without a set, the next request's eligible items are all but its page and cart:
    # the same target, and never the value of an item the next carousel cannot show.
    implicit = ReplayBuffer(config)
    implicit.add_many([Transition(observation(), 6, 1.0, next_state, False, 1.0, None)], items)
    assert agent.td_targets(implicit.sample(1, rng)).item() == pytest.approx(expected, abs=1e-5)


def test_training_learns_long_term_value_that_a_myopic_agent_forgoes():
    # From the home page, item 1 earns nothing now but leads to a product page where
    # item 3 earns 1; item 2 earns 0.5 and ends the session.
    items = item_catalog(6, seed=6)
    home = observation(Slot.HOME)
    product = observation(Slot.PRODUCT, current_item=1, page_depth=1)
    transitions = [
        Transition(home, 1, 0.0, product, False, 0.5, (3, 4)),
        Transition(home, 2, 0.5, None, True, 0.5),
        Transition(product, 3, 1.0, None, True, 0.5),
        Transition(product, 4, 0.0, None, True, 0.5),
    ] * 8
    chosen = {}
    for gamma in (0.9, 0.0):
        config = DQNConfig(
            **{
                **SMALL.to_dict(),
                "gamma": gamma,
                "lr": 3e-3,
                "id_dropout": 0.0,
                "target_update_interval": 25,
            }
        )
        agent = DQNAgent(config, items)
        replay = ReplayBuffer(config)
        replay.add_many(transitions, items)
        stats = agent.train_steps(replay, 250, np.random.default_rng(3))
        assert np.isfinite(stats.loss) and stats.steps == 250 and agent.step == 250
        q = agent.q_values(home, np.array([1, 2]))
        chosen[gamma] = int(
            agent.act(home, np.array([1, 2]), 1, np.random.default_rng(0), epsilon=0).items[0]
        )
        if gamma:
            assert q == pytest.approx([0.9, 0.5], abs=0.15)
    assert chosen == {0.9: 1, 0.0: 2}


def test_act_builds_a_slate_from_known_distinct_candidates():
    items = item_catalog(12, seed=12)
    agent = DQNAgent(SMALL, items)
    rng = np.random.default_rng(4)
    slate = agent.act(observation(), np.array([3, 999, 5, 7]), 8, rng, epsilon=0.0)
    assert sorted(slate.items.tolist()) == [3, 5, 7]  # 999 is unknown to the catalog
    assert slate.propensities.tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(slate.scores, agent.q_values(observation(), slate.items), rtol=1e-6)
    explored = agent.act(
        observation(), items.ids, 4, rng
    )  # epsilon from the schedule: 1.0 at step 0
    np.testing.assert_allclose(explored.propensities, 1 / np.arange(12, 8, -1))
    assert agent.act(observation(), np.array([], dtype=np.int64), 4, rng).items.size == 0
    with pytest.raises(ValueError, match="distinct"):
        agent.act(observation(), np.array([3, 3]), 2, rng)
    with pytest.raises(ValueError, match="not in the catalog"):
        agent.q_values(observation(), np.array([3, 999]))


def test_q_components_add_up_to_q_and_name_what_varies_across_items():
    catalog = make_catalog(40, 4, 3, seed=0)
    agent = DQNAgent(DQNConfig(seed=3), catalog)
    observations = [
        Observation(slot=Slot.HOME),
        Observation(
            slot=Slot.PRODUCT,
            current_item=int(catalog.ids[5]),
            recent_items=(int(catalog.ids[1]),),
            recent_events=(int(EventType.VIEW),),
            recent_ages=(20.0,),
        ),
    ]
    parts = agent.q_components(observations)
    assert set(parts) == {"interaction", "context", "item_bias", "state_offset"}
    assert parts["interaction"].shape == (2, len(catalog))
    assert parts["context"].shape == (2, len(catalog))
    assert parts["item_bias"].shape == (1, len(catalog))
    assert parts["state_offset"].shape == (2, 1)
    np.testing.assert_allclose(sum(parts.values()), agent.q_table(observations), atol=1e-5)


def test_near_duplicate_groups_keep_one_item_per_group_in_act_and_slates():
    agent = DQNAgent(SMALL, item_catalog(12, seed=12), n_categories=3)
    ids = agent.catalog.ids
    groups = ids % 4  # four groups of three
    obs = observation()
    greedy = agent.act(obs, ids, 6, np.random.default_rng(0), epsilon=0.0, groups=groups)
    assert len(greedy.items) == 4  # one per group, however the items score
    assert len(set((greedy.items % 4).tolist())) == 4
    # Unknown candidates are dropped together with their group keys.
    with_unknown = np.append(ids, 999)
    keys = np.append(groups, 0)
    explored = agent.act(obs, with_unknown, 3, np.random.default_rng(1), epsilon=0.5, groups=keys)
    assert len(set((explored.items % 4).tolist())) == 3 and 999 not in explored.items
    (batched,) = agent.slates([obs], [with_unknown], 6, [np.random.default_rng(0)], 0.0, [keys])
    np.testing.assert_array_equal(batched.items, greedy.items)
