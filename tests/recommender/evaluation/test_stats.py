"""The hourly roll-up behind the dashboard: right totals per bucket, and safe
to re-run over any range."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from recommender.evaluation.stats import stats_rolled_up_until, stats_rollup, stats_rollup_catch_up
from recommender.models import ImpressionStats
from tests.recommender.factories import ImpressionFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 3, 5, 10, 0, tzinfo=UTC)


def bucket_rows():
    return list(
        ImpressionStats.objects.order_by(
            "hour", "slot", "policy_name", "policy_version"
        ).values_list(
            "hour",
            "slot",
            "policy_name",
            "policy_version",
            "impressions",
            "clicks",
            "add_to_carts",
            "purchases",
            "reward",
            "revenue",
        )
    )


def test_rollup_sums_each_hour_slot_and_policy_version():
    ImpressionFactory(created_at=T0 + timedelta(minutes=5), clicks=1, reward=1.0)
    ImpressionFactory(
        created_at=T0 + timedelta(minutes=50),
        clicks=2,
        add_to_carts=1,
        purchases=1,
        reward=9.5,
        revenue=Decimal("25.00"),
    )
    ImpressionFactory(created_at=T0 + timedelta(minutes=20), slot="cart")
    ImpressionFactory(created_at=T0 + timedelta(minutes=30), policy_version=2, clicks=1, reward=1.0)
    ImpressionFactory(created_at=T0 + timedelta(hours=1, minutes=1), clicks=1, reward=1.0)

    written = stats_rollup(since=T0, until=T0 + timedelta(hours=2))

    assert written == 4
    assert bucket_rows() == [
        (T0, "cart", "dqn", 1, 1, 0, 0, 0, 0.0, Decimal("0.00")),
        (T0, "home", "dqn", 1, 2, 3, 1, 1, 10.5, Decimal("25.00")),
        (T0, "home", "dqn", 2, 1, 1, 0, 0, 1.0, Decimal("0.00")),
        (T0 + timedelta(hours=1), "home", "dqn", 1, 1, 1, 0, 0, 1.0, Decimal("0.00")),
    ]


def test_fallback_impressions_without_a_version_go_to_version_zero():
    ImpressionFactory(created_at=T0, policy_name="popularity", policy_version=None, clicks=1)
    ImpressionFactory(created_at=T0, policy_name="popularity", policy_version=None)

    stats_rollup(since=T0, until=T0 + timedelta(hours=1))

    bucket = ImpressionStats.objects.get()
    assert (bucket.policy_name, bucket.policy_version, bucket.impressions, bucket.clicks) == (
        "popularity",
        0,
        2,
        1,
    )


def test_running_twice_gives_the_same_rows():
    for minutes in (1, 15, 70, 130):
        ImpressionFactory(created_at=T0 + timedelta(minutes=minutes), clicks=1, reward=1.5)
    stats_rollup(since=T0, until=T0 + timedelta(hours=3))
    first = bucket_rows()
    first_ids = set(ImpressionStats.objects.values_list("pk", flat=True))

    stats_rollup(since=T0, until=T0 + timedelta(hours=3))
    stats_rollup(since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=1, minutes=5))

    assert bucket_rows() == first
    # Updated in place (upsert), not deleted and re-inserted.
    assert set(ImpressionStats.objects.values_list("pk", flat=True)) == first_ids


def test_a_partial_range_recomputes_whole_hours():
    ImpressionFactory(created_at=T0 + timedelta(minutes=5))
    ImpressionFactory(created_at=T0 + timedelta(minutes=55))

    # The range touches only the end of the 10:00 hour; both impressions count.
    stats_rollup(since=T0 + timedelta(minutes=50), until=T0 + timedelta(minutes=52))

    assert ImpressionStats.objects.get(hour=T0).impressions == 2


def test_a_late_reward_reaches_the_bucket_on_the_next_run():
    impression = ImpressionFactory(created_at=T0 + timedelta(minutes=59))
    stats_rollup(since=T0, until=T0 + timedelta(hours=1))
    assert ImpressionStats.objects.get().clicks == 0

    # Attribution updates the impression's counters after the roll-up ran.
    impression.clicks, impression.reward = 1, 1.0
    impression.save(update_fields=["clicks", "reward"])
    stats_rollup(since=T0, until=T0 + timedelta(hours=1))

    assert ImpressionStats.objects.get().clicks == 1


def test_buckets_whose_impressions_are_gone_are_removed():
    impression = ImpressionFactory(created_at=T0 + timedelta(minutes=5))
    ImpressionFactory(created_at=T0 + timedelta(hours=2))
    stats_rollup(since=T0, until=T0 + timedelta(hours=3))
    impression.delete()

    stats_rollup(since=T0, until=T0 + timedelta(hours=3))

    assert [row[0] for row in bucket_rows()] == [T0 + timedelta(hours=2)]


def test_buckets_outside_the_range_are_left_alone():
    ImpressionFactory(created_at=T0)
    ImpressionFactory(created_at=T0 + timedelta(hours=5))
    stats_rollup(since=T0, until=T0 + timedelta(hours=6))
    ImpressionFactory(created_at=T0 + timedelta(minutes=10))

    stats_rollup(since=T0 + timedelta(hours=5), until=T0 + timedelta(hours=6))

    assert ImpressionStats.objects.get(hour=T0).impressions == 1
    assert ImpressionStats.objects.get(hour=T0 + timedelta(hours=5)).impressions == 1


def test_an_empty_or_reversed_range_writes_nothing():
    ImpressionFactory(created_at=T0)
    assert stats_rollup(since=T0, until=T0) == 0
    assert stats_rollup(since=T0 + timedelta(hours=1), until=T0) == 0
    assert not ImpressionStats.objects.exists()


def test_catch_up_fills_everything_since_the_newest_bucket():
    ImpressionFactory(created_at=T0)
    stats_rollup(since=T0, until=T0 + timedelta(minutes=1))
    # The worker was down for two days: a fixed 3-hour lookback would skip these.
    ImpressionFactory(created_at=T0 + timedelta(days=1))
    ImpressionFactory(created_at=T0 + timedelta(days=2))

    stats_rollup_catch_up(now=T0 + timedelta(days=2, hours=1))

    assert ImpressionStats.objects.count() == 3
    assert stats_rolled_up_until() == T0 + timedelta(days=2)


def test_catch_up_with_no_buckets_starts_at_the_first_impression():
    ImpressionFactory(created_at=T0 - timedelta(days=10))
    ImpressionFactory(created_at=T0)

    stats_rollup_catch_up(now=T0 + timedelta(minutes=30))

    assert ImpressionStats.objects.count() == 2


def test_the_scheduled_task_rolls_up_recent_hours():
    from django.utils import timezone

    from recommender.tasks import rollup_stats

    ImpressionFactory(created_at=timezone.now() - timedelta(minutes=10), clicks=1)

    rollup_stats()

    assert ImpressionStats.objects.get().clicks == 1
