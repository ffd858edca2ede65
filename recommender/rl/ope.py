"""Off-policy estimates of a target policy's value from logged slates.

Estimation is per shown item (the independence decomposition): each
logged row is one (impression, position) with the item shown there, the
logging policy's exact probability of choosing it for that slot, the reward it
earned, and the target policy's probability of choosing the same item for that
slot given the same remaining candidates. The estimates are of the expected
reward per slot.

IPS     mean(w·r)                        with w = π(a|x) / μ(a|x)
SNIPS   Σ w·r / Σ w                      (self-normalised: lower variance, slight bias)
DR      mean(Σ_a π(a|x)·r̂(x, a) + w·(r - r̂(x, a_logged)))

Confidence intervals are percentile bootstraps over rows, vectorised in chunks.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# Resampled cells (replicates x rows) drawn per bootstrap chunk, bounding memory.
_BOOTSTRAP_CELLS = 1 << 22


class Estimate(NamedTuple):
    """A policy value with its bootstrap confidence interval over ``n`` logged rows."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    ess: float = math.nan
    """effective sample size of the importance weights, (Σw)² / Σw²: how many
    logged rows the estimate rests on. A few rows with large weights can give a
    narrow interval that means little."""


def ips(
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_probabilities: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """Inverse propensity scoring: unbiased when the logging propensities are exact."""
    r, w = _weights(rewards, logging_propensities, target_probabilities)
    return _estimate(w * r, np.ones_like(w), w, n_bootstrap, confidence, seed)


def snips(
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_probabilities: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """Self-normalised IPS: the importance weights are normalised to sum to one."""
    r, w = _weights(rewards, logging_propensities, target_probabilities)
    return _estimate(w * r, w, w, n_bootstrap, confidence, seed)


def doubly_robust(
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_probabilities: np.ndarray,
    predicted_rewards: np.ndarray,
    target_predicted_rewards: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """Doubly robust: the reward model's value of the target policy, corrected by
    importance-weighted residuals; unbiased if either the propensities or the
    reward model are right.

    ``predicted_rewards`` is r̂(x, a) of each logged item, ``target_predicted_rewards``
    Σ_a π(a|x)·r̂(x, a) over that slot's candidates (see ``expected_under``).
    """
    r, w = _weights(rewards, logging_propensities, target_probabilities)
    r_hat = _vector(predicted_rewards, "predicted_rewards", len(r))
    direct = _vector(target_predicted_rewards, "target_predicted_rewards", len(r))
    return _estimate(direct + w * (r - r_hat), np.ones_like(w), w, n_bootstrap, confidence, seed)


def epsilon_greedy_distribution(
    scores: np.ndarray, candidate_mask: np.ndarray, epsilon: float
) -> np.ndarray:
    """(n, C) probabilities with which an ε-greedy policy picks each candidate for
    a slot: (1 - ε)·[best remaining] + ε / |remaining|. ``candidate_mask`` (n, C)
    marks each slot's remaining candidates; ties go to the earlier column, as in
    ``SlateBuilder``. Rows without candidates are all zero."""
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.asarray(candidate_mask, dtype=bool)
    if scores.shape != mask.shape or scores.ndim != 2:
        raise ValueError("scores and candidate_mask must be (n, C) arrays of the same shape")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError("epsilon must be in [0, 1]")
    remaining = mask.sum(1, keepdims=True)
    probabilities = np.where(mask, epsilon / np.maximum(remaining, 1), 0.0)
    best = np.where(mask, scores, -np.inf).argmax(1)
    has_any = remaining[:, 0] > 0
    probabilities[np.flatnonzero(has_any), best[has_any]] += 1.0 - epsilon
    return probabilities


def epsilon_greedy_probabilities(
    scores: np.ndarray, candidate_mask: np.ndarray, logged: np.ndarray, epsilon: float
) -> np.ndarray:
    """(n,) probability that the ε-greedy policy with ``scores`` picks the logged
    column ``logged`` (n,) for each slot; a greedy policy is ``epsilon=0``."""
    distribution = epsilon_greedy_distribution(scores, candidate_mask, epsilon)
    logged = np.asarray(logged, dtype=np.int64)
    return np.take_along_axis(distribution, logged[:, None], axis=1)[:, 0]


def expected_under(probabilities: np.ndarray, predicted_rewards: np.ndarray) -> np.ndarray:
    """(n,) Σ_a π(a|x)·r̂(x, a): the direct-method term of ``doubly_robust``."""
    return (np.asarray(probabilities) * np.asarray(predicted_rewards)).sum(1)


def slot_candidate_masks(candidate_mask: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """(n, K, C) remaining candidates at each position of logged slates: position
    k excludes the items shown at positions before it. ``candidate_mask`` is
    (n, C); ``shown`` (n, K) holds candidate columns, -1 past a slate's end."""
    mask = np.asarray(candidate_mask, dtype=bool)
    shown = np.asarray(shown, dtype=np.int64)
    n, k = shown.shape
    masks = np.repeat(mask[:, None, :], k, axis=1)
    rows = np.arange(n)
    for position in range(1, k):
        previous = shown[:, position - 1]
        filled = previous >= 0
        masks[rows[filled], position:, previous[filled]] = False
    return masks


def _weights(
    rewards: np.ndarray, logging_propensities: np.ndarray, target_probabilities: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r = _vector(rewards, "rewards")
    mu = _vector(logging_propensities, "logging_propensities", len(r))
    pi = _vector(target_probabilities, "target_probabilities", len(r))
    if np.any((mu <= 0) | (mu > 1)):
        raise ValueError("logging propensities must be in (0, 1]")
    if np.any((pi < 0) | (pi > 1)):
        raise ValueError("target probabilities must be in [0, 1]")
    return r, pi / mu


def _ess(weights: np.ndarray) -> float:
    """(Σw)² / Σw²: n for equal weights, 1 when one row carries all the weight."""
    squares = float(np.square(weights).sum())
    return float(weights.sum()) ** 2 / squares if squares > 0 else 0.0


def _vector(values: np.ndarray, name: str, length: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (length is not None and len(array) != length):
        raise ValueError(f"{name} must be a 1-d array with one value per logged row")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def _estimate(
    numerators: np.ndarray,
    denominators: np.ndarray,
    weights: np.ndarray,
    n_bootstrap: int,
    confidence: float,
    seed: int | np.random.Generator | None,
) -> Estimate:
    """Σ numerators / Σ denominators with a percentile bootstrap interval, and
    the effective sample size of the importance ``weights``."""
    n = len(numerators)
    ess = _ess(weights)
    if not n:
        return Estimate(math.nan, math.nan, math.nan, 0, ess)
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    value = _ratio(numerators.sum(), denominators.sum())
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_bootstrap)
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    for start in range(0, n_bootstrap, chunk):
        rows = rng.integers(0, n, size=(min(chunk, n_bootstrap - start), n))
        replicates[start : start + len(rows)] = _ratio(
            numerators[rows].sum(1), denominators[rows].sum(1)
        )
    tail = (1.0 - confidence) / 2.0
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return Estimate(value, math.nan, math.nan, n, ess)
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return Estimate(value, float(low), float(high), n, ess)


def _ratio(numerator, denominator):
    """numerator / denominator, NaN where the denominator is zero (SNIPS with no
    logged action the target policy would take)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return float(out) if out.ndim == 0 else out
