"""recommender.learning.schedules: the beat schedules created on migrate and
kept as admins change them."""

from __future__ import annotations

import pytest

from recommender.learning.schedules import SCHEDULES, schedules_ensure

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]


# ---------------------------------------------------------------------------
# Beat schedules
# ---------------------------------------------------------------------------


def test_migrate_creates_the_beat_schedules(db, settings):
    from django_celery_beat.models import PeriodicTask

    tasks_by_name = dict(
        PeriodicTask.objects.filter(name__in=SCHEDULES).values_list("name", "task")
    )

    assert tasks_by_name == {name: task for name, (task, _) in SCHEDULES.items()}
    assert set(tasks_by_name.values()) == {
        "recommender.tasks.build_transitions",
        "recommender.tasks.train_policy",
        "recommender.tasks.sync_target_network",
        "recommender.tasks.rollup_stats",
    }
    for name, (_, setting) in SCHEDULES.items():
        task = PeriodicTask.objects.get(name=name)
        assert task.enabled
        assert task.interval.every == getattr(settings, setting)
        assert task.interval.period == "seconds"


def test_schedules_are_not_reset_over_an_admins_changes(db):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    task = PeriodicTask.objects.get(name="recommender: train policy")
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=3600, period="seconds")
    task.enabled = False
    task.save()

    assert schedules_ensure() == 0

    task.refresh_from_db()
    assert (task.interval.every, task.enabled) == (3600, False)


def test_scheduled_tasks_are_registered_with_celery():
    from config.celery_app import app

    # What a worker does at start-up: import every app's tasks module
    # (autodiscovery), rather than rely on another test having imported them.
    app.loader.import_default_modules()
    for task, _ in SCHEDULES.values():
        assert task in app.tasks
