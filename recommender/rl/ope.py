"""Off-policy estimates of a target policy's value from logged feedback: plain
arrays in, numbers out.

Estimation is per position (the independence decomposition, the Open Bandit
Pipeline's standard treatment): each logged row is one shown item at one
position, with the logging policy's exact probability μ of showing it there,
the reward it earned, and the target policy's probability π of showing the same
item at that position in the same context. The position is part of the
context. The estimates are of the expected reward per shown position, and
assume that a position's reward depends on its own item and the context only.

IPS        mean(w·r)                       w = π(a|x) / μ(a|x), optionally clipped at a maximum
SNIPS      Σ w·r / Σ w                     self-normalised: lower variance, slight bias
DM         mean(Σ_a π(a|x)·r̂(x, a))        the reward model's value of the target policy
DR         DM + mean(w·(r - r̂(x, a)))      unbiased if either μ or r̂ is right
Switch-DR  DM + mean(w·(r - r̂)·[w ≤ τ])    DR, but rows with w > τ are valued by r̂ alone

Confidence intervals are percentile bootstraps over rows, vectorised in chunks.
The model-based estimators (DM, DR, Switch-DR) can refit their reward model in
every replicate (``RewardRefit``), so their intervals include the model's own
uncertainty; without it they are conditional on the model.

``RewardModel`` is the reward model both the store's publication gate and the
offline tools use: r̂(item, position), cell means shrunk towards the item's
mean times the position's effect, shrunk towards the global mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# Resampled cells (replicates x rows) drawn per bootstrap chunk, bounding memory.
_BOOTSTRAP_CELLS = 1 << 22

ESTIMATORS = ("ips", "snips", "dm", "dr", "switch-dr")
"""Every estimator by the name the tools and the JSON reports use."""

DEFAULT_MAX_WEIGHT = 100.0
"""Switch-DR's threshold τ unless told otherwise: a row whose importance weight
is above it would move the estimate by more than 100 rows' worth of reward."""


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
    max_weight: float | None = None
    """the clipping (IPS) or switching (Switch-DR) threshold, None for estimators without one"""
    clipped: int = 0
    """rows whose importance weight exceeded ``max_weight``: clipped (IPS) or valued
    by the reward model alone (Switch-DR). 0 says the threshold was not needed."""

    def to_dict(self) -> dict:
        """The JSON form both the store (checkpoint evaluations) and the offline
        tools write: value, ci95, n, ess (None for undefined numbers), and
        max_weight / clipped for estimators with a threshold."""
        out = {
            "value": _clean(self.value),
            "ci95": [_clean(self.ci_low), _clean(self.ci_high)],
            "n": self.n,
            "ess": _clean(self.ess),
        }
        if self.max_weight is not None:
            out["max_weight"] = self.max_weight
            out["clipped"] = self.clipped
        return out

    @classmethod
    def from_dict(cls, data) -> Estimate | None:
        """Inverse of ``to_dict``, tolerant of what older writers stored: a bare
        number, a missing interval or n; None for anything without a finite value."""
        if isinstance(data, bool):
            return None
        if isinstance(data, int | float):
            value = _number(data)
            return None if value is None else cls(value, math.nan, math.nan, 0)
        if not isinstance(data, dict):
            return None
        value = _number(data.get("value"))
        if value is None:
            return None
        ci = data.get("ci95")
        low = high = None
        if isinstance(ci, list | tuple) and len(ci) == 2:
            low, high = _number(ci[0]), _number(ci[1])
        n = data.get("n")
        ess = _number(data.get("ess"))
        return cls(
            value,
            math.nan if low is None else low,
            math.nan if high is None else high,
            n if isinstance(n, int) and not isinstance(n, bool) else 0,
            math.nan if ess is None else ess,
            _number(data.get("max_weight")),
            int(data["clipped"]) if isinstance(data.get("clipped"), int) else 0,
        )


# ---------------------------------------------------------------------------
# Importance-weighted estimators
# ---------------------------------------------------------------------------


