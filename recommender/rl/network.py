"""Two-tower Q-network over candidate sets.

    Q(s, i) = <f(s), g(i)> + <v(s), x(i)> + b(i) + c(s)

The item tower maps an item's features (category, log-price, dense attributes)
and its learned id embedding to [g(i), x(i), b(i)]: g and b are learned, x(i)
is the item's plain features (category one-hot, attributes, standardised
log-price and its square). The state tower pools those rows over the
session's items and maps them, with a few scalars, to [f(s), v(s), c(s)].

The context term <v(s), x(i)> is what makes the ranking follow the shopper:
v(s) = u + W [x̄_p(s) - x̄] over the pools p (recent views, clicks, cart, the
page's product, ...), x̄_p(s) a pool's mean x and x̄ the catalog's. So
<v(s), x(i)> is a learned bilinear affinity between what the session holds and
the candidate: category to category (the same one, or a complementary one),
brand and colour to brand and colour, price level to price level, plus
<u, x(i)>, the appeal of the item's features to everyone. It has few
parameters, starts at zero and learns at its own, faster rate
(``DQNConfig.context_lr``), so a store's first training runs already tie the
carousel to the session, whereas <f(s), g(i)> must first learn item vectors
from sparse clicks. Its per-pair affinities learn slower (``DQNConfig.pair_lr``)
than its shared "same category" / "same attribute" weights: few clicks support
each pair. A penalty on the size of <f(s), g(i)>
(``DQNConfig.interaction_l2``) leaves the two towers what the context term
cannot explain: unchecked, trained run after run on a few hundred sessions,
they learn the sessions themselves, and the ranking drifts back towards one
for everyone.

Nothing is tied to the catalog size, an item outside the id vocabulary is
scored from its features alone, and serving precomputes [g, x, b] for every
item once per checkpoint so that a request costs one state encoding plus a
matrix-vector product.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recommender.rl.config import DQNConfig
from recommender.rl.encoding import N_POOLS, CategoryVocabulary, EncodedStates, IdVocabulary
from recommender.rl.types import ItemCatalog, Slot

if TYPE_CHECKING:
    from recommender.rl.optim import LazyAdam

# State scalars beside the pooled vectors: pool masses, slot one-hot, page depth.
SCALAR_WIDTH = N_POOLS + len(Slot) + 1


def context_width(n_categories: int, n_attributes: int) -> int:
    """Width of x(i): category one-hot (with the unknown-category row),
    attributes, standardised log-price and its square."""
    return n_categories + 1 + n_attributes + 2


class ItemFeatures(NamedTuple):
    """Item-tower inputs for N items, as tensors."""

    id_rows: Tensor  # int64 (N,) id-embedding rows, 0 = unknown id
    categories: Tensor  # int64 (N,) category, n_categories = unknown category
    log_prices: Tensor  # float32 (N,) log1p(price)
    attributes: Tensor  # float32 (N, A)

    @classmethod
    def build(
        cls, catalog: ItemCatalog, vocabulary: IdVocabulary, categories: CategoryVocabulary
    ) -> ItemFeatures:
        """Features of every catalog row; categories without a row share the unknown one."""
        prices = np.maximum(np.asarray(catalog.prices, dtype=np.float32), 0.0)
        return cls(
            id_rows=torch.from_numpy(vocabulary.rows(catalog.ids)),
            categories=torch.from_numpy(categories.rows(catalog.categories)),
            log_prices=torch.from_numpy(np.log1p(prices)),
            attributes=torch.from_numpy(np.ascontiguousarray(catalog.attributes, dtype=np.float32)),
        )

    def take(self, rows: Tensor) -> ItemFeatures:
        return ItemFeatures(*(t.index_select(0, rows) for t in self))


class StateInputs(NamedTuple):
    """Encoded states as tensors, ready for ``embedding_bag`` pooling: one bag
    per (state, pool); ``rows`` index the item table passed alongside."""

    rows: Tensor  # int64 (P,) item-table rows of the weighted positions, bag after bag
    weights: Tensor  # float32 (P,) normalised within each bag
    offsets: Tensor  # int64 (B * N_POOLS,) first position of each bag
    scalars: Tensor  # float32 (B, SCALAR_WIDTH): log1p pool masses, slot one-hot, log1p page depth

    @classmethod
    def from_encoded(cls, states: EncodedStates, rows: np.ndarray) -> StateInputs:
        """Tensors of encoded states, with ``rows`` (B, L) the states' rows renumbered
        into the item table they will pool over.

        Positions without weight (padding, unknown items) are dropped, so pooling
        costs what the sessions hold rather than the encoder's fixed width.
        """
        n = len(rows)
        keep = states.weights > 0
        # Positions are in pool order within each state, so the kept ones run bag by bag.
        bags = states.pools + N_POOLS * np.arange(n)[:, None]
        counts = np.bincount(bags[keep], minlength=n * N_POOLS)
        offsets = np.zeros(n * N_POOLS, dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        scalars = np.zeros((n, SCALAR_WIDTH), dtype=np.float32)
        np.log1p(states.masses, out=scalars[:, :N_POOLS])
        scalars[np.arange(n), N_POOLS + states.slots] = 1.0
        np.log1p(states.page_depths, out=scalars[:, -1])
        return cls(
            rows=torch.from_numpy(rows[keep].astype(np.int64, copy=False)),
            weights=torch.from_numpy(states.weights[keep]),
            offsets=torch.from_numpy(offsets),
            scalars=torch.from_numpy(scalars),
        )


def _mlp(layers: nn.Sequential, x: Tensor) -> Tensor:
    """``layers`` (Linear, ReLU, Linear) applied functionally: the same result
    without three module calls, which cost more than these small layers' math."""
    first, _, second = layers
    return F.linear(F.relu(F.linear(x, first.weight, first.bias)), second.weight, second.bias)


