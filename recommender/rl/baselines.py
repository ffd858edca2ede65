"""Policies behind one small protocol, so the evaluation, the benchmark and the
store's fallbacks treat them alike.

A ``Policy`` has a ``name`` and ``slate(obs, candidate_ids, k, rng) -> Slate``,
returning K distinct candidates with the exact probability with which each was
picked for its slot (what off-policy estimates divide by). Policies that learn
from logs have ``fit(sessions)``, where a session is the sequence of
``(item id, EventType)`` events the store logged for it, oldest first.

- ``RandomPolicy``: uniform without replacement (slot k: 1 / (n - k)).
- ``PopularityPolicy``: items ranked by their weighted event counts.
- ``CooccurrencePolicy``: items that shared sessions with the page's product,
  the recent items and the cart, falling back to popularity.
- ``SameCategoryPolicy``: items of the categories of the page's product, the
  recent items and the cart, falling back to popularity.
- ``DQNPolicy``: a DQN agent, per-item or SlateQ (greedy by default). The myopic baseline is the
  same agent trained with ``myopic_config(config)`` (gamma = 0), not a
  separate model.
- ``OraclePolicy``: the simulator's full-information planner; it is handed the
  simulated shopper at the start of each session, which no other policy sees.

``Policy`` itself lives in ``recommender.rl.policy`` (the simulator's episode
runner needs it, and this module needs the simulator); it is re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from recommender.rl.policy import Policy as Policy
from recommender.rl.slate import SlateBuilder, empty_slate
from recommender.rl.types import EventType, ItemCatalog, Observation, Slate

if TYPE_CHECKING:
    from recommender.rl.config import DQNConfig
    from recommender.rl.learner import Learner
    from recommender.rl.simulator.model import Shopper

LoggedSession = Sequence[tuple[int, int]]
"""One session's logged events: (item id, EventType value), oldest first."""

DEFAULT_EVENT_WEIGHTS: Mapping[EventType, float] = {
    EventType.VIEW: 0.25,
    EventType.CLICK: 1.0,
    EventType.ADD_TO_CART: 3.0,
    EventType.PURCHASE: 5.0,
}
"""How much each logged event says about an item's appeal: roughly the
reward it earns, with a small weight for views (the shopper's own navigation)."""


class RandomPolicy:
    """Uniformly random carousels: slot j picks one of the n - j candidates
    not taken yet, so its propensity is exactly 1 / (n - j)."""

    name = "random"

    def slate(
        self, obs: Observation, candidate_ids: np.ndarray, k: int, rng: np.random.Generator
    ) -> Slate:
        candidate_ids = np.asarray(candidate_ids, dtype=np.int64)
        n = len(candidate_ids)
        k = min(int(k), n)
        if k <= 0:
            return empty_slate()
        picked = rng.choice(n, size=k, replace=False)
        return Slate(
            items=candidate_ids[picked],
            propensities=1.0 / (n - np.arange(k, dtype=np.float64)),
            scores=np.zeros(k, dtype=np.float32),
        )


def _event_weight(weights: Mapping[EventType, float], event_type: int) -> float:
    return float(weights.get(EventType(event_type), 0.0))


def session_anchors(
    obs: Observation, event_weights: Mapping[EventType, float], half_life_s: float
) -> dict[int, float]:
    """Weight of each item a context-aware carousel should relate to: the recent
    items (by event type, decayed with ``half_life_s``), the cart and, leading,
    the product on the page. Empty for a session with no context yet."""
    weights: dict[int, float] = defaultdict(float)
    for item, event_type, age in zip(
        obs.recent_items, obs.recent_events, obs.recent_ages, strict=False
    ):
        recency = 0.5 ** (max(age, 0.0) / half_life_s)
        weights[int(item)] += _event_weight(event_weights, event_type) * recency
    for item in obs.cart_items:
        weights[int(item)] += event_weights.get(EventType.ADD_TO_CART, 1.0)
    if obs.current_item is not None:
        # The product on the page is what the shopper looks at now: it leads.
        weights[int(obs.current_item)] += 2.0 * max(event_weights.values())
    return dict(weights)


