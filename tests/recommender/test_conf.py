"""The store's learner configuration and the settings it comes from."""

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from recommender.conf import AGENT_KINDS, check_settings, dqn_config
from recommender.rl.agents import AGENTS
from recommender.rl.config import DQNConfig


def test_the_store_trains_with_the_core_defaults():
    # The RL core used on its own (a notebook, the benchmarks) must behave as in
    # the store: with the default settings, the store's config is DQNConfig().
    assert DQNConfig().gamma == settings.RECOMMENDER_GAMMA
    assert DQNConfig().max_abs_reward == settings.RECOMMENDER_MAX_ABS_REWARD
    assert dqn_config() == DQNConfig()
    # The store syncs its target network from its own task only.
    assert dqn_config().target_update_interval == 0


def test_settings_change_the_fields_they_name(settings):
    settings.RECOMMENDER_GAMMA = 0.5
    settings.RECOMMENDER_MAX_ABS_REWARD = 20.0
    config = dqn_config()
    assert (config.gamma, config.max_abs_reward) == (0.5, 20.0)
    assert config.lr == DQNConfig().lr


def test_an_unknown_agent_kind_is_a_system_check_error(settings):
    assert check_settings() == []
    settings.RECOMMENDER_AGENT = "per-item"
    (error,) = check_settings()
    assert error.id == "recommender.E001" and "per_item" in error.hint


def test_an_unknown_agent_kind_fails_the_system_check(settings):
    settings.RECOMMENDER_AGENT = "slatq"

    with pytest.raises(SystemCheckError, match="RECOMMENDER_AGENT is 'slatq'"):
        call_command("check")
    settings.RECOMMENDER_AGENT = "per_item"
    call_command("check")
    assert set(AGENT_KINDS) == set(AGENTS)  # the check's list is the registry's
