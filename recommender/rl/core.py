"""The Double-DQN core both agents are built on: online and target Q-networks
over a catalog, their optimizer, replay training and target updates.

What the agents do differently is how a transition's next state is valued: the
per-item agent (``recommender.rl.agent``) bootstraps from the next state's best
item, SlateQ (``recommender.rl.slateq``) from its best slate under a click
model. That is a ``NextStateValue`` strategy handed to the core; the core does
the rest of the Double-DQN update (the minibatch, the online item table, the
TD target, the Huber loss and the clipped step) the same way for both.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Literal, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recommender.rl import checkpoint
from recommender.rl.config import DQNConfig
from recommender.rl.encoding import (
    CategoryVocabulary,
    EncodedStates,
    IdVocabulary,
    ItemIndex,
    ObservationEncoder,
)
from recommender.rl.network import (
    CatalogScorer,
    ItemFeatures,
    QNetwork,
    StateInputs,
    all_items_q,
    grow_id_embeddings,
    pair_interaction,
    pair_q,
    rows_q,
)
from recommender.rl.optim import LazyAdam
from recommender.rl.replay import ReplayBatch, ReplayBuffer
from recommender.rl.types import ItemCatalog, Observation

Network = Literal["online", "target"]

# Score the whole catalog and pick the candidates' scores once the candidates are
# at least this fraction of it: cheaper than gathering their item vectors first.
_FULL_SCORING_FRACTION = 0.25
# Score the whole catalog with a ``CatalogScorer`` from this many items, for up
# to SCORER_MAX_STATES states at once: below, or for more states, the dense
# product is as fast.
SCORER_MIN_ITEMS = 4096
SCORER_MAX_STATES = 8


def _listed_q(
    state_out: Tensor, table: Tensor, rows: np.ndarray, scorer: CatalogScorer | None = None
) -> np.ndarray:
    """(B, C) Q of each state with the catalog ``rows`` (C,) of ``table``
    (whose ``CatalogScorer`` is ``scorer``, if it has one)."""
    if len(rows) >= _FULL_SCORING_FRACTION * len(table):
        if scorer is not None and len(state_out) <= SCORER_MAX_STATES:
            return scorer(state_out).numpy()[:, rows]
        return all_items_q(state_out, table).numpy()[:, rows]
    return all_items_q(state_out, table.index_select(0, torch.from_numpy(rows))).numpy()


class AloneScores:
    """Q of catalog rows in a state's ``explain.EachAlone`` states, from their
    state-tower outputs (``DoubleDQN.scores_each_alone``): scoring more rows
    costs a product with their item vectors, no further pass."""

    def __init__(self, state_out: Tensor, table: Tensor, scorer: CatalogScorer | None) -> None:
        self.state_out = state_out
        self.table = table
        self.scorer = scorer

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """(1 + A, C) Q of catalog ``rows`` (C,) in each of the states."""
        with torch.inference_mode():
            return _listed_q(
                self.state_out, self.table, np.asarray(rows, dtype=np.int64), self.scorer
            )


class TrainStats(NamedTuple):
    """What one ``train_steps`` call did."""

    steps: int  # gradient steps in this call
    loss: float  # mean Huber loss over them
    mean_q: float  # mean Q(s, a) of the sampled transitions
    epsilon: float  # exploration rate of the schedule after them
    replay_size: int
    seconds: float


class NextStateValue(Protocol):
    """How a minibatch's next states are valued for the Double-DQN target:
    choose with the online network, value the choice with the target network."""

    def next_values(
        self,
        core: DoubleDQN,
        batch: ReplayBatch,
        table: Tensor,
        next_rows: np.ndarray,
        candidate_rows: np.ndarray,
    ) -> tuple[Tensor, Tensor]:
        """(B,) values of the next states and (B,) whether each had any candidate
        to show. ``table`` is the step's online item table (no gradient): the
        whole catalog, or only the rows the minibatch refers to, into which
        ``next_rows`` (the next states' encoded rows) and ``candidate_rows``
        (the next candidates) are renumbered."""
        ...


def td_target(
    rewards: Tensor, dones: Tensor, gamma: float, next_values: Tensor, has_next: Tensor
) -> Tensor:
    """r + γ·(1 - done)·Q_target(s', a*): no bootstrap past the end of a session,
    nor from an empty next candidate set."""
    return rewards + gamma * (1.0 - dones) * torch.where(has_next, next_values, 0.0)


class NotKept:
    """What an agent loaded only to act (``from_payload(act_only=True)``: a
    web process serving slates) does not keep: its target and averaged
    networks and its optimizer. Any use of it raises, naming it."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __getattr__(self, name: str):
        raise RuntimeError(
            f"this agent was loaded only to act: it keeps no {self.what}, "
            "so it can neither train nor be saved"
        )


def kept(part) -> bool:
    """Whether an agent keeps ``part`` (see ``NotKept``)."""
    return not isinstance(part, NotKept)


class DoubleDQN:
    """Online and target Q-networks, their optimizer and the candidate universe,
    trained by Double DQN with ``next_value`` valuing next states."""

    def __init__(
        self,
        config: DQNConfig,
        n_categories: int,
        n_attributes: int,
        vocabulary: IdVocabulary,
        next_value: NextStateValue,
        *,
        act_only: bool = False,
    ) -> None:
        """Networks for a schema, without a catalog yet (``fresh`` and
        ``from_payload`` give a usable core); ``act_only``: the online network
        alone (``NotKept``)."""
        self.config = config
        self.n_categories = n_categories
        self.n_attributes = n_attributes
        self.vocabulary = vocabulary
        # Category labels' rows (``fresh`` and ``from_payload`` set the catalog's).
        self.categories = CategoryVocabulary(n_categories, np.arange(n_categories))
        self.next_value = next_value
        self.encoder = ObservationEncoder(config)
        # Seed initialisation without disturbing the caller's global torch RNG.
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            self.online = QNetwork(config, len(vocabulary), n_categories, n_attributes)
        if act_only:
            self.target = NotKept("target network")
            self.averaged = NotKept("averaged network")
            self.adam = NotKept("optimizer")
        else:
            self.target = copy.deepcopy(self.online).requires_grad_(False)
            # What a published checkpoint serves: a moving average of the online weights.
            self.averaged = copy.deepcopy(self.online).requires_grad_(False)
            # Built when it first trains or saves; the context term learns at its own
            # rates (its per-pair affinities, then its shared weights).
            self.adam = LazyAdam(
                self.online,
                config.lr,
                [
                    (self.online.pair_parameters(), config.pair_lr),
                    (self.online.context_parameters(), config.context_lr),
                ],
            )
        self.step = 0
        # What serving computes once per weights (and catalog), by network.
        self._item_tables: dict[str, Tensor] = {}
        self._context_weights: dict[str, Tensor] = {}
        self._scorers: dict[str, CatalogScorer | None] = {}

    @classmethod
    def fresh(
        cls,
        config: DQNConfig,
        catalog: ItemCatalog,
        n_categories: int | None,
        next_value: NextStateValue,
    ) -> DoubleDQN:
        """An untrained core serving ``catalog``, with a category table of
        ``n_categories`` rows (default: categories 0..max)."""
        if n_categories is None:
            n_categories = category_count(catalog)
        core = cls(
            config,
            int(n_categories),
            attribute_count(catalog),
            IdVocabulary(catalog.ids),
            next_value,
        )
        core.categories = CategoryVocabulary.for_catalog(int(n_categories), catalog.categories)
        core.set_catalog(catalog)
        core.online.fit_catalog_scales(core.features)
        core.sync_target()
        core.averaged.load_state_dict(core.online.state_dict())
        core._forget()
        return core

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
        if attribute_count(catalog) != self.n_attributes:
            raise ValueError(
                f"catalog has {attribute_count(catalog)} attributes per item, the model {self.n_attributes}"
            )
        if self.config.grow_vocabulary:
            added = self.vocabulary.extend(catalog.ids)
            if added:
                grow_id_embeddings(
                    [n for n in (self.online, self.target, self.averaged) if kept(n)],
                    self.adam if kept(self.adam) else None,
                    added,
                )
        self.categories.extend(catalog.categories)
        self.catalog = catalog
        self.index = ItemIndex.of(catalog)
        self.features = ItemFeatures.build(  # item-tower inputs of every catalog row
            catalog, self.vocabulary, self.categories
        )
        self._forget()

    # --- scoring ------------------------------------------------------------------------

    def item_table(self, network: Network = "online") -> Tensor:
        """(N, D + X + 1) item-tower outputs [g, x, b] of every catalog row, computed once
        per catalog and weights."""
        table = self._item_tables.get(network)
        if table is None:
            with torch.inference_mode():
                table = self.network(network).items(self.features)
            self._item_tables[network] = table
        return table

    def catalog_scorer(self, network: Network = "online") -> CatalogScorer | None:
        """The item table's ``CatalogScorer``, built once per catalog and
        weights; None for a catalog under SCORER_MIN_ITEMS items."""
        if network not in self._scorers:
            table = self.item_table(network)
            with torch.inference_mode():
                scorer = CatalogScorer(table) if len(table) >= SCORER_MIN_ITEMS else None
            self._scorers[network] = scorer
        return self._scorers[network]

    def context_weight(self, network: Network = "online") -> Tensor:
        """The context term's ``combined_weight()``, computed once per weights."""
        weight = self._context_weights.get(network)
        if weight is None:
            with torch.inference_mode():
                weight = self.network(network).states.context.combined_weight()
            self._context_weights[network] = weight
        return weight

    def _forget(self, network: Network | None = None) -> None:
        """Drop what was computed for the weights or catalog of ``network`` (None: both)."""
        for kept in (self._item_tables, self._context_weights, self._scorers):
            if network is None:
                kept.clear()
            else:
                kept.pop(network, None)

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
        return self.scores(observations, rows, network)

    def scores(
        self, observations: Sequence[Observation], rows: np.ndarray, network: Network = "online"
    ) -> np.ndarray:
        """``q_values_batch`` of candidates given by catalog ``rows`` (C,) or (B, C)."""
        table = self.item_table(network)
        encoded = self.encoder.encode(observations, self.index)
        with torch.inference_mode():
            state_out = self.network(network).states(
                table,
                StateInputs.from_encoded(encoded, encoded.rows),
                self.context_weight(network),
            )
            if rows.ndim == 2:
                return rows_q(state_out, table, torch.from_numpy(rows)).numpy()
            return _listed_q(state_out, table, rows, self.catalog_scorer(network))

    def scores_each_alone(
        self,
        obs: Observation,
        rows: np.ndarray,
        anchors: Sequence[int],
        network: Network = "online",
    ) -> tuple[np.ndarray, AloneScores]:
        """``scores([obs], rows)[0]``, and the means to score any rows in the
        states ``explain.EachAlone(obs, anchors)``, from one state-tower pass
        over ``obs`` and those states together: what a served slate and its
        reasons cost together."""
        table = self.item_table(network)
        encoded = EncodedStates.concat(
            [
                self.encoder.encode([obs], self.index),
                self.encoder.encode_each_alone(obs, anchors, self.index),
            ]
        )
        with torch.inference_mode():
            state_out = self.network(network).states(
                table,
                StateInputs.from_encoded(encoded, encoded.rows),
                self.context_weight(network),
            )
            scorer = self.catalog_scorer(network)
            scores = _listed_q(state_out[:1], table, rows, scorer)[0]
        return scores, AloneScores(state_out[1:], table, scorer)

    def epsilon_at(self, step: int) -> float:
        """Exploration rate of the linear schedule after ``step`` gradient steps."""
        c = self.config
        fraction = min(max(step, 0) / c.epsilon_decay_steps, 1.0)
        return c.epsilon_start + fraction * (c.epsilon_end - c.epsilon_start)

    @property
    def epsilon(self) -> float:
        """Exploration rate at the current step."""
        return self.epsilon_at(self.step)

    # --- learning -----------------------------------------------------------------------

    def train_steps(
        self, replay: ReplayBuffer, n_steps: int, rng: np.random.Generator
    ) -> TrainStats:
        """``n_steps`` gradient steps on minibatches sampled from ``replay``, which
        must be encoded against this core's catalog."""
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
            self._update_average()
        self._forget()
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
        item_out = self.online.items(features)
        q = pair_q(state_out, item_out)
        # Double-DQN targets (no gradient).
        with torch.no_grad():
            target = self._td_targets(batch, table, local[1], local[2])
        # Huber loss, then one clipped gradient step.
        loss = F.huber_loss(q, target, delta=c.huber_delta)
        if c.context_l2 > 0:
            loss = loss + c.context_l2 * self.online.states.context.penalty()
        if c.interaction_l2 > 0:
            interaction = pair_interaction(state_out, item_out, c.embed_dim)
            loss = loss + c.interaction_l2 * interaction.square().mean()
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

    def _td_targets(
        self, batch: ReplayBatch, table: Tensor, next_rows: np.ndarray, candidate_rows: np.ndarray
    ) -> Tensor:
        rewards = torch.from_numpy(batch.rewards)
        if self.config.gamma == 0.0:
            return rewards  # myopic: nothing to bootstrap
        next_values, has_next = self.next_value.next_values(
            self, batch, table, next_rows, candidate_rows
        )
        # One-step TD target.
        return td_target(
            rewards, torch.from_numpy(batch.dones), self.config.gamma, next_values, has_next
        )

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

    def dense_mask(self, batch: ReplayBatch) -> Tensor:
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
        self._forget("target")

    @torch.no_grad()
    def soft_update(self, tau: float) -> None:
        """Polyak update: target ← tau·online + (1 - tau)·target (tau=1 is a hard copy)."""
        if not 0.0 < tau <= 1.0:
            raise ValueError("tau must be in (0, 1]")
        if tau == 1.0:
            self.sync_target()
            return
        self._move_towards_online(self.target, tau)
        self._forget("target")

    def _update_average(self) -> None:
        """averaged ← decay·averaged + (1 - decay)·online, after each gradient step."""
        self._move_towards_online(self.averaged, 1.0 - self.config.served_average)

    @torch.no_grad()
    def _move_towards_online(self, network: QNetwork, weight: float) -> None:
        """network ← weight·online + (1 - weight)·network; buffers copied."""
        torch._foreach_lerp_(list(network.parameters()), list(self.online.parameters()), weight)
        for mine, online in zip(network.buffers(), self.online.buffers(), strict=True):
            mine.copy_(online)

    def network(self, network: Network) -> QNetwork:
        return self.online if network == "online" else self.target

    def networks(self) -> dict[str, nn.Module]:
        """Both Q-networks by name."""
        return {"online": self.online, "target": self.target}

    # --- persistence --------------------------------------------------------------------

    def checkpoint_payload(self, served: bool = False) -> dict:
        """The checkpoint fields (``recommender.rl.checkpoint``) of this core:
        weights, optimizer state, config, vocabulary and catalog. ``served``: the
        checkpoint a store publishes, whose online weights are the moving average
        (``DQNConfig.served_average``); otherwise the learner, to train on."""
        averaged = self.averaged.state_dict()
        return {
            "config": self.config.to_dict(),
            "n_categories": self.n_categories,
            "n_attributes": self.n_attributes,
            "vocabulary": torch.from_numpy(self.vocabulary.ids.copy()),
            "category_labels": torch.from_numpy(self.categories.labels.copy()),
            "catalog": checkpoint.catalog_to_tensors(self.catalog),
            "step": self.step,
            "online": averaged if served else self.online.state_dict(),
            "target": self.target.state_dict(),
            "averaged": averaged,
            "optimizer": self.adam.state_dict(),
        }

    @staticmethod
    def read_schema(payload: dict) -> tuple[DQNConfig, int, int, IdVocabulary]:
        """A parsed checkpoint's config, category count, attribute count and id
        vocabulary; ``checkpoint.CheckpointError`` when they are invalid."""
        try:
            config = DQNConfig.from_dict(payload["config"])
        except (TypeError, ValueError) as exc:
            raise checkpoint.CheckpointError(f"invalid config in checkpoint: {exc}") from exc
        try:
            return (
                config,
                int(payload["n_categories"]),
                int(payload["n_attributes"]),
                IdVocabulary(payload["vocabulary"].numpy()),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise checkpoint.CheckpointError(f"invalid schema in checkpoint: {exc}") from exc

    @classmethod
    def from_payload(
        cls,
        payload: dict,
        next_value: NextStateValue,
        catalog: ItemCatalog | None = None,
        *,
        act_only: bool = False,
    ) -> DoubleDQN:
        """The core saved in a parsed checkpoint, serving ``catalog`` (default:
        the saved one); with ``act_only`` its online network alone (what
        serving uses; ``NotKept``). Raises ``checkpoint.CheckpointError``
        naming the offending tensor when the weights it loads are not finite
        or do not match the saved config and schema."""
        core = cls(*cls.read_schema(payload), next_value, act_only=act_only)
        # Checkpoints from before category labels used the labels as rows.
        if "category_labels" in payload:
            try:
                core.categories = CategoryVocabulary(
                    core.n_categories, payload["category_labels"].numpy()
                )
            except (AttributeError, TypeError, ValueError) as exc:
                raise checkpoint.CheckpointError(f"invalid category labels: {exc}") from exc
        checkpoint.restore_module(core.online, payload["online"], "online")
        if not act_only:
            checkpoint.restore_module(core.target, payload["target"], "target")
            # Checkpoints from before the moving average start it at the online weights.
            checkpoint.restore_module(
                core.averaged, payload.get("averaged", payload["online"]), "averaged"
            )
            core.adam.restore(payload["optimizer"])
        core.step = int(payload["step"])
        core.set_catalog(
            catalog if catalog is not None else checkpoint.catalog_from_tensors(payload["catalog"])
        )
        return core


def category_count(catalog: ItemCatalog) -> int:
    """Category-table size for a catalog whose categories are 0..max."""
    return int(catalog.categories.max()) + 1 if len(catalog) else 1


def attribute_count(catalog: ItemCatalog) -> int:
    """Attributes per item of ``catalog``."""
    attributes = np.asarray(catalog.attributes)
    return int(attributes.shape[1]) if attributes.ndim == 2 else 0
