"""The personalisation diagnostic tells a state-blind ranking from one that
follows what the shopper looked at."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.rl.agent import DQNAgent
from recommender.rl.config import DQNConfig
from recommender.rl.diagnostics import candidate_masks, personalisation_report
from recommender.rl.types import EventType, ItemCatalog, Observation, Slot
from tests.recommender.rl.factories import item_catalog

VIEW = int(EventType.VIEW)


def _catalog() -> ItemCatalog:
    """Four categories of five items each: ids 1-20, category (id - 1) // 5."""
    return item_catalog(20, categories=np.arange(20) // 5)


def _viewer(item: int) -> Observation:
    return Observation(
        slot=Slot.HOME, recent_items=(item,), recent_events=(VIEW,), recent_ages=(10.0,)
    )


class _Popularity:
    """Ranks by id whatever the state."""

    def __init__(self, catalog):
        self.catalog = catalog

    def ranking_scores(self, observations, candidate_mask, k):
        return np.tile(self.catalog.ids.astype(np.float32), (len(observations), 1))


class _SameCategory(_Popularity):
    """Ranks the newest viewed item's category first."""

    def ranking_scores(self, observations, candidate_mask, k):
        scores = super().ranking_scores(observations, candidate_mask, k) / 100
        for b, obs in enumerate(observations):
            if obs.recent_items:
                newest = (obs.recent_items[-1] - 1) // 5
                scores[b, self.catalog.categories == newest] += 1.0
        return scores


STATES = [_viewer(1), _viewer(6), _viewer(11), _viewer(16)]


def test_a_state_blind_ranking_gives_everyone_the_same_carousel():
    report = personalisation_report(_Popularity(_catalog()), STATES, k=4)
    assert report.mean_jaccard == 1.0
    assert report.jaccard_vs_cold == 1.0
    # Every carousel is the top ids (17-20): only the last viewer's category.
    assert report.related_share == pytest.approx(0.25)
    assert report.related_chance == pytest.approx(5 / 20)
    assert report.variance_share is None


def test_a_ranking_that_follows_the_shopper_differs_across_states():
    report = personalisation_report(_SameCategory(_catalog()), STATES, k=4)
    assert report.mean_jaccard == 0.0
    assert report.related_share == 1.0
    assert report.jaccard_vs_cold < 1.0


def test_candidates_leave_out_the_page_product_and_the_cart():
    obs = Observation(slot=Slot.PRODUCT, current_item=3, cart_items=(5, 99))
    mask = candidate_masks(_catalog(), [obs])
    assert not mask[0, 2] and not mask[0, 4] and mask[0].sum() == 18


def test_variance_shares_of_the_dqn_add_up_to_one():
    agent = DQNAgent(DQNConfig(seed=1), _catalog())
    report = personalisation_report(agent, STATES, k=4)
    assert set(report.variance_share) == {"interaction", "context", "item_bias", "state_offset"}
    assert sum(report.variance_share.values()) == pytest.approx(1.0, abs=1e-4)
    assert report.variance_share["state_offset"] == pytest.approx(0.0, abs=1e-6)
    assert sum(report.variance_share_cold.values()) == pytest.approx(1.0, abs=1e-4)
    assert report.state_share is not None
