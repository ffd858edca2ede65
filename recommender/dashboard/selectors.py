"""Reads of the recommender for the admin dashboard.

Traffic numbers come from the hourly ImpressionStats roll-up for every hour
before its newest bucket, and from raw impressions (an indexed range query)
from that bucket on, so the dashboard is live without ever scanning history:
the raw tail is normally the last hour or two, however large the tables grow.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.db.models import Count, F, Prefetch, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Trunc
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from recommender.evaluation.reports import GuardCheck, GuardReport, OffPolicyEvaluation
from recommender.evaluation.stats import FALLBACK_VERSION, stats_rolled_up_until
from recommender.models import (
    Checkpoint,
    Impression,
    ImpressionItem,
    ImpressionStats,
    ServingHeartbeat,
    TrainingRun,
)
from recommender.rl import ope

Bucket = Literal["hour", "day"]

# Periodic tasks of the learning loop are those whose task path lives here.
RECOMMENDER_TASK_PREFIX = "recommender.tasks."


# ---------------------------------------------------------------------------
# Ranges and totals
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DateRange:
    """A half-open interval [start, end) of aware datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("A date range must end after it starts.")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def previous(self) -> DateRange:
        """The range of the same length that ends where this one starts."""
        return DateRange(self.start - self.duration, self.start)

    def so_far(self, now: datetime) -> DateRange:
        """The part of the range up to ``now`` (all of it once it is past)."""
        return DateRange(self.start, min(self.end, now)) if now > self.start else self

    def shifted(self, delta: timedelta) -> DateRange:
        return DateRange(self.start + delta, self.end + delta)


@dataclass(frozen=True)
class Totals:
    """Outcome counters of a set of impressions and the rates derived from
    them. Rates are per impression and None when there were no impressions."""

    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    purchases: int = 0
    reward: float = 0.0
    revenue: Decimal = Decimal("0")

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            impressions=self.impressions + other.impressions,
            clicks=self.clicks + other.clicks,
            add_to_carts=self.add_to_carts + other.add_to_carts,
            purchases=self.purchases + other.purchases,
            reward=self.reward + other.reward,
            revenue=self.revenue + other.revenue,
        )

    def _per_impression(self, amount: float) -> float | None:
        return amount / self.impressions if self.impressions else None

    @property
    def ctr(self) -> float | None:
        # Clicks per impression: attribution counts each (impression, item)
        # click once, so a carousel with two clicked items counts twice.
        return self._per_impression(self.clicks)

    @property
    def add_to_cart_rate(self) -> float | None:
        return self._per_impression(self.add_to_carts)

    @property
    def purchase_rate(self) -> float | None:
        return self._per_impression(self.purchases)

    @property
    def reward_per_impression(self) -> float | None:
        return self._per_impression(self.reward)


# Metrics are computed by the same names from both sources: the roll-up sums
# its bucket counters, raw impressions count rows and sum their counters.
_SUMMED = ("clicks", "add_to_carts", "purchases", "reward", "revenue")


def _stats_metrics(condition: Q | None = None, prefix: str = "") -> dict[str, Any]:
    metrics = {f"{prefix}impressions": Sum("impressions", filter=condition)}
    metrics.update({f"{prefix}{name}": Sum(name, filter=condition) for name in _SUMMED})
    return metrics


def _raw_metrics(condition: Q | None = None, prefix: str = "") -> dict[str, Any]:
    metrics = {f"{prefix}impressions": Count("pk", filter=condition)}
    metrics.update({f"{prefix}{name}": Sum(name, filter=condition) for name in _SUMMED})
    return metrics


def _totals(row: dict[str, Any], prefix: str = "") -> Totals:
    def get(name: str) -> Any:
        return row.get(f"{prefix}{name}") or 0

    return Totals(
        impressions=int(get("impressions")),
        clicks=int(get("clicks")),
        add_to_carts=int(get("add_to_carts")),
        purchases=int(get("purchases")),
        reward=float(get("reward")),
        revenue=Decimal(get("revenue")),
    )


@dataclass(frozen=True)
class _Sources:
    """The roll-up and raw querysets that together cover a range once."""

    stats: QuerySet[ImpressionStats] | None
    raw: QuerySet[Impression] | None


