"""SlateQ: grouping logged items into slates, slate values under the click
model, exact Double-DQN targets and the click model's position bias (the
short training run in the simulator is in test_learning.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from recommender.rl.agent import DQNAgent
from recommender.rl.agents import check_agent, load_agent
from recommender.rl.checkpoint import CheckpointError
from recommender.rl.config import DQNConfig
from recommender.rl.network import StateInputs
from recommender.rl.runtime import configure_torch_threads
from recommender.rl.simulator import make_catalog
from recommender.rl.slate import best_carousels
from recommender.rl.slateq import SlateQAgent, group_slates, slate_value
from recommender.rl.types import ItemCatalog, Observation, Slot, Transition


def catalog_of(n: int = 6):
    return make_catalog(n, 2, 3, seed=0)


def transition(state, item, reward, next_state, done=False):
    return Transition(state, item, reward, next_state, done, 0.5)


def test_consecutive_items_of_one_request_form_one_slate():
    s1 = Observation(Slot.HOME, page_depth=0)
    s2 = Observation(Slot.HOME, page_depth=1)
    s3 = Observation(Slot.PRODUCT, current_item=3, page_depth=2)
    log = [
        transition(s1, 1, 0.0, s2),
        transition(s1, 2, 1.0, s2),
        transition(s2, 3, 0.0, s3),
        transition(s2, 4, 0.0, s3),
        transition(s3, 5, 0.0, None, done=True),
    ]
    assert [[t.item for t in g] for g in group_slates(log)] == [[1, 2], [3, 4], [5]]
    # Two shoppers who land on the home page and leave: equal states and next
    # states, but separate requests, so separate slates.
    bounce = [transition(Observation(Slot.HOME), i, 0.0, None, done=True) for i in (6, 7, 8)]
    assert [[t.item for t in g] for g in group_slates(bounce)] == [[6], [7], [8]]


def test_replay_keeps_the_clicked_item_or_no_click_and_a_click_sample_per_slate():
    catalog = catalog_of()
    ids = [int(i) for i in catalog.ids]
    agent = SlateQAgent(DQNConfig(slate_size=2, seed=0), catalog)
    replay = agent.make_replay(100)
    s1, s2 = Observation(Slot.HOME, page_depth=0), Observation(Slot.HOME, page_depth=1)
    accepted = replay.add_many(
        [
            transition(s1, ids[0], 0.0, s2),
            transition(s1, ids[1], 4.0, s2),  # clicked (and carted)
            transition(s2, ids[2], 0.0, None, done=True),
            transition(s2, ids[3], 0.0, None, done=True),
        ],
        catalog,
    )
    assert accepted == 4 and len(replay) == 4 and replay.slates == 2
    values = replay.values.batch(np.arange(2))
    no_click_row = len(catalog)
    assert values.actions.tolist() == [1, no_click_row]
    assert values.rewards.tolist() == [4.0, 0.0]
    assert values.dones.tolist() == [0.0, 1.0]
    _, items, labels = replay.sample_slates(64, np.random.default_rng(0))
    assert {tuple(r[:2]) for r in items} == {(0, 1), (2, 3)}
    assert set(zip(map(tuple, items[:, :2]), labels, strict=True)) == {((0, 1), 2), ((2, 3), 0)}


def brute_force_value(v, g, attention, v0):
    best = -np.inf
    for slate in itertools.permutations(range(len(v)), len(attention)):
        a_v = attention * v[list(slate)]
        best = max(best, (a_v * g[list(slate)]).sum() / (v0 + a_v.sum()))
    return best


def test_best_carousels_respects_the_mask_and_is_exact():
    rng = np.random.default_rng(3)
    attention = np.array([1.0, 0.7, 0.5])
    for _ in range(20):
        v = rng.uniform(0.1, 3.0, size=7)
        g = rng.normal(0.0, 5.0, size=7)
        mask = rng.random(7) < 0.7
        mask[:3] = True
        value, chosen = best_carousels(v[None], g[None], attention, 1.0, mask=mask[None])
        assert mask[chosen[0]].all()
        allowed = np.flatnonzero(mask)
        expected = brute_force_value(v[allowed], g[allowed], attention, 1.0)
        assert value[0] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_best_carousels_over_many_candidates_is_exact_for_every_state_of_a_batch():
    """Exact for every state of a batch (states converge after different numbers
    of iterations), whatever the gains' signs and however few are allowed."""
    rng = np.random.default_rng(4)
    attention = np.array([1.0, 0.6])
    v = rng.uniform(0.05, 4.0, size=(6, 30))
    g = rng.normal(1.0, 5.0, size=(6, 30))
    g[1] = -np.abs(g[1])  # no click beats every click: the least harmful pair wins
    g[2, :] = 1.0
    g[2, 29] = 50.0  # one item far ahead of the rest, with a tiny click weight
    v[2, 29] = 0.05
    mask = rng.random((6, 30)) < 0.8
    mask[3] = False
    mask[3, 7] = True  # one allowed candidate for two slots
    value, chosen = best_carousels(v, g, attention, 1.0, mask=mask)
    for s in range(6):
        allowed = np.flatnonzero(mask[s])
        slots = attention[: len(allowed)]
        expected = brute_force_value(v[s, allowed], g[s, allowed], slots, 1.0)
        assert value[s] == pytest.approx(expected, rel=1e-9, abs=1e-9), s
        assert mask[s, chosen[s, : len(allowed)]].all()


