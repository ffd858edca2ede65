"""Evaluating policies in the shopper simulator, and training the DQN agent in it.

Metrics of one evaluation run (one seed, N sessions):

- **return**: the mean over sessions of the session's total reward (clicks,
  add-to-carts and price-aware purchases with the simulator's ``RewardWeights``);
- **CTR**: clicks per carousel shown, pooled over the run's sessions. A shopper
  clicks at most one item per carousel, so this is the share of carousels that
  got a click; the per-impression rate is ``impression_ctr`` (clicks / items shown);
- **purchase rate**: the share of sessions that ended in a checkout.

Across seeds, each metric is reported as the mean of the per-seed values with a
two-sided Student-t confidence interval (``mean_interval``): the seeds are the
independent replications (a seed fixes the catalog, the simulated world, the
agent's initialisation, its exploration and the shoppers), the sessions within
a seed are not. Two policies evaluated under the same seed meet the same
shoppers (common random numbers), which makes their comparison sharper.

Training (``train_dqn``) follows the store's loop in miniature: serve sessions
with the agent's epsilon-greedy schedule, turn them into per-item transitions, add
them to a replay buffer, take gradient steps, and copy the online network into
the target network on its own schedule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from recommender.rl.baselines import DQNPolicy
from recommender.rl.policy import Policy
from recommender.rl.simulator.episodes import SessionLog, run_sessions
from recommender.rl.simulator.model import ShopperSimulator

if TYPE_CHECKING:
    from recommender.rl.config import DQNConfig
    from recommender.rl.core import TrainStats
    from recommender.rl.learner import Learner

# Stream ids in session seeds (run seed, stream, index): evaluation shoppers never
# coincide with the shoppers a policy was trained or fitted on.
EVALUATION_STREAM = 1
TRAINING_STREAM = 2
LOGGING_STREAM = 3


# --- confidence intervals -----------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast on one side of the mean; use symmetry on the other.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on the CDF, to 1e-10)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError("student_t_quantile needs 0 < p < 1 and df > 0")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if student_t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-10:
            break
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval."""

    mean: float
    low: float
    high: float
    n: int  # number of independent values (seeds)

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high

    def to_dict(self) -> dict:
        """``{"mean": x, "ci95": [low, high]}`` (the benchmark's JSON shape)."""
        return {"mean": self.mean, "ci95": [self.low, self.high]}


def mean_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean and Student-t interval of independent ``values``; with a single
    value (or no spread) the interval is the mean itself."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or not len(x):
        raise ValueError("mean_interval needs a non-empty 1-d sequence")
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, mean, mean, len(x))
    half = (
        student_t_quantile(0.5 + confidence / 2.0, len(x) - 1)
        * float(x.std(ddof=1))
        / math.sqrt(len(x))
    )
    return Interval(mean, mean - half, mean + half, len(x))


# --- evaluation ------------------------------------------------------------------------


class PolicyEvaluation(NamedTuple):
    """One policy's sessions under one seed."""

    policy: str
    returns: np.ndarray  # float64 (n_sessions,) total reward of each session
    slates: int
    clicks: int
    impressions: int
    purchases: int  # sessions that ended in a checkout
    revenue: float

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    @property
    def ctr(self) -> float:
        """Clicks per carousel shown (at most one click per carousel)."""
        return self.clicks / max(self.slates, 1)

    @property
    def impression_ctr(self) -> float:
        """Clicks per item shown."""
        return self.clicks / max(self.impressions, 1)

    @property
    def purchase_rate(self) -> float:
        """Share of sessions that ended in a checkout."""
        return self.purchases / max(len(self.returns), 1)

    def metrics(self) -> dict[str, float]:
        """The reported metrics (``METRICS``) of this seed, by name."""
        return {"return": self.mean_return, "ctr": self.ctr, "purchase_rate": self.purchase_rate}


def summarize_sessions(name: str, logs: Sequence[SessionLog]) -> PolicyEvaluation:
    """The evaluation numbers of ``logs``."""
    return PolicyEvaluation(
        policy=name,
        returns=np.array([log.total_reward for log in logs], dtype=np.float64),
        slates=sum(log.slates for log in logs),
        clicks=sum(log.clicks for log in logs),
        impressions=sum(log.impressions for log in logs),
        purchases=sum(log.purchased for log in logs),
        revenue=float(sum(log.revenue for log in logs)),
    )


def evaluate_policy(
    simulator: ShopperSimulator,
    policy: Policy,
    n_sessions: int,
    seed: int,
    *,
    k: int = 8,
    recent_window: int = 20,
) -> PolicyEvaluation:
    """Run ``n_sessions`` sessions of ``policy``. Session i meets the same shopper
    for every policy evaluated with the same ``seed`` (common random numbers),
    and none of the shoppers used by ``train_dqn`` or ``collect_sessions``."""
    seeds = [(seed, EVALUATION_STREAM, i) for i in range(n_sessions)]
    logs = run_sessions(simulator, policy, seeds, k=k, recent_window=recent_window)
    return summarize_sessions(policy.name, logs)


METRICS = ("return", "ctr", "purchase_rate")
"""The reported metrics, in table order."""


def summarize_seeds(
    evaluations: Sequence[PolicyEvaluation], confidence: float = 0.95
) -> dict[str, Interval]:
    """Per metric (``METRICS``), the mean over seeds (one evaluation per seed)
    and its interval."""
    return summarize_metrics([e.metrics() for e in evaluations], confidence)


