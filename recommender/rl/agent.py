"""Per-item Double-DQN agent over the two-tower Q-network: serving (Q values,
slates) and replay training.

Per-item decomposition: Q(s, i) is learnt per shown item, slates are filled
greedily by Q with per-slot exploration, and a transition's bootstrap value is
the best item of its next state's candidate set (``BestItem``, the strategy
this agent hands the shared Double-DQN core, ``recommender.rl.core``).
``recommender.rl.slateq`` values whole slates with a click model instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from recommender.rl import checkpoint
from recommender.rl.config import DQNConfig
from recommender.rl.core import DoubleDQN, Network, TrainStats
from recommender.rl.encoding import IdVocabulary, ItemIndex, ObservationEncoder
from recommender.rl.explain import (
    ExplainedSlate,
    Reason,
    less_reference,
    pick_reasons,
    session_items,
)
from recommender.rl.network import ItemFeatures, QNetwork, StateInputs, pair_q, query, rows_q
from recommender.rl.optim import LazyAdam
from recommender.rl.replay import ReplayBatch, ReplayBuffer
from recommender.rl.slate import SlateBuilder, empty_slate
from recommender.rl.types import ItemCatalog, Observation, Slate


def greedy_next(next_q_online: Tensor, next_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Double-DQN action selection: per row of (B, C) online scores (no
    gradient), the best candidate among those ``next_mask`` marks, and whether
    there was any."""
    mask = next_mask.numpy()
    best = _masked_argmax(next_q_online.numpy(), mask)
    return torch.from_numpy(best), torch.from_numpy(mask.any(axis=1))


def _masked_argmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the column of the best score where ``mask`` is True. In numpy:
    torch's row-wise argmax and any ran about ten times slower on this CPU than
    numpy's (0.5 against 0.05 ms at 256 x 2,000)."""
    return np.where(mask, scores, -np.inf).argmax(axis=1)


def greedy_in_catalog(
    scores: np.ndarray, candidates: np.ndarray, exclude: np.ndarray
) -> tuple[Tensor, Tensor]:
    """``greedy_next`` over (B, N) online scores of the whole catalog, with each
    row's next candidates given as replay stores them: ``candidates`` (B, W)
    catalog rows (-1 padding) that are the set, or with ``exclude`` (B,) what
    the set leaves out. Overwrites the left-out scores with -inf.

    The store's sets leave out a few items of a large catalog: scattering -inf
    into those costs far less than masking every (row, item) pair."""
    valid = candidates >= 0
    b, j = np.nonzero(valid & exclude[:, None])
    scores[b, candidates[b, j]] = -np.inf
    best = scores.argmax(axis=1)
    counts = valid.sum(axis=1)
    has_next = np.where(exclude, counts < scores.shape[1], counts > 0)
    listed = np.flatnonzero(~exclude & (counts > 0))
    if len(listed):  # a set given as itself: the best among its items
        rows = candidates[listed]
        picked = np.take_along_axis(scores[listed], np.maximum(rows, 0), axis=1)
        best[listed] = rows[np.arange(len(listed)), _masked_argmax(picked, rows >= 0)]
    return torch.from_numpy(best), torch.from_numpy(has_next)


class BestItem:
    """The per-item agent's ``NextStateValue``: the online network picks each
    next state's best candidate item, the target network values it."""

    def next_values(
        self,
        core: DoubleDQN,
        batch: ReplayBatch,
        table: Tensor,
        next_rows: np.ndarray,
        candidate_rows: np.ndarray,
    ) -> tuple[Tensor, Tensor]:
        # Next Q-values of the online network over each next candidate set, for the
        # argmax only (over the whole catalog, c(s') is the same for every candidate
        # and left out).
        next_states = StateInputs.from_encoded(batch.next_states, next_rows)
        online = core.online.states(table, next_states)
        if batch.next_exclude.any():
            selector, _ = query(online)
            best_rows, has_next = greedy_in_catalog(
                (selector @ table.T).numpy(), batch.next_candidates, batch.next_exclude
            )
        else:
            candidates = torch.from_numpy(batch.next_candidates.astype(np.int64))
            next_q = rows_q(online, table, torch.from_numpy(candidate_rows))
            best, has_next = greedy_next(next_q, candidates >= 0)
            best_rows = candidates.gather(1, best.unsqueeze(1)).squeeze(1).clamp_min(0)
        # Evaluate the selected items with the target network.
        target_table = core.item_table("target")
        if len(table) != len(target_table):  # the step's rows are a subset: renumber back
            next_states = StateInputs.from_encoded(batch.next_states, batch.next_states.rows)
        next_target = core.target.states(target_table, next_states)
        return pair_q(next_target, target_table[best_rows]), has_next


