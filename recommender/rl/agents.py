"""The two agent kinds by name, loading a checkpoint of either kind, and the
checks an agent passes before the store publishes it.

Both agents are ``recommender.rl.learner.Learner``s: ``act`` (a slate with
exact propensities), ``set_catalog``, ``make_replay`` / ``train_steps`` /
``sync_target``, ``save``, ``networks``, ``q_table`` and ``ranking_scores``
(the publication checks, ``check_agent``, and off-policy evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from recommender.rl import checkpoint
from recommender.rl.agent import DQNAgent
from recommender.rl.config import DQNConfig
from recommender.rl.learner import Learner
from recommender.rl.slateq import SlateQAgent
from recommender.rl.types import ItemCatalog, Observation

AGENTS: dict[str, type[DQNAgent] | type[SlateQAgent]] = {
    "per_item": DQNAgent,
    "slateq": SlateQAgent,
}


def agent_kind(agent: Learner) -> str:
    """The name ``AGENTS`` gives ``agent``'s class."""
    return next(name for name, cls in AGENTS.items() if type(agent) is cls)


def make_agent(
    kind: str, config: DQNConfig, catalog: ItemCatalog, n_categories: int | None = None
) -> Learner:
    """A fresh agent of ``kind`` ("per_item" or "slateq")."""
    try:
        cls = AGENTS[kind]
    except KeyError:
        raise ValueError(f"unknown agent kind {kind!r}: expected one of {sorted(AGENTS)}") from None
    return cls(config, catalog, n_categories)


def load_agent(
    data: bytes, catalog: ItemCatalog | None = None, *, act_only: bool = False
) -> Learner:
    """The agent saved in ``data``, whichever kind it is (see ``DQNAgent.load``).

    ``act_only``: what acting uses and no more (what a web process serving
    slates needs): the target and averaged networks and the optimizers'
    state are neither loaded nor kept, and training or saving the agent
    raises (``core.NotKept``)."""
    payload = checkpoint.loads(data)
    cls = SlateQAgent if "slateq" in payload else DQNAgent
    return cls.from_payload(payload, catalog, act_only=act_only)


def served_copy(agent: Learner) -> Learner:
    """The agent as a store publishes it: a copy whose acting weights are the
    learner's moving average of its weights (``DQNConfig.served_average``).
    Raises ``checkpoint.CheckpointError`` for weights that went non-finite."""
    return load_agent(agent.save(served=True))


def check_agent(
    agent: Learner,
    sample_observations: Sequence[Observation],
    catalog: ItemCatalog | None = None,
    max_abs_reward: float | None = None,
) -> dict:
    """Publication checks: finite weights in every network, and finite Q within the
    largest value any policy can earn, max_abs_reward / (1 - gamma), for every Q
    value the agent's slates rest on (``q_table``) in each sample observation.
    ``ok`` is True when all pass. The agent is not modified."""
    non_finite = [
        f"{name}.{key}"
        for name, net in agent.networks().items()
        for key, tensor in net.state_dict().items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    probe = agent
    if catalog is not None and catalog is not agent.catalog:
        probe = type(agent).load(agent.save(), catalog=catalog)
    reward_bound = agent.config.max_abs_reward if max_abs_reward is None else max_abs_reward
    bound = reward_bound / (1.0 - agent.config.gamma)
    report: dict = {
        "finite_weights": not non_finite,
        "non_finite_tensors": non_finite,
        "n_observations": len(sample_observations),
        "n_items": len(probe.catalog),
        "q_bound": bound,
    }
    q = np.empty(0, dtype=np.float32)
    if not non_finite and sample_observations and len(probe.catalog):
        q = probe.q_table(list(sample_observations))
    finite = bool(np.isfinite(q).all())
    report["q_finite"] = finite and not non_finite
    if q.size and finite:
        report.update(q_min=float(q.min()), q_max=float(q.max()), q_mean=float(q.mean()))
        report["q_within_bound"] = bool(np.abs(q).max() <= bound)
    else:
        report.update(q_min=math.nan, q_max=math.nan, q_mean=math.nan)
        report["q_within_bound"] = finite and not non_finite
    report["ok"] = report["finite_weights"] and report["q_finite"] and report["q_within_bound"]
    return report
