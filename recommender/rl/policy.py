"""The ``Policy`` protocol: anything that fills a carousel.

A module of its own, below both its users: the simulator's episode runner
serves sessions with a ``Policy``, and ``recommender.rl.baselines`` (the
policies themselves) uses the simulator for its oracle.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from recommender.rl.types import Observation, Slate


@runtime_checkable
class Policy(Protocol):
    """Anything that fills a carousel."""

    name: str

    def slate(
        self, obs: Observation, candidate_ids: np.ndarray, k: int, rng: np.random.Generator
    ) -> Slate:
        """min(k, len(candidate_ids)) distinct candidates, position 0 first,
        with per-slot propensities."""
        ...
