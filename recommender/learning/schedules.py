"""Beat schedules of the learning loop, stored in django-celery-beat so store
admins can change or pause them in the admin. Created on migrate with the
intervals from settings; existing rows are left as the admin set them."""

from __future__ import annotations

from django.conf import settings

SCHEDULES = {
    "recommender: build transitions": (
        "recommender.tasks.build_transitions",
        "RECOMMENDER_SCHEDULE_BUILD_TRANSITIONS",
    ),
    "recommender: train policy": ("recommender.tasks.train_policy", "RECOMMENDER_SCHEDULE_TRAIN"),
    "recommender: sync target network": (
        "recommender.tasks.sync_target_network",
        "RECOMMENDER_SCHEDULE_SYNC_TARGET",
    ),
    "recommender: roll up dashboard stats": (
        "recommender.tasks.rollup_stats",
        "RECOMMENDER_SCHEDULE_ROLLUP",
    ),
}


def schedules_ensure() -> int:
    """Create any missing periodic task; returns how many were created."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    created = 0
    for name, (task, setting) in SCHEDULES.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        every, _ = IntervalSchedule.objects.get_or_create(
            every=int(getattr(settings, setting)), period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.create(name=name, task=task, interval=every)
        created += 1
    return created
