"""Heartbeats: each web process reports the checkpoint version it serves (the
dashboard lists them)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from recommender.models import ServingHeartbeat


def serving_heartbeat_record(
    *,
    process: str,
    policy_version: int | None,
    failed_version: int | None,
    error: str,
    loaded_at: datetime | None,
    now: datetime | None = None,
) -> ServingHeartbeat:
    """Record what one web process serves (recommender.serving.server calls it)."""
    now = now or timezone.now()
    with transaction.atomic():
        heartbeat, created = ServingHeartbeat.objects.update_or_create(
            process=process,
            defaults={
                "policy_version": policy_version,
                "failed_version": failed_version,
                "error": error[:300],
                "loaded_at": loaded_at,
                "seen_at": now,
            },
        )
        if created:
            # A process starting up clears out the rows of long-gone ones.
            ServingHeartbeat.objects.filter(seen_at__lt=now - timedelta(days=1)).delete()
    return heartbeat
