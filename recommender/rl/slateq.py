"""SlateQ: Double DQN whose slates are valued with a learned click model.

The per-item agent (``recommender.rl.agent``) ranks items by Q(s, i) and
bootstraps from the best single item of the next state. A carousel earns from
at most one click among its items, so neither is the value of a slate. SlateQ
(Ie et al., 2019) splits the two things a slate's value depends on:

- ``Q(s, i)``, the return of the session *given a click on i* (the immediate
  reward of the click and what it leads to), and ``Q(s, ∅)``, the return when
  nothing is clicked. Both come from the same two-tower network, "no click"
  being one extra item row without features.
- A click model: a position-biased conditional logit. Item i shown at
  position k is clicked with probability a_k·w_i / (1 + Σ_j a_j·w_j), where
  w_i = exp(u(s, i)) comes from a small two-tower network of its own and the
  attention a_k falls with the position (learned, monotone by construction).

A slate S is then worth ``Q(s, ∅) + Σ_k a_k w_k (Q(s, i_k) - Q(s, ∅)) / (1 + Σ_k a_k w_k)``.
Its best value over ordered K-subsets is found exactly by ``best_carousels``
(Dinkelbach's method; its inner problem is a sort), both to serve (the greedy
order is by w·(Q - Q(∅) - λ*), explored per slot by ``SlateBuilder`` with exact
propensities) and to bootstrap: the Double-DQN target of a logged slate is
r + γ·value of the next state's best slate, chosen with the online network and
valued with the target network.

Training data are the per-item ``Transition``s the store and the simulator
log; ``SlateReplay`` groups consecutive transitions of one state back into
slates. The clicked item (the one with a positive reward) gives a ``Q(s, i)``
transition, a slate without a click a ``Q(s, ∅)`` one, and every full slate
a sample for the click model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recommender.rl import checkpoint
from recommender.rl.config import DQNConfig
from recommender.rl.core import (
    DoubleDQN,
    NotKept,
    TrainStats,
    attribute_count,
    category_count,
    kept,
)
from recommender.rl.encoding import IdVocabulary, ItemIndex, ObservationEncoder
from recommender.rl.explain import ExplainedSlate, reasons, relative
from recommender.rl.network import (
    ItemFeatures,
    QNetwork,
    StateInputs,
    all_items_q,
    candidate_q,
    gather_rows,
    grow_id_embeddings,
    rows_q,
)
from recommender.rl.optim import LazyAdam
from recommender.rl.replay import ReplayBatch, ReplayBuffer
from recommender.rl.slate import SlateBuilder, best_carousels, empty_slate
from recommender.rl.types import ItemCatalog, Observation, Slate, Transition


def group_slates(transitions: Sequence[Transition]) -> list[list[Transition]]:
    """Consecutive transitions of one request, in order: the items of a slate
    share their state object (as the simulator and the store's replay build
    them). Equal states of separate requests, say two shoppers who land on the
    home page and leave, stay separate slates."""
    slates: list[list[Transition]] = []
    for t in transitions:
        if slates and t.state is slates[-1][0].state:
            slates[-1].append(t)
        else:
            slates.append([t])
    return slates


# The id of the "no click" row: never a store id (primary keys are positive), and
# fixed, so the row keeps its learned embedding however the catalog changes.
NO_CLICK_ID = -1


def with_no_click_row(catalog: ItemCatalog) -> ItemCatalog:
    """``catalog`` plus one featureless row, id ``NO_CLICK_ID``, standing for "no click"."""
    ids = np.asarray(catalog.ids, dtype=np.int64)
    if np.any(ids == NO_CLICK_ID):
        raise ValueError(f"item id {NO_CLICK_ID} is reserved for SlateQ's no-click row")
    attributes = np.asarray(catalog.attributes, dtype=np.float32).reshape(len(catalog), -1)
    return ItemCatalog(
        ids=np.append(ids, NO_CLICK_ID),
        # No category: the item tower's "unknown category" row.
        categories=np.append(np.asarray(catalog.categories, dtype=np.int64), -1),
        prices=np.append(np.asarray(catalog.prices, dtype=np.float32), 0.0).astype(np.float32),
        attributes=np.vstack([attributes, np.zeros((1, attributes.shape[1]), np.float32)]),
    )


def without_no_click_row(extended: ItemCatalog) -> ItemCatalog:
    """The catalog ``with_no_click_row`` extended (its last row dropped)."""
    return ItemCatalog(
        ids=extended.ids[:-1],
        categories=extended.categories[:-1],
        prices=extended.prices[:-1],
        attributes=np.asarray(extended.attributes)[:-1],
    )


class ClickModel(nn.Module):
    """u(s, i) from two small towers, and the log-attention of each position."""

    def __init__(
        self, config: DQNConfig, vocabulary_size: int, n_categories: int, n_attributes: int
    ) -> None:
        super().__init__()
        small = dataclasses.replace(
            config,
            embed_dim=config.click_embed_dim,
            item_hidden=config.click_hidden,
            state_hidden=config.click_hidden,
        )
        self.towers = QNetwork(small, vocabulary_size, n_categories, n_attributes)
        # log a_0 = 0 and every later position loses softplus(step) > 0: monotone.
        # The start, a_k = exp(-0.2 k), is a mild position bias.
        self.attention_steps = nn.Parameter(torch.full((config.max_positions - 1,), -1.5))

    def log_attention(self) -> Tensor:
        """(max_positions,) log a_k, non-increasing, a_0 = 1."""
        drops = F.softplus(self.attention_steps).cumsum(0)
        return torch.cat([drops.new_zeros(1), -drops])

    def attention(self, k: int) -> np.ndarray:
        with torch.no_grad():
            return self.log_attention()[:k].exp().double().numpy()


class SlateReplay:
    """Replay for SlateQ: the value transitions (a ``ReplayBuffer`` over the
    catalog with its no-click row) and the slates the click model learns from."""

    def __init__(self, agent: SlateQAgent, capacity: int | None = None) -> None:
        config = agent.config
        self.agent = agent
        self.values = ReplayBuffer(config, capacity)
        self.capacity = self.values.capacity
        self.encoder = ObservationEncoder(config)
        self.width = config.max_positions
        self._states = self.encoder.empty(self.capacity)
        self._items = np.full((self.capacity, self.width), -1, dtype=np.int64)
        self._labels = np.zeros(self.capacity, dtype=np.int64)  # 0: no click, 1 + position
        self._slates = 0
        self._next = 0
        self._items_seen = 0

    def __len__(self) -> int:
        """Shown items held (what a per-item replay of the same slates would hold)."""
        return self._items_seen

    @property
    def slates(self) -> int:
        """Slates the click model can sample."""
        return self._slates

    def add_many(self, transitions: Sequence[Transition], catalog: ItemCatalog) -> int:
        """Group per-item ``transitions`` into slates and store them; returns how
        many item transitions were accepted."""
        agent = self.agent
        if catalog is not agent.catalog and not np.array_equal(catalog.ids, agent.catalog.ids):
            raise ValueError("transitions must be encoded against the agent's catalog")
        value_transitions: list[Transition] = []
        click_states: list[Observation] = []
        click_items: list[np.ndarray] = []
        click_labels: list[int] = []
        accepted = 0
        for slate in group_slates(transitions):
            rows = agent.index.rows([t.item for t in slate])
            if np.any(rows < 0):
                continue  # an item the model cannot score: the slate cannot be modelled
            accepted += len(slate)
            rewards = np.array([t.reward for t in slate])
            clicked = np.flatnonzero(rewards > 0)
            if len(clicked):
                value_transitions.extend(slate[i] for i in clicked)
            else:
                head = slate[0]
                value_transitions.append(head._replace(item=NO_CLICK_ID, reward=0.0))
            if len(slate) <= self.width:
                label = 1 + int(np.argmax(rewards)) if len(clicked) else 0
                click_states.append(slate[0].state)
                click_items.append(rows)
                click_labels.append(label)
        self.values.add_many(value_transitions, agent.core.catalog)
        if click_states:
            self._add_click_samples(click_states, click_items, click_labels)
        self._items_seen = min(self._items_seen + accepted, self.capacity * self.width)
        return accepted

    def _add_click_samples(
        self, states: list[Observation], items: list[np.ndarray], labels: list[int]
    ) -> None:
        n = len(states)
        keep = slice(max(0, n - self.capacity), n)
        encoded = self.encoder.encode(states[keep], self.agent.index)
        slots = (self._next + np.arange(keep.stop - keep.start)) % self.capacity
        for target, source in zip(self._states, encoded, strict=True):
            target[slots] = source
        self._items[slots] = -1
        for slot, rows in zip(slots, items[keep], strict=True):
            self._items[slot, : len(rows)] = rows
        self._labels[slots] = labels[keep]
        self._next = int((slots[-1] + 1) % self.capacity)
        self._slates = min(self.capacity, self._slates + len(slots))

    def sample_slates(self, batch_size: int, rng: np.random.Generator):
        """(states, items (B, width) rows with -1 padding, labels) drawn uniformly."""
        index = rng.integers(0, self._slates, size=batch_size)
        return self._states.take(index), self._items[index], self._labels[index]


class ClickScorer:
    """The click model as the slate values use it: click weights exp(u(s, i))
    of the catalog's items and the position attentions, each computed once per
    click-model weights (``changed``) and catalog (``use_catalog``)."""

    def __init__(self, model: ClickModel, max_positions: int) -> None:
        self.model = model
        self.max_positions = max_positions
        self.features: ItemFeatures | None = None
        self._table: Tensor | None = None  # click item vectors, until the model trains
        self._attention: np.ndarray | None = None  # likewise the position attention

    def use_catalog(self, features: ItemFeatures) -> None:
        """Score the catalog whose click-tower inputs are ``features``."""
        self.features = features
        self._table = None

    def changed(self) -> None:
        """Forget what was computed from the click model's weights (it trained)."""
        self._table = self._attention = None

    def attention(self, k: int) -> np.ndarray:
        """The click model's first ``k`` position attentions."""
        if self._attention is None:
            self._attention = self.model.attention(self.max_positions)
        return self._attention[:k]

    def weights(self, states: StateInputs, rows: Tensor | None = None) -> Tensor:
        """exp(u(s, i)) (the no-click weight is 1) of every catalog item, (B, N),
        or of each state's own catalog ``rows`` (B, W); ``states`` pool catalog rows."""
        towers = self.model.towers
        with torch.no_grad():
            if self._table is None:
                self._table = towers.items(self.features)
            table = self._table
            state_out = towers.states(table, states)
            if rows is None:
                utility = all_items_q(state_out, table)
            else:
                utility = rows_q(state_out, table, rows)
            return utility.clamp(-30.0, 30.0).exp()


