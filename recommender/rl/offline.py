"""Judging and training policies on a log of another policy's feedback, without
serving anyone: plain arrays in, estimates and a trained agent out.

A log here is per position, as the Open Bandit Dataset is and as the store's
impressions are once split into their shown items: each row is one item shown
at one position of one carousel, with the context the policy saw (an
``Observation``), the logging policy's probability of showing that item at that
position, and its reward. ``LoggedFeedback`` holds such a log as arrays.

Evaluation (``evaluate``) is position-level: a target policy is valued by its
probability of showing the logged item at the logged position in the logged
context (``ope.ranking_distribution``: a ranking policy shows its k-th best
candidate at position k), with the estimators of ``recommender.rl.ope``. It
assumes a position's reward depends only on its own item and the context.

Training (``train``) turns rows into transitions for the per-item DQN agent:
terminal (done) unless the log chains a row to the next request of its session,
and sampled in proportion to importance weights (uniform over the row's
candidates against the logging policy), so that items the logger rarely showed
count as much as the ones it favoured.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from recommender.rl import ope
from recommender.rl.baselines import (
    CooccurrencePolicy,
    LoggedSession,
    PopularityPolicy,
    SameCategoryPolicy,
)
from recommender.rl.encoding import ItemIndex
from recommender.rl.types import EventType, ItemCatalog, Observation, Slot, Transition

if TYPE_CHECKING:
    from recommender.rl.agent import DQNAgent
    from recommender.rl.core import TrainStats

Scorer = Callable[[np.ndarray], np.ndarray]
"""Scores a policy gives the catalog's items in logged rows: row indices (m,)
of a ``LoggedFeedback`` -> (m, N) scores, N its catalog size. Higher ranks first."""

UNIFORM = "uniform"
LOGGED = "logged"

# Rows whose target distributions are built at once (bounds an (m, N) array).
_CHUNK = 2048


@dataclass(frozen=True)
class LoggedFeedback:
    """A per-position log as arrays, rows in time order.

    ``actions`` are columns of ``catalog``; ``positions`` are 0-based. A row's
    candidates are the catalog less its observation's cart items and page
    product and its ``unavailable`` items (the store's eligibility rule; an
    Open Bandit log has none of these). ``sessions`` (one key per row, "" for
    none) and ``next_rows`` (the index of a row of the session's next request,
    -1 when the session ended or the log does not say) chain rows into sessions
    where the log allows it.
    """

    catalog: ItemCatalog
    observations: Sequence[Observation]
    actions: np.ndarray  # int64 (n,)
    positions: np.ndarray  # int64 (n,)
    propensities: np.ndarray  # float64 (n,)
    rewards: np.ndarray  # float64 (n,)
    n_positions: int
    unavailable: Sequence[tuple[int, ...]] | None = None
    sessions: Sequence[str] | None = None
    next_rows: np.ndarray | None = None  # int64 (n,)
    _index: ItemIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.actions)
        for name in ("positions", "propensities", "rewards"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"LoggedFeedback.{name} must have one value per row")
        if len(self.observations) != n:
            raise ValueError("LoggedFeedback.observations must have one value per row")
        for name in ("unavailable", "sessions", "next_rows"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"LoggedFeedback.{name} must have one value per row")
        actions = np.asarray(self.actions)
        if n and (actions.min() < 0 or actions.max() >= len(self.catalog)):
            raise ValueError("LoggedFeedback.actions must be columns of its catalog")
        positions = np.asarray(self.positions)
        if n and (positions.min() < 0 or positions.max() >= self.n_positions):
            raise ValueError(f"LoggedFeedback.positions must be in [0, {self.n_positions})")
        object.__setattr__(self, "_index", ItemIndex.of(self.catalog))

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def n_items(self) -> int:
        return len(self.catalog)

    def candidate_mask(self, rows: np.ndarray) -> np.ndarray:
        """(m, N) bool: the candidates each of ``rows`` had."""
        mask = np.ones((len(rows), self.n_items), dtype=bool)
        for i, row in enumerate(rows):
            observation = self.observations[row]
            excluded = list(observation.cart_items)
            if observation.current_item is not None:
                excluded.append(observation.current_item)
            if self.unavailable is not None:
                excluded.extend(self.unavailable[row])
            if excluded:
                columns = self._index.rows(excluded)
                mask[i, columns[columns >= 0]] = False
        return mask

    def sessions_for_fitting(self, rows: np.ndarray) -> list[LoggedSession]:
        """What the baselines learn from, as sessions of (item id, EventType).

        A log with sessions: per session, the interactions its last observation
        remembers (recent items with their events, the cart as add-to-carts),
        then every item rewarded in its rows. A log without sessions (an Open
        Bandit log, whose context is a user's past clicks, repeated in every row
        of that user): one session per rewarded row, its past items as views
        (light evidence, and not counted again for each of the user's rows)
        then the rewarded item as a click."""
        ids = self.catalog.ids
        if self.sessions is None:
            out = []
            for row in rows:
                if self.rewards[row] > 0:
                    past = [
                        (item, int(EventType.VIEW)) for item in self.observations[row].recent_items
                    ]
                    out.append([*past, (int(ids[self.actions[row]]), int(EventType.CLICK))])
            return out
        last: dict[str, int] = {}
        rewarded: dict[str, list[int]] = defaultdict(list)
        for row in rows:
            key = self.sessions[row] or f"row:{row}"
            last[key] = row
            if self.rewards[row] > 0:
                rewarded[key].append(int(ids[self.actions[row]]))
        out = []
        for key, row in last.items():
            observation = self.observations[row]
            events = list(zip(observation.recent_items, observation.recent_events, strict=False))
            events += [(item, int(EventType.ADD_TO_CART)) for item in observation.cart_items]
            events += [(item, int(EventType.CLICK)) for item in rewarded[key]]
            out.append(events)
        return out


def time_split(n: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a log in time order: the earlier (1 - test_fraction) to
    learn from, the latest test_fraction held out to judge on."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    cut = int(round(n * (1.0 - test_fraction)))
    return np.arange(cut), np.arange(cut, n)


# ---------------------------------------------------------------------------
# Policies to evaluate
# ---------------------------------------------------------------------------


BASELINES = ("popularity", "same-category", "co-occurrence")
"""The baselines of ``recommender.rl.baselines`` by the names the tools use."""


def make_baseline(name: str, catalog: ItemCatalog):
    """A fresh baseline policy by name (see ``BASELINES``)."""
    if name == "popularity":
        return PopularityPolicy()
    if name == "same-category":
        return SameCategoryPolicy(catalog)
    if name == "co-occurrence":
        return CooccurrencePolicy()
    raise ValueError(f"unknown baseline {name!r}: expected one of {', '.join(BASELINES)}")


def policy_scorer(policy, logged: LoggedFeedback) -> Scorer:
    """A fitted baseline's or an agent's scores of the catalog in logged rows."""
    ids = np.asarray(logged.catalog.ids, dtype=np.int64)
    if isinstance(policy, PopularityPolicy):
        row = policy.scores(ids)
        return lambda rows: np.broadcast_to(row, (len(rows), len(ids)))
    if isinstance(policy, CooccurrencePolicy | SameCategoryPolicy):
        return lambda rows: np.stack([policy.scores(logged.observations[r], ids) for r in rows])
    if hasattr(policy, "ranking_scores"):  # a DQN agent serving this catalog
        return lambda rows: policy.ranking_scores(
            [logged.observations[r] for r in rows],
            logged.candidate_mask(rows),
            logged.n_positions,
        )
    raise TypeError(f"cannot score logged rows with {type(policy).__name__}")


def baseline_scorer(
    name: str,
    logged: LoggedFeedback,
    rows: np.ndarray,
    *,
    fit_rows: np.ndarray | None = None,
    folds: int = 5,
) -> Scorer:
    """Scores of baseline ``name`` for ``rows`` that never come from a fit on the
    row being scored: fitted on ``fit_rows`` when given (disjoint from ``rows``),
    otherwise cross-fitted: ``rows`` are cut into ``folds`` blocks in time
    order and each block is scored by the baseline fitted on every other row of
    the log."""
    rows = np.asarray(rows, dtype=np.int64)
    if fit_rows is not None:
        if np.intersect1d(rows, fit_rows).size:
            raise ValueError("fit_rows must not overlap the rows being scored")
        policy = make_baseline(name, logged.catalog).fit(logged.sessions_for_fitting(fit_rows))
        return policy_scorer(policy, logged)
    everything = np.arange(len(logged))
    fold_of = np.full(len(logged), -1)
    blocks = np.array_split(rows, max(1, min(folds, len(rows))))
    scorers = []
    for f, block in enumerate(blocks):
        fold_of[block] = f
        others = np.setdiff1d(everything, block, assume_unique=True)
        fitted = make_baseline(name, logged.catalog).fit(logged.sessions_for_fitting(others))
        scorers.append(policy_scorer(fitted, logged))

    def scores(chunk: np.ndarray) -> np.ndarray:
        out = np.empty((len(chunk), logged.n_items))
        folds_here = fold_of[chunk]
        if np.any(folds_here < 0):
            raise ValueError("a cross-fitted baseline scores only the rows it was built for")
        for f in np.unique(folds_here):
            at = folds_here == f
            out[at] = scorers[f](chunk[at])
        return out

    return scores


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


class PolicyEvaluation(NamedTuple):
    """A policy's estimated value per logged row (reward per shown position)."""

    n_rows: int
    estimates: dict[str, ope.Estimate]
    logged_value: float  # the evaluated rows' own mean reward

    def to_dict(self) -> dict:
        """JSON form: n_rows, logged_value and each estimate's ``Estimate.to_dict``."""
        finite = np.isfinite(self.logged_value)
        return {
            "n_rows": self.n_rows,
            "logged_value": round(float(self.logged_value), 6) if finite else None,
            "estimates": {name: e.to_dict() for name, e in self.estimates.items()},
        }


def evaluate(
    logged: LoggedFeedback,
    rows: np.ndarray,
    target: Scorer | str,
    *,
    estimators: Iterable[str] = ope.ESTIMATORS,
    epsilon: float = 0.0,
    max_weight: float | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PolicyEvaluation:
    """Estimate ``target``'s value on ``rows`` of the log.

    ``target`` is a ``Scorer`` (a ranking policy, ε-mixed with uniform when
    ``epsilon`` > 0), ``"uniform"`` (every candidate equally likely at every
    position) or ``"logged"`` (the logging policy itself: π = μ on every row,
    so IPS, SNIPS, DR and Switch-DR give the rows' own mean reward exactly).
    ``max_weight`` clips IPS's weights and is Switch-DR's threshold (default
    ``ope.DEFAULT_MAX_WEIGHT``). The reward model of DM, DR and Switch-DR is
    fitted on the evaluated rows and refitted in every bootstrap replicate.
    """
    estimators = list(estimators)
    unknown = sorted(set(estimators) - set(ope.ESTIMATORS))
    if unknown:
        raise ValueError(f"unknown estimators {unknown}: expected some of {list(ope.ESTIMATORS)}")
    rows = np.asarray(rows, dtype=np.int64)
    actions = np.asarray(logged.actions)[rows]
    positions = np.asarray(logged.positions)[rows]
    rewards = np.asarray(logged.rewards, dtype=np.float64)[rows]
    propensities = np.asarray(logged.propensities, dtype=np.float64)[rows]
    model = ope.RewardModel.fit(
        actions, positions, rewards, n_actions=logged.n_items, n_positions=logged.n_positions
    )
    predicted = model.predict(actions, positions)
    cells = ope.cell_index(actions, positions, logged.n_items, logged.n_positions)
    if isinstance(target, str) and target == LOGGED:
        probabilities, direct, mass = propensities, predicted, None
    else:
        if isinstance(target, str) and target != UNIFORM:
            raise ValueError(f"unknown target {target!r}: a Scorer, {UNIFORM!r} or {LOGGED!r}")
        probabilities = np.zeros(len(rows))
        direct = np.zeros(len(rows))
        mass = np.zeros_like(model.table)
        for start in range(0, len(rows), _CHUNK):
            chunk = slice(start, start + _CHUNK)
            at = rows[chunk]
            mask = logged.candidate_mask(at)
            if isinstance(target, str):  # uniform
                distribution = ope.ranking_distribution(
                    np.zeros(mask.shape), mask, positions[chunk], epsilon=1.0
                )
            else:
                distribution = ope.ranking_distribution(
                    target(at), mask, positions[chunk], epsilon=epsilon
                )
            probabilities[chunk] = distribution[np.arange(len(at)), actions[chunk]]
            direct[chunk] = model.expected(distribution, positions[chunk])
            mass += ope.target_mass(distribution, positions[chunk], logged.n_positions)
    refit = ope.RewardRefit(model, cells, mass)
    args = (rewards, propensities, probabilities)
    model_args = (*args, predicted, direct)
    kwargs = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed}
    out: dict[str, ope.Estimate] = {}
    for name in estimators:
        if name == "ips":
            out[name] = ope.ips(*args, max_weight=max_weight, **kwargs)
        elif name == "snips":
            out[name] = ope.snips(*args, **kwargs)
        elif name == "dm":
            out[name] = ope.direct_method(*model_args, refit=refit, **kwargs)
        elif name == "dr":
            out[name] = ope.doubly_robust(*model_args, refit=refit, **kwargs)
        else:
            out[name] = ope.switch_doubly_robust(
                *model_args,
                max_weight=ope.DEFAULT_MAX_WEIGHT if max_weight is None else max_weight,
                refit=refit,
                **kwargs,
            )
    logged_value = float(rewards.mean()) if len(rewards) else float("nan")
    return PolicyEvaluation(len(rows), out, logged_value)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def transitions(logged: LoggedFeedback, rows: np.ndarray) -> list[Transition]:
    """One transition per row: (s, shown item, reward, s', done) with the logging
    propensity. Terminal unless ``next_rows`` chains the row to its session's
    next request, whose state is s' and whose candidates bootstrap the target."""
    ids = logged.catalog.ids
    out = []
    for row in np.asarray(rows, dtype=np.int64):
        following = -1 if logged.next_rows is None else int(logged.next_rows[row])
        next_state = logged.observations[following] if following >= 0 else None
        out.append(
            Transition(
                state=logged.observations[row],
                item=int(ids[logged.actions[row]]),
                reward=float(logged.rewards[row]),
                next_state=next_state,
                done=next_state is None,
                propensity=float(logged.propensities[row]),
                next_unavailable=(
                    tuple(logged.unavailable[following])
                    if next_state is not None and logged.unavailable is not None
                    else ()
                ),
            )
        )
    return out


def training_weights(
    logged: LoggedFeedback, rows: np.ndarray, max_weight: float = ope.DEFAULT_MAX_WEIGHT
) -> np.ndarray:
    """(m,) importance weights of ``rows`` for learning: (1 / |candidates|) / μ,
    the ratio of a uniform choice among the row's candidates to the logging
    policy's, clipped at ``max_weight``. 1 everywhere for a uniform logger."""
    rows = np.asarray(rows, dtype=np.int64)
    counts = np.concatenate(
        [
            logged.candidate_mask(rows[start : start + _CHUNK]).sum(1)
            for start in range(0, len(rows), _CHUNK)
        ]
        or [np.zeros(0)]
    )
    reference = 1.0 / np.maximum(counts, 1)
    weights = ope.importance_weights(
        np.asarray(logged.propensities)[rows], np.minimum(reference, 1.0)
    )
    return np.minimum(weights, max_weight)


class TrainingResult(NamedTuple):
    stats: TrainStats
    transitions: int
    terminal: int  # transitions with no next state (all of them for a log without sessions)
    clipped: int  # rows whose importance weight was clipped at max_weight


def train(
    agent: DQNAgent,
    logged: LoggedFeedback,
    rows: np.ndarray,
    *,
    steps: int,
    rng: np.random.Generator,
    importance_weighted: bool = True,
    max_weight: float = ope.DEFAULT_MAX_WEIGHT,
) -> TrainingResult:
    """Train the per-item ``agent`` (serving ``logged.catalog``) on ``rows``.

    Off-policy correction: minibatches are drawn in proportion to
    ``training_weights`` (importance resampling; in expectation the gradient of
    the importance-weighted Huber loss), so the fit of Q is spread over the
    items as a uniform logger would have spread it, not concentrated on those
    the logging policy favoured. ``importance_weighted=False`` samples uniformly.
    """
    batch = transitions(logged, rows)
    replay = agent.make_replay(capacity=max(len(batch), 1))
    accepted = replay.add_many(batch, logged.catalog)
    if accepted != len(batch):
        raise ValueError("every logged item must be in the agent's catalog")
    clipped = 0
    if importance_weighted and len(batch):
        raw = training_weights(logged, rows, max_weight=np.inf)
        clipped = int(np.count_nonzero(raw > max_weight))
        replay.set_sampling_weights(np.minimum(raw, max_weight))
    stats = agent.train_steps(replay, steps, rng)
    return TrainingResult(stats, len(batch), sum(t.done for t in batch), clipped)


def observation_from_clicks(past_clicks: Mapping[int, float]) -> Observation:
    """The context of a log that records, per user, how often they clicked each
    item before (the Open Bandit Dataset's user-item affinity): those items as
    recent clicks, each repeated its (rounded, at least one) count, oldest
    unknown so all of age 0, on the home slot."""
    items: list[int] = []
    for item, count in sorted(past_clicks.items()):
        if count > 0:
            items.extend([int(item)] * max(1, int(round(count))))
    return Observation(
        slot=Slot.HOME,
        recent_items=tuple(items),
        recent_events=tuple(int(EventType.CLICK) for _ in items),
        recent_ages=tuple(0.0 for _ in items),
    )