def _sources(
    date_range: DateRange, *, slot: str | None, rolled_up_until: datetime | None
) -> _Sources:
    """Split a range at the roll-up's newest bucket: complete buckets before
    it come from ImpressionStats, the rest from raw impressions."""
    stats = raw = None
    boundary = rolled_up_until
    if boundary is not None and date_range.start < boundary:
        stats = ImpressionStats.objects.filter(
            hour__gte=date_range.start, hour__lt=min(date_range.end, boundary)
        )
    raw_start = date_range.start if boundary is None else max(date_range.start, boundary)
    if raw_start < date_range.end:
        raw = Impression.objects.filter(created_at__gte=raw_start, created_at__lt=date_range.end)
    if slot:
        stats = stats.filter(slot=slot) if stats is not None else None
        raw = raw.filter(slot=slot) if raw is not None else None
    return _Sources(stats=stats, raw=raw)


# ---------------------------------------------------------------------------
# KPIs
# ---------------------------------------------------------------------------

KpiFormat = Literal["count", "percent", "number", "money"]


@dataclass(frozen=True)
class Kpi:
    key: str
    label: str
    value: float | Decimal | int | None
    previous: float | Decimal | int | None
    format: KpiFormat
    help: str = ""

    @property
    def change(self) -> float | None:
        """Relative change against the previous range (0.1 = +10%); None when
        there is nothing to compare with."""
        if self.value is None or not self.previous:
            return None
        return (float(self.value) - float(self.previous)) / abs(float(self.previous))


@dataclass(frozen=True)
class KpiReport:
    date_range: DateRange
    previous_range: DateRange
    current: Totals
    previous: Totals
    kpis: list[Kpi]


def _totals_for_ranges(ranges: list[DateRange], *, slot: str | None) -> list[Totals]:
    """Totals for several ranges with one conditional aggregate per source."""
    rolled_up_until = stats_rolled_up_until()
    span = DateRange(min(r.start for r in ranges), max(r.end for r in ranges))
    sources = _sources(span, slot=slot, rolled_up_until=rolled_up_until)
    stats_row: dict[str, Any] = {}
    raw_row: dict[str, Any] = {}
    if sources.stats is not None:
        metrics: dict[str, Any] = {}
        for i, r in enumerate(ranges):
            metrics |= _stats_metrics(Q(hour__gte=r.start, hour__lt=r.end), prefix=f"r{i}_")
        stats_row = sources.stats.aggregate(**metrics)
    if sources.raw is not None:
        metrics = {}
        for i, r in enumerate(ranges):
            metrics |= _raw_metrics(
                Q(created_at__gte=r.start, created_at__lt=r.end), prefix=f"r{i}_"
            )
        raw_row = sources.raw.aggregate(**metrics)
    return [
        _totals(stats_row, prefix=f"r{i}_") + _totals(raw_row, prefix=f"r{i}_")
        for i in range(len(ranges))
    ]


def kpis(
    *, date_range: DateRange, slot: str | None = None, compare_to: DateRange | None = None
) -> KpiReport:
    """The dashboard's KPI cards for a range, each against ``compare_to``
    (by default the range of the same length just before)."""
    previous_range = compare_to or date_range.previous()
    current, previous = _totals_for_ranges([date_range, previous_range], slot=slot)

    def card(key: str, label: str, fmt: KpiFormat, attr: str, help: str) -> Kpi:
        return Kpi(key, label, getattr(current, attr), getattr(previous, attr), fmt, help)

    cards = [
        card("impressions", "Impressions", "count", "impressions", "Carousels served."),
        card("ctr", "Click-through rate", "percent", "ctr", "Attributed clicks per impression."),
        card(
            "add_to_cart_rate",
            "Add-to-cart rate",
            "percent",
            "add_to_cart_rate",
            "Attributed add-to-carts per impression.",
        ),
        card(
            "purchase_rate",
            "Purchase rate",
            "percent",
            "purchase_rate",
            "Attributed purchases per impression.",
        ),
        card(
            "reward_per_impression",
            "Reward per impression",
            "number",
            "reward_per_impression",
            "Mean reward the policy earned per carousel.",
        ),
        card(
            "revenue",
            "Attributed revenue",
            "money",
            "revenue",
            "Value of purchases attributed to a carousel.",
        ),
    ]
    return KpiReport(date_range, previous_range, current, previous, cards)


