"""Episode runner: a policy serves every carousel of one simulated session,
and the session comes back as per-item transitions plus the numbers the
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
from recommender.rl.types import EventType, Observation, Slate, Transition

if TYPE_CHECKING:
    from recommender.rl.policy import Policy


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
    transitions; False leaves them ``None``, which the replay buffer reads as
    the same set (every catalog item but the next page's product and the
    cart, the store's rule) and keeps large collections light.

    A policy with a ``start_session(shopper)`` method (the oracle) is handed the
    shopper first; no other policy sees anything but observations.
    """
    return run_sessions(
        simulator, policy, [seed], k=k, recent_window=recent_window, next_candidates=next_candidates
    )[0]


def run_sessions(
    simulator: ShopperSimulator,
    policy: Policy,
    seeds: Sequence[SessionSeed],
    *,
    k: int = 8,
    recent_window: int = 20,
    next_candidates: bool = False,
) -> list[SessionLog]:
    """``run_session`` for each of ``seeds``, same results, in lockstep.

    A policy with a batched ``slates(observations, candidate_ids, k, rngs)``
    method (the DQN) serves the pending requests of all running sessions in one
    call, which is what makes simulated training and evaluation fast. Policies
    that must see the shopper (``start_session``) run one session at a time.
    """
    if getattr(policy, "start_session", None) is not None:
        logs = []
        for seed in seeds:
            shopper_rng, policy_rng = session_rngs(seed)
            shopper = simulator.new_shopper(shopper_rng)
            policy.start_session(shopper)
            logs.extend(
                _lockstep(
                    policy, [_Session(shopper, policy_rng)], k, recent_window, next_candidates
                )
            )
        return logs
    sessions = []
    for seed in seeds:
        shopper_rng, policy_rng = session_rngs(seed)
        sessions.append(_Session(simulator.new_shopper(shopper_rng), policy_rng))
    return _lockstep(policy, sessions, k, recent_window, next_candidates)


def _lockstep(
    policy: Policy,
    sessions: list[_Session],
    k: int,
    recent_window: int,
    with_next_candidates: bool,
) -> list[SessionLog]:
    batched = getattr(policy, "slates", None)
    while True:
        running = [s for s in sessions if not s.shopper.done]
        if not running:
            break
        observations = [s.shopper.observation(recent_window) for s in running]
        candidates = [s.shopper.candidates() for s in running]
        if batched is not None:
            slates = batched(observations, candidates, k, [s.rng for s in running])
        else:
            slates = [
                policy.slate(obs, c, k, s.rng)
                for obs, c, s in zip(observations, candidates, running, strict=True)
            ]
        for s, obs, c, slate in zip(running, observations, candidates, slates, strict=True):
            s.serve(obs, c if with_next_candidates else None, slate)
    return [s.log() for s in sessions]


class _Session:
    """One running session: the shopper, the policy's random stream for it and
    everything needed to turn the session into a ``SessionLog`` at its end."""

    def __init__(self, shopper: Shopper, rng: np.random.Generator) -> None:
        self.shopper = shopper
        self.rng = rng
        self.observations: list[Observation] = []
        self.candidate_sets: list[tuple[int, ...] | None] = []
        self.slates: list[Slate] = []
        self.rewards: list[np.ndarray] = []
        self.origin: dict[
            int, tuple[int, int]
        ] = {}  # cart item -> (request, position) that sold it
        self.clicks = self.adds = self.impressions = 0
        self.purchased: tuple[int, ...] = ()

    def serve(self, obs: Observation, candidates: np.ndarray | None, slate: Slate) -> None:
        """Show ``slate`` for ``obs`` and record the shopper's reaction."""
        weights = self.shopper.simulator.rewards
        reaction = self.shopper.react(slate.items)
        step_rewards = np.zeros(len(slate.items))
        if reaction.clicked is not None:
            self.clicks += 1
            step_rewards[reaction.position] += weights.click
            if reaction.added_to_cart:
                self.adds += 1
                step_rewards[reaction.position] += weights.add_to_cart
                self.origin[reaction.clicked] = (len(self.slates), reaction.position)
        self.observations.append(obs)
        self.candidate_sets.append(
            None if candidates is None else tuple(int(i) for i in candidates)
        )
        self.slates.append(slate)
        self.rewards.append(step_rewards)
        self.impressions += len(slate.items)
        self.purchased = reaction.purchased

    def log(self) -> SessionLog:
        """The finished session as transitions and numbers."""
        sim = self.shopper.simulator
        rewards = self.rewards
        revenue = 0.0
        for item in self.purchased:
            # Every cart item came from a carousel click in this session; the purchase
            # pays the impression that showed it.
            row = int(sim.rows_of([item])[0])
            step, position = self.origin[item]
            rewards[step][position] += float(sim.purchase_rewards[row])
            revenue += float(sim.prices[row])

        transitions: list[Transition] = []
        last = len(self.slates) - 1
        for t, (obs, slate, step_rewards) in enumerate(
            zip(self.observations, self.slates, rewards, strict=True)
        ):
            done = t == last
            next_state = None if done else self.observations[t + 1]
            following = None if done else self.candidate_sets[t + 1]
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
            events=[(e.item, e.type) for e in self.shopper.events],
            total_reward=float(sum(r.sum() for r in rewards)),
            slates=len(self.slates),
            clicks=self.clicks,
            impressions=self.impressions,
            adds=self.adds,
            purchased=bool(self.purchased),
            revenue=revenue,
        )
