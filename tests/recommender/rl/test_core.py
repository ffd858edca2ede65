"""The shared Double-DQN core (recommender.rl.core), with the per-item
agent's next-state valuation (BestItem) where a target needs one."""

import numpy as np
import pytest
import torch

from recommender.rl.agent import BestItem
from recommender.rl.config import DQNConfig
from recommender.rl.core import DoubleDQN
from recommender.rl.replay import ReplayBuffer
from recommender.rl.types import ItemCatalog, Slot
from tests.recommender.rl.factories import SMALL, item_catalog, observation, random_transitions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fresh_core(config: DQNConfig, items: ItemCatalog) -> DoubleDQN:
    return DoubleDQN.fresh(config, items, None, BestItem())


def test_terminal_and_myopic_targets_are_the_reward():
    items = item_catalog(12, seed=12)
    rng = np.random.default_rng(1)
    transitions = random_transitions(items, 50, rng)
    for gamma in (0.0, 0.9):
        config = DQNConfig(**{**SMALL.to_dict(), "gamma": gamma})
        replay = ReplayBuffer(config)
        replay.add_many(transitions, items)
        batch = replay.sample(64, rng)
        y = fresh_core(config, items).td_targets(batch).numpy()
        terminal = batch.dones == 1
        np.testing.assert_allclose(y[terminal], batch.rewards[terminal])
        if gamma == 0.0:
            np.testing.assert_allclose(y, batch.rewards)


def test_epsilon_schedule_decays_linearly_then_stays():
    core = fresh_core(SMALL, item_catalog(12, seed=12))
    assert core.epsilon_at(0) == 1.0
    assert core.epsilon_at(50) == pytest.approx(0.525)
    assert core.epsilon_at(100) == core.epsilon_at(10_000) == pytest.approx(0.05)


def trained_core(steps: int, **config) -> tuple[DoubleDQN, ReplayBuffer, np.random.Generator]:
    """A SMALL core (``config`` overriding its fields) after ``steps`` gradient
    steps on random transitions, with its replay and generator to go on."""
    items = item_catalog(12, seed=12)
    full = DQNConfig(**{**SMALL.to_dict(), **config})
    core = fresh_core(full, items)
    rng = np.random.default_rng(5)
    replay = ReplayBuffer(full)
    replay.add_many(random_transitions(items, 100, rng), items)
    core.train_steps(replay, steps, rng)
    return core, replay, rng


def test_target_updates_copy_or_average_the_online_weights():
    core, _, _ = trained_core(10, target_update_interval=0)
    items = core.catalog
    online = core.online.states.mlp[0].weight.detach().clone()
    before = core.target.states.mlp[0].weight.detach().clone()
    assert not torch.equal(online, before)
    core.soft_update(0.25)
    torch.testing.assert_close(core.target.states.mlp[0].weight, 0.25 * online + 0.75 * before)
    core.sync_target()
    obs = observation(Slot.CART, cart_items=(2,))
    np.testing.assert_array_equal(
        core.q_values(obs, items.ids), core.q_values(obs, items.ids, network="target")
    )


def test_a_served_checkpoint_acts_with_the_moving_average_of_the_weights():
    core, replay, rng = trained_core(5, served_average=0.75)
    items = core.catalog
    before = core.averaged.states.mlp[0].weight.detach().clone()
    core.train_steps(replay, 1, rng)
    online = core.online.states.mlp[0].weight.detach()
    averaged = core.averaged.states.mlp[0].weight.detach()
    torch.testing.assert_close(averaged, 0.75 * before + 0.25 * online)
    assert not torch.equal(averaged, online)

    served = DoubleDQN.from_payload(core.checkpoint_payload(served=True), BestItem())
    learner = DoubleDQN.from_payload(core.checkpoint_payload(), BestItem())
    obs = observation(Slot.CART, cart_items=(2,))
    # Shoppers get the average; training goes on from the online weights and the average.
    torch.testing.assert_close(served.online.states.mlp[0].weight, averaged)
    torch.testing.assert_close(learner.online.states.mlp[0].weight, online)
    torch.testing.assert_close(learner.averaged.states.mlp[0].weight, averaged)
    assert not np.array_equal(served.q_values(obs, items.ids), core.q_values(obs, items.ids))


def test_new_catalog_items_get_vocabulary_rows_and_training_continues():
    items = item_catalog(12, seed=12)
    core = fresh_core(SMALL, items)
    rng = np.random.default_rng(6)
    replay = ReplayBuffer(SMALL)
    replay.add_many(random_transitions(items, 100, rng), items)
    core.train_steps(replay, 5, rng)
    bigger = item_catalog(15, seed=15)
    core.set_catalog(bigger)
    assert len(core.vocabulary) == 15
    assert (
        core.online.items.id_embedding.weight.shape[0]
        == core.target.items.id_embedding.weight.shape[0]
        == 16
    )
    assert np.isfinite(core.q_values(observation(), bigger.ids)).all()
    replay = ReplayBuffer(SMALL)
    replay.add_many(random_transitions(bigger, 100, rng), bigger)
    assert np.isfinite(core.train_steps(replay, 5, rng).loss)
    stale = ReplayBuffer(SMALL)
    stale.add_many(random_transitions(items, 10, rng), items)
    with pytest.raises(ValueError, match="another catalog"):
        core.train_steps(stale, 1, rng)


def test_cores_with_the_same_seed_agree():
    items = item_catalog(12, seed=12)
    obs = observation(Slot.HOME, history_items=(1, 2, 3))
    np.testing.assert_array_equal(
        fresh_core(SMALL, items).q_values(obs, items.ids),
        fresh_core(SMALL, items).q_values(obs, items.ids),
    )