def with_popularity_ties(related: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """``related`` scores with popularity, scaled below the smallest positive
    one, ordering the candidates of equal relatedness (mostly the unrelated
    ones, and everything when nothing is related)."""
    positive = related[related > 0]
    scale = (positive.min() if len(positive) else 1.0) / (1.0 + popularity.max(initial=0.0))
    return related + 0.5 * scale * popularity


class PopularityPolicy:
    """Ranks candidates by their weighted event counts in the logs (items never
    seen score 0; ties go to the earlier candidate). ``epsilon`` > 0 explores
    per slot like the agent, with exact propensities."""

    name = "popularity"

    def __init__(
        self, event_weights: Mapping[EventType, float] | None = None, epsilon: float = 0.0
    ) -> None:
        self.event_weights = dict(event_weights or DEFAULT_EVENT_WEIGHTS)
        self.builder = SlateBuilder(epsilon=epsilon)
        self.counts: dict[int, float] = {}

    def fit(self, sessions: Iterable[LoggedSession]) -> PopularityPolicy:
        """Count the logged events (replaces any previous fit)."""
        counts: dict[int, float] = defaultdict(float)
        for session in sessions:
            for item, event_type in session:
                counts[int(item)] += _event_weight(self.event_weights, event_type)
        self.counts = dict(counts)
        return self

    def scores(self, candidate_ids: np.ndarray) -> np.ndarray:
        """Popularity of each candidate."""
        get = self.counts.get
        return np.fromiter(
            (get(int(i), 0.0) for i in candidate_ids), dtype=np.float64, count=len(candidate_ids)
        )

    def slate(
        self, obs: Observation, candidate_ids: np.ndarray, k: int, rng: np.random.Generator
    ) -> Slate:
        candidate_ids = np.asarray(candidate_ids, dtype=np.int64)
        return self.builder.build(
            candidate_ids, self.scores(candidate_ids).astype(np.float32), k, rng
        )


class CooccurrencePolicy:
    """Item-to-item recommendations: "shoppers who interacted with these also
    interacted with ...".

    ``fit`` counts, for every pair of distinct items that both appear in a
    session's clicks, adds or purchases (views too when ``view_weight`` > 0),
    the product of their strongest event weights in that session; the
    similarity of a pair is that count divided by the geometric mean of the two
    items' own totals (cosine), so that best-sellers do not co-occur with
    everything. A carousel scores each candidate by its similarity to the
    page's anchors: the product on the page, the recent items (weighted by
    event type and recency) and the cart. Candidates with no co-occurrence are
    ranked after all others by popularity, which is also the whole ranking on
    a page without anchors (home page of a new session).
    """

    name = "cooccurrence"

    def __init__(
        self,
        event_weights: Mapping[EventType, float] | None = None,
        epsilon: float = 0.0,
        half_life_s: float = 300.0,
    ) -> None:
        self.event_weights = dict(event_weights or DEFAULT_EVENT_WEIGHTS)
        self.half_life_s = half_life_s
        self.builder = SlateBuilder(epsilon=epsilon)
        self.popularity = PopularityPolicy(self.event_weights)
        self.neighbours: dict[int, dict[int, float]] = {}

    def fit(self, sessions: Iterable[LoggedSession]) -> CooccurrencePolicy:
        """Count co-occurrences and popularity (replaces any previous fit)."""
        sessions = [list(s) for s in sessions]
        self.popularity.fit(sessions)
        pair_counts: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        totals: dict[int, float] = defaultdict(float)
        for session in sessions:
            strongest: dict[int, float] = {}
            for item, event_type in session:
                w = _event_weight(self.event_weights, event_type)
                if w > 0:
                    strongest[int(item)] = max(strongest.get(int(item), 0.0), w)
            items = list(strongest.items())
            for a, wa in items:
                totals[a] += wa * wa
                for b, wb in items:
                    if a != b:
                        pair_counts[a][b] += wa * wb
        self.neighbours = {
            a: {b: c / math.sqrt(totals[a] * totals[b]) for b, c in row.items()}
            for a, row in pair_counts.items()
        }
        return self

    def anchors(self, obs: Observation) -> dict[int, float]:
        """Weight of each item the carousel should relate to."""
        return session_anchors(obs, self.event_weights, self.half_life_s)

    def scores(self, obs: Observation, candidate_ids: np.ndarray) -> np.ndarray:
        """Co-occurrence score of each candidate, with popularity (scaled below
        the smallest co-occurrence) breaking ties and filling the rest."""
        related: dict[int, float] = defaultdict(float)
        for anchor, weight in self.anchors(obs).items():
            for item, similarity in self.neighbours.get(anchor, {}).items():
                related[item] += weight * similarity
        co = np.fromiter(
            (related.get(int(i), 0.0) for i in candidate_ids),
            dtype=np.float64,
            count=len(candidate_ids),
        )
        return with_popularity_ties(co, self.popularity.scores(candidate_ids))

    def slate(
        self, obs: Observation, candidate_ids: np.ndarray, k: int, rng: np.random.Generator
    ) -> Slate:
        candidate_ids = np.asarray(candidate_ids, dtype=np.int64)
        return self.builder.build(
            candidate_ids, self.scores(obs, candidate_ids).astype(np.float32), k, rng
        )


class SameCategoryPolicy:
    """ "More from what you are looking at": candidates ranked by the weight of
    the session's anchors (``session_anchors``: the page's product, recent items,
    cart) in their own category, popularity breaking ties and filling the rest
    (the whole ranking for a session without context). Needs the catalog's
    categories; candidates outside it count as uncategorised."""

    name = "same_category"

    def __init__(
        self,
        catalog: ItemCatalog,
        event_weights: Mapping[EventType, float] | None = None,
        epsilon: float = 0.0,
        half_life_s: float = 300.0,
    ) -> None:
        self.event_weights = dict(event_weights or DEFAULT_EVENT_WEIGHTS)
        self.half_life_s = half_life_s
        self.builder = SlateBuilder(epsilon=epsilon)
        self.popularity = PopularityPolicy(self.event_weights)
        self.category_of = {
            int(i): int(c) for i, c in zip(catalog.ids, catalog.categories, strict=True)
        }

    def fit(self, sessions: Iterable[LoggedSession]) -> SameCategoryPolicy:
        """Count popularity (replaces any previous fit)."""
        self.popularity.fit(sessions)
        return self

    def scores(self, obs: Observation, candidate_ids: np.ndarray) -> np.ndarray:
        """Anchor weight in each candidate's category, with popularity ties."""
        by_category: dict[int, float] = defaultdict(float)
        for item, weight in session_anchors(obs, self.event_weights, self.half_life_s).items():
            category = self.category_of.get(item)
            if category is not None:
                by_category[category] += weight
        get = self.category_of.get
        related = np.fromiter(
            (by_category.get(get(int(i), -1), 0.0) for i in candidate_ids),
            dtype=np.float64,
            count=len(candidate_ids),
        )
        return with_popularity_ties(related, self.popularity.scores(candidate_ids))

    def slate(
        self, obs: Observation, candidate_ids: np.ndarray, k: int, rng: np.random.Generator
    ) -> Slate:
        candidate_ids = np.asarray(candidate_ids, dtype=np.int64)
        return self.builder.build(
            candidate_ids, self.scores(obs, candidate_ids).astype(np.float32), k, rng
        )


def myopic_config(config: DQNConfig) -> DQNConfig:
    """The myopic baseline's configuration: the same agent with gamma = 0,
    i.e. trained to maximise each carousel's own reward."""
    return dataclasses.replace(config, gamma=0.0)


class DQNPolicy:
    """A DQN agent (per-item ``DQNAgent`` or ``SlateQAgent``) as a ``Policy``:
    greedy unless ``epsilon`` is set (None follows the agent's schedule)."""

    def __init__(self, agent: Learner, name: str = "dqn", epsilon: float | None = 0.0) -> None:
        self.agent = agent
        self.name = name
        self.epsilon = epsilon

    def slate(
        self, obs: Observation, candidate_ids: np.ndarray, k: int, rng: np.random.Generator
    ) -> Slate:
        return self.agent.act(
            obs, np.asarray(candidate_ids, dtype=np.int64), k, rng, epsilon=self.epsilon
        )

    def slates(
        self,
        observations: Sequence[Observation],
        candidate_ids: Sequence[np.ndarray],
        k: int,
        rngs: Sequence[np.random.Generator],
    ) -> list[Slate]:
        """``slate`` for several requests at once (``agent.slates``)."""
        return self.agent.slates(observations, candidate_ids, k, rngs, epsilon=self.epsilon)


class OraclePolicy:
    """The simulator's full-information planner (see
    ``recommender.rl.simulator.oracle``) as a ``Policy``. Deterministic:
    propensities are 1. Only usable inside the simulator: the episode runner
    calls ``start_session`` with the shopper before its first carousel."""

    def __init__(self, myopic: bool = False, name: str | None = None) -> None:
        from recommender.rl.simulator.oracle import OraclePlanner

        self.planner = OraclePlanner(myopic=myopic)
        self.name = name or ("oracle_myopic" if myopic else "oracle")
        self._shopper: Shopper | None = None

    def start_session(self, shopper: Shopper) -> None:
        """Let the oracle see inside the shopper it is about to serve."""
        self._shopper = shopper

    def slate(
        self, obs: Observation, candidate_ids: np.ndarray, k: int, rng: np.random.Generator
    ) -> Slate:
        if self._shopper is None or self._shopper.done:
            raise RuntimeError("OraclePolicy needs start_session(shopper) before each session")
        items, values = self.planner.plan(self._shopper, candidate_ids, k)
        return Slate(
            items=items.astype(np.int64),
            propensities=np.ones(len(items), dtype=np.float64),
            scores=np.asarray(values, dtype=np.float32),
        )