# ---------------------------------------------------------------------------
# Time series per policy version
# ---------------------------------------------------------------------------


def policy_label(version: int) -> str:
    return "Fallback" if version == FALLBACK_VERSION else f"v{version}"


@dataclass(frozen=True)
class PolicySeries:
    version: int
    points: dict[datetime, Totals] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return policy_label(self.version)

    @property
    def is_fallback(self) -> bool:
        return self.version == FALLBACK_VERSION

    @property
    def totals(self) -> Totals:
        return sum(self.points.values(), Totals())


@dataclass(frozen=True)
class Timeseries:
    bucket: Bucket
    buckets: list[datetime]
    series: list[PolicySeries]


def bucket_starts(date_range: DateRange, bucket: Bucket) -> list[datetime]:
    """Every bucket start in the range: whole hours, or local midnights."""
    tz = timezone.get_current_timezone()
    if bucket == "hour":
        step = timedelta(hours=1)
        current = date_range.start.replace(minute=0, second=0, microsecond=0)
        starts = []
        while current < date_range.end:
            starts.append(current)
            current += step
        return starts
    local = timezone.localtime(date_range.start, tz)
    day = local.date()
    starts = []
    while True:
        # Construct each midnight afresh so days around a DST change stay
        # at local midnight instead of drifting by the offset change.
        midnight = datetime.combine(day, datetime.min.time(), tzinfo=tz)
        if midnight >= date_range.end:
            return starts
        starts.append(midnight)
        day += timedelta(days=1)