class BestSlate:
    """SlateQ's ``NextStateValue``: the core's Q(s, i | click) / Q(s, ∅)
    network is over the catalog plus its no-click row (the last one); the
    online network and the click model pick each next state's best slate, the
    target network values it."""

    def __init__(self, clicks: ClickScorer) -> None:
        self.clicks = clicks

    def next_values(
        self,
        core: DoubleDQN,
        batch: ReplayBatch,
        table: Tensor,
        next_rows: np.ndarray,
        candidate_rows: np.ndarray,
    ) -> tuple[Tensor, Tensor]:
        n = len(core.catalog) - 1  # the items; row n is "no click"
        next_states = StateInputs.from_encoded(batch.next_states, _rows(batch.next_states.rows))
        if not batch.next_exclude.any():
            return self._listed(core, batch, table, next_rows, candidate_rows, next_states)
        mask = core.dense_mask(batch)[:, :n]  # the no-click row is never a candidate
        # The step's online item table is the whole catalog whenever a next set is a
        # complement (the usual case); otherwise compute it.
        full = table if len(table) == n + 1 else core.online.items(core.features)
        q_online = all_items_q(core.online.states(full, next_states), full)
        gain = q_online[:, :n] - q_online[:, n:]
        weights = self.clicks.weights(next_states)  # masked where used: fewer passes
        return self._bootstrap(core, next_states, weights, gain, mask.numpy(), None)

    def _listed(
        self,
        core: DoubleDQN,
        batch: ReplayBatch,
        table: Tensor,
        next_rows: np.ndarray,
        candidate_rows: np.ndarray,
        next_states: StateInputs,
    ) -> tuple[Tensor, Tensor]:
        """The same values when every next set is listed (at most
        ``max_next_candidates`` items): the slates are solved over each row's
        own candidates instead of the whole catalog."""
        n = len(core.catalog) - 1
        rows = batch.next_candidates.astype(np.int64)  # (B, W) catalog rows, -1 padding
        valid = rows >= 0
        listed = torch.from_numpy(np.maximum(rows, 0))
        # Online network, on the step's compact item table (``next_rows`` and
        # ``candidate_rows`` index it; when it is the whole catalog, the catalog
        # rows' inputs serve as they are), plus the no-click row.
        if len(table) != n + 1:
            next_states_local = StateInputs.from_encoded(batch.next_states, next_rows)
            no_click = core.online.items(core.features.take(torch.tensor([n])))
        else:
            next_states_local, no_click = next_states, table[n:]
        online = core.online.states(table, next_states_local)
        q_online = rows_q(online, table, torch.from_numpy(candidate_rows.astype(np.int64)))
        gain = q_online - all_items_q(online, no_click)
        weights = self.clicks.weights(next_states, listed)
        return self._bootstrap(core, next_states, weights, gain, valid, listed)

    def _bootstrap(
        self,
        core: DoubleDQN,
        next_states: StateInputs,
        weights: Tensor,
        gain: Tensor,
        mask: np.ndarray,
        columns: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Double DQN: the online network's ``gain`` (B, M) Q(s', i) - Q(s', ∅)
        picks each next state's best slate under the click ``weights`` (B, M)
        among the ``mask``ed candidates, whose catalog rows are ``columns``
        (B, M) (None: the catalog itself); the target network values that
        slate, scoring only its items and "no click". A row with fewer
        candidates than slots fills the rest with masked ones, which weigh nothing."""
        n = len(core.catalog) - 1
        attention = self.clicks.attention(min(core.config.slate_size, gain.shape[1]))
        _, chosen = best_carousels(
            weights.double().numpy(), gain.double().numpy(), attention, 1.0, mask=mask
        )
        chosen = torch.from_numpy(chosen)
        shown = chosen if columns is None else columns.gather(1, chosen)
        target_table = core.item_table("target")
        target = core.target.states(target_table, next_states)
        shown_allowed = torch.from_numpy(np.take_along_axis(mask, chosen.numpy(), axis=1))
        next_values = slate_value(
            weights.gather(1, chosen) * shown_allowed,
            candidate_q(target, gather_rows(target_table, shown)),
            all_items_q(target, target_table[n:])[:, 0],
            attention,
        )
        return next_values, torch.from_numpy(mask.any(axis=1))


def slate_value(
    shown_weights: Tensor, shown_q: Tensor, q_none: Tensor, attention: np.ndarray
) -> Tensor:
    """(B,) value of slates whose items, by position, have click weights
    ``shown_weights`` (B, K) and values ``shown_q`` (B, K), under the click model:
    Q(∅) + Σ_k a_k w_k (Q_k - Q(∅)) / (1 + Σ_k a_k w_k)."""
    a = torch.from_numpy(attention[: shown_weights.shape[1]]).to(shown_weights.dtype)
    shown = shown_weights * a
    gains = shown_q - q_none.unsqueeze(1)
    return q_none + (shown * gains).sum(1) / (1.0 + shown.sum(1))


class SlateQAgent:
    """A Double-DQN core over the catalog plus its no-click row (``core``,
    valuing next states by their best slate) and the click model."""

    def __init__(
        self, config: DQNConfig, catalog: ItemCatalog, n_categories: int | None = None
    ) -> None:
        if n_categories is None:
            n_categories = category_count(catalog)
        self._setup(config, int(n_categories), attribute_count(catalog), IdVocabulary(catalog.ids))
        self.core = DoubleDQN.fresh(
            config, with_no_click_row(catalog), n_categories, BestSlate(self.clicks)
        )
        self._use_catalog(catalog)
        self.click.towers.fit_catalog_scales(self.click_features)

    def _setup(
        self,
        config: DQNConfig,
        n_categories: int,
        n_attributes: int,
        click_vocabulary: IdVocabulary,
    ) -> None:
        """The click model and its optimizer, for the value core's schema."""
        self.config = config
        self.encoder = ObservationEncoder(config)
        self.click_vocabulary = click_vocabulary
        self.n_categories = n_categories
        with torch.random.fork_rng():
            torch.manual_seed(config.seed + 1)
            self.click = ClickModel(config, len(click_vocabulary), n_categories, n_attributes)
        self.click_adam = LazyAdam(self.click, config.click_lr)  # built when it first trains
        self.clicks = ClickScorer(self.click, config.max_positions)
        self._click_carry = 0.0
        self.click_loss = float("nan")

    @property
    def click_optimizer(self) -> torch.optim.Adam:
        """Adam over the click model (``recommender.rl.optim``: built on first use)."""
        return self.click_adam.get()

    @property
    def click_features(self) -> ItemFeatures:
        """The click towers' inputs of every catalog row."""
        return self.clicks.features

    # --- candidate universe -------------------------------------------------------------

    def set_catalog(self, catalog: ItemCatalog) -> None:
        """Make ``catalog`` the candidate universe, as ``DQNAgent.set_catalog``:
        with ``grow_vocabulary`` new ids get id-embedding rows in both networks,
        and the no-click row keeps its identity."""
        self.core.set_catalog(with_no_click_row(catalog))
        if self.config.grow_vocabulary:
            added = self.click_vocabulary.extend(catalog.ids)
            if added:
                grow_id_embeddings(
                    [self.click.towers], self.click_adam if kept(self.click_adam) else None, added
                )
        self._use_catalog(catalog)

    def _use_catalog(self, catalog: ItemCatalog) -> None:
        self.catalog = catalog
        self.index = ItemIndex.of(catalog)
        self.n_items = len(catalog)
        # The click towers read categories through the value core's rows.
        self.clicks.use_catalog(
            ItemFeatures.build(catalog, self.click_vocabulary, self.core.categories)
        )

    # --- persistence --------------------------------------------------------------------

    def save(self, served: bool = False) -> bytes:
        """Checkpoint bytes: the value networks' checkpoint (over the catalog with
        its no-click row) plus the click model, its id vocabulary and optimizer."""
        return checkpoint.dumps(
            {
                **self.core.checkpoint_payload(served),
                "slateq": {
                    "click_vocabulary": torch.from_numpy(self.click_vocabulary.ids.copy()),
                    "click": self.click.state_dict(),
                    "click_optimizer": self.click_adam.state_dict(),
                },
            }
        )

    @classmethod
    def load(cls, data: bytes, catalog: ItemCatalog | None = None) -> SlateQAgent:
        """Agent from ``save()`` bytes, serving ``catalog`` (default: the saved
        one); raises ``checkpoint.CheckpointError`` for a checkpoint that is not
        SlateQ's, not finite or does not fit its config."""
        return cls.from_payload(checkpoint.loads(data), catalog)

    @classmethod
    def from_payload(
        cls, payload: dict, catalog: ItemCatalog | None = None, *, act_only: bool = False
    ) -> SlateQAgent:
        """``load`` from an already parsed checkpoint (``act_only``: see
        ``agents.load_agent``)."""
        saved = payload.get("slateq")
        if not isinstance(saved, dict) or not {
            "click_vocabulary",
            "click",
            "click_optimizer",
        } <= set(saved):
            raise checkpoint.CheckpointError("not a SlateQ checkpoint")
        config, n_categories, n_attributes, _ = DoubleDQN.read_schema(payload)
        try:
            click_vocabulary = IdVocabulary(saved["click_vocabulary"].numpy())
        except (AttributeError, TypeError, ValueError) as exc:
            raise checkpoint.CheckpointError(f"invalid click vocabulary: {exc}") from exc
        agent = cls.__new__(cls)
        agent._setup(config, n_categories, n_attributes, click_vocabulary)
        agent.core = DoubleDQN.from_payload(payload, BestSlate(agent.clicks), act_only=act_only)
        extended = agent.core.catalog
        if not len(extended) or extended.ids[-1] != NO_CLICK_ID:
            raise checkpoint.CheckpointError("SlateQ checkpoint without its no-click row")
        checkpoint.restore_module(agent.click, saved["click"], "click")
        if act_only:
            agent.click_adam = NotKept("click model optimizer")
        else:
            agent.click_adam.restore(saved["click_optimizer"])
        agent._use_catalog(without_no_click_row(extended))
        if catalog is not None:
            agent.set_catalog(catalog)
        return agent

    def networks(self) -> dict[str, nn.Module]:
        """Every trained module by name (what the publication checks inspect)."""
        return {**self.core.networks(), "click": self.click}

    # --- learning -----------------------------------------------------------------------

    def make_replay(self, capacity: int | None = None) -> SlateReplay:
        return SlateReplay(self, capacity)

    @property
    def step(self) -> int:
        return self.core.step

    @property
    def epsilon(self) -> float:
        return self.core.epsilon

    def sync_target(self) -> None:
        self.core.sync_target()

    def train_steps(
        self, replay: SlateReplay, n_steps: int, rng: np.random.Generator
    ) -> TrainStats:
        """``n_steps`` value steps and ``click_steps_per_step`` times as many
        click-model steps (fractions carried over between calls)."""
        self._click_carry += n_steps * self.config.click_steps_per_step
        click_steps = int(self._click_carry)
        self._click_carry -= click_steps
        if replay.slates:
            for _ in range(click_steps):
                self._click_step(replay, rng)
        self.clicks.changed()
        return self.core.train_steps(replay.values, n_steps, rng)

    def _click_step(self, replay: SlateReplay, rng: np.random.Generator) -> None:
        states, items, labels = replay.sample_slates(self.config.batch_size, rng)
        # Stored slates are max_positions wide: score only up to the last position
        # any sampled slate fills or any label (1 + clicked position) points at.
        filled = np.flatnonzero((items >= 0).any(axis=0))
        width = max(int(filled[-1]) + 1 if len(filled) else 1, int(labels.max()), 1)
        items = items[:, :width]
        towers = self.click.towers
        table = towers.items(self.click_features)
        state_out = towers.states(table, StateInputs.from_encoded(states, _rows(states.rows)))
        shown = torch.from_numpy(items)
        utility = candidate_q(state_out, gather_rows(table, shown.clamp_min(0)))
        utility = (utility + self.click.log_attention()[:width]).masked_fill(
            shown < 0, float("-inf")
        )
        logits = torch.cat([utility.new_zeros(len(utility), 1), utility], dim=1)
        loss = F.cross_entropy(logits, torch.from_numpy(labels))
        self.click_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.click.parameters(), self.config.max_grad_norm, foreach=True)
        self.click_optimizer.step()
        self.click_loss = float(loss.detach())

    # --- scoring ------------------------------------------------------------------------

    def click_attention(self, k: int) -> np.ndarray:
        """The click model's first ``k`` position attentions (computed once per weights)."""
        return self.clicks.attention(k)

    def click_weights(self, states: StateInputs, rows: Tensor | None = None) -> Tensor:
        """exp(u(s, i)) (the no-click weight is 1) of every catalog item, (B, N),
        or of each state's own catalog ``rows`` (B, W); ``states`` pool catalog rows."""
        return self.clicks.weights(states, rows)

    def slate_scores(
        self, observations: Sequence[Observation], candidate_ids: Sequence[np.ndarray], k: int
    ) -> list[np.ndarray]:
        """Per request, a score for each candidate whose greedy top k (largest
        first) is the best slate of k under the click model: w·(Q - Q(∅) - λ*)."""
        rows = [self.index.rows(np.asarray(ids, dtype=np.int64)) for ids in candidate_ids]
        if any(np.any(r < 0) for r in rows):
            raise ValueError("candidate ids not in the catalog")
        return self._slate_scores(observations, rows, k)

    def _slate_scores(
        self, observations: Sequence[Observation], rows: list[np.ndarray], k: int
    ) -> list[np.ndarray]:
        """``slate_scores`` of candidates given by catalog rows."""
        encoded = self.encoder.encode(list(observations), self.index)
        states = StateInputs.from_encoded(encoded, _rows(encoded.rows))
        weights = self.click_weights(states).numpy()
        table = self.core.item_table("online")  # the catalog's rows, then the no-click row
        with torch.no_grad():
            state_out = self.core.online.states(table, states, self.core.context_weight("online"))
            q = all_items_q(state_out, table).numpy()
        n = self.n_items
        attention = self.click_attention(min(k, n))
        if len(rows) == 1:  # one request (serving): work on its candidates only
            if not len(rows[0]):
                return [np.empty(0, dtype=np.float32)]
            w = weights[0, rows[0]].astype(np.float64)
            gain = q[0, rows[0]].astype(np.float64) - float(q[0, n])
            best, _ = best_carousels(w[None], gain[None], attention[: len(w)], 1.0)
            return [(w * (gain - best[0])).astype(np.float32)]
        weights, q = weights.astype(np.float64), q.astype(np.float64)
        mask = np.zeros((len(rows), n), dtype=bool)
        for b, r in enumerate(rows):
            mask[b, r] = True
        gain = q[:, :n] - q[:, n:]
        best, _ = best_carousels(weights, gain, attention, 1.0, mask=mask)
        scores = weights * (gain - best[:, None])
        return [scores[b, r].astype(np.float32) for b, r in enumerate(rows)]

    def ranking_scores(
        self,
        observations: Sequence[Observation],
        candidate_mask: np.ndarray,
        k: int | np.ndarray,
    ) -> np.ndarray:
        """(B, N) scores over the catalog whose greedy order among a request's
        candidates (``candidate_mask`` (B, N)) is the order ``act`` fills a slate
        of ``k`` (one per request, or (B,)) in: ``slate_scores``, -inf outside
        the candidates."""
        ids = np.asarray(self.catalog.ids, dtype=np.int64)
        mask = np.asarray(candidate_mask, dtype=bool)
        sizes = np.broadcast_to(np.asarray(k, dtype=np.int64), (len(mask),))
        scores = np.full(mask.shape, -np.inf, dtype=np.float32)
        for size in np.unique(sizes):
            rows = np.flatnonzero(sizes == size)
            found = self.slate_scores(
                [observations[r] for r in rows], [ids[mask[r]] for r in rows], int(size)
            )
            for r, values in zip(rows, found, strict=True):
                scores[r, mask[r]] = values
        return scores

    def q_values_batch(
        self, observations: Sequence[Observation], candidate_ids: np.ndarray
    ) -> np.ndarray:
        """(B, C) float32 Q(s, i | click), the value of a click on each candidate,
        as ``DQNAgent.q_values_batch`` (``candidate_ids`` (C,) or (B, C))."""
        return self.core.q_values_batch(observations, candidate_ids)

    def q_table(self, observations: Sequence[Observation]) -> np.ndarray:
        """(B, N + 1) every Q value the agent's slates rest on: Q(s, i | click) of
        each catalog item, then Q(s, no click)."""
        return self.core.q_values_batch(observations, self.core.catalog.ids)

    def act(
        self,
        obs: Observation,
        candidate_ids: np.ndarray,
        k: int,
        rng: np.random.Generator,
        epsilon: float | None = None,
        groups: np.ndarray | None = None,
    ) -> Slate:
        """One slate of up to ``k`` candidates, as ``DQNAgent.act``."""
        keys = None if groups is None else [groups]
        return self.slates([obs], [candidate_ids], k, [rng], epsilon, groups=keys)[0]

    def act_explained(
        self,
        obs: Observation,
        candidate_ids: np.ndarray,
        k: int,
        rng: np.random.Generator,
        epsilon: float | None = None,
        *,
        groups: np.ndarray | None = None,
        reference_ids: np.ndarray,
    ) -> ExplainedSlate:
        """``act``, with its items' ``explain.reasons`` by
        ``explain.relative(q_values_batch, reference_ids)``, scored when asked."""
        slate = self.act(obs, candidate_ids, k, rng, epsilon, groups=groups)
        score = relative(self.q_values_batch, reference_ids)
        return ExplainedSlate(
            slate,
            lambda min_contribution=0.0: reasons(score, obs, slate.items, min_contribution),
        )

    def slates(
        self,
        observations: Sequence[Observation],
        candidate_ids: Sequence[np.ndarray],
        k: int,
        rngs: Sequence[np.random.Generator],
        epsilon: float | None = None,
        groups: Sequence[np.ndarray] | None = None,
    ) -> list[Slate]:
        """One slate per request, explored per slot (``epsilon`` None: the schedule);
        ``groups``: one near-duplicate key array per request (``SlateBuilder``)."""
        if not observations:
            return []
        builder = SlateBuilder(epsilon=self.epsilon if epsilon is None else epsilon)
        known, rows, keys = [], [], []
        for b, ids in enumerate(candidate_ids):
            ids = np.asarray(ids, dtype=np.int64)
            found = self.index.rows(ids)
            group = None if groups is None else np.asarray(groups[b])
            if not (found >= 0).all():
                in_catalog = found >= 0
                ids, found = ids[in_catalog], found[in_catalog]
                group = None if group is None else group[in_catalog]
            known.append(ids)
            rows.append(found)
            keys.append(group)
        result = []
        for ids, scores, rng, group in zip(
            known, self._slate_scores(observations, rows, k), rngs, keys, strict=True
        ):
            result.append(
                builder.build(ids, scores, k, rng, groups=group) if len(ids) else empty_slate()
            )
        return result


def _rows(rows: np.ndarray) -> np.ndarray:
    """Encoded item rows as embedding_bag indices (padding carries no weight)."""
    return np.maximum(rows, 0).astype(np.int64)
