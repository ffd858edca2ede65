"""Episode runner: a policy serves every carousel of one simulated session,
and the session comes back as SlateQ transitions plus the numbers the
evaluation reports.

Observations are built exactly as the store builds them (slot, product on the
page, newest events with their ages on the session clock, cart, page depth);
each shown item becomes one ``Transition`` whose reward is what that item
caused: the click, the add-to-cart and, if the session ended in a checkout,
the purchase (attributed back to the impression that showed the item, as the
store's attribution does). ``next_state`` is the observation at the session's
next recommendation request; the last carousel's transitions are ``done``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from recommender.rl.simulator.model import Shopper, ShopperSimulator
from recommender.rl.types import EventType, Observation, Transition

if TYPE_CHECKING:
    from recommender.rl.baselines import Policy


class SessionLog(NamedTuple):
    """One simulated session as training data and as evaluation numbers."""

    transitions: list[Transition]  # one per shown item, in request order
    events: list[tuple[int, EventType]]  # (item id, type) as the store logs them, oldest first
    total_reward: float  # the session's return: sum of all transition rewards
    slates: int  # recommendation requests served
    clicks: int  # carousel clicks (at most one per carousel)
    impressions: int  # items shown over all carousels
    adds: int  # add-to-carts from carousel clicks
    purchased: bool  # the session ended in a checkout
    revenue: float  # sum of the prices of the bought items


SessionSeed = int | Sequence[int]
"""A session's seed: an int, or a sequence of ints (e.g. (run seed, stream, index))."""


def session_rngs(seed: SessionSeed) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for the shopper and for the policy's exploration, so
    that two policies evaluated with the same seed meet the same shopper."""
    base = [int(seed)] if isinstance(seed, int | np.integer) else [int(s) for s in seed]
    return np.random.default_rng([*base, 1]), np.random.default_rng([*base, 2])


def run_session(
    simulator: ShopperSimulator,
    policy: Policy,
    seed: SessionSeed,
    *,
    k: int = 8,
    recent_window: int = 20,
    next_candidates: bool = False,
) -> SessionLog:
    """Let ``policy`` serve one session of a shopper drawn with ``seed``.

    ``k`` items per carousel; ``recent_window`` events per observation.
    ``next_candidates=True`` stores each next state's eligible ids in the
    transitions (what the store's Double-DQN targets range over); False leaves
    them ``None`` (every catalog item), which differs only by the page's product
    and the cart and keeps large collections light.

    A policy with a ``start_session(shopper)`` method (the oracle) is handed the
    shopper first; no other policy sees anything but observations.
    """
    shopper_rng, policy_rng = session_rngs(seed)
    shopper = simulator.new_shopper(shopper_rng)
    start = getattr(policy, "start_session", None)
    if start is not None:
        start(shopper)
    return _serve(shopper, policy, policy_rng, k, recent_window, next_candidates)


def _serve(
    shopper: Shopper,
    policy: Policy,
    rng: np.random.Generator,
    k: int,
    recent_window: int,
    with_next_candidates: bool,
) -> SessionLog:
    sim = shopper.simulator
    weights = sim.rewards
    observations: list[Observation] = []
    candidate_sets: list[tuple[int, ...] | None] = []
    slates = []
    rewards: list[np.ndarray] = []
    origin: dict[int, tuple[int, int]] = {}  # cart item -> (request, position) that sold it
    clicks = adds = impressions = 0
    purchased: tuple[int, ...] = ()
    while not shopper.done:
        obs = shopper.observation(recent_window)
        candidates = shopper.candidates()
        slate = policy.slate(obs, candidates, k, rng)
        reaction = shopper.react(slate.items)
        step_rewards = np.zeros(len(slate.items))
        if reaction.clicked is not None:
            clicks += 1
            step_rewards[reaction.position] += weights.click
            if reaction.added_to_cart:
                adds += 1
                step_rewards[reaction.position] += weights.add_to_cart
                origin[reaction.clicked] = (len(slates), reaction.position)
        observations.append(obs)
        candidate_sets.append(tuple(int(i) for i in candidates) if with_next_candidates else None)
        slates.append(slate)
        rewards.append(step_rewards)
        impressions += len(slate.items)
        purchased = reaction.purchased

    revenue = 0.0
    for item in purchased:
        # Every cart item came from a carousel click in this session; the purchase
        # pays the impression that showed it.
        row = int(sim.rows_of([item])[0])
        step, position = origin[item]
        rewards[step][position] += float(sim.purchase_rewards[row])
        revenue += float(sim.prices[row])

    transitions: list[Transition] = []
    last = len(slates) - 1
    for t, (obs, slate, step_rewards) in enumerate(zip(observations, slates, rewards, strict=True)):
        done = t == last
        next_state = None if done else observations[t + 1]
        following = None if done else candidate_sets[t + 1]
        for position, item in enumerate(slate.items):
            transitions.append(
                Transition(
                    state=obs,
                    item=int(item),
                    reward=float(step_rewards[position]),
                    next_state=next_state,
                    done=done,
                    propensity=float(slate.propensities[position]),
                    next_candidates=following,
                )
            )
    return SessionLog(
        transitions=transitions,
        events=[(e.item, e.type) for e in shopper.events],
        total_reward=float(sum(r.sum() for r in rewards)),
        slates=len(slates),
        clicks=clicks,
        impressions=impressions,
        adds=adds,
        purchased=bool(purchased),
        revenue=revenue,
    )
