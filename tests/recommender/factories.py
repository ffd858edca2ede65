"""Factories for the recommender's logged history, and a realistic few days of
it for pages and screenshots (several policy versions, a fallback period,
training runs and checkpoints in every status)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from recommender.evaluation.reports import GuardReport
from recommender.models import (
    Checkpoint,
    Event,
    EventType,
    Impression,
    ImpressionItem,
    SlotName,
    TrainingRun,
    Transition,
)
from tests.factories import ProductFactory, UserFactory


class StaffFactory(UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True


class SuperuserFactory(UserFactory):
    username = factory.Sequence(lambda n: f"admin{n}")
    is_staff = True
    is_superuser = True


class ImpressionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Impression

    created_at = factory.LazyFunction(timezone.now)
    session_key = factory.Sequence(lambda n: f"session{n:06d}")
    slot = SlotName.HOME
    state = factory.LazyFunction(dict)
    policy_name = "dqn"
    policy_version = 1
    epsilon = 0.1


class ImpressionItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ImpressionItem

    impression = factory.SubFactory(ImpressionFactory)
    product = factory.SubFactory(ProductFactory)
    position = factory.Sequence(lambda n: n % 8)
    propensity = 0.9


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    created_at = factory.LazyFunction(timezone.now)
    session_key = factory.Sequence(lambda n: f"session{n:06d}")
    type = EventType.VIEW
    product = factory.SubFactory(ProductFactory)


class TransitionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Transition

    impression = factory.SubFactory(ImpressionFactory)
    product = factory.SubFactory(ProductFactory)
    position = 0
    propensity = 0.9
    reward = 1.0
    done = False


class TrainingRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrainingRun

    kind = TrainingRun.Kind.TRAIN
    status = TrainingRun.Status.SUCCEEDED
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(lambda r: r.started_at + timedelta(seconds=12))
    steps = 300
    loss = 0.2
    mean_q = 2.5
    epsilon = 0.1
    replay_size = 5000
    duration_s = 12.0


def _estimate(value: float, half_width: float) -> dict:
    return {"value": value, "ci95": [value - half_width, value + half_width]}


class CheckpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Checkpoint

    version = factory.Sequence(lambda n: n + 1)
    status = Checkpoint.Status.CANDIDATE
    # Not a loadable checkpoint: a web process that meets it as the active version
    # logs the failure and serves popularity (tests that serve a real policy store
    # one with tests.recommender.support.store_checkpoint).
    weights = factory.LazyFunction(lambda: b"placeholder checkpoint bytes " * 16)
    # Written as the publisher writes them (recommender.evaluation.reports).
    checks = factory.LazyFunction(
        lambda: GuardReport(
            finite_weights=True,
            q_finite=True,
            q_within_bound=True,
            personalised=None,
            q_min=-0.4,
            q_max=6.2,
        ).to_dict()
    )
    evaluation = factory.LazyFunction(
        lambda: {
            "ips": _estimate(0.52, 0.05),
            "snips": _estimate(0.50, 0.04),
            "dr": _estimate(0.51, 0.03),
            "active": {
                "version": None,
                "ips": _estimate(0.45, 0.05),
                "snips": _estimate(0.44, 0.04),
                "dr": _estimate(0.45, 0.03),
            },
            "n_impressions": 5000,
            "margin": 0.05,
            "passed": True,
        }
    )


# ---------------------------------------------------------------------------
# A realistic history for pages and screenshots
# ---------------------------------------------------------------------------


SLOTS = (SlotName.HOME, SlotName.CART, SlotName.PRODUCT)
SLOT_WEIGHTS = (5, 2, 3)


@dataclass(frozen=True)
class SeededHistory:
    start: datetime
    end: datetime
    impressions: int
    checkpoints: list[Checkpoint]


# The fallback's rates and each learned version's (ctr, add-to-cart, purchase)
# per impression: every version a little better than the last.
FALLBACK_RATES = (0.05, 0.012, 0.004)
VERSION_RATES = {1: (0.075, 0.019, 0.0065), 2: (0.098, 0.026, 0.0095), 3: (0.118, 0.032, 0.0125)}
PRICES = ("12.00", "24.50", "39.90", "64.00", "89.00")


def _outcome(rng: random.Random, rates: tuple[float, float, float], price: Decimal):
    """Sampled (clicks, add_to_carts, purchases, reward, revenue) of one
    carousel, rewarded with the default weights (1, 3, 5 + 2% of the price)."""
    ctr, atc, buy = rates
    clicks = int(rng.random() < ctr * 0.9) + int(rng.random() < ctr * 0.1)
    add_to_carts = int(bool(clicks) and rng.random() < atc / ctr)
    purchases = int(bool(add_to_carts) and rng.random() < buy / atc)
    revenue = price if purchases else Decimal("0")
    reward = clicks + 3.0 * add_to_carts + purchases * (5.0 + 0.02 * float(revenue))
    return clicks, add_to_carts, purchases, reward, revenue


def seed_dashboard_history(
    *,
    end: datetime | None = None,
    days: int = 28,
    per_hour: int = 40,
    launches: tuple[float, float, float] = (0.52, 0.68, 0.84),
    fallback_share: float = 0.15,
    seed: int = 7,
) -> SeededHistory:
    """Weeks of carousels as a store would log them: the popularity fallback
    until v1 is trained, then v1, v2 and v3 taking over as each is activated
    (at ``launches``, fractions of the period), each clicking and converting
    a little better than the last, while a few carousels still fall back
    (cache misses); a daily traffic cycle; training runs every four hours
    whose loss falls as the replay fills; checkpoints in every status.
    Deterministic for a given seed and end."""
    rng = random.Random(seed)
    end = (end or timezone.now()).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    prices = [Decimal(rng.choice(PRICES)) for _ in range(12)]
    for price in prices:
        ProductFactory(price=price)

    def at(fraction: float) -> datetime:
        return start + (end - start) * fraction

    launch_times = [at(f) for f in launches]
    hours = int((end - start).total_seconds() // 3600)
    impressions: list[Impression] = []
    for hour in range(hours):
        moment = start + timedelta(hours=hour)
        # Traffic peaks in the evening and is quietest before dawn.
        daily = 1.0 - 0.6 * abs(((moment.hour - 20) % 24) - 12) / 12
        for _ in range(max(1, round(per_hour * (0.4 + daily) * rng.uniform(0.85, 1.15)))):
            created_at = moment + timedelta(seconds=rng.randrange(3600))
            version = sum(created_at >= t for t in launch_times) or None
            if version is not None and rng.random() < fallback_share:
                version = None
            rates = VERSION_RATES[version] if version else FALLBACK_RATES
            clicks, add_to_carts, purchases, reward, revenue = _outcome(
                rng, rates, rng.choice(prices)
            )
            impressions.append(
                Impression(
                    created_at=created_at,
                    session_key=uuid.uuid4().hex[:32],
                    slot=rng.choices(SLOTS, SLOT_WEIGHTS)[0],
                    state={},
                    policy_name="dqn" if version else "popularity",
                    policy_version=version,
                    epsilon=0.1 if version else 0.0,
                    clicks=clicks,
                    add_to_carts=add_to_carts,
                    purchases=purchases,
                    reward=reward,
                    revenue=revenue,
                )
            )
    Impression.objects.bulk_create(impressions, batch_size=1000)

    # Training every four hours from a little before v1, once the replay had
    # enough transitions: loss falls and mean Q rises towards its fixed point.
    runs: list[TrainingRun] = []
    run_at = at(launches[0] - 0.04)
    loss, replay = 0.9, 1500
    while run_at < end:
        loss = max(0.04, loss * rng.uniform(0.9, 0.995))
        replay = min(50_000, replay + rng.randint(300, 700))
        runs.append(
            TrainingRun(
                kind=TrainingRun.Kind.TRAIN,
                status=TrainingRun.Status.SUCCEEDED,
                triggered_by="schedule",
                started_at=run_at,
                finished_at=run_at + timedelta(seconds=14),
                steps=300,
                loss=loss * rng.uniform(0.92, 1.08),
                mean_q=2.4 + 1.5 * (1 - loss) + rng.uniform(-0.05, 0.05),
                epsilon=0.1,
                replay_size=replay,
                duration_s=rng.uniform(9, 16),
            )
        )
        run_at += timedelta(hours=4)
    TrainingRun.objects.bulk_create(runs)
    TrainingRunFactory(
        kind=TrainingRun.Kind.SYNC_TARGET,
        started_at=end - timedelta(minutes=40),
        loss=None,
        mean_q=None,
        duration_s=0.4,
    )

    def evaluation(value: float, baseline_version: int | None, passed: bool) -> dict:
        result = {
            "ips": _estimate(value, 0.06),
            "snips": _estimate(value - 0.01, 0.045),
            "dr": _estimate(value + 0.005, 0.035),
            "n_impressions": 5000,
            "margin": 0.05,
            "passed": passed,
        }
        # The classic baselines on the same impressions, fitted on earlier events.
        result["baselines"] = {
            "n_impressions": 5000,
            "fit_sessions": 1800,
            "fitted_before": (end - timedelta(days=2)).isoformat(),
            "candidate": {"snips": _estimate(value - 0.01, 0.045)},
            "popularity": {"snips": _estimate(0.17, 0.03)},
            "same_category": {"snips": _estimate(0.23, 0.05)},
            "cooccurrence": {"snips": _estimate(0.27, 0.05)},
        }
        if baseline_version is not None:
            baseline = BASELINE_VALUES[baseline_version]
            result["active"] = {
                "version": baseline_version,
                "ips": _estimate(baseline, 0.06),
                "snips": _estimate(baseline - 0.01, 0.045),
                "dr": _estimate(baseline + 0.005, 0.035),
            }
        return result

    retired, active = Checkpoint.Status.RETIRED, Checkpoint.Status.ACTIVE
    specs = [
        # version, status, trained at, OPE value, evaluated against, passed, note
        (1, retired, launches[0], 0.21, None, True, ""),
        (2, retired, launches[1], 0.29, 1, True, ""),
        (3, active, launches[2], 0.36, 2, True, ""),
        (4, Checkpoint.Status.REJECTED, 0.9, 0.24, 3, False, "OPE below v3 beyond the margin."),
        (5, Checkpoint.Status.CANDIDATE, 0.97, 0.37, 3, True, ""),
    ]
    checkpoints = []
    for version, status, fraction, value, baseline_version, passed, note in specs:
        checkpoint = CheckpointFactory(
            version=version,
            status=status,
            activated_at=at(fraction) if status in (active, retired) else None,
            evaluation=evaluation(value, baseline_version, passed),
            note=note,
            checks=GuardReport(
                finite_weights=True,
                q_finite=True,
                q_within_bound=True,
                personalised=True,
                q_min=-0.3 + 0.05 * version,
                q_max=4.0 + 0.4 * version,
                personalisation={
                    "n_states": 300,
                    "k": 8,
                    "jaccard_vs_cold": PERSONALISATION[version][0],
                    "mean_jaccard": PERSONALISATION[version][0] - 0.1,
                    "related_share": PERSONALISATION[version][1],
                    "related_chance": 0.07,
                    "max_jaccard": 0.8,
                    "passed": True,
                    "reason": "",
                },
            ).to_dict(),
        )
        # created_at is auto_now_add: place each version where it was trained.
        Checkpoint.objects.filter(pk=checkpoint.pk).update(
            created_at=at(fraction) - timedelta(minutes=5)
        )
        checkpoints.append(checkpoint)
    return SeededHistory(
        start=start, end=end, impressions=len(impressions), checkpoints=checkpoints
    )


# The off-policy value each seeded version reached, for later ones to compare.
BASELINE_VALUES = {1: 0.21, 2: 0.29, 3: 0.36}
# Each seeded version's top-k overlap with no context and its same-category share.
PERSONALISATION = {
    1: (0.71, 0.12),
    2: (0.52, 0.31),
    3: (0.34, 0.48),
    4: (0.58, 0.27),
    5: (0.31, 0.52),
}