class ItemTower(nn.Module):
    """[g(i), x(i), b(i)]: g and b learned from an item's id embedding, category,
    log-price and attributes; x the plain features the context term reads."""

    def __init__(
        self, config: DQNConfig, vocabulary_size: int, n_categories: int, n_attributes: int
    ) -> None:
        super().__init__()
        self.n_categories = n_categories
        # Row 0 is the unknown-id vector: fixed at zero (padding_idx gets no gradient).
        self.id_embedding = nn.Embedding(vocabulary_size + 1, config.id_dim, padding_idx=0)
        # Known ids start at the unknown vector too and move only as far as their data takes them.
        nn.init.zeros_(self.id_embedding.weight)
        self.category_embedding = nn.Embedding(n_categories + 1, config.category_dim)
        # Standardise log-price with the training catalog's statistics (kept in checkpoints).
        self.register_buffer("price_loc", torch.zeros(()))
        self.register_buffer("price_scale", torch.ones(()))
        width = config.id_dim + config.category_dim + 1 + n_attributes
        self.mlp = nn.Sequential(
            nn.Linear(width, config.item_hidden),
            nn.ReLU(),
            nn.Linear(config.item_hidden, config.embed_dim + 1),
        )

    def fit_price_scale(self, log_prices: Tensor) -> None:
        """Set the log-price standardisation from a catalog."""
        if len(log_prices):
            self.price_loc.fill_(float(log_prices.mean()))
            self.price_scale.fill_(max(float(log_prices.std(correction=0)), 1e-3))

    def forward(self, features: ItemFeatures) -> Tensor:
        """(N, D + X + 1): item vector g, context features x, bias b in the last column."""
        price = ((features.log_prices - self.price_loc) / self.price_scale).unsqueeze(1)
        inputs = torch.cat(
            [
                self.id_embedding(features.id_rows),
                self.category_embedding(features.categories),
                price,
                features.attributes,
            ],
            dim=1,
        )
        learned = _mlp(self.mlp, inputs)
        context = torch.cat(
            [
                F.one_hot(features.categories, self.n_categories + 1).to(price.dtype),
                features.attributes,
                price,
                price.square(),
            ],
            dim=1,
        )
        return torch.cat([learned[:, :-1], context, learned[:, -1:]], dim=1)


