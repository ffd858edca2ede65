"""``Learner``: what the store, the evaluation and the benchmarks use of an
agent, whichever kind (``recommender.rl.agents``: the per-item ``DQNAgent``
and ``SlateQAgent``). Callers type against it rather than against the union
of the two classes.

Nothing here runs torch: the web process imports it without paying for torch
until it loads a checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from recommender.rl.types import ItemCatalog, Observation, Slate, Transition

if TYPE_CHECKING:
    from torch import nn

    from recommender.rl.config import DQNConfig
    from recommender.rl.core import TrainStats
    from recommender.rl.explain import ExplainedSlate


class Replay(Protocol):
    """A learner's replay memory (``Learner.make_replay``)."""

    def add_many(self, transitions: Sequence[Transition], catalog: ItemCatalog) -> int:
        """Store per-item ``transitions`` encoded against ``catalog`` (the
        learner's); returns how many were accepted."""
        ...

    def __len__(self) -> int:
        """Shown items held."""
        ...


class Learner(Protocol):
    """A Double-DQN slate recommender: serves slates, learns from replay, saves."""

    config: DQNConfig

    @property
    def catalog(self) -> ItemCatalog:
        """The candidate universe."""
        ...

    @property
    def step(self) -> int:
        """Gradient steps taken."""
        ...

    @property
    def epsilon(self) -> float:
        """Exploration rate of the schedule at ``step``."""
        ...

    def set_catalog(self, catalog: ItemCatalog) -> None:
        """Serve and train on ``catalog`` from now on."""
        ...

    # --- serving ------------------------------------------------------------------------

    def act(
        self,
        obs: Observation,
        candidate_ids: np.ndarray,
        k: int,
        rng: np.random.Generator,
        epsilon: float | None = None,
        *,
        groups: np.ndarray | None = None,
    ) -> Slate:
        """A slate of up to ``k`` candidates with exact per-slot propensities
        (``epsilon`` None: the schedule's; ``groups``: near-duplicate keys)."""
        ...

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
        """``act``, and its items' reasons when asked: what ``explain.reasons``
        finds with ``explain.relative(q_values_batch, reference_ids)``."""
        ...

    def slates(
        self,
        observations: Sequence[Observation],
        candidate_ids: Sequence[np.ndarray],
        k: int,
        rngs: Sequence[np.random.Generator],
        epsilon: float | None = None,
        groups: Sequence[np.ndarray] | None = None,
    ) -> list[Slate]:
        """``act`` for several requests at once."""
        ...

    def q_values_batch(
        self, observations: Sequence[Observation], candidate_ids: np.ndarray
    ) -> np.ndarray:
        """(B, C) Q of each candidate item: the value of showing it (per-item) or
        of a click on it (SlateQ); what a slate's reasons are scored by."""
        ...

    def q_table(self, observations: Sequence[Observation]) -> np.ndarray:
        """(B, M) every Q value the agent's slates rest on (the publication checks)."""
        ...

    def ranking_scores(
        self,
        observations: Sequence[Observation],
        candidate_mask: np.ndarray,
        k: int | np.ndarray,
    ) -> np.ndarray:
        """(B, N) scores whose greedy order among each request's candidates is
        the order ``act`` fills a slate of ``k`` in (off-policy evaluation)."""
        ...

    # --- learning -----------------------------------------------------------------------

    def make_replay(self, capacity: int | None = None) -> Replay:
        """An empty replay memory this learner trains from."""
        ...

    def train_steps(self, replay: Any, n_steps: int, rng: np.random.Generator) -> TrainStats:
        """``n_steps`` gradient steps on ``replay``, which must come from this
        learner's ``make_replay`` (each kind keeps its own)."""
        ...

    def sync_target(self) -> None:
        """Hard copy of the online weights into the target network."""
        ...

    def networks(self) -> dict[str, nn.Module]:
        """Every trained module by name (what the publication checks inspect)."""
        ...

    # --- persistence --------------------------------------------------------------------

    def save(self, served: bool = False) -> bytes:
        """Checkpoint bytes (``recommender.rl.checkpoint``); ``served``: with the
        moving average of the weights as the ones that act (``DQNConfig.served_average``)."""
        ...

    @classmethod
    def load(cls, data: bytes, catalog: ItemCatalog | None = None) -> Learner:
        """A learner of this kind from ``save()`` bytes, serving ``catalog``
        (default: the saved one)."""
        ...
