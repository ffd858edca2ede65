"""The two agent kinds behind one interface, by name, and loading a checkpoint
of either kind.

Both agents offer what the store needs: ``act`` (a slate with exact
propensities), ``set_catalog``, ``make_replay`` / ``train_steps`` /
``sync_target``, ``save``, ``networks``, ``q_table`` and ``ranking_scores``
(the publication checks and off-policy evaluation).
"""

from __future__ import annotations

from recommender.rl import checkpoint
from recommender.rl.agent import DQNAgent
from recommender.rl.config import DQNConfig
from recommender.rl.slateq import SlateQAgent
from recommender.rl.types import ItemCatalog

Agent = DQNAgent | SlateQAgent

AGENTS: dict[str, type[DQNAgent] | type[SlateQAgent]] = {
    "per_item": DQNAgent,
    "slateq": SlateQAgent,
}


def agent_kind(agent: Agent) -> str:
    """The name ``AGENTS`` gives ``agent``'s class."""
    return next(name for name, cls in AGENTS.items() if type(agent) is cls)


def make_agent(
    kind: str, config: DQNConfig, catalog: ItemCatalog, n_categories: int | None = None
) -> Agent:
    """A fresh agent of ``kind`` ("per_item" or "slateq")."""
    try:
        cls = AGENTS[kind]
    except KeyError:
        raise ValueError(f"unknown agent kind {kind!r}: expected one of {sorted(AGENTS)}") from None
    return cls(config, catalog, n_categories)


def load_agent(data: bytes, catalog: ItemCatalog | None = None) -> Agent:
    """The agent saved in ``data``, whichever kind it is (see ``DQNAgent.load``)."""
    payload = checkpoint.loads(data)
    cls = SlateQAgent if "slateq" in payload else DQNAgent
    return cls.from_payload(payload, catalog)