class ContextAffinity(nn.Module):
    """v(s) = u + W [x̄_p(s) - x̄] from each pool's mean context features x̄_p(s)
    (zero for an empty pool), so that <v(s), x(i)> is the learned affinity
    between what the session holds and a candidate. Zero at initialisation.

    W is per pool and constrained to the affinities with a shopping reason:
    category to any category (the same one, a complementary one), an attribute
    to the same attribute, price to price; cross terms (a brand to a category)
    would multiply the weights to learn from the same clicks. W also has, per
    pool, one weight for "same category" and one for "same attribute" shared by
    every category and attribute: the evidence of all of them pools into these,
    so they are learned long before each category's own entry is.
    """

    def __init__(self, n_categories: int, n_attributes: int) -> None:
        super().__init__()
        x = self.width = context_width(n_categories, n_attributes)
        c, a = n_categories + 1, n_attributes
        self.weight = nn.Parameter(torch.zeros(x, N_POOLS * x))
        self.bias = nn.Parameter(torch.zeros(x))
        self.shared = nn.Parameter(torch.zeros(N_POOLS, 2))
        mask = torch.zeros(x, x)
        mask[:c, :c] = 1.0
        mask[c : c + a, c : c + a] = torch.eye(a)
        mask[c + a :, c + a :] = 1.0
        self.register_buffer("mask", mask.repeat(1, N_POOLS))
        identities = torch.zeros(2, x, x)
        identities[0, :c, :c] = torch.eye(c)
        identities[1, c : c + a, c : c + a] = torch.eye(a)
        self.register_buffer("identities", identities)
        # The catalog's mean x: pools enter as their difference from it, so that an
        # item's appeal to every shopper (its category's, its price level's) is
        # learned once, by u, which also serves sessions with nothing in them,
        # rather than once per pool.
        self.register_buffer("mean", torch.zeros(x))

    def fit_mean(self, context: Tensor) -> None:
        """Centre on a catalog's x rows (N, X)."""
        if len(context):
            self.mean.copy_(context.mean(0))

    def penalty(self) -> Tensor:
        """Squared size of W's own entries: the shrinkage that keeps an affinity
        at the shared "same category" / "same attribute" weights until the clicks
        of its own pair of categories or attributes say otherwise."""
        return (self.weight * self.mask).square().sum()

    def combined_weight(self) -> Tensor:
        """W: its own entries where the mask allows them plus the shared "same
        category" / "same attribute" weights. Serving computes it once per
        weights (``DoubleDQN.context_weight``) and passes it to ``forward``."""
        return self.weight * self.mask + torch.einsum(
            "pk,kxy->xpy", self.shared, self.identities
        ).reshape(self.width, -1)

    def forward(self, pooled: Tensor, present: Tensor, weight: Tensor | None = None) -> Tensor:
        """(B, X) v(s) from pooled x (B, N_POOLS, X) and which pools hold items (B, N_POOLS);
        ``weight``: ``combined_weight()`` already computed for these weights."""
        centred = pooled - present.to(pooled.dtype).unsqueeze(2) * self.mean
        weight = self.combined_weight() if weight is None else weight
        return F.linear(centred.flatten(1), weight, self.bias)


class StateTower(nn.Module):
    """[f(s), v(s), c(s)] from item-tower outputs averaged per pool (recent items of
    each event type, recency-weighted; cart; history; current item), the pool
    masses, the slot and the page depth: f and c from an MLP, v from the pools'
    context features (``ContextAffinity``)."""

    def __init__(self, config: DQNConfig, n_categories: int, n_attributes: int) -> None:
        super().__init__()
        self.embed_dim = config.embed_dim
        x = context_width(n_categories, n_attributes)
        width = N_POOLS * (config.embed_dim + x + 1) + SCALAR_WIDTH
        self.mlp = nn.Sequential(
            nn.Linear(width, config.state_hidden),
            nn.ReLU(),
            nn.Linear(config.state_hidden, config.embed_dim + 1),
        )
        # Registered last: the optimizer gives it its own learning rate in a
        # trailing parameter group (recommender.rl.optim).
        self.context = ContextAffinity(n_categories, n_attributes)

    def forward(
        self, item_table: Tensor, states: StateInputs, context_weight: Tensor | None = None
    ) -> Tensor:
        """(B, D + X + 1): state vector f, context query v and offset c in the last column.

        ``item_table`` (M, D + X + 1) holds the item-tower outputs ``states.rows`` index;
        ``context_weight`` is the context term's ``combined_weight()`` if already computed.
        """
        # Weighted mean per bag in one fused gather-and-sum; an empty pool pools to zero
        # and is told apart by its mass.
        pooled = F.embedding_bag(
            states.rows, item_table, states.offsets, mode="sum", per_sample_weights=states.weights
        ).view(len(states.scalars), N_POOLS, -1)
        learned = _mlp(self.mlp, torch.cat([pooled.flatten(1), states.scalars], dim=1))
        d = self.embed_dim
        context = self.context(
            pooled[:, :, d : d + self.context.width],
            states.scalars[:, :N_POOLS] > 0,
            context_weight,
        )
        return torch.cat([learned[:, :-1], context, learned[:, -1:]], dim=1)


