"""The RL core's hyperparameters, from Django settings (the core never reads
settings itself)."""

from __future__ import annotations

from django.conf import settings

from recommender.rl.config import DQNConfig


def dqn_config() -> DQNConfig:
    """DQNConfig for the store's learner.

    The target network is synced only by the sync_target_network task (its
    own beat schedule, as in the article), so in-run updates are off.
    """
    return DQNConfig(
        gamma=settings.RECOMMENDER_GAMMA,
        target_update_interval=0,
        max_abs_reward=settings.RECOMMENDER_MAX_ABS_REWARD,
    )
