"""Smoke training run: a few seconds of DQN training in the simulator must
already serve clearly better carousels than chance, for the per-item agent and
for the SlateQ agent."""

from __future__ import annotations

import pytest

from recommender.rl.baselines import DQNPolicy, RandomPolicy
from recommender.rl.config import DQNConfig
from recommender.rl.evaluation import TrainingSchedule, evaluate_policy, train_dqn
from recommender.rl.runtime import configure_torch_threads
from recommender.rl.simulator import ShopperSimulator, make_catalog
from recommender.rl.slateq import SlateQAgent

# Measured during calibration: after 300 training sessions the per-item agent earns
# 3.8-6.4x the random policy's mean return on these shoppers and the SlateQ agent
# 2.6-4.9x (six training seeds each); 2x leaves room for platform noise without
# letting a learner that is not learning pass.
REQUIRED_MARGIN = 2.0


@pytest.mark.slow
@pytest.mark.parametrize("slateq", [False, True], ids=["per-item", "slateq"])
def test_short_dqn_training_beats_random_by_a_wide_margin(slateq):
    configure_torch_threads(1)
    catalog = make_catalog(96, 6, 8, seed=0)
    simulator = ShopperSimulator(catalog, seed=0)
    config = DQNConfig(
        gamma=0.9,
        huber_delta=30.0,
        recency_half_life_s=30.0,
        epsilon_decay_steps=300,
        target_update_interval=0,
        slate_size=3,
        seed=0,
    )
    schedule = TrainingSchedule(
        sessions=300,
        sessions_per_round=20,
        steps_per_round=40,
        warmup_transitions=500,
        sync_every_steps=120,
        k=3,
    )
    result = train_dqn(simulator, config, schedule, seed=0, slateq=slateq)
    assert isinstance(result.agent, SlateQAgent) == slateq
    assert result.gradient_steps > 0 and result.transitions > 0
    assert all(
        r.stats is None or r.stats.loss == r.stats.loss for r in result.rounds
    )  # no NaN losses

    dqn = evaluate_policy(simulator, DQNPolicy(result.agent), 300, seed=1, k=3)
    rand = evaluate_policy(simulator, RandomPolicy(), 300, seed=1, k=3)
    margin = dqn.mean_return / rand.mean_return
    assert margin >= REQUIRED_MARGIN, (
        f"DQN {dqn.mean_return:.1f} vs random {rand.mean_return:.1f}: x{margin:.2f} < x{REQUIRED_MARGIN}"
    )