def test_best_carousels_fills_slots_beyond_the_allowed_with_distinct_masked_candidates():
    v, g = np.ones((2, 5)), np.arange(10.0).reshape(2, 5)
    mask = np.array([[False, False, True, False, False], [True, True, False, False, False]])
    value, chosen = best_carousels(v, g, np.array([1.0, 0.8, 0.6]), 1.0, mask=mask)
    assert chosen[0, 0] == 2 and chosen[1, :2].tolist() == [1, 0]
    assert all(len(set(row)) == 3 for row in chosen.tolist())  # a filler is never repeated
    assert value[0] == pytest.approx(2.0 / 2.0)  # the one allowed item alone: 1·2 / (1 + 1)


def test_slate_value_is_the_click_weighted_mix_of_click_and_no_click_values():
    weights = torch.tensor([[1.0, 3.0, 0.5]], dtype=torch.float64)
    q_items = torch.tensor([[10.0, 2.0, 7.0]], dtype=torch.float64)
    q_none = torch.tensor([1.0], dtype=torch.float64)
    attention = np.array([1.0, 0.5])
    shown = torch.tensor([[2, 0]])
    value = slate_value(weights.gather(1, shown), q_items.gather(1, shown), q_none, attention)
    # item 2 at position 0 (a·w = 0.5), item 0 at position 1 (a·w = 0.5):
    # P(click) = 0.5 / 2 each, so 1 + 0.25 * (7 - 1) + 0.25 * (10 - 1).
    assert value.item() == pytest.approx(1.0 + 0.25 * 6.0 + 0.25 * 9.0)


@pytest.mark.parametrize("listed", [False, True], ids=["store-rule", "listed-set"])
def test_the_double_dqn_target_values_the_online_networks_best_next_slate_with_the_target(listed):
    """Without a next set the store's rule applies (all but the page's product);
    a listed set (solved over its own rows) must give the same target."""
    catalog = catalog_of()
    config = DQNConfig(slate_size=2, gamma=0.5, batch_size=1, seed=0)
    agent = SlateQAgent(config, catalog)
    replay = agent.make_replay(10)
    s1 = Observation(Slot.HOME, page_depth=0)
    s2 = Observation(Slot.PRODUCT, current_item=int(catalog.ids[0]), page_depth=1)
    following = tuple(int(i) for i in catalog.ids[1:]) if listed else None
    logged = transition(s1, int(catalog.ids[1]), 3.0, s2)._replace(next_candidates=following)
    replay.add_many([logged], catalog)
    assert bool(replay.values.batch(np.array([0])).next_exclude[0]) is not listed
    # Make the target network differ from the online one.
    with torch.no_grad():
        for p in agent.core.target.parameters():
            p.add_(0.05)
    agent.core._item_tables.clear()
    batch = replay.values.batch(np.array([0]))
    target = agent.core.td_targets(batch).item()

    # By hand: next candidates are every item but the page's product.
    candidates = np.arange(1, len(catalog))
    online = agent.core.q_values(s2, agent.core.catalog.ids, "online").astype(np.float64)
    offline = agent.core.q_values(s2, agent.core.catalog.ids, "target").astype(np.float64)
    encoded = agent.encoder.encode([s2], agent.index)
    states = StateInputs.from_encoded(encoded, np.maximum(encoded.rows, 0))
    weights = agent.click_weights(states)[0].double().numpy()[candidates]
    attention = agent.click.attention(2)
    n = len(catalog)
    _, chosen = best_carousels(weights[None], online[candidates][None] - online[n], attention, 1.0)
    picked = candidates[chosen[0]]
    a_w = attention * weights[chosen[0]]
    next_value = offline[n] + (a_w * (offline[picked] - offline[n])).sum() / (1.0 + a_w.sum())
    assert target == pytest.approx(3.0 + 0.5 * next_value, rel=1e-4)


