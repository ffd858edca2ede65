"""How much a policy's ranking depends on the shopper's state.

A recommender that ranks every session alike is popularity with extra steps.
``personalisation_report`` measures, over a set of logged states:

- ``mean_jaccard``: the mean Jaccard similarity of the top-k of every pair of
  states (1: everyone gets the same carousel);
- ``jaccard_vs_cold``: the mean Jaccard between each state's top-k and the top-k
  the same slot gets with no context (1: the state changes nothing);
- ``related_share``: among states with a recent or current item, the share of
  top-k items in the category of the newest one, beside ``related_chance``, the
  share of candidates in that category (what a ranking blind to the state
  gets on average);
- ``variance_share``: for agents that expose ``q_components``, the share of Q's
  variance across items that each additive part explains
  (Cov_i(part, Q) / Var_i(Q), averaged over states; the parts' shares sum to 1),
  and the same for cold states (``variance_share_cold``);
- ``state_share``: the share of Q's variance across items explained by the part
  that changes with the state, Q(s, i) - Q(cold, i).

Candidates are what the store would show: every catalog item but the page's
product and the cart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from recommender.rl.types import ItemCatalog, Observation


class RankingAgent(Protocol):
    catalog: ItemCatalog

    def ranking_scores(
        self, observations: Sequence[Observation], candidate_mask: np.ndarray, k: int
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class PersonalisationReport:
    """What ``personalisation_report`` measured (see the module docstring)."""

    n_states: int
    k: int
    mean_jaccard: float
    jaccard_vs_cold: float
    related_share: float | None
    related_chance: float | None
    state_share: float | None
    variance_share: dict[str, float] | None
    variance_share_cold: dict[str, float] | None

    def to_dict(self) -> dict:
        return asdict(self)


def cold(obs: Observation) -> Observation:
    """The same request with no context: slot and page product kept, nothing seen."""
    return Observation(slot=obs.slot, current_item=None, page_depth=0)


def candidate_masks(catalog: ItemCatalog, observations: Sequence[Observation]) -> np.ndarray:
    """(B, N) the store's eligibility without stock: all but the page's product and the cart."""
    index = {int(i): row for row, i in enumerate(catalog.ids)}
    mask = np.ones((len(observations), len(catalog)), dtype=bool)
    for b, obs in enumerate(observations):
        for item in (obs.current_item, *obs.cart_items):
            row = index.get(int(item)) if item is not None else None
            if row is not None:
                mask[b, row] = False
    return mask


def top_k(scores: np.ndarray, mask: np.ndarray, k: int) -> list[frozenset[int]]:
    """Row-wise sets of the k best masked columns."""
    masked = np.where(mask, scores, -np.inf)
    k = min(k, masked.shape[1])
    best = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    return [
        frozenset(int(c) for c in row if np.isfinite(masked[b, c])) for b, row in enumerate(best)
    ]


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def mean_pairwise_jaccard(sets: Sequence[frozenset[int]], max_pairs: int = 20_000) -> float:
    """Mean Jaccard over all pairs (a seeded sample of ``max_pairs`` when there are more)."""
    n = len(sets)
    if n < 2:
        return 1.0
    pairs = np.array(np.triu_indices(n, 1)).T
    if len(pairs) > max_pairs:
        pairs = pairs[np.random.default_rng(0).choice(len(pairs), max_pairs, replace=False)]
    return float(np.mean([jaccard(sets[i], sets[j]) for i, j in pairs]))


def _newest_item(obs: Observation) -> int | None:
    if obs.current_item is not None:
        return int(obs.current_item)
    return int(obs.recent_items[-1]) if obs.recent_items else None


def _related(
    catalog: ItemCatalog, observations: Sequence[Observation], sets, mask: np.ndarray
) -> tuple[float | None, float | None]:
    index = {int(i): row for row, i in enumerate(catalog.ids)}
    categories = np.asarray(catalog.categories)
    shares, chances = [], []
    for b, (obs, chosen) in enumerate(zip(observations, sets, strict=True)):
        newest = _newest_item(obs)
        row = index.get(newest) if newest is not None else None
        if row is None or not chosen:
            continue
        category = categories[row]
        shares.append(np.mean([categories[c] == category for c in chosen]))
        chances.append(np.mean(categories[mask[b]] == category))
    if not shares:
        return None, None
    return float(np.mean(shares)), float(np.mean(chances))


def _covariance_shares(parts: dict[str, np.ndarray], q: np.ndarray, mask: np.ndarray) -> dict:
    """Per part, Cov_i(part, Q) / Var_i(Q) over each state's candidates, averaged over states."""
    shares: dict[str, list[float]] = {name: [] for name in parts}
    for b in range(len(q)):
        columns = mask[b]
        qb = q[b, columns].astype(np.float64)
        centred = qb - qb.mean()
        variance = float(centred @ centred)
        if variance <= 1e-12:
            continue
        for name, part in parts.items():
            pb = np.broadcast_to(part, q.shape)[b, columns].astype(np.float64)
            shares[name].append(float((pb - pb.mean()) @ centred) / variance)
    return {name: float(np.mean(v)) if v else 0.0 for name, v in shares.items()}


def personalisation_report(
    agent: RankingAgent, observations: Sequence[Observation], k: int = 8
) -> PersonalisationReport:
    """Measure how much ``agent``'s top-``k`` depends on the state, over ``observations``."""
    observations = list(observations)
    if not observations:
        raise ValueError("personalisation_report needs at least one observation")
    catalog = agent.catalog
    mask = candidate_masks(catalog, observations)
    colds = [cold(obs) for obs in observations]
    scores = agent.ranking_scores(observations, mask, k)
    cold_scores = agent.ranking_scores(colds, mask, k)
    sets = top_k(scores, mask, k)
    cold_sets = top_k(cold_scores, mask, k)
    related_share, related_chance = _related(catalog, observations, sets, mask)

    state_share = variance_share = variance_share_cold = None
    components = getattr(agent, "q_components", None)
    if components is not None:
        parts = components(observations)
        cold_parts = components(colds)
        q = sum(np.broadcast_to(p, scores.shape) for p in parts.values())
        q_cold = sum(np.broadcast_to(p, scores.shape) for p in cold_parts.values())
        variance_share = _covariance_shares(parts, q, mask)
        variance_share_cold = _covariance_shares(cold_parts, q_cold, mask)
        state_share = _covariance_shares({"state": q - q_cold}, q, mask)["state"]
    return PersonalisationReport(
        n_states=len(observations),
        k=k,
        mean_jaccard=mean_pairwise_jaccard(sets),
        jaccard_vs_cold=float(
            np.mean([jaccard(a, b) for a, b in zip(sets, cold_sets, strict=True)])
        ),
        related_share=related_share,
        related_chance=related_chance,
        state_share=state_share,
        variance_share=variance_share,
        variance_share_cold=variance_share_cold,
    )