def timeseries(
    *, date_range: DateRange, slot: str | None = None, bucket: Bucket = "hour"
) -> Timeseries:
    """Totals per bucket and policy version (0 = fallback), for the charts
    and the per-version table. Buckets without impressions are left out of
    a version's points so charts show a gap, not a zero."""
    tz = timezone.get_current_timezone()
    sources = _sources(date_range, slot=slot, rolled_up_until=stats_rolled_up_until())
    merged: dict[int, dict[datetime, Totals]] = defaultdict(dict)

    def fold(rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            when = row["bucket_start"]
            points = merged[row["version"]]
            points[when] = points.get(when, Totals()) + _totals(row)

    if sources.stats is not None:
        fold(
            sources.stats.annotate(
                bucket_start=Trunc("hour", bucket, tzinfo=tz), version=F("policy_version")
            )
            .values("bucket_start", "version")
            .annotate(**_stats_metrics())
            .order_by()
        )
    if sources.raw is not None:
        fold(
            sources.raw.annotate(
                bucket_start=Trunc("created_at", bucket, tzinfo=tz),
                version=Coalesce("policy_version", Value(FALLBACK_VERSION)),
            )
            .values("bucket_start", "version")
            .annotate(**_raw_metrics())
            .order_by()
        )
    # Learned versions newest first, the fallback last: the order of legends.
    versions = sorted(merged, key=lambda v: (v == FALLBACK_VERSION, -v))
    return Timeseries(
        bucket=bucket,
        buckets=bucket_starts(date_range, bucket),
        series=[PolicySeries(v, dict(sorted(merged[v].items()))) for v in versions],
    )


# ---------------------------------------------------------------------------
# Training runs
# ---------------------------------------------------------------------------


def training_runs_for_chart(*, date_range: DateRange, limit: int = 500) -> list[TrainingRun]:
    """Finished training runs in the range, oldest first (the newest ``limit``)."""
    runs = (
        TrainingRun.objects.filter(
            kind=TrainingRun.Kind.TRAIN,
            status=TrainingRun.Status.SUCCEEDED,
            started_at__gte=date_range.start,
            started_at__lt=date_range.end,
        )
        .only("pk", "started_at", "loss", "mean_q", "epsilon", "replay_size", "steps")
        .order_by("-started_at")[:limit]
    )
    return list(reversed(runs))


def training_runs_recent(*, limit: int = 8) -> QuerySet[TrainingRun]:
    """The latest runs of every kind and outcome (failures included)."""
    return TrainingRun.objects.order_by("-started_at")[:limit]


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------

ESTIMATORS = (("ips", "IPS"), ("snips", "SNIPS"), ("dr", "DR"))


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class EstimateComparison:
    name: str
    candidate: Estimate | None
    baseline: Estimate | None


@dataclass(frozen=True)
class Personalisation:
    """How much a version's ranking depends on the shopper's state, as its
    publication check measured it (recommender.learning.publishing.personalisation_check)."""

    jaccard_vs_cold: float | None  # top-k overlap with no context: 1 ignores the state
    mean_jaccard: float | None  # top-k overlap between states: 1 is one carousel for all
    related_share: float | None  # top-k share in the newest session item's category
    related_chance: float | None  # that category's share of the candidates
    n_states: int | None
    max_jaccard: float | None
    passed: bool | None
    reason: str


def personalisation(guard: GuardReport | None) -> Personalisation | None:
    """A checkpoint's personalisation figures, None when it has none (older
    trainers, malformed)."""
    found = guard.personalisation if guard is not None else None
    if not found:
        return None
    n_states = _number(found.get("n_states"))
    return Personalisation(
        jaccard_vs_cold=_number(found.get("jaccard_vs_cold")),
        mean_jaccard=_number(found.get("mean_jaccard")),
        related_share=_number(found.get("related_share")),
        related_chance=_number(found.get("related_chance")),
        n_states=int(n_states) if n_states is not None else None,
        max_jaccard=_number(found.get("max_jaccard")),
        passed=guard.personalised,
        reason=found.get("reason") if isinstance(found.get("reason"), str) else "",
    )


def personalisation_by_version(versions: Iterable[int]) -> dict[int, Personalisation]:
    """The personalisation of each of these versions that has it (one query)."""
    rows = Checkpoint.objects.filter(version__in=list(versions)).values_list("version", "checks")
    return {
        version: found
        for version, checks in rows
        if (found := personalisation(GuardReport.from_dict(checks)))
    }


# The baselines of recommender.learning.publishing.baseline_comparison, as admins read them.
BASELINE_LABELS = (
    ("popularity", "Popularity"),
    ("same_category", "Same category"),
    ("cooccurrence", "Co-occurrence"),
)


@dataclass(frozen=True)
class BaselineEstimate:
    label: str
    estimate: Estimate | None
    # Its importance weights rest on fewer effective impressions than the gate
    # needs to judge (RECOMMENDER_OPE_MIN_ESS): the interval means little.
    effective_impressions: float | None
    too_few: bool


@dataclass(frozen=True)
class BaselineComparison:
    """SNIPS estimates of a version and of the baselines on the same logged
    impressions, the baselines fitted on the events before them."""

    candidate: BaselineEstimate
    baselines: list[BaselineEstimate]
    n_impressions: int | None
    fit_sessions: int | None
    fitted_before: datetime | None


def baseline_comparison(evaluation: Any) -> BaselineComparison | None:
    found = evaluation.get("baselines") if isinstance(evaluation, dict) else None
    if not isinstance(found, dict) or not isinstance(found.get("candidate"), dict):
        return None
    minimum = _number(evaluation.get("min_ess"))

    def snips(key: str, label: str) -> BaselineEstimate:
        value = found.get(key)
        value = value.get("snips") if isinstance(value, dict) else None
        ess = _number(value.get("ess")) if isinstance(value, dict) else None
        too_few = ess is not None and minimum is not None and ess < minimum
        return BaselineEstimate(label, _estimate(value), ess, too_few)

    n_impressions, fit_sessions = (
        _number(found.get("n_impressions")),
        _number(found.get("fit_sessions")),
    )
    try:
        fitted_before = datetime.fromisoformat(found["fitted_before"])
    except (KeyError, TypeError, ValueError):
        fitted_before = None
    return BaselineComparison(
        candidate=snips("candidate", "this version"),
        baselines=[snips(key, label) for key, label in BASELINE_LABELS],
        n_impressions=int(n_impressions) if n_impressions is not None else None,
        fit_sessions=int(fit_sessions) if fit_sessions is not None else None,
        fitted_before=fitted_before,
    )


@dataclass(frozen=True)
class CheckpointRow:
    checkpoint: Checkpoint
    agent: str | None  # the learner kind, as AGENT_LABELS names it
    personalisation: Personalisation | None
    baselines: BaselineComparison | None
    checks: list[GuardCheck]
    checks_passed: bool | None
    q_range: tuple[float, float] | None
    estimates: list[EstimateComparison]
    baseline_version: int | None
    n_impressions: int | None
    margin: float | None
    epsilon: float | None  # the exploration rate the estimates assume: the one served
    effective_impressions: float | None  # the candidate's SNIPS effective sample size
    min_effective_impressions: float | None  # below it the gate judged nothing
    evaluation_passed: bool | None
    can_activate: bool
    can_roll_back: bool

    @property
    def too_few_to_judge(self) -> bool:
        """The off-policy estimate rested on too few logged impressions to reject on."""
        ess, minimum = self.effective_impressions, self.min_effective_impressions
        return ess is not None and minimum is not None and ess < minimum


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _estimate(value: Any) -> Estimate | None:
    """A stored off-policy estimate, read as ``ope.Estimate`` writes it
    ({"value": x, "ci95": [lo, hi], ...}) or as a bare number; anything else
    (missing, malformed, non-finite) is no estimate."""
    estimate = ope.Estimate.from_dict(value)
    if estimate is None:
        return None
    return Estimate(estimate.value, _number(estimate.ci_low), _number(estimate.ci_high))


# How RECOMMENDER_AGENT's kinds are named to admins.
AGENT_LABELS = {"slateq": "SlateQ", "per_item": "per-item DQN"}


def checkpoint_agent(checkpoint: Checkpoint) -> str | None:
    """The learner kind a checkpoint holds, from its config (trainers before
    SlateQ wrote no "agent": theirs were per-item)."""
    config = checkpoint.config if isinstance(checkpoint.config, dict) else {}
    if not config:
        return None
    kind = config.get("agent", "per_item")
    return AGENT_LABELS.get(kind, str(kind))


def checkpoint_row(checkpoint: Checkpoint, *, has_rollback_target: bool) -> CheckpointRow:
    """Read a checkpoint's guard checks and off-policy evaluation as the
    publisher wrote them (``recommender.evaluation.reports``), tolerating any
    missing or malformed value (older trainers wrote fewer of them)."""
    guard = GuardReport.from_dict(checkpoint.checks)
    evaluation = OffPolicyEvaluation.from_dict(checkpoint.evaluation)
    baseline = evaluation.active if evaluation else {}
    estimates = evaluation.estimates if evaluation else {}
    status = checkpoint.status
    return CheckpointRow(
        checkpoint=checkpoint,
        agent=checkpoint_agent(checkpoint),
        personalisation=personalisation(guard),
        baselines=baseline_comparison(checkpoint.evaluation),
        # Checks not judged (None) are not shown as passed or failed.
        checks=[check for check in guard.checks if check.passed is not None] if guard else [],
        checks_passed=guard.passed if guard else None,
        q_range=(guard.q_min, guard.q_max)
        if guard and guard.q_min is not None and guard.q_max is not None
        else None,
        estimates=[
            EstimateComparison(label, _estimate(estimates.get(key)), _estimate(baseline.get(key)))
            for key, label in ESTIMATORS
        ],
        baseline_version=evaluation.active_version if evaluation else None,
        n_impressions=evaluation.n_impressions if evaluation else None,
        margin=evaluation.margin if evaluation else None,
        epsilon=evaluation.epsilon if evaluation else None,
        effective_impressions=evaluation.effective_impressions if evaluation else None,
        min_effective_impressions=evaluation.min_ess if evaluation else None,
        evaluation_passed=evaluation.passed if evaluation else None,
        can_activate=status != Checkpoint.Status.ACTIVE and checkpoint.servable,
        can_roll_back=status == Checkpoint.Status.ACTIVE and has_rollback_target,
    )


def _checkpoints_without_weights() -> QuerySet[Checkpoint]:
    # Weights are megabytes per row and never shown: never load them here (the
    # config, a few hundred bytes, names the agent kind).
    return Checkpoint.objects.defer("weights").select_related("training_run", "dataset")


def checkpoints_table(*, limit: int = 12) -> list[CheckpointRow]:
    """The newest checkpoints and the active one (wherever it is in history)."""
    rows = list(_checkpoints_without_weights().order_by("-version")[:limit])
    if not any(c.status == Checkpoint.Status.ACTIVE for c in rows):
        active = active_checkpoint()
        if active is not None:
            rows.append(active)
    has_rollback_target = Checkpoint.objects.filter(
        status=Checkpoint.Status.RETIRED, activated_at__isnull=False
    ).exists()
    return [checkpoint_row(c, has_rollback_target=has_rollback_target) for c in rows]


def active_checkpoint() -> Checkpoint | None:
    return _checkpoints_without_weights().filter(status=Checkpoint.Status.ACTIVE).first()


# ---------------------------------------------------------------------------
# What the web processes serve
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedBy:
    """One live web process and whether it serves the active version."""

    heartbeat: ServingHeartbeat
    state: Literal["ok", "pending", "failed", "differs"]
    note: str


def serving_processes(*, active: Checkpoint | None, now: datetime) -> list[ServedBy]:
    """The web processes that reported recently (dead ones stop reporting), and
    for each whether shoppers meet the active version there."""
    # Three missed heartbeats (or reload checks, if those are rarer) mean gone.
    quiet = 3 * max(settings.RECOMMENDER_HEARTBEAT_SECONDS, settings.RECOMMENDER_RELOAD_SECONDS)
    rows = []
    for beat in ServingHeartbeat.objects.filter(
        seen_at__gte=now - timedelta(seconds=quiet)
    ).order_by("process"):
        version = active.version if active is not None else None
        if beat.policy_version == version:
            state, note = "ok", "serves the active version" if version else "no active version"
        elif version is not None and beat.failed_version == version:
            state, note = "failed", f"cannot load v{version}: {beat.error}"
        elif active is not None and active.activated_at and beat.seen_at < active.activated_at:
            state, note = "pending", f"has not checked since v{version} was activated"
        else:
            wanted = f"v{version}" if version else "the fallback"
            state, note = "differs", f"serves {_served(beat)}, not {wanted}"
        rows.append(ServedBy(beat, state, note))
    return rows


def _served(beat: ServingHeartbeat) -> str:
    return f"v{beat.policy_version}" if beat.policy_version else "the fallback"


# ---------------------------------------------------------------------------
# Scheduled tasks
# ---------------------------------------------------------------------------


def scheduled_tasks() -> QuerySet[PeriodicTask]:
    """The learning loop's beat entries with their schedule and last run."""
    return (
        PeriodicTask.objects.filter(task__startswith=RECOMMENDER_TASK_PREFIX)
        .select_related("interval", "crontab", "solar", "clocked")
        .order_by("name")
    )


# ---------------------------------------------------------------------------
# Impressions
# ---------------------------------------------------------------------------


def impression_policy_label(policy_name: str, policy_version: int | None) -> str:
    if policy_version is None:
        return f"{policy_name} (fallback)"
    return f"{policy_name} v{policy_version}"


IMPRESSION_EXPORT_HEADER = [
    "impression_id",
    "created_at",
    "slot",
    "policy_name",
    "policy_version",
    "epsilon",
    "session_key",
    "user_id",
    "page_product_id",
    "item_ids",
    "propensities",
    "clicks",
    "add_to_carts",
    "purchases",
    "reward",
    "revenue",
]
EXPORT_CHUNK = 2000


def impression_export_rows(queryset: QuerySet[Impression]) -> Iterator[list[Any]]:
    """The header, then one row per impression with the items it showed (in
    position order, space-separated, with their propensities) and the reward
    attributed to it. Reads in chunks, so memory stays flat for any range."""
    yield IMPRESSION_EXPORT_HEADER
    items = ImpressionItem.objects.order_by("position").only(
        "impression_id", "product_id", "propensity", "position"
    )
    rows = (
        queryset.select_related(None)
        .only(
            "id",
            "created_at",
            "slot",
            "policy_name",
            "policy_version",
            "epsilon",
            "session_key",
            "user_id",
            "product_id",
            "clicks",
            "add_to_carts",
            "purchases",
            "reward",
            "revenue",
        )
        .prefetch_related(Prefetch("items", queryset=items))
        .iterator(chunk_size=EXPORT_CHUNK)
    )
    for impression in rows:
        shown = list(impression.items.all())
        yield [
            impression.pk,
            impression.created_at.isoformat(),
            impression.slot,
            impression.policy_name,
            "" if impression.policy_version is None else impression.policy_version,
            impression.epsilon,
            impression.session_key,
            impression.user_id or "",
            impression.product_id or "",
            " ".join(str(item.product_id) for item in shown),
            " ".join(f"{item.propensity:.6g}" for item in shown),
            impression.clicks,
            impression.add_to_carts,
            impression.purchases,
            round(impression.reward, 6),
            impression.revenue,
        ]