def test_a_next_set_smaller_than_the_slate_is_valued_as_that_short_slate():
    """The slot left over is filled with a masked candidate that weighs nothing."""
    catalog = catalog_of()
    agent = SlateQAgent(DQNConfig(slate_size=2, gamma=0.5, batch_size=1, seed=0), catalog)
    replay = agent.make_replay(10)
    s1 = Observation(Slot.HOME, page_depth=0)
    s2 = Observation(Slot.CART, page_depth=1)
    only = int(catalog.ids[2])
    replay.add_many(
        [transition(s1, int(catalog.ids[1]), 1.0, s2)._replace(next_candidates=(only,))], catalog
    )
    target = agent.core.td_targets(replay.values.batch(np.array([0]))).item()

    offline = agent.core.q_values(s2, agent.core.catalog.ids, "target").astype(np.float64)
    encoded = agent.encoder.encode([s2], agent.index)
    states = StateInputs.from_encoded(encoded, np.maximum(encoded.rows, 0))
    w = agent.click_weights(states)[0].double().numpy()[2]
    a_w = agent.click.attention(2)[0] * w
    n = len(catalog)
    next_value = offline[n] + a_w * (offline[2] - offline[n]) / (1.0 + a_w)
    assert target == pytest.approx(1.0 + 0.5 * next_value, rel=1e-4)


@pytest.mark.slow
def test_the_click_model_learns_that_later_positions_get_fewer_clicks():
    """Clicks logged from a known position-biased logit: the learned attention
    falls with the position like the true one."""
    configure_torch_threads(1)
    catalog = catalog_of(12)
    agent = SlateQAgent(DQNConfig(slate_size=3, max_positions=3, batch_size=256, seed=0), catalog)
    replay = agent.make_replay(20_000)
    rng = np.random.default_rng(0)
    true_attention = np.array([1.0, 0.5, 0.25])
    log = []
    for depth in range(4000):
        state = Observation(Slot.HOME, page_depth=depth % 5)
        shown = rng.choice(catalog.ids, size=3, replace=False)
        weights = true_attention * 1.5  # every item equally appealing
        p = np.append(weights, 1.0) / (weights.sum() + 1.0)
        clicked = rng.choice(4, p=p)
        log += [
            transition(state, int(item), float(pos == clicked), None, done=True)
            for pos, item in enumerate(shown)
        ]
    replay.add_many(log, catalog)
    for _ in range(1500):
        agent._click_step(replay, rng)
    learned = agent.click.attention(3)
    assert learned[0] == 1.0
    assert learned[1] == pytest.approx(0.5, abs=0.12)
    assert learned[2] == pytest.approx(0.25, abs=0.1)


def trained_agent():
    catalog = catalog_of(12)
    agent = SlateQAgent(DQNConfig(slate_size=3, batch_size=32, seed=0), catalog)
    replay = agent.make_replay(1000)
    rng = np.random.default_rng(0)
    log = []
    for depth in range(60):
        state = Observation(Slot.HOME, page_depth=depth)
        after = Observation(Slot.HOME, page_depth=depth + 1)
        shown = rng.choice(catalog.ids, size=3, replace=False)
        clicked = rng.integers(4)
        log += [
            transition(state, int(item), float(pos == clicked), after)
            for pos, item in enumerate(shown)
        ]
    replay.add_many(log, catalog)
    agent.train_steps(replay, 20, rng)
    return agent, replay


def test_a_saved_agent_serves_the_same_slates_and_keeps_learning_after_loading():
    agent, replay = trained_agent()
    loaded = SlateQAgent.load(agent.save())

    obs = [Observation(Slot.PRODUCT, current_item=int(agent.catalog.ids[0]), page_depth=2)]
    candidates = [agent.catalog.ids[1:]]
    np.testing.assert_allclose(
        loaded.slate_scores(obs, candidates, 3)[0], agent.slate_scores(obs, candidates, 3)[0]
    )
    np.testing.assert_allclose(loaded.click.attention(3), agent.click.attention(3))
    assert loaded.step == agent.step
    stats = loaded.train_steps(replay, 5, np.random.default_rng(1))
    assert stats.steps == 5 and np.isfinite(stats.loss)


def test_a_slateq_agent_loaded_to_act_serves_the_same_slates_and_refuses_to_learn():
    agent, replay = trained_agent()
    whole = load_agent(agent.save())
    acting = load_agent(agent.save(), act_only=True)
    obs = Observation(Slot.PRODUCT, current_item=int(agent.catalog.ids[0]), page_depth=2)
    candidates = agent.catalog.ids[1:]
    served = [
        a.act(obs, candidates, 3, np.random.default_rng(4), epsilon=0.3) for a in (whole, acting)
    ]
    for whole_part, acting_part in zip(*served, strict=True):
        np.testing.assert_array_equal(acting_part, whole_part)
    with pytest.raises(RuntimeError, match="loaded only to act"):
        acting.train_steps(replay, 1, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="loaded only to act"):
        acting.save()