def summarize_metrics(
    per_seed: Sequence[Mapping[str, float]], confidence: float = 0.95
) -> dict[str, Interval]:
    """``summarize_seeds`` from each seed's ``PolicyEvaluation.metrics()``, e.g.
    as they come back from worker processes."""
    if not per_seed:
        raise ValueError("summarize_seeds needs at least one evaluation")
    return {
        metric: mean_interval([row[metric] for row in per_seed], confidence) for metric in METRICS
    }


def collect_sessions(
    simulator: ShopperSimulator,
    policy: Policy,
    n_sessions: int,
    seed: int,
    *,
    k: int = 8,
    recent_window: int = 20,
) -> list[SessionLog]:
    """Logged sessions of a (usually exploring) policy, to fit baselines on."""
    seeds = [(seed, LOGGING_STREAM, i) for i in range(n_sessions)]
    return run_sessions(simulator, policy, seeds, k=k, recent_window=recent_window)


# --- training ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSchedule:
    """How much simulated traffic a training run sees and how it learns from it."""

    sessions: int = 2000
    """simulated sessions served (and turned into transitions) over the whole run"""
    sessions_per_round: int = 20
    """sessions served between two training calls"""
    steps_per_round: int = 40
    """gradient steps per training call"""
    warmup_transitions: int = 2000
    """transitions in the replay buffer before the first gradient step (served with
    the schedule's starting epsilon, i.e. mostly at random)"""
    sync_every_steps: int = 250
    """gradient steps between hard copies of the online network into the target"""
    replay_capacity: int | None = None
    """replay buffer size; None uses the agent config's ``replay_capacity``"""
    k: int = 8
    """items per carousel"""
    recent_window: int = 20
    """events per observation, as the store keeps them"""

    def __post_init__(self) -> None:
        for name in ("sessions", "sessions_per_round", "k"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainingSchedule.{name} must be at least 1")
        for name in ("steps_per_round", "warmup_transitions", "sync_every_steps", "recent_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainingSchedule.{name} must not be negative")


class TrainingRound(NamedTuple):
    """What one round of ``train_dqn`` did."""

    sessions: int  # sessions served so far
    collect_return: float  # mean return of this round's (exploring) sessions
    stats: TrainStats | None  # None while the replay buffer warms up


class TrainingResult(NamedTuple):
    agent: Learner
    rounds: list[TrainingRound]
    transitions: int  # transitions added to the replay buffer
    gradient_steps: int
    seconds: float


def train_dqn(
    simulator: ShopperSimulator,
    config: DQNConfig,
    schedule: TrainingSchedule,
    seed: int,
    *,
    agent: Learner | None = None,
    on_round: Callable[[TrainingRound], None] | None = None,
    slateq: bool = False,
) -> TrainingResult:
    """Train a DQN agent (a new one unless ``agent`` is given) in ``simulator``.

    Each round serves ``sessions_per_round`` sessions with the agent acting
    epsilon-greedily on its own schedule (``epsilon=None``), adds their per-item
    transitions to the replay buffer, then takes ``steps_per_round`` gradient
    steps and hard-syncs the target network every ``sync_every_steps`` steps.
    With ``config.gamma == 0`` this trains the myopic baseline. ``slateq=True``
    (or a ``SlateQAgent`` as ``agent``) trains the SlateQ agent instead of the
    per-item one.
    """
    from recommender.rl.agent import DQNAgent
    from recommender.rl.replay import ReplayBuffer
    from recommender.rl.slateq import SlateQAgent

    start = time.perf_counter()
    catalog = simulator.catalog
    if agent is None:
        agent = SlateQAgent(config, catalog) if slateq else DQNAgent(config, catalog)
    if isinstance(agent, SlateQAgent):
        replay = agent.make_replay(schedule.replay_capacity)
    else:
        replay = ReplayBuffer(config, schedule.replay_capacity)
    policy = DQNPolicy(agent, name="dqn-training", epsilon=None)
    rng = np.random.default_rng([seed, TRAINING_STREAM])
    rounds: list[TrainingRound] = []
    served = transitions = steps = since_sync = 0
    while served < schedule.sessions:
        batch = min(schedule.sessions_per_round, schedule.sessions - served)
        seeds = [(seed, TRAINING_STREAM, served + i) for i in range(batch)]
        logs = run_sessions(
            simulator, policy, seeds, k=schedule.k, recent_window=schedule.recent_window
        )
        served += batch
        new = [t for log in logs for t in log.transitions]
        transitions += replay.add_many(new, catalog)
        stats = None
        if len(replay) >= max(schedule.warmup_transitions, 1) and schedule.steps_per_round:
            stats = agent.train_steps(replay, schedule.steps_per_round, rng)
            steps += schedule.steps_per_round
            since_sync += schedule.steps_per_round
            if schedule.sync_every_steps and since_sync >= schedule.sync_every_steps:
                agent.sync_target()
                since_sync = 0
        record = TrainingRound(served, float(np.mean([log.total_reward for log in logs])), stats)
        rounds.append(record)
        if on_round is not None:
            on_round(record)
    return TrainingResult(agent, rounds, transitions, steps, time.perf_counter() - start)
