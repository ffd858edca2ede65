import dataclasses

import numpy as np
import pytest
import torch

from recommender.rl import core
from recommender.rl.agent import DQNAgent
from recommender.rl.config import DQNConfig
from recommender.rl.network import CatalogScorer, all_items_q, candidate_q, pair_q
from recommender.rl.types import EventType, ItemCatalog, Observation, Slot, Transition
from tests.recommender.rl.factories import item_catalog

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


@pytest.mark.parametrize("states", [1, 3])
@pytest.mark.parametrize(
    "layout", ["one-hot blocks", "weighted blocks", "ragged entries", "all dense", "all zero"]
)
def test_the_catalog_scorer_gives_every_item_the_q_of_the_full_product(states, layout):
    generator = torch.Generator().manual_seed(7)
    n, width = 200, 15
    table = torch.randn(n, width, generator=generator)
    if layout in ("one-hot blocks", "weighted blocks", "ragged entries"):
        # Dense columns around two one-hot blocks; half the items have no entry in the second.
        table[:, 3:13] = 0.0
        table[torch.arange(n), 3 + torch.randint(0, 6, (n,), generator=generator)] = 1.0
        second = 2.5 if layout == "weighted blocks" else 1.0
        table[torch.arange(0, n, 2), 9 + torch.randint(0, 4, (n // 2,), generator=generator)] = (
            second
        )
        if layout == "ragged entries":
            table[0, 3:13] = 1.0  # one item in every column: rows of ten would be mostly padding
    elif layout == "all zero":
        table[:, :-1] = 0.0
    state_out = torch.randn(states, width, generator=generator)

    scorer = CatalogScorer(table)

    torch.testing.assert_close(scorer(state_out), all_items_q(state_out, table))
    if layout in ("one-hot blocks", "weighted blocks", "ragged entries"):
        # What makes it cheaper: the one-hot columns are read as entries, in
        # rows of a fixed width where the items have about as many each.
        assert scorer.sparse_columns.tolist() == list(range(3, 13))
    if layout in ("one-hot blocks", "weighted blocks"):
        assert len(scorer.values) == n + n // 2
        assert scorer.fixed_columns is not None
        assert (scorer.fixed_values is None) == (layout == "one-hot blocks")
    if layout == "ragged entries":
        assert scorer.fixed_columns is None


def test_a_large_catalog_is_served_the_same_slates_by_its_scorer(monkeypatch):
    catalog = item_catalog(300, n_categories=12, n_attributes=6, seed=3)
    catalog.attributes[:] = np.eye(6, dtype=np.float32)[np.arange(300) % 6]
    agent = DQNAgent(CONFIG, catalog, n_categories=12)
    for p in agent.online.parameters():
        torch.nn.init.normal_(p, std=0.3, generator=torch.Generator().manual_seed(5))
    agent.sync_target()
    dense = agent.q_values(OBS, catalog.ids)
    assert agent.core.catalog_scorer() is None  # a small catalog: the plain product

    monkeypatch.setattr(core, "SCORER_MIN_ITEMS", 100)
    agent.core._forget()
    scored = agent.q_values(OBS, catalog.ids)

    assert agent.core.catalog_scorer() is not None
    np.testing.assert_allclose(scored, dense, rtol=1e-5, atol=1e-5)
    rng = np.random.default_rng(0)
    explained = agent.act_explained(
        OBS, catalog.ids, 8, rng, epsilon=0.0, reference_ids=catalog.ids[::7]
    )
    np.testing.assert_array_equal(explained.slate.items, catalog.ids[np.argsort(-dense)[:8]])


def test_catalogs_of_any_size_are_scored_by_the_same_parameters():
    agent = DQNAgent(CONFIG, item_catalog(ids=[1, 2, 3], categories=[0, 1, 0], prices=[10, 20, 30]))
    sizes = {name: p.shape for name, p in agent.online.named_parameters()}
    bigger = item_catalog(500, n_categories=2, max_price=50)
    agent.set_catalog(bigger)
    assert {name: p.shape for name, p in agent.online.named_parameters()} == sizes
    assert agent.q_values(OBS, bigger.ids).shape == (500,)


def test_items_unseen_in_training_are_scored_from_their_features():
    agent = DQNAgent(CONFIG, item_catalog(ids=[1, 2, 3], categories=[0, 1, 0], prices=[10, 20, 30]))
    # Ids 7 and 8 are outside the vocabulary: same features, same finite score;
    # other features, another score.
    agent.set_catalog(
        item_catalog(
            ids=[1, 2, 3, 7, 8, 9], categories=[0, 1, 0, 2, 2, 0], prices=[10, 20, 30, 15, 15, 99]
        )
    )
    q = agent.q_values(OBS, np.array([7, 8, 9]))
    assert np.isfinite(q).all()
    # Equal up to float rounding: the rows sit at different SIMD lanes of the product.
    assert q[0] == pytest.approx(q[1], rel=1e-5)
    assert q[2] != pytest.approx(q[0], rel=1e-3)


def test_the_unknown_id_row_stays_zero():
    agent = DQNAgent(CONFIG, item_catalog(ids=[1, 2, 3], categories=[0, 1, 0], prices=[10, 20, 30]))
    assert agent.online.items.id_embedding.padding_idx == 0
    assert torch.count_nonzero(agent.online.items.id_embedding.weight[0]) == 0


def _category_log(items: ItemCatalog, n: int, rng: np.random.Generator) -> list[Transition]:
    """Product-page requests whose shopper clicks items of the page's category
    (probability 0.6) far more than others (0.05), shown at random."""
    transitions = []
    for _ in range(n):
        current = int(rng.choice(items.ids))
        shown = int(rng.choice(items.ids[items.ids != current]))
        same = items.categories[shown - 1] == items.categories[current - 1]
        clicked = rng.random() < (0.6 if same else 0.05)
        state = Observation(slot=Slot.PRODUCT, current_item=current)
        transitions.append(Transition(state, shown, float(clicked), None, True))
    return transitions


def test_the_context_term_learns_that_shoppers_click_what_resembles_the_page():
    n_categories = 6
    items = item_catalog(60, n_categories=n_categories, max_price=50)
    agent = DQNAgent(dataclasses.replace(CONFIG, gamma=0.0, batch_size=64), items)
    rng = np.random.default_rng(0)
    replay = agent.make_replay()
    replay.add_many(_category_log(items, 3000, rng), items)
    before = agent.q_components([OBS])["context"]
    assert np.count_nonzero(before) == 0  # the term starts at zero

    agent.train_steps(replay, 300, rng)

    tops = []
    for page in (1, 2, 3):  # one product of each of three categories
        obs = Observation(slot=Slot.PRODUCT, current_item=page)
        candidates = items.ids[items.ids != page]
        order = candidates[np.argsort(-agent.q_values(obs, candidates), kind="stable")]
        top = order[:6]
        tops.append(set(top.tolist()))
        # Most of the carousel is the page's category (chance: 1 in 6).
        assert np.mean(items.categories[top - 1] == items.categories[page - 1]) >= 0.5
    assert not tops[0] & tops[1] and not tops[1] & tops[2]  # each page its own carousel
    # And the term that ties them to the page is the context term.
    parts = agent.q_components([Observation(slot=Slot.PRODUCT, current_item=1)])
    same = items.categories == items.categories[0]
    gap = parts["context"][0, same].mean() - parts["context"][0, ~same].mean()
    assert gap > 0.2


def test_the_context_weights_learn_at_their_own_rates():
    agent = DQNAgent(
        dataclasses.replace(CONFIG, lr=1e-4, pair_lr=2e-3, context_lr=5e-2),
        item_catalog(ids=[1, 2, 3], categories=[0, 1, 0], prices=[10, 20, 30]),
    )
    groups = agent.optimizer.param_groups
    assert [g["lr"] for g in groups] == [1e-4, 2e-3, 5e-2]
    context = agent.online.states.context
    assert [id(p) for p in groups[1]["params"]] == [id(context.weight)]
    assert [id(p) for p in groups[2]["params"]] == [id(context.bias), id(context.shared)]


def test_serving_scores_follow_every_change_of_the_context_weights():
    # Serving computes the context term's combined weight once per weights: a
    # training run or a target update must still change the scores.
    items = item_catalog(60, n_categories=6, max_price=50)
    agent = DQNAgent(dataclasses.replace(CONFIG, gamma=0.5, batch_size=64), items)
    rng = np.random.default_rng(0)
    replay = agent.make_replay()
    replay.add_many(_category_log(items, 500, rng), items)
    obs = [Observation(slot=Slot.PRODUCT, current_item=1)]

    def unkept(network: str) -> np.ndarray:  # the same weights, nothing computed before
        fresh = DQNAgent.load(agent.save())
        if network == "target":
            fresh.core.target.load_state_dict(agent.core.target.state_dict())
        return fresh.q_values_batch(obs, items.ids, network)

    def changes(step, network: str = "online") -> None:
        before = agent.q_values_batch(obs, items.ids, network)
        step()
        after = agent.q_values_batch(obs, items.ids, network)
        assert not np.array_equal(after, before)
        np.testing.assert_array_equal(after, unkept(network))

    changes(lambda: agent.train_steps(replay, 20, rng))
    changes(lambda: agent.sync_target(), "target")
    agent.train_steps(replay, 20, rng)
    changes(lambda: agent.soft_update(0.5), "target")


def test_the_context_penalty_is_on_the_per_pair_affinities_only():
    agent = DQNAgent(CONFIG, item_catalog(ids=[1, 2, 3], categories=[0, 1, 0], prices=[10, 20, 30]))
    context = agent.online.states.context
    with torch.no_grad():
        context.shared.fill_(1.0)
        context.bias.fill_(1.0)
        assert float(context.penalty()) == 0.0  # shared weights and u are free
        context.weight.fill_(1.0)
    # Only the affinities the mask allows count: category to category,
    # attribute to the same attribute, price to price.
    assert float(context.penalty().detach()) == float(context.mask.sum())


def test_affinities_the_clicks_do_not_support_shrink_towards_zero():
    n_categories = 6
    items = item_catalog(60, n_categories=n_categories, max_price=50)
    rng = np.random.default_rng(0)
    log = []
    for _ in range(2000):  # clicks that owe nothing to the page's category
        current = int(rng.integers(1, 61))
        shown = int(rng.choice(items.ids[items.ids != current]))
        state = Observation(slot=Slot.PRODUCT, current_item=current)
        log.append(Transition(state, shown, float(rng.random() < 0.3), None, True))

    def affinities(l2: float, pair_lr: float = CONFIG.pair_lr) -> float:
        config = dataclasses.replace(CONFIG, gamma=0.0, context_l2=l2, pair_lr=pair_lr)
        agent = DQNAgent(config, items)
        replay = agent.make_replay()
        replay.add_many(log, items)
        agent.train_steps(replay, 200, np.random.default_rng(1))
        context = agent.online.states.context
        return float((context.weight * context.mask).abs().sum().detach())

    # The penalty pulls them in...
    fast = CONFIG.context_lr
    assert affinities(1e-2, fast) < 0.75 * affinities(0.0, fast)
    # ... and at their own, slower rate they stray less far to begin with.
    assert affinities(0.0) < 0.65 * affinities(0.0, fast)


def test_the_towers_are_left_what_the_context_term_cannot_explain():
    # Clicks follow the category of the page's product, which the context term
    # can express; the towers could fit the same clicks item by item.
    items = item_catalog(60, n_categories=6, max_price=50)
    rng = np.random.default_rng(0)
    log = []
    for _ in range(2000):
        current = int(rng.integers(1, 61))
        shown = int(rng.choice(items.ids[items.ids != current]))
        same = items.categories[shown - 1] == items.categories[current - 1]
        state = Observation(slot=Slot.PRODUCT, current_item=current)
        clicked = rng.random() < (0.7 if same else 0.1)
        log.append(Transition(state, shown, float(clicked), None, True))
    pages = [Observation(slot=Slot.PRODUCT, current_item=i) for i in range(1, 61)]

    def trained(l2: float) -> tuple[float, float]:
        config = dataclasses.replace(CONFIG, gamma=0.0, batch_size=64, interaction_l2=l2)
        agent = DQNAgent(config, items)
        replay = agent.make_replay()
        replay.add_many(log, items)
        agent.train_steps(replay, 400, np.random.default_rng(1))
        parts = agent.q_components(pages)
        q = sum(np.broadcast_to(part, parts["interaction"].shape) for part in parts.values())
        q[np.arange(60), np.arange(60)] = -np.inf  # the page's own product is not a candidate
        top = np.argsort(-q, axis=1)[:, :5]
        related = np.mean(items.categories[top] == items.categories[:, None])
        return float(parts["interaction"].std(axis=1).mean()), float(related)

    free_spread, free_related = trained(0.0)
    held_spread, held_related = trained(1.0)
    assert held_spread < 0.5 * free_spread
    # The ranking still follows the page: the context term carries it.
    assert held_related >= 0.8
    assert held_related >= free_related - 0.05
