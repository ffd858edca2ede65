"""Category labels are names, not rows: a store's category primary keys grow
with every category ever created, and the model must not grow with them (its
context term is quadratic in the category table)."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.rl.agent import DQNAgent
from recommender.rl.encoding import CategoryVocabulary
from recommender.rl.network import context_width
from recommender.rl.replay import ReplayBuffer
from recommender.rl.slateq import SlateQAgent
from recommender.rl.types import EventType, Observation, Slot
from tests.recommender.rl.factories import SMALL, item_catalog, random_transitions

SMALL_KEYS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
# The same three categories as a store that has created and deleted thousands.
LARGE_KEYS = np.array([9001, 9205, 9999])[SMALL_KEYS]
TABLE = 8
OBS = [
    Observation(slot=Slot.HOME),
    Observation(slot=Slot.PRODUCT, current_item=2),
    Observation(
        slot=Slot.HOME,
        recent_items=(1, 4, 7),
        recent_events=(EventType.VIEW,) * 3,
        recent_ages=(30.0, 20.0, 10.0),
    ),
]


def trained(agent_class, categories: np.ndarray):
    catalog = item_catalog(12, categories=categories, seed=3)
    agent = agent_class(SMALL, catalog, n_categories=TABLE)
    replay = agent.make_replay() if agent_class is SlateQAgent else ReplayBuffer(SMALL)
    replay.add_many(random_transitions(catalog, 200, np.random.default_rng(4)), catalog)
    agent.train_steps(replay, 30, np.random.default_rng(0))
    return agent


@pytest.mark.parametrize("agent_class", [DQNAgent, SlateQAgent])
def test_large_category_keys_give_the_model_and_the_scores_of_small_ones(agent_class):
    small, large = trained(agent_class, SMALL_KEYS), trained(agent_class, LARGE_KEYS)

    assert large.core.n_categories == TABLE
    width = large.core.online.states.context.width
    assert width == context_width(TABLE, 2)
    np.testing.assert_array_equal(large.q_table(OBS), small.q_table(OBS))


def test_a_saved_model_keeps_its_category_rows_and_gives_new_categories_free_ones():
    agent = trained(DQNAgent, LARGE_KEYS)
    grown = item_catalog(14, categories=np.append(LARGE_KEYS, [4242, 9205]), seed=3)

    loaded = DQNAgent.load(agent.save(), catalog=grown)

    assert loaded.core.categories.rows(np.array([9001, 9205, 9999, 4242, 77])).tolist() == [
        0,
        1,
        2,
        3,
        TABLE,  # not in any catalog this model met: the unknown row
    ]
    same = DQNAgent.load(agent.save())
    np.testing.assert_array_equal(same.q_table(OBS), agent.q_table(OBS))


def test_categories_beyond_the_table_share_the_unknown_row():
    vocabulary = CategoryVocabulary.for_catalog(3, np.array([500, 600]))

    assert vocabulary.extend(np.array([700, 800, -1])) == 1

    assert vocabulary.rows(np.array([500, 600, 700, 800, -1])).tolist() == [0, 1, 2, 3, 3]


def test_rows_follow_the_labels_order_not_their_values():
    """The same categories under keys shifted by other rows give the same rows,
    so a store rebuilt on another database trains the same model."""
    fresh = CategoryVocabulary.for_catalog(6, np.array([1, 5, 5, 3]))
    shifted = CategoryVocabulary.for_catalog(6, np.array([15, 19, 19, 17]))

    assert fresh.rows(np.array([1, 3, 5, 2])).tolist() == [0, 1, 2, 6]
    assert shifted.rows(np.array([15, 17, 19])).tolist() == [0, 1, 2]
