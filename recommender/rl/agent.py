"""Double-DQN agent over the two-tower Q-network: serving (Q values, slates) and
replay training.

Per-item decomposition: Q(s, i) is learnt per shown item, slates are filled
greedily by Q with per-slot exploration, and a transition's bootstrap value is
the best item of its next state's candidate set. ``recommender.rl.slateq``
values whole slates with a click model instead.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recommender.rl import checkpoint
from recommender.rl.config import DQNConfig
from recommender.rl.encoding import IdVocabulary, ItemIndex, ObservationEncoder
from recommender.rl.network import (
    ItemFeatures,
    QNetwork,
    StateInputs,
    all_items_q,
    grow_id_embeddings,
    pair_q,
    query,
    rows_q,
)
from recommender.rl.optim import LazyAdam
from recommender.rl.replay import ReplayBatch, ReplayBuffer
from recommender.rl.slate import SlateBuilder, empty_slate
from recommender.rl.types import ItemCatalog, Observation, Slate

Network = Literal["online", "target"]

# Score the whole catalog and pick the candidates' scores once the candidates are
# at least this fraction of it: cheaper than gathering their item vectors first.
_FULL_SCORING_FRACTION = 0.25


class TrainStats(NamedTuple):
    """What one ``train_steps`` call did."""

    steps: int  # gradient steps in this call
    loss: float  # mean Huber loss over them
    mean_q: float  # mean Q(s, a) of the sampled transitions
    epsilon: float  # exploration rate of the schedule after them
    replay_size: int
    seconds: float


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


def td_target(
    rewards: Tensor, dones: Tensor, gamma: float, next_values: Tensor, has_next: Tensor
) -> Tensor:
    """r + γ·(1 - done)·Q_target(s', a*): no bootstrap past the end of a session,
    nor from an empty next candidate set."""
    return rewards + gamma * (1.0 - dones) * torch.where(has_next, next_values, 0.0)


class DQNAgent:
    """Online and target Q-networks, their optimizer and the candidate universe."""

    def __init__(
        self, config: DQNConfig, catalog: ItemCatalog, n_categories: int | None = None
    ) -> None:
        if n_categories is None:
            n_categories = category_count(catalog)
        self._setup(config, int(n_categories), _n_attributes(catalog), IdVocabulary(catalog.ids))
        self.set_catalog(catalog)
        self.online.fit_catalog_scales(self.features)
        self.sync_target()
        self._item_tables.clear()

    def _setup(
        self, config: DQNConfig, n_categories: int, n_attributes: int, vocabulary: IdVocabulary
    ) -> None:
        self.config = config
        self.n_categories = n_categories
        self.n_attributes = n_attributes
        self.vocabulary = vocabulary
        self.encoder = ObservationEncoder(config)
        # Seed initialisation without disturbing the caller's global torch RNG.
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            self.online = QNetwork(config, len(vocabulary), n_categories, n_attributes)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        # Built when it first trains or saves; the context term learns at its own rate.
        self.adam = LazyAdam(
            self.online, config.lr, self.online.context_parameters(), config.context_lr
        )
        self.step = 0
        self._item_tables: dict[str, Tensor] = {}

    @property
    def optimizer(self) -> torch.optim.Adam:
        """Adam over the online network (``recommender.rl.optim``: built on first use)."""
        return self.adam.get()

    # --- candidate universe -------------------------------------------------------------

    def set_catalog(self, catalog: ItemCatalog) -> None:
        """Make ``catalog`` the candidate universe (serving and training).

        With ``grow_vocabulary`` its new ids get id-embedding rows; cached item
        vectors are recomputed on next use.
        """
        if _n_attributes(catalog) != self.n_attributes:
            raise ValueError(
                f"catalog has {_n_attributes(catalog)} attributes per item, the model {self.n_attributes}"
            )
        if self.config.grow_vocabulary:
            added = self.vocabulary.extend(catalog.ids)
            if added:
                grow_id_embeddings([self.online, self.target], self.adam, added)
        self.catalog = catalog
        self.index = ItemIndex.of(catalog)
        self.features = ItemFeatures.build(  # item-tower inputs of every catalog row
            catalog, self.vocabulary, self.n_categories
        )
        self._item_tables.clear()

    # --- serving ------------------------------------------------------------------------

    def item_table(self, network: Network = "online") -> Tensor:
        """(N, D + X + 1) item-tower outputs [g, x, b] of every catalog row, computed once
        per catalog and weights."""
        table = self._item_tables.get(network)
        if table is None:
            with torch.inference_mode():
                table = self._network(network).items(self.features)
            self._item_tables[network] = table
        return table

    def q_values(
        self, obs: Observation, candidate_ids: np.ndarray, network: Network = "online"
    ) -> np.ndarray:
        """float32 Q(obs, i) for each candidate id (all must be in the catalog)."""
        return self.q_values_batch([obs], candidate_ids, network)[0]

    def q_values_batch(
        self,
        observations: Sequence[Observation],
        candidate_ids: np.ndarray,
        network: Network = "online",
    ) -> np.ndarray:
        """(B, C) float32 Q values; ``candidate_ids`` is (C,) shared by every
        observation or (B, C), one candidate row per observation."""
        ids = np.asarray(candidate_ids, dtype=np.int64)
        rows = self.index.rows(ids)
        if np.any(rows < 0):
            unknown = np.unique(ids[rows < 0])[:10].tolist()
            raise ValueError(f"candidate ids not in the catalog: {unknown}")
        if ids.ndim == 2 and len(ids) != len(observations):
            raise ValueError("2-d candidate_ids need one row per observation")
        return self._scores(observations, rows, network)

    def _scores(
        self, observations: Sequence[Observation], rows: np.ndarray, network: Network
    ) -> np.ndarray:
        table = self.item_table(network)
        encoded = self.encoder.encode(observations, self.index)
        with torch.inference_mode():
            state_out = self._network(network).states(
                table, StateInputs.from_encoded(encoded, encoded.rows)
            )
            if rows.ndim == 2:
                return rows_q(state_out, table, torch.from_numpy(rows)).numpy()
            if len(rows) >= _FULL_SCORING_FRACTION * len(table):
                return all_items_q(state_out, table).numpy()[:, rows]
            return all_items_q(state_out, table.index_select(0, torch.from_numpy(rows))).numpy()

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
        c = self.config
        fraction = min(max(step, 0) / c.epsilon_decay_steps, 1.0)
        return c.epsilon_start + fraction * (c.epsilon_end - c.epsilon_start)

    @property
    def epsilon(self) -> float:
        """Exploration rate at the current step."""
        return self.epsilon_at(self.step)

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
        ids = np.asarray(candidate_ids, dtype=np.int64).ravel()
        rows = self.index.rows(ids)
        known = rows >= 0
        if not known.all():
            ids, rows = ids[known], rows[known]
            groups = None if groups is None else np.asarray(groups)[known]
        if k <= 0 or not len(ids):
            return empty_slate()
        seen = np.zeros(len(self.catalog), dtype=bool)
        seen[rows] = True
        if np.count_nonzero(seen) != len(rows):
            raise ValueError("candidate_ids must be distinct")
        scores = self._scores([obs], rows, "online")[0]
        builder = SlateBuilder(
            epsilon=self.epsilon if epsilon is None else epsilon, temperature=temperature
        )
        return builder.build(ids, scores, k, rng, groups=groups)

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
        if replay.catalog is None or not len(replay):
            raise ValueError("the replay buffer is empty")
        if replay.catalog is not self.catalog and not np.array_equal(
            replay.catalog.ids, self.catalog.ids
        ):
            raise ValueError(
                "the replay buffer was encoded against another catalog than the agent's"
            )
        start = time.perf_counter()
        loss_sum = torch.zeros(())
        q_sum = torch.zeros(())
        interval = self.config.target_update_interval
        for _ in range(n_steps):
            loss, mean_q = self._train_step(replay.sample(self.config.batch_size, rng), rng)
            loss_sum += loss
            q_sum += mean_q
            self.step += 1
            if interval and self.step % interval == 0:
                self.soft_update(self.config.tau)
        self._item_tables.clear()
        steps = max(n_steps, 1)
        return TrainStats(
            steps=n_steps,
            loss=float(loss_sum) / steps,
            mean_q=float(q_sum) / steps,
            epsilon=self.epsilon,
            replay_size=len(replay),
            seconds=time.perf_counter() - start,
        )

    def _train_step(self, batch: ReplayBatch, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        c = self.config
        table, local = self._online_table(batch)
        # Current Q-values of the shown items. Gradients reach the state tower through
        # f(s), c(s) and the item tower through g(a), b(a); the pooled context vectors
        # are inputs, which keeps the backward pass independent of session lengths.
        features = self.features.take(torch.from_numpy(batch.actions))
        if c.id_dropout > 0:
            # Hide a random share of id embeddings so the features learn to carry the signal.
            hidden = torch.from_numpy(rng.random(len(batch.actions)) < c.id_dropout)
            features = features._replace(id_rows=features.id_rows.masked_fill(hidden, 0))
        state_out = self.online.states(table, StateInputs.from_encoded(batch.states, local[0]))
        q = pair_q(state_out, self.online.items(features))
        # Double-DQN targets (no gradient).
        with torch.no_grad():
            target = self._td_targets(batch, table, local[1], local[2])
        # Huber loss, then one clipped gradient step.
        loss = F.huber_loss(q, target, delta=c.huber_delta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.online.parameters(), c.max_grad_norm, foreach=True)
        self.optimizer.step()
        return loss.detach(), q.detach().mean()

    @torch.no_grad()
    def td_targets(self, batch: ReplayBatch) -> Tensor:
        """Double-DQN targets of a minibatch over each next state's candidate set."""
        table, local = self._online_table(batch)
        return self._td_targets(batch, table, local[1], local[2])

    def _online_table(self, batch: ReplayBatch) -> tuple[Tensor, list[np.ndarray]]:
        """Online item outputs (no gradient) of the rows the minibatch refers to, and
        its states', next states' and next candidates' rows renumbered into them."""
        # "Every catalog item except ..." candidate sets need the whole catalog.
        used, local = self._compact(
            batch.states.rows,
            batch.next_states.rows,
            batch.next_candidates,
            everything=bool(batch.next_exclude.any()),
        )
        with torch.no_grad():
            table = self.online.items(self.features if used is None else self.features.take(used))
        return table, local

    def _td_targets(
        self, batch: ReplayBatch, table: Tensor, next_rows: np.ndarray, candidate_rows: np.ndarray
    ) -> Tensor:
        rewards = torch.from_numpy(batch.rewards)
        if self.config.gamma == 0.0:
            return rewards  # myopic: nothing to bootstrap
        # Next Q-values of the online network over each next candidate set, for the
        # argmax only (over the whole catalog, c(s') is the same for every candidate
        # and left out).
        next_states = StateInputs.from_encoded(batch.next_states, next_rows)
        online = self.online.states(table, next_states)
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
        target_table = self.item_table("target")
        if len(table) != len(target_table):  # the step's rows are a subset: renumber back
            next_states = StateInputs.from_encoded(batch.next_states, batch.next_states.rows)
        next_target = self.target.states(target_table, next_states)
        next_values = pair_q(next_target, target_table[best_rows])
        # One-step TD target.
        return td_target(
            rewards, torch.from_numpy(batch.dones), self.config.gamma, next_values, has_next
        )

    def _dense_mask(self, batch: ReplayBatch) -> Tensor:
        """(B, N) next-candidate mask over the whole catalog."""
        mask = np.zeros((len(batch.rewards), len(self.catalog)), dtype=bool)
        mask[batch.next_exclude] = True
        b, j = np.nonzero(batch.next_candidates >= 0)
        mask[b, batch.next_candidates[b, j]] = ~batch.next_exclude[b]
        return torch.from_numpy(mask)

    def _compact(
        self, *row_arrays: np.ndarray, everything: bool = False
    ) -> tuple[Tensor | None, list[np.ndarray]]:
        """The catalog rows ``row_arrays`` reference (None: all of them) and the arrays
        renumbered into that list, padding (-1) pointing at any valid row.

        Running the item tower on the referenced rows only is what keeps a step's
        cost independent of the catalog size.
        """
        n = len(self.catalog)
        clipped = [np.maximum(a, 0).astype(np.int64) for a in row_arrays]
        if everything or sum(a.size for a in clipped) >= n:
            return None, clipped
        used = np.zeros(n, dtype=bool)
        for a in clipped:
            used[a] = True
        local = np.cumsum(used) - 1
        return torch.from_numpy(np.flatnonzero(used)), [local[a] for a in clipped]

    # --- target network -----------------------------------------------------------------

    def sync_target(self) -> None:
        """Hard copy of the online weights into the target network."""
        self.target.load_state_dict(self.online.state_dict())
        self._item_tables.pop("target", None)

    @torch.no_grad()
    def soft_update(self, tau: float) -> None:
        """Polyak update: target ← tau·online + (1 - tau)·target (tau=1 is a hard copy)."""
        if not 0.0 < tau <= 1.0:
            raise ValueError("tau must be in (0, 1]")
        if tau == 1.0:
            self.sync_target()
            return
        torch._foreach_lerp_(list(self.target.parameters()), list(self.online.parameters()), tau)
        for target, online in zip(self.target.buffers(), self.online.buffers(), strict=True):
            target.copy_(online)
        self._item_tables.pop("target", None)

    def _network(self, network: Network) -> QNetwork:
        return self.online if network == "online" else self.target

    def networks(self) -> dict[str, nn.Module]:
        """Every trained module by name (what the publication checks inspect)."""
        return {"online": self.online, "target": self.target}

    # --- persistence --------------------------------------------------------------------

    def save(self) -> bytes:
        """Checkpoint bytes: weights, optimizer state, config, vocabulary and catalog."""
        return checkpoint.dumps(self.checkpoint_payload())

    def checkpoint_payload(self) -> dict:
        """What ``save`` serialises (tensors, dicts and scalars)."""
        return {
            "config": self.config.to_dict(),
            "n_categories": self.n_categories,
            "n_attributes": self.n_attributes,
            "vocabulary": torch.from_numpy(self.vocabulary.ids.copy()),
            "catalog": checkpoint.catalog_to_tensors(self.catalog),
            "step": self.step,
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.adam.state_dict(),
        }

    @classmethod
    def load(cls, data: bytes, catalog: ItemCatalog | None = None) -> DQNAgent:
        """Agent from ``save()`` bytes, serving ``catalog`` (default: the saved one).

        Raises ``checkpoint.CheckpointError`` naming the offending tensor when the
        weights are not finite or do not match the saved config and schema.
        """
        return cls.from_payload(checkpoint.loads(data), catalog)

    @classmethod
    def from_payload(cls, payload: dict, catalog: ItemCatalog | None = None) -> DQNAgent:
        """``load`` from an already parsed checkpoint."""
        if "slateq" in payload and cls is DQNAgent:
            raise checkpoint.CheckpointError(
                "this is a SlateQ checkpoint: load it with recommender.rl.slateq.SlateQAgent.load"
            )
        try:
            config = DQNConfig.from_dict(payload["config"])
        except (TypeError, ValueError) as exc:
            raise checkpoint.CheckpointError(f"invalid config in checkpoint: {exc}") from exc
        try:
            schema = (
                int(payload["n_categories"]),
                int(payload["n_attributes"]),
                IdVocabulary(payload["vocabulary"].numpy()),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise checkpoint.CheckpointError(f"invalid schema in checkpoint: {exc}") from exc
        agent = cls.__new__(cls)
        agent._setup(config, *schema)
        checkpoint.restore_module(agent.online, payload["online"], "online")
        checkpoint.restore_module(agent.target, payload["target"], "target")
        agent.adam.restore(payload["optimizer"])
        agent.step = int(payload["step"])
        agent.set_catalog(
            catalog if catalog is not None else checkpoint.catalog_from_tensors(payload["catalog"])
        )
        return agent


def category_count(catalog: ItemCatalog) -> int:
    """Category-table size for a catalog whose categories are 0..max."""
    return int(catalog.categories.max()) + 1 if len(catalog) else 1


def _n_attributes(catalog: ItemCatalog) -> int:
    attributes = np.asarray(catalog.attributes)
    return int(attributes.shape[1]) if attributes.ndim == 2 else 0