def ips(
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_probabilities: np.ndarray,
    *,
    max_weight: float | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """Inverse propensity scoring: unbiased when the logging propensities are
    exact. With ``max_weight`` the weights are clipped at it (biased towards
    lower values, lower variance) and the estimate says on how many rows."""
    r, w = _weights(rewards, logging_propensities, target_probabilities)
    clipped = 0
    if max_weight is not None:
        _check_threshold(max_weight)
        clipped = int(np.count_nonzero(w > max_weight))
        w = np.minimum(w, max_weight)
    estimate = _estimate(w * r, np.ones_like(w), w, n_bootstrap, confidence, seed)
    if max_weight is None:
        return estimate
    return estimate._replace(max_weight=float(max_weight), clipped=clipped)


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


# ---------------------------------------------------------------------------
# The reward model and the model-based estimators
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardModel:
    """r̂(item, position) from logged rows: each (position, item) cell's mean
    reward, shrunk towards the item's mean times the position's relative effect,
    which are themselves shrunk towards the global mean (``strength`` pseudo-rows
    at each level). A few rows of a rarely shown item do not make it look like a
    sure hit, and a position that draws fewer clicks keeps its effect.

    It reads no context: what the context adds is left to the DR correction.
    Cheap to refit, which lets the bootstrap refit it in every replicate.
    """

    table: np.ndarray  # (P, N) r̂ of item (column) at position (row)
    strength: float = 20.0

    @property
    def n_positions(self) -> int:
        return self.table.shape[0]

    @property
    def n_actions(self) -> int:
        return self.table.shape[1]

    @classmethod
    def fit(
        cls,
        actions: np.ndarray,
        positions: np.ndarray,
        rewards: np.ndarray,
        *,
        n_actions: int,
        n_positions: int,
        strength: float = 20.0,
    ) -> RewardModel:
        """Fit on logged rows: ``actions`` are item columns in [0, n_actions),
        ``positions`` in [0, n_positions)."""
        cells = cell_index(actions, positions, n_actions, n_positions)
        r = _vector(rewards, "rewards", len(cells))
        size = n_actions * n_positions
        sums = np.bincount(cells, weights=r, minlength=size).reshape(n_positions, n_actions)
        counts = np.bincount(cells, minlength=size).reshape(n_positions, n_actions)
        return cls(cls.tables(sums, counts.astype(np.float64), strength), float(strength))

    @staticmethod
    def tables(sums: np.ndarray, counts: np.ndarray, strength: float) -> np.ndarray:
        """(..., P, N) r̂ from per-cell reward sums and row counts of the same
        shape; leading dimensions are independent fits (bootstrap replicates)."""
        s = float(strength)
        total = sums.sum(axis=(-2, -1), keepdims=True)
        rows = counts.sum(axis=(-2, -1), keepdims=True)
        overall = _shrunk(total, rows, 0.0, np.zeros_like(total))
        # The item's mean over every position, shrunk to the global mean.
        item = _shrunk(
            sums.sum(axis=-2, keepdims=True), counts.sum(axis=-2, keepdims=True), s, overall
        )
        # The position's mean relative to the global one (1 when nothing was clicked).
        position = _shrunk(
            sums.sum(axis=-1, keepdims=True), counts.sum(axis=-1, keepdims=True), s, overall
        )
        effect = np.divide(position, overall, out=np.ones_like(position), where=overall > 0)
        return _shrunk(sums, counts, s, item * effect)

    def predict(self, actions: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(n,) r̂ of each (item column, position)."""
        return self.table[np.asarray(positions, dtype=np.int64), np.asarray(actions, np.int64)]

    def expected(self, distributions: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(m,) Σ_a π(a|x)·r̂(a, k): the direct-method term of rows whose target
        distribution over the items is ``distributions`` (m, N) at ``positions``."""
        distributions = np.asarray(distributions, dtype=np.float64)
        return (distributions * self.table[np.asarray(positions, dtype=np.int64)]).sum(1)


def cell_index(
    actions: np.ndarray, positions: np.ndarray, n_actions: int, n_positions: int
) -> np.ndarray:
    """(n,) position * n_actions + action: a row's cell in a (P, N) table."""
    actions = np.asarray(actions, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    if actions.ndim != 1 or positions.shape != actions.shape:
        raise ValueError("actions and positions must be 1-d arrays of the same length")
    if np.any((actions < 0) | (actions >= n_actions)):
        raise ValueError(f"actions must be item columns in [0, {n_actions})")
    if np.any((positions < 0) | (positions >= n_positions)):
        raise ValueError(f"positions must be in [0, {n_positions})")
    return positions * n_actions + actions


def target_mass(distributions: np.ndarray, positions: np.ndarray, n_positions: int) -> np.ndarray:
    """(P, N) Σ of the target distributions ``distributions`` (m, N) of rows at
    ``positions`` (m,), per position: how much target probability each item gets
    at each position over the log. Sum it over chunks of a large log."""
    distributions = np.asarray(distributions, dtype=np.float64)
    mass = np.zeros((n_positions, distributions.shape[1]))
    np.add.at(mass, np.asarray(positions, dtype=np.int64), distributions)
    return mass


class RewardRefit(NamedTuple):
    """What a model-based estimate's bootstrap needs to refit the reward model in
    each replicate. ``model`` must be the fit (on every logged row) that gave the
    predictions passed to the estimator."""

    model: RewardModel
    cells: np.ndarray  # (n,) cell_index of each logged row
    mass: np.ndarray | None
    """(P, N) ``target_mass`` of the target policy over the logged rows; None when
    the target is the logging policy itself, whose direct term is the logged item's r̂"""


def direct_method(
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_probabilities: np.ndarray,
    predicted_rewards: np.ndarray,
    target_predicted_rewards: np.ndarray,
    *,
    refit: RewardRefit | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """The reward model's value of the target policy, mean(Σ_a π(a|x)·r̂(x, a)):
    low variance, biased where the model is wrong. The importance weights only
    give the effective sample size (how far the model extrapolates)."""
    return _model_based(
        rewards,
        logging_propensities,
        target_probabilities,
        predicted_rewards,
        target_predicted_rewards,
        residual_weights=lambda w: np.zeros_like(w),
        refit=refit,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
    )


def doubly_robust(
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_probabilities: np.ndarray,
    predicted_rewards: np.ndarray,
    target_predicted_rewards: np.ndarray,
    *,
    refit: RewardRefit | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """Doubly robust: the reward model's value of the target policy, corrected by
    importance-weighted residuals; unbiased if either the propensities or the
    reward model are right.

    ``predicted_rewards`` is r̂(x, a) of each logged item, ``target_predicted_rewards``
    Σ_a π(a|x)·r̂(x, a) over that row's candidates (``RewardModel.expected``).
    """
    return _model_based(
        rewards,
        logging_propensities,
        target_probabilities,
        predicted_rewards,
        target_predicted_rewards,
        residual_weights=lambda w: w,
        refit=refit,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
    )


def switch_doubly_robust(
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_probabilities: np.ndarray,
    predicted_rewards: np.ndarray,
    target_predicted_rewards: np.ndarray,
    *,
    max_weight: float = DEFAULT_MAX_WEIGHT,
    refit: RewardRefit | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> Estimate:
    """Switch-DR (Wang, Agarwal and Dudík 2017, in the Open Bandit Pipeline's
    form): DR, but a row whose importance weight exceeds ``max_weight`` (τ) keeps
    only the reward model's term. The estimate's ``clipped`` counts those rows;
    0 means it equals DR."""
    _check_threshold(max_weight)
    estimate = _model_based(
        rewards,
        logging_propensities,
        target_probabilities,
        predicted_rewards,
        target_predicted_rewards,
        residual_weights=lambda w: np.where(w <= max_weight, w, 0.0),
        refit=refit,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
    )
    _, w = _weights(rewards, logging_propensities, target_probabilities)
    return estimate._replace(
        max_weight=float(max_weight), clipped=int(np.count_nonzero(w > max_weight))
    )


def _model_based(
    rewards,
    logging_propensities,
    target_probabilities,
    predicted_rewards,
    target_predicted_rewards,
    *,
    residual_weights: Callable[[np.ndarray], np.ndarray],
    refit: RewardRefit | None,
    n_bootstrap: int,
    confidence: float,
    seed,
) -> Estimate:
    """mean(direct + u·(r - r̂)) with u = residual_weights(w): DM (u = 0), DR
    (u = w) and Switch-DR (u = w where w ≤ τ).

    With ``refit`` each bootstrap replicate refits the reward model on its rows
    (δ = its table less the full fit) and corrects its value by
    Σ_cells (mass - U)·δ / n, where U sums u per cell over the replicate's rows:
    exact for the residual and for a logging-policy target, and to first order
    for the target's direct term (the full log's mass stands for the replicate's).
    """
    r, w = _weights(rewards, logging_propensities, target_probabilities)
    n = len(r)
    r_hat = _vector(predicted_rewards, "predicted_rewards", n)
    direct = _vector(target_predicted_rewards, "target_predicted_rewards", n)
    u = residual_weights(w)
    per_row = direct + u * (r - r_hat)
    if refit is None:
        return _estimate(per_row, np.ones_like(w), w, n_bootstrap, confidence, seed)

    model = refit.model
    cells = np.asarray(refit.cells, dtype=np.int64)
    size = model.table.size
    if cells.shape != (n,) or np.any((cells < 0) | (cells >= size)):
        raise ValueError("refit.cells must hold one cell of the model's table per logged row")
    base = model.table.reshape(-1)
    if not np.allclose(r_hat, base[cells]):
        raise ValueError("predicted_rewards must come from refit.model (fitted on every row)")
    mass = None if refit.mass is None else np.asarray(refit.mass, dtype=np.float64).reshape(-1)
    if mass is not None and mass.shape != (size,):
        raise ValueError("refit.mass must have the model table's shape")
    shape = model.table.shape

    def replicate(rows: np.ndarray) -> np.ndarray:
        b = len(rows)
        flat = (np.arange(b)[:, None] * size + cells[rows]).ravel()
        sums = np.bincount(flat, weights=r[rows].ravel(), minlength=b * size)
        counts = np.bincount(flat, minlength=b * size).astype(np.float64)
        tables = RewardModel.tables(
            sums.reshape(b, *shape), counts.reshape(b, *shape), model.strength
        )
        delta = tables.reshape(b, size) - base
        spent = np.bincount(flat, weights=u[rows].ravel(), minlength=b * size).reshape(b, size)
        held = counts.reshape(b, size) if mass is None else mass
        return per_row[rows].mean(1) + ((held - spent) * delta).sum(1) / n

    return _estimate_with(
        per_row.mean() if n else math.nan, n, w, replicate, n_bootstrap, confidence, seed
    )


# ---------------------------------------------------------------------------
# Target policies' probabilities
# ---------------------------------------------------------------------------


def ranking_distribution(
    scores: np.ndarray,
    candidate_mask: np.ndarray,
    positions: np.ndarray,
    epsilon: float = 0.0,
) -> np.ndarray:
    """(n, C) position-level distribution of a ranking policy: at 0-based
    position k it shows the (k+1)-th best of its candidates by ``scores`` (ties to
    the earlier column, as ``SlateBuilder`` fills a slate greedily), or with
    probability ``epsilon`` a uniformly random candidate. ``epsilon=1`` is the
    uniform policy. A row with no more than k candidates shows nothing there
    (all zero)."""
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.asarray(candidate_mask, dtype=bool)
    positions = np.asarray(positions, dtype=np.int64)
    if scores.shape != mask.shape or scores.ndim != 2 or positions.shape != (len(scores),):
        raise ValueError("scores and candidate_mask must be (n, C); positions (n,)")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError("epsilon must be in [0, 1]")
    if np.any(positions < 0):
        raise ValueError("positions must not be negative")
    n = len(scores)
    remaining = mask.sum(1)
    shows = remaining > positions
    out = np.where(mask & shows[:, None], epsilon / np.maximum(remaining, 1)[:, None], 0.0)
    if epsilon < 1.0 and n:
        # Fill slates greedily up to each row's position: the k-th pick is the
        # best candidate left after the first k - 1.
        left = np.where(mask, scores, -np.inf)
        picked = np.full(n, -1, dtype=np.int64)
        rows = np.arange(n)
        for k in range(int(positions[shows].max(initial=-1)) + 1):
            best = left.argmax(1)
            at_k = shows & (positions == k)
            picked[at_k] = best[at_k]
            left[rows, best] = -np.inf
        out[rows[shows], picked[shows]] += 1.0 - epsilon
    return out


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


def importance_weights(
    logging_propensities: np.ndarray, target_probabilities: np.ndarray
) -> np.ndarray:
    """(n,) w = π / μ of each logged row, with the estimators' checks."""
    mu = np.asarray(logging_propensities, dtype=np.float64)
    return _weights(np.zeros(mu.shape), mu, target_probabilities)[1]


def effective_sample_size(weights: np.ndarray) -> float:
    """(Σw)² / Σw²: n for equal weights, 1 when one row carries all the weight."""
    weights = np.asarray(weights, dtype=np.float64)
    squares = float(np.square(weights).sum())
    return float(weights.sum()) ** 2 / squares if squares > 0 else 0.0


# ---------------------------------------------------------------------------
# Internals
# ---------------------------------------------------------------------------


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


def _check_threshold(max_weight: float) -> None:
    if not max_weight > 0:
        raise ValueError("max_weight must be positive")


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
    value = _ratio(numerators.sum(), denominators.sum()) if len(numerators) else math.nan
    return _estimate_with(
        value,
        len(numerators),
        weights,
        lambda rows: _ratio(numerators[rows].sum(1), denominators[rows].sum(1)),
        n_bootstrap,
        confidence,
        seed,
    )


def _estimate_with(
    value: float,
    n: int,
    weights: np.ndarray,
    replicate: Callable[[np.ndarray], np.ndarray],
    n_bootstrap: int,
    confidence: float,
    seed: int | np.random.Generator | None,
) -> Estimate:
    """``value`` with a percentile bootstrap interval: ``replicate`` maps a
    (replicates, n) array of resampled row indices to each replicate's value."""
    ess = effective_sample_size(weights)
    if not n:
        return Estimate(math.nan, math.nan, math.nan, 0, ess)
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_bootstrap)
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    for start in range(0, n_bootstrap, chunk):
        rows = rng.integers(0, n, size=(min(chunk, n_bootstrap - start), n))
        replicates[start : start + len(rows)] = replicate(rows)
    tail = (1.0 - confidence) / 2.0
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return Estimate(float(value), math.nan, math.nan, n, ess)
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return Estimate(float(value), float(low), float(high), n, ess)


def _ratio(numerator, denominator):
    """numerator / denominator, NaN where the denominator is zero (SNIPS with no
    logged action the target policy would take)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return float(out) if out.ndim == 0 else out


def _shrunk(sums: np.ndarray, counts: np.ndarray, strength: float, prior: np.ndarray) -> np.ndarray:
    """(sums + strength·prior) / (counts + strength), broadcast; the prior where
    there is neither data nor strength."""
    numerator = sums + strength * prior
    denominator = counts + strength
    fallback = np.broadcast_to(prior, np.broadcast_shapes(numerator.shape, prior.shape))
    return np.divide(numerator, denominator, out=fallback.astype(np.float64), where=denominator > 0)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _clean(value: float | None) -> float | None:
    """JSON-safe: NaN and infinities become None; numbers keep six decimals."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 6)
