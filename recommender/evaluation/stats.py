"""The dashboard's hourly roll-up: ImpressionStats buckets rebuilt from
Impression rows, whose outcome counters (clicks, add-to-carts, purchases,
reward, revenue) are kept up to date by reward attribution.

The roll-up only ever recomputes whole buckets from the source rows, so it is
idempotent and safe to re-run over any range, concurrently or after a late
reward changed an old impression.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Max, Min, Sum, Value
from django.db.models.functions import Coalesce, TruncHour
from django.utils import timezone

from recommender.models import Impression, ImpressionStats

HOUR = timedelta(hours=1)

# Fallback impressions carry no checkpoint version; their buckets use 0 so the
# unique bucket constraint (NULLs are never equal) still holds for them.
FALLBACK_VERSION = 0

_COUNTERS = ("impressions", "clicks", "add_to_carts", "purchases", "reward", "revenue")
_UPSERT_BATCH = 1000


def hour_floor(moment: datetime) -> datetime:
    """The start of the UTC hour containing ``moment`` (buckets are UTC hours)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_ceil(moment: datetime) -> datetime:
    floor = hour_floor(moment)
    return floor if floor == moment else floor + HOUR


def _impression_buckets(*, since: datetime, until: datetime):
    """One aggregate query: every bucket's totals for impressions created in
    [since, until), grouped like the unique bucket constraint."""
    return (
        Impression.objects.filter(created_at__gte=since, created_at__lt=until)
        .annotate(
            bucket_hour=TruncHour("created_at", tzinfo=UTC),
            version=Coalesce("policy_version", Value(FALLBACK_VERSION)),
        )
        .values("bucket_hour", "slot", "policy_name", "version")
        .annotate(
            n=Count("pk"),
            n_clicks=Sum("clicks"),
            n_add_to_carts=Sum("add_to_carts"),
            n_purchases=Sum("purchases"),
            total_reward=Sum("reward"),
            total_revenue=Sum("revenue"),
        )
        .order_by()
    )


def stats_rollup(*, since: datetime, until: datetime) -> int:
    """Recompute every hourly bucket that touches [since, until) from the
    impressions in it; returns the number of buckets written.

    Whole hours are recomputed (a range ending at 10:20 rebuilds the 10:00
    bucket from all of its impressions), so running it twice, or over
    overlapping ranges, gives the same rows. Buckets in the range whose
    impressions have all gone are deleted.
    """
    if until <= since:
        return 0
    start, end = hour_floor(since), hour_ceil(until)
    rows = [
        ImpressionStats(
            hour=row["bucket_hour"],
            slot=row["slot"],
            policy_name=row["policy_name"],
            policy_version=row["version"],
            impressions=row["n"],
            clicks=row["n_clicks"] or 0,
            add_to_carts=row["n_add_to_carts"] or 0,
            purchases=row["n_purchases"] or 0,
            reward=float(row["total_reward"] or 0.0),
            revenue=Decimal(row["total_revenue"] or 0),
        )
        for row in _impression_buckets(since=start, until=end)
    ]
    fresh = {(r.hour, r.slot, r.policy_name, r.policy_version) for r in rows}
    with transaction.atomic():
        ImpressionStats.objects.bulk_create(
            rows,
            batch_size=_UPSERT_BATCH,
            update_conflicts=True,
            unique_fields=["hour", "slot", "policy_name", "policy_version"],
            update_fields=list(_COUNTERS),
        )
        stale = [
            pk
            for pk, *key in ImpressionStats.objects.filter(
                hour__gte=start, hour__lt=end
            ).values_list("pk", "hour", "slot", "policy_name", "policy_version")
            if tuple(key) not in fresh
        ]
        if stale:
            ImpressionStats.objects.filter(pk__in=stale).delete()
    return len(rows)


def stats_rolled_up_until() -> datetime | None:
    """Start of the newest bucket: everything before it is complete in the
    roll-up (as of the roll-up's last run); impressions from it on may not be."""
    return ImpressionStats.objects.aggregate(latest=Max("hour"))["latest"]


def stats_rollup_catch_up(
    *, now: datetime | None = None, lookback: timedelta = timedelta(hours=3)
) -> int:
    """Roll up from the newest bucket (or the first impression ever) to now,
    and at least ``lookback`` back so late rewards reach recent buckets.

    A fixed lookback alone leaves a hole after the worker was down for longer
    than it; starting from the newest bucket closes it on the next run.
    """
    now = now or timezone.now()
    since = now - lookback
    latest = stats_rolled_up_until()
    if latest is None:
        latest = Impression.objects.aggregate(first=Min("created_at"))["first"]
    if latest is not None:
        since = min(since, latest)
    return stats_rollup(since=since, until=now)
