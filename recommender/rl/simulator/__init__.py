"""Shopper simulator (docstring written after calibration)."""

from recommender.rl.simulator.catalog import make_catalog
from recommender.rl.simulator.episodes import SessionLog, run_session, run_sessions, session_rngs
from recommender.rl.simulator.model import (
    Arrival,
    Page,
    Reaction,
    RewardWeights,
    SessionEvent,
    Shopper,
    ShopperParams,
    ShopperSimulator,
)
from recommender.rl.simulator.oracle import OraclePlanner

__all__ = [
    "Arrival",
    "OraclePlanner",
    "Page",
    "Reaction",
    "RewardWeights",
    "SessionEvent",
    "SessionLog",
    "Shopper",
    "ShopperParams",
    "ShopperSimulator",
    "make_catalog",
    "run_session",
    "run_sessions",
    "session_rngs",
]