class DQNAgent:
    """Per-item serving and training on a Double-DQN core (``core``) whose next
    states are valued by their best item."""

    def __init__(
        self, config: DQNConfig, catalog: ItemCatalog, n_categories: int | None = None
    ) -> None:
        self.core = DoubleDQN.fresh(config, catalog, n_categories, BestItem())

    # The core's state, read where the agent is used as a whole.

    @property
    def config(self) -> DQNConfig:
        return self.core.config

    @property
    def catalog(self) -> ItemCatalog:
        return self.core.catalog

    @property
    def index(self) -> ItemIndex:
        return self.core.index

    @property
    def features(self) -> ItemFeatures:
        return self.core.features

    @property
    def vocabulary(self) -> IdVocabulary:
        return self.core.vocabulary

    @property
    def encoder(self) -> ObservationEncoder:
        return self.core.encoder

    @property
    def online(self) -> QNetwork:
        return self.core.online

    @property
    def target(self) -> QNetwork:
        return self.core.target

    @property
    def adam(self) -> LazyAdam:
        return self.core.adam

    @property
    def optimizer(self) -> torch.optim.Adam:
        """Adam over the online network (``recommender.rl.optim``: built on first use)."""
        return self.core.optimizer

    @property
    def step(self) -> int:
        """Gradient steps taken."""
        return self.core.step

    # --- candidate universe -------------------------------------------------------------

    def set_catalog(self, catalog: ItemCatalog) -> None:
        """Make ``catalog`` the candidate universe (serving and training).

        With ``grow_vocabulary`` its new ids get id-embedding rows; cached item
        vectors are recomputed on next use.
        """
        self.core.set_catalog(catalog)

    # --- serving ------------------------------------------------------------------------

    def item_table(self, network: Network = "online") -> Tensor:
        """(N, D + X + 1) item-tower outputs [g, x, b] of every catalog row, computed once
        per catalog and weights."""
        return self.core.item_table(network)

    def q_values(
        self, obs: Observation, candidate_ids: np.ndarray, network: Network = "online"
    ) -> np.ndarray:
        """float32 Q(obs, i) for each candidate id (all must be in the catalog)."""
        return self.core.q_values(obs, candidate_ids, network)

    def q_values_batch(
        self,
        observations: Sequence[Observation],
        candidate_ids: np.ndarray,
        network: Network = "online",
    ) -> np.ndarray:
        """(B, C) float32 Q values; ``candidate_ids`` is (C,) shared by every
        observation or (B, C), one candidate row per observation."""
        return self.core.q_values_batch(observations, candidate_ids, network)

    def q_table(self, observations: Sequence[Observation]) -> np.ndarray:
        """(B, N) every Q value the agent's slates rest on: Q(s, i) of each catalog item."""
        return self.q_values_batch(observations, self.catalog.ids)

    def q_components(self, observations: Sequence[Observation]) -> dict[str, np.ndarray]:
        """The additive parts of ``q_table(observations)``, by name, each broadcastable
        to (B, N) and summing to it: what diagnostics use to tell how much of the
        ranking the state decides. ``interaction`` is <f(s), g(i)> (B, N),
        ``context`` <v(s), x(i)> (B, N), ``item_bias`` b(i) (1, N),
        ``state_offset`` c(s) (B, 1); only the terms that vary across items can
        change a ranking."""
        table = self.item_table("online")
        encoded = self.encoder.encode(observations, self.index)
        d = self.config.embed_dim
        with torch.inference_mode():
            state_out = self.online.states(table, StateInputs.from_encoded(encoded, encoded.rows))
            return {
                "interaction": (state_out[:, :d] @ table[:, :d].T).numpy(),
                "context": (state_out[:, d:-1] @ table[:, d:-1].T).numpy(),
                "item_bias": table[:, -1].numpy()[None, :].copy(),
                "state_offset": state_out[:, -1:].numpy().copy(),
            }

    def ranking_scores(
        self,
        observations: Sequence[Observation],
        candidate_mask: np.ndarray,
        k: int | np.ndarray,
    ) -> np.ndarray:
        """(B, N) scores over the catalog whose greedy order among a request's
        candidates (``candidate_mask`` (B, N)) is the order ``act`` fills a slate
        of ``k`` in: Q itself, whatever the candidates and ``k``."""
        return self.q_values_batch(observations, self.catalog.ids)

    def epsilon_at(self, step: int) -> float:
        """Exploration rate of the linear schedule after ``step`` gradient steps."""
        return self.core.epsilon_at(step)

    @property
    def epsilon(self) -> float:
        """Exploration rate at the current step."""
        return self.core.epsilon

    def act(
        self,
        obs: Observation,
        candidate_ids: np.ndarray,
        k: int,
        rng: np.random.Generator,
        epsilon: float | None = None,
        temperature: float | None = None,
        groups: np.ndarray | None = None,
    ) -> Slate:
        """A slate of up to ``k`` distinct candidates with their exact per-slot propensities.

        ``epsilon`` None follows the schedule at the current step, 0 is greedy;
        ``temperature`` switches to softmax exploration; ``groups`` (one key per
        candidate) keeps near-duplicates out of one slate (``SlateBuilder``).
        Candidates missing from the catalog cannot be scored and are left out.
        """
        ids, rows, groups = self._known(candidate_ids, groups)
        if k <= 0 or not len(ids):
            return empty_slate()
        self._check_distinct(rows)
        scores = self.core.scores([obs], rows, "online")[0]
        builder = SlateBuilder(
            epsilon=self.epsilon if epsilon is None else epsilon, temperature=temperature
        )
        return builder.build(ids, scores, k, rng, groups=groups)

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
        """``act``, with the means to explain its items: ``explain.reasons`` by
        ``explain.relative(q_values_batch, reference_ids)``. The slate's state
        and the states the reasons compare go through the state tower in one
        pass; the reasons then score only the shown and reference items."""
        ids, rows, groups = self._known(candidate_ids, groups)
        if k <= 0 or not len(ids):
            return ExplainedSlate(empty_slate(), lambda min_contribution=0.0: [])
        self._check_distinct(rows)
        anchors = session_items(obs)
        scores, alone = self.core.scores_each_alone(obs, rows, anchors, "online")
        builder = SlateBuilder(epsilon=self.epsilon if epsilon is None else epsilon)
        slate = builder.build(ids, scores, k, rng, groups=groups)

        def explain(min_contribution: float = 0.0) -> list[Reason]:
            if not anchors:
                return [Reason(None, 0.0) for _ in slate.items]
            reference = self.index.rows(np.asarray(reference_ids, dtype=np.int64))
            if np.any(reference < 0):
                raise ValueError("reference ids not in the catalog")
            q = alone(np.concatenate([self.index.rows(slate.items), reference]))
            return pick_reasons(anchors, less_reference(q, len(slate.items)), min_contribution)

        return ExplainedSlate(slate, explain)

    def _known(
        self, candidate_ids: np.ndarray, groups: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The candidates in the catalog: their ids, catalog rows and ``groups``
        (``act`` leaves the others out)."""
        ids = np.asarray(candidate_ids, dtype=np.int64).ravel()
        rows = self.index.rows(ids)
        known = rows >= 0
        if not known.all():
            ids, rows = ids[known], rows[known]
            groups = None if groups is None else np.asarray(groups)[known]
        return ids, rows, groups

    def _check_distinct(self, rows: np.ndarray) -> None:
        seen = np.zeros(len(self.catalog), dtype=bool)
        seen[rows] = True
        if np.count_nonzero(seen) != len(rows):
            raise ValueError("candidate_ids must be distinct")

    def slates(
        self,
        observations: Sequence[Observation],
        candidate_ids: Sequence[np.ndarray],
        k: int,
        rngs: Sequence[np.random.Generator],
        epsilon: float | None = None,
        groups: Sequence[np.ndarray] | None = None,
    ) -> list[Slate]:
        """``act`` for several requests at once: one batched Q evaluation over the
        catalog, then the same per-slot exploration (``SlateBuilder``) with each
        request's own random stream (and ``groups``, one key array per request).
        Candidates outside the catalog are left out."""
        if not observations:
            return []
        catalog_ids = np.asarray(self.catalog.ids, dtype=np.int64)
        order = np.argsort(catalog_ids, kind="stable")
        sorted_ids = catalog_ids[order]
        scores = self.q_values_batch(list(observations), catalog_ids)
        builder = SlateBuilder(epsilon=self.epsilon if epsilon is None else epsilon)
        slates = []
        for b, (row, ids, rng) in enumerate(zip(scores, candidate_ids, rngs, strict=True)):
            ids = np.asarray(ids, dtype=np.int64)
            pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
            known = sorted_ids[pos] == ids
            keys = None if groups is None else np.asarray(groups[b])[known]
            slates.append(builder.build(ids[known], row[order[pos[known]]], k, rng, groups=keys))
        return slates

    # --- learning -----------------------------------------------------------------------

    def make_replay(self, capacity: int | None = None) -> ReplayBuffer:
        """An empty replay buffer this agent trains from."""
        return ReplayBuffer(self.config, capacity)

    def train_steps(
        self, replay: ReplayBuffer, n_steps: int, rng: np.random.Generator
    ) -> TrainStats:
        """``n_steps`` gradient steps on minibatches sampled from ``replay``, which
        must be encoded against this agent's catalog."""
        return self.core.train_steps(replay, n_steps, rng)

    def td_targets(self, batch: ReplayBatch) -> Tensor:
        """Double-DQN targets of a minibatch over each next state's candidate set."""
        return self.core.td_targets(batch)

    # --- target network -----------------------------------------------------------------

    def sync_target(self) -> None:
        """Hard copy of the online weights into the target network."""
        self.core.sync_target()

    def soft_update(self, tau: float) -> None:
        """Polyak update: target ← tau·online + (1 - tau)·target (tau=1 is a hard copy)."""
        self.core.soft_update(tau)

    def networks(self) -> dict[str, nn.Module]:
        """Every trained module by name (what the publication checks inspect)."""
        return self.core.networks()

    # --- persistence --------------------------------------------------------------------

    def save(self, served: bool = False) -> bytes:
        """Checkpoint bytes: weights, optimizer state, config, vocabulary and catalog
        (``served``: the averaged weights as the online ones, what a store publishes)."""
        return checkpoint.dumps(self.core.checkpoint_payload(served))

    @classmethod
    def load(cls, data: bytes, catalog: ItemCatalog | None = None) -> DQNAgent:
        """Agent from ``save()`` bytes, serving ``catalog`` (default: the saved one).

        Raises ``checkpoint.CheckpointError`` naming the offending tensor when the
        weights are not finite or do not match the saved config and schema.
        """
        return cls.from_payload(checkpoint.loads(data), catalog)

    @classmethod
    def from_payload(
        cls, payload: dict, catalog: ItemCatalog | None = None, *, act_only: bool = False
    ) -> DQNAgent:
        """``load`` from an already parsed checkpoint (``act_only``: see
        ``agents.load_agent``)."""
        if "slateq" in payload:
            raise checkpoint.CheckpointError(
                "this is a SlateQ checkpoint: load it with recommender.rl.slateq.SlateQAgent.load"
            )
        agent = cls.__new__(cls)
        agent.core = DoubleDQN.from_payload(payload, BestItem(), catalog, act_only=act_only)
        return agent
