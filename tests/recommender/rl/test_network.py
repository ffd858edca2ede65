import numpy as np
import pytest
import torch

from recommender.rl.agent import DQNAgent
from recommender.rl.config import DQNConfig
from recommender.rl.network import all_items_q, candidate_q, pair_q
from recommender.rl.types import EventType, ItemCatalog, Observation, Slot

CONFIG = DQNConfig(
    id_dim=4, category_dim=4, item_hidden=16, embed_dim=8, state_hidden=16, grow_vocabulary=False
)
OBS = Observation(
    slot=Slot.CART,
    recent_items=(1, 2),
    recent_events=(EventType.VIEW, EventType.ADD_TO_CART),
    recent_ages=(10.0, 1.0),
    cart_items=(2,),
)


def catalog(ids, categories, prices, attributes=None) -> ItemCatalog:
    n = len(ids)
    return ItemCatalog(
        ids=np.asarray(ids),
        categories=np.asarray(categories),
        prices=np.asarray(prices, dtype=np.float32),
        attributes=np.zeros((n, 2), dtype=np.float32) if attributes is None else attributes,
    )


def test_q_helpers_agree_on_the_dot_product_form():
    state_out = torch.randn(3, 5)
    items = torch.randn(4, 5)
    everything = all_items_q(state_out, items)
    expected = state_out[:, :4] @ items[:, :4].T + items[:, 4] + state_out[:, 4:]
    torch.testing.assert_close(everything, expected)
    torch.testing.assert_close(
        candidate_q(state_out, items[[1, 3]].expand(3, 2, 5)), everything[:, [1, 3]]
    )
    torch.testing.assert_close(pair_q(state_out, items[:3]), everything.diagonal())


def test_catalogs_of_any_size_are_scored_by_the_same_parameters():
    agent = DQNAgent(CONFIG, catalog([1, 2, 3], [0, 1, 0], [10, 20, 30]))
    sizes = {name: p.shape for name, p in agent.online.named_parameters()}
    bigger = catalog(np.arange(1, 501), np.arange(500) % 2, np.linspace(5, 50, 500))
    agent.set_catalog(bigger)
    assert {name: p.shape for name, p in agent.online.named_parameters()} == sizes
    assert agent.q_values(OBS, bigger.ids).shape == (500,)


def test_items_unseen_in_training_are_scored_from_their_features():
    agent = DQNAgent(CONFIG, catalog([1, 2, 3], [0, 1, 0], [10, 20, 30]))
    # Ids 7 and 8 are outside the vocabulary: same features, same finite score;
    # other features, another score.
    agent.set_catalog(catalog([1, 2, 3, 7, 8, 9], [0, 1, 0, 2, 2, 0], [10, 20, 30, 15, 15, 99]))
    q = agent.q_values(OBS, np.array([7, 8, 9]))
    assert np.isfinite(q).all()
    # Equal up to float rounding: the rows sit at different SIMD lanes of the product.
    assert q[0] == pytest.approx(q[1], rel=1e-5)
    assert q[2] != pytest.approx(q[0], rel=1e-3)


def test_the_unknown_id_row_stays_zero():
    agent = DQNAgent(CONFIG, catalog([1, 2, 3], [0, 1, 0], [10, 20, 30]))
    assert agent.online.items.id_embedding.padding_idx == 0
    assert torch.count_nonzero(agent.online.items.id_embedding.weight[0]) == 0
