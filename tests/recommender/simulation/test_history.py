"""The demo's simulated history: planned once, written (or resumed) by a
worker while the store serves, trained along the way, and the scheduled
learning-loop tasks standing aside meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path
from unittest import mock

import pytest
from django.core.management import call_command
from django.utils import timezone

from recommender import tasks
from recommender.models import Checkpoint, Impression, SimulatedHistory, TrainingRun
from recommender.simulation import history
from recommender.simulation.history import (
    HistoryBusy,
    history_in_progress,
    history_plan,
    history_run,
)
from tests.recommender.factories import ImpressionFactory
from tests.recommender.support import make_catalog

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]


@pytest.fixture
def small_training(settings):
    settings.RECOMMENDER_MIN_TRANSITIONS = 50
    settings.RECOMMENDER_TRAIN_STEPS = 3
    settings.RECOMMENDER_OPE_MARGIN = 1.0
    # A 3-step model ranks alike for every state; these tests are about the
    # history, not the personalisation guard.
    settings.RECOMMENDER_PERSONALISATION_MAX_JACCARD = 1.1
    make_catalog(products=40, categories=5, stock=1000)


def plan(**overrides) -> SimulatedHistory:
    arguments = {"sessions": 12, "days": 0.1, "first_train": 4, "train_every": 5} | overrides
    return history_plan(**arguments)


def test_a_history_is_planned_once_and_not_under_real_traffic(db):
    planned = plan()
    assert planned.status == SimulatedHistory.Status.QUEUED
    assert plan() == planned  # unfinished: the same one, to resume

    SimulatedHistory.objects.filter(pk=planned.pk).update(status=SimulatedHistory.Status.FINISHED)
    assert plan() is None

    SimulatedHistory.objects.all().delete()
    ImpressionFactory()
    assert plan() is None  # real shoppers came first: not unasked
    assert plan(force=True) is not None


def test_bad_plans_are_refused(db):
    with pytest.raises(ValueError, match="must be positive"):
        plan(sessions=0)
    with pytest.raises(ValueError, match="unknown shopper family 'tourist'.*funnel"):
        plan(family="tourist")
    assert not SimulatedHistory.objects.exists()


def test_the_history_module_leaves_torch_to_the_worker_that_writes_one():
    """The dashboard reads histories in web processes: importing the module must
    not load torch (the simulator is loaded only to plan or write a history)."""
    script = (
        "import sys, django\n"
        "django.setup()\n"
        "import recommender.simulation.history\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env=env,
    )
    assert result.stdout.split() == ["False"]


def test_a_history_remembers_its_shopper_family_and_resumes_with_it(db):
    assert plan().family == "funnel"
    SimulatedHistory.objects.all().delete()

    planned = plan(family="brand")
    assert planned.family == "brand"
    assert plan(family="novelty") == planned  # resumed as planned: brand shoppers
    planned.refresh_from_db()
    assert planned.family == "brand"


@pytest.mark.slow
def test_a_history_trains_early_and_lays_out_the_past_in_time_order(small_training):
    planned = plan()
    seen: list[int] = []

    run = history_run(
        history_id=planned.pk, on_progress=lambda done, total, note: seen.append(done)
    )

    finished = run.history
    assert finished.status == SimulatedHistory.Status.FINISHED
    assert finished.sessions_done == 12 and seen[-1] == 12
    assert run.traffic.sessions == 12
    impressions = Impression.objects.order_by("created_at")
    assert impressions.first().created_at < timezone.now() - timedelta(hours=2)
    # Trained after 4 and 9 sessions and at the end: three versions, each
    # published later in simulated time than the one before.
    runs = TrainingRun.objects.filter(kind=TrainingRun.Kind.TRAIN, triggered_by="seed_history")
    assert runs.count() == 3
    # Seeded by the history's seed, so that the same history trains the same policy.
    assert sorted(runs.values_list("seed", flat=True)) == [4, 9, 12]
    checkpoints = list(Checkpoint.objects.order_by("version"))
    assert len(checkpoints) == 3
    times = [c.created_at for c in checkpoints]
    assert times == sorted(times)
    assert times[0] < finished.period_end - timedelta(hours=1)
    assert Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).exists()
    # The first version served shoppers of the history itself.
    assert Impression.objects.filter(policy_version=checkpoints[0].version).exists()
    assert finished.heartbeat_at > timezone.now() - timedelta(minutes=5)


@pytest.mark.slow
def test_a_history_whose_worker_died_is_resumed_where_it_stopped(small_training):
    planned = plan(first_train=50)
    stale = timezone.now() - history.HEARTBEAT_STALE - timedelta(seconds=5)
    SimulatedHistory.objects.filter(pk=planned.pk).update(
        status=SimulatedHistory.Status.RUNNING, sessions_done=7, heartbeat_at=stale
    )
    seen: list[int] = []

    with mock.patch.object(history, "_train", return_value="trained"):
        history_run(history_id=planned.pk, on_progress=lambda done, total, note: seen.append(done))

    assert seen[0] == 7 and seen[-1] == 12  # sessions 0..6 were not played again
    assert SimulatedHistory.objects.get().status == SimulatedHistory.Status.FINISHED
    # Only the last five sessions' shoppers came: each begins with a request
    # that creates its session, and the first one is at session 7's time.
    first = Impression.objects.order_by("created_at").first().created_at
    spacing = (planned.period_end - planned.period_start) / 12
    assert first >= planned.period_start + spacing * 7


def test_a_live_worker_keeps_its_history(db):
    planned = plan()
    SimulatedHistory.objects.filter(pk=planned.pk).update(
        status=SimulatedHistory.Status.RUNNING, heartbeat_at=timezone.now()
    )

    with pytest.raises(HistoryBusy):
        history_run(history_id=planned.pk)
    with pytest.raises(HistoryBusy), mock.patch.object(tasks.seed_history, "retry") as retry:
        retry.side_effect = HistoryBusy("again later")
        tasks.seed_history.run(planned.pk)


def test_in_progress_means_queued_or_running_with_a_heartbeat(db):
    assert not history_in_progress()
    planned = plan()
    assert history_in_progress()
    now = timezone.now()
    SimulatedHistory.objects.filter(pk=planned.pk).update(
        status=SimulatedHistory.Status.RUNNING, heartbeat_at=now
    )
    assert history_in_progress()
    # A worker that died: nothing may wait for it forever.
    assert not history_in_progress(now=now + history.HEARTBEAT_STALE + timedelta(seconds=1))
    SimulatedHistory.objects.filter(pk=planned.pk).update(status=SimulatedHistory.Status.FINISHED)
    assert not history_in_progress()


def test_the_scheduled_tasks_stand_aside_while_a_history_is_written(db):
    plan()
    with mock.patch("recommender.learning.training.transitions_build") as build:
        assert tasks.build_transitions.run() == 0
    build.assert_not_called()

    skipped = TrainingRun.objects.get(pk=tasks.train_policy.run(triggered_by="admin:boss"))
    synced = TrainingRun.objects.get(pk=tasks.sync_target_network.run())

    for run in (skipped, synced):
        assert run.status == TrainingRun.Status.SKIPPED
        assert "simulated history is being written" in run.outcome
    assert skipped.triggered_by == "admin:boss"
    assert not Checkpoint.objects.exists()


def test_background_queues_the_history_for_a_worker(db):
    make_catalog(products=4, categories=1)
    out = StringIO()
    with mock.patch.object(tasks.seed_history, "delay") as delay:
        call_command("seed_history", "--background", "--sessions", "30", stdout=out)

    planned = SimulatedHistory.objects.get()
    delay.assert_called_once_with(planned.pk)
    assert planned.sessions_total == 30 and planned.first_train == 60
    assert "Simulated history queued: 30 sessions of simulated shoppers" in out.getvalue()
    assert not Impression.objects.exists()


def test_demo_ready_says_where_the_store_is(live_server, db):
    out = StringIO()
    call_command("demo_ready", "--url", live_server.url, "--exit", "--poll", "0.1", stdout=out)

    assert out.getvalue().strip() == (
        f"Store: {live_server.url}/   Admin: {live_server.url}/admin/ (login admin / admin)   "
        f"Dashboard: {live_server.url}/admin/recommender/dashboard/"
    )


def test_a_history_whose_requests_were_refused_fails_saying_why(small_training, throttle_rates):
    throttle_rates(recommendations="1/min")  # each shopper's second carousel is refused
    planned = plan(sessions=4, first_train=10)

    run = history_run(history_id=planned.pk)

    assert run.history.status == SimulatedHistory.Status.FAILED
    assert "requests were refused (HTTP 429" in run.history.outcome