class QNetwork(nn.Module):
    """Item tower plus state tower; Q is computed from their outputs by the helpers below."""

    def __init__(
        self, config: DQNConfig, vocabulary_size: int, n_categories: int, n_attributes: int
    ) -> None:
        super().__init__()
        self.items = ItemTower(config, vocabulary_size, n_categories, n_attributes)
        self.states = StateTower(config, n_categories, n_attributes)

    def pair_parameters(self) -> list[nn.Parameter]:
        """The context term's per-pair affinities (trained at ``DQNConfig.pair_lr``)."""
        return [self.states.context.weight]

    def context_parameters(self) -> list[nn.Parameter]:
        """The context term's other weights: u and the shared "same category" /
        "same attribute" weights (trained at ``DQNConfig.context_lr``)."""
        context = self.states.context
        return [context.bias, context.shared]

    def fit_catalog_scales(self, features: ItemFeatures) -> None:
        """Standardise log-prices and centre the context features on a catalog."""
        self.items.fit_price_scale(features.log_prices)
        with torch.no_grad():
            d = self.states.embed_dim
            self.states.context.fit_mean(self.items(features)[:, d:-1])


def query(state_out: Tensor) -> tuple[Tensor, Tensor]:
    """Split state outputs into the query [f(s), v(s), 1] and the offset c(s), so
    that Q(s, i) = item_out(i) @ query + offset with item_out(i) = [g(i), x(i), b(i)]."""
    # One pad instead of ones_like + cat: fewer ops, forward and backward.
    return F.pad(state_out[:, :-1], (0, 1), value=1.0), state_out[:, -1]


def pair_q(state_out: Tensor, item_out: Tensor) -> Tensor:
    """(B,) Q of each state with its own item: state_out and item_out (B, D+X+1)."""
    q, offset = query(state_out)
    return (item_out * q).sum(1) + offset


def pair_interaction(state_out: Tensor, item_out: Tensor, embed_dim: int) -> Tensor:
    """(B,) <f(s), g(i)> of each state with its own item: the part of ``pair_q``
    the two towers' vectors (their first ``embed_dim`` columns) make."""
    return (state_out[:, :embed_dim] * item_out[:, :embed_dim]).sum(1)


def candidate_q(state_out: Tensor, candidate_out: Tensor) -> Tensor:
    """(B, C) Q of each state with its own candidates: candidate_out (B, C, D+X+1)."""
    q, offset = query(state_out)
    return torch.bmm(candidate_out, q.unsqueeze(2)).squeeze(2) + offset.unsqueeze(1)


# Scoring each state's own W rows of a table: score every row of the table and
# pick while it has at most this many rows per picked one, else gather first.
GATHER_FACTOR = 32


def gather_rows(table: Tensor, rows: Tensor) -> Tensor:
    """``table[rows]`` for a (B, W) index, as one index_select (faster than advanced indexing)."""
    return table.index_select(0, rows.reshape(-1)).view(*rows.shape, table.shape[1])


def rows_q(state_out: Tensor, table: Tensor, rows: Tensor) -> Tensor:
    """(B, W) Q of each state with its own ``rows`` (B, W) of ``table``."""
    if len(table) > GATHER_FACTOR * rows.shape[1]:
        return candidate_q(state_out, gather_rows(table, rows))
    q, offset = query(state_out)
    # The state's offset is added after picking: W columns instead of the table's.
    return torch.mm(q, table.T).gather(1, rows) + offset.unsqueeze(1)


def all_items_q(state_out: Tensor, item_table: Tensor) -> Tensor:
    """(B, M) Q of each state with every item of ``item_table`` (M, D+X+1)."""
    q, offset = query(state_out)
    return q @ item_table.T + offset.unsqueeze(1)


