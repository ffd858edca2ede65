"""recommender.learning.schedules: the beat schedules created on migrate and
kept as admins change them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recommender.learning.schedules import SCHEDULES, schedules_ensure

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]

ROOT = Path(__file__).resolve().parents[3]


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


def test_migrating_only_the_recommender_on_a_new_database_works(tmp_path):
    # Before django-celery-beat's tables exist there is nowhere to put the
    # schedules; the full migrate that follows creates them.
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}",
    }
    for args in (["recommender"], []):
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
    schedules = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); "
            "from django_celery_beat.models import PeriodicTask; "
            "print(PeriodicTask.objects.filter(name__startswith='recommender: ').count())",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert schedules.stdout.split()[-1] == str(len(SCHEDULES)), schedules.stderr[-2000:]