def test_checkpoints_of_one_agent_kind_are_refused_by_the_other():
    agent, _ = trained_agent()
    with pytest.raises(CheckpointError, match="SlateQ checkpoint"):
        DQNAgent.load(agent.save())
    per_item = DQNAgent(DQNConfig(seed=0), agent.catalog)
    with pytest.raises(CheckpointError, match="not a SlateQ checkpoint"):
        SlateQAgent.load(per_item.save())


def test_a_click_model_with_non_finite_weights_is_refused():
    agent, _ = trained_agent()
    with torch.no_grad():
        agent.click.attention_steps[0] = float("nan")
    with pytest.raises(CheckpointError, match="click tensor 'attention_steps' has non-finite"):
        SlateQAgent.load(agent.save())


def test_products_added_after_training_are_served_and_no_click_keeps_its_value():
    agent, _ = trained_agent()
    old = agent.catalog
    new_ids = np.array([old.ids.max() + 1, old.ids.max() + 2])  # the first reused to be "no click"
    grown = ItemCatalog(
        ids=np.concatenate([old.ids, new_ids]),
        categories=np.concatenate([old.categories, old.categories[:2]]),
        prices=np.concatenate([old.prices, old.prices[:2]]),
        attributes=np.vstack([old.attributes, old.attributes[:2]]),
    )
    obs = [Observation(Slot.HOME, page_depth=3)]
    before = agent.q_table(obs)[0]  # Q of each item given a click, then Q(no click)

    agent.set_catalog(grown)
    after = agent.q_table(obs)[0]
    np.testing.assert_allclose(after[: len(old)], before[:-1], rtol=1e-5)
    np.testing.assert_allclose(after[-1], before[-1], rtol=1e-5)
    slate = agent.act(obs[0], new_ids, 2, np.random.default_rng(0), epsilon=0.0)
    assert sorted(slate.items.tolist()) == sorted(new_ids.tolist())

    # A checkpoint of the old catalog serves the grown one the same way, and trains on it.
    reloaded = SlateQAgent.load(agent.save(), catalog=grown)
    np.testing.assert_allclose(reloaded.q_table(obs)[0], after, rtol=1e-5)
    replay = reloaded.make_replay(100)
    after_obs = Observation(Slot.HOME, page_depth=4)
    replay.add_many(
        [transition(obs[0], int(i), float(j == 0), after_obs) for j, i in enumerate(new_ids)],
        grown,
    )
    assert np.isfinite(reloaded.train_steps(replay, 3, np.random.default_rng(2)).loss)


def test_publication_checks_cover_the_click_model_and_the_no_click_value():
    agent, _ = trained_agent()
    obs = [Observation(Slot.HOME, page_depth=1)]
    report = check_agent(agent, obs)
    assert report["ok"] and report["n_items"] == 12
    assert agent.q_table(obs).shape == (1, 13)  # every item given a click, and no click
    with torch.no_grad():
        agent.click.attention_steps[0] = float("nan")
    report = check_agent(agent, obs)
    assert not report["ok"] and report["non_finite_tensors"] == ["click.attention_steps"]


def test_ranking_scores_order_the_candidates_as_the_served_greedy_slate():
    agent, _ = trained_agent()
    obs = [Observation(Slot.HOME, page_depth=1), Observation(Slot.CART, page_depth=5)]
    mask = np.ones((2, 12), dtype=bool)
    mask[0, :4] = False  # e.g. the first four are in the cart
    scores = agent.ranking_scores(obs, mask, 3)
    assert np.isneginf(scores[0, :4]).all()
    for row in range(2):
        candidates = agent.catalog.ids[mask[row]]
        slate = agent.act(obs[row], candidates, 3, np.random.default_rng(0), epsilon=0.0)
        by_score = agent.catalog.ids[np.argsort(-scores[row], kind="stable")[:3]]
        assert slate.items.tolist() == by_score.tolist()


def test_near_duplicate_groups_keep_one_item_per_group_in_a_slateq_slate():
    agent, _ = trained_agent()
    ids = agent.catalog.ids
    obs = Observation(Slot.HOME, page_depth=1)
    slate = agent.act(obs, ids, 3, np.random.default_rng(0), epsilon=0.0, groups=ids % 2)
    assert len(slate.items) == 2  # only two groups
    assert sorted((slate.items % 2).tolist()) == [0, 1]
    unknown = np.append(ids, 999)
    slate = agent.act(obs, unknown, 3, np.random.default_rng(0), 0.0, groups=unknown % 2)
    assert len(slate.items) == 2 and 999 not in slate.items