class CatalogScorer:
    """``all_items_q`` of a few states with a large item table, reading less of it.

    Most of an item's context features x(i) are zero: the one-hot category
    and the store's one-hot attribute buckets. Scoring the whole catalog for
    one state is bound by how many bytes of the table it reads, and those
    zeros are most of them. Here the table's mostly-zero columns are kept as
    their non-zero (item, column, value) entries, summed per item (by a gather
    over rows of a fixed width for one state, else by ``embedding_bag``); the
    rest is a dense product. The split is taken from the table's own values,
    so any layout scores the same Q (up to float rounding); only the time
    changes.
    """

    # A column goes to the sparse part when at most this share of items is non-zero in it.
    SPARSE_DENSITY = 0.25

    def __init__(self, table: Tensor) -> None:
        nonzero = table != 0
        sparse = nonzero.float().mean(0) <= self.SPARSE_DENSITY
        self.dense_columns = torch.nonzero(~sparse).squeeze(1)
        self.sparse_columns = torch.nonzero(sparse).squeeze(1)
        self.dense = table.index_select(1, self.dense_columns).contiguous()
        entries = table.index_select(1, self.sparse_columns)
        rows, columns = torch.nonzero(entries, as_tuple=True)  # row-major: grouped by item
        self.columns = columns
        self.values = entries[rows, columns]
        counts = torch.bincount(rows, minlength=len(table))
        self.offsets = torch.cumsum(counts, 0) - counts
        # Items with about as many entries each (a category, a bucket per
        # attribute) are read faster as rows of a fixed width than as bags:
        # for one state, a gather and a sum. Rows are padded with entries of
        # value zero, or, when every entry is a one (one-hot columns), with a
        # column past the last whose query entry is zero, and then need no
        # weights. Kept when the padding at most doubles the entries.
        width = int(counts.max()) if len(rows) else 0
        self.fixed_columns = self.fixed_values = None
        if width and len(table) * width <= 2 * len(rows):
            position = torch.arange(len(rows)) - self.offsets[rows]
            ones = bool((self.values == 1).all())
            padding = len(self.sparse_columns) if ones else 0
            self.fixed_columns = torch.full((len(table), width), padding, dtype=torch.int64)
            self.fixed_columns[rows, position] = columns
            if not ones:
                self.fixed_values = torch.zeros(len(table), width, dtype=table.dtype)
                self.fixed_values[rows, position] = self.values

    def __call__(self, state_out: Tensor) -> Tensor:
        """(B, M) ``all_items_q(state_out, table)``."""
        q, offset = query(state_out)
        # (M, B): the table on the left reads it row after row, as a
        # matrix-vector product does (q @ table.T was half as fast for one state).
        out = self.dense @ q.index_select(1, self.dense_columns).T
        if len(self.sparse_columns):
            sparse_q = q.index_select(1, self.sparse_columns)
            if self.fixed_columns is not None and len(q) == 1:
                # One state: its query entries for each item's columns, summed
                # (weighted, unless every entry is a one).
                if self.fixed_values is None:
                    entries = F.pad(sparse_q[0], (0, 1))  # the padding column's zero
                    picked = entries.index_select(0, self.fixed_columns.view(-1))
                    picked = picked.view_as(self.fixed_columns)
                else:
                    picked = sparse_q[0].index_select(0, self.fixed_columns.view(-1))
                    picked = picked.view_as(self.fixed_values) * self.fixed_values
                out += picked.sum(1, keepdim=True)
            else:
                # Each item's bag of (column, value) entries: weighted sums of the
                # states' query entries for those columns.
                out += F.embedding_bag(
                    self.columns,
                    sparse_q.T.contiguous(),
                    self.offsets,
                    mode="sum",
                    per_sample_weights=self.values,
                )
        return out.T + offset.unsqueeze(1)


def grow_id_embeddings(
    networks: Sequence[QNetwork], optimizer: LazyAdam | None, added: int
) -> None:
    """Append ``added`` zero rows (the unknown-id vector) to the id embedding of
    each network and to the optimizer's moments for them (if it has one), for
    ids that joined the vocabulary; trained rows keep their place."""
    for net in networks:
        embedding = net.items.id_embedding
        weight = embedding.weight
        # Assigning .data keeps the Parameter object the optimizer refers to.
        weight.data = torch.cat([weight.data, weight.data.new_zeros(added, weight.shape[1])])
        embedding.num_embeddings = weight.shape[0]
        if optimizer is None:
            continue
        state = optimizer.moments(weight)
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key] = torch.cat(
                    [state[key], state[key].new_zeros(added, state[key].shape[1])]
                )
