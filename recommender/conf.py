"""The RL core's hyperparameters, from Django settings (the core never reads
settings itself), and the system check of the recommender's settings."""

from __future__ import annotations

from django.conf import settings
from django.core import checks

from recommender.rl.config import DQNConfig

# The names recommender.rl.agents.AGENTS gives the agent kinds (kept here so the
# settings check runs without importing torch).
AGENT_KINDS = ("per_item", "slateq")


def dqn_config() -> DQNConfig:
    """DQNConfig for the store's learner: ``DQNConfig()`` with the fields the
    settings can change. With the settings' defaults (which come from
    DQNConfig) it equals ``DQNConfig()``.

    The target network is synced only by the sync_target_network task (its
    own beat schedule, as in the article): DQNConfig's default
    target_update_interval (0) keeps in-run updates off.
    """
    return DQNConfig(
        gamma=settings.RECOMMENDER_GAMMA,
        max_abs_reward=settings.RECOMMENDER_MAX_ABS_REWARD,
    )


def check_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """RECOMMENDER_AGENT must name an agent kind (a typo would fail every training run)."""
    if settings.RECOMMENDER_AGENT not in AGENT_KINDS:
        return [
            checks.Error(
                f"RECOMMENDER_AGENT is {settings.RECOMMENDER_AGENT!r}.",
                hint=f"Use one of: {', '.join(AGENT_KINDS)}.",
                id="recommender.E001",
            )
        ]
    return []
