"""recommender.tasks: the Celery tasks call the same services as the commands,
retry while the trainer is busy and stand aside while a history is written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from recommender import tasks
from recommender.learning import training
from recommender.learning.training import (
    TrainerBusy,
)
from recommender.models import (
    Impression,
    TrainingRun,
    Transition,
)
from recommender.rl.types import Observation, Slot
from tests.recommender.factories import ImpressionFactory, ImpressionItemFactory
from tests.recommender.support import (
    another_trainer,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("recommender_isolation", "loop_settings"),
]


def _impression(session: str, at, items: list[tuple]) -> Impression:
    """An impression at ``at`` showing (product, propensity) pairs in order."""
    impression = ImpressionFactory(
        session_key=session, created_at=at, state=Observation(slot=Slot.HOME).to_dict()
    )
    for position, (product, propensity) in enumerate(items):
        ImpressionItemFactory(
            impression=impression, product=product, position=position, propensity=propensity
        )
    return impression


def test_the_tasks_call_the_same_services(now, products, settings):
    settings.RECOMMENDER_MIN_TRANSITIONS = 500
    _impression("s", timezone.now() - timedelta(hours=2), [(products[0], 0.5)])

    built = tasks.build_transitions.apply()
    trained = tasks.train_policy.apply(kwargs={"triggered_by": "admin"})
    synced = tasks.sync_target_network.apply()

    assert built.result == 1
    assert Transition.objects.count() == 1
    train_run = TrainingRun.objects.get(pk=trained.result)
    assert (train_run.kind, train_run.status, train_run.triggered_by) == (
        "train",
        "skipped",
        "admin",
    )
    sync_run = TrainingRun.objects.get(pk=synced.result)
    assert (sync_run.kind, sync_run.status) == ("sync_target", "skipped")


def test_a_scheduled_run_with_nothing_new_to_learn_from_is_skipped(products, settings):
    settings.RECOMMENDER_MIN_TRANSITIONS = 1
    visit = [(products[0], 0.5), (products[1], 0.5)]
    _impression("a", timezone.now() - timedelta(hours=2), visit)
    tasks.build_transitions.apply()

    def scheduled() -> TrainingRun:
        return TrainingRun.objects.get(pk=tasks.train_policy.apply().result)

    assert scheduled().status == "succeeded"
    # The store is idle: the schedule does not train the same window again.
    idle = scheduled()
    assert (idle.status, idle.outcome) == ("skipped", tasks.NOTHING_NEW_NOTE)
    # A person who asks for a run gets one.
    asked = tasks.train_policy.apply(kwargs={"triggered_by": "admin"})
    assert TrainingRun.objects.get(pk=asked.result).status == "succeeded"
    # New traffic: the schedule trains again.
    _impression("b", timezone.now() - timedelta(hours=1), visit)
    tasks.build_transitions.apply()
    assert scheduled().status == "succeeded"


def test_the_train_task_retries_while_the_trainer_is_busy(db, monkeypatch):
    calls = []

    def busy_twice(*, triggered_by, steps):
        calls.append(triggered_by)
        if len(calls) < 3:
            raise TrainerBusy("Another training run is in progress.")
        return TrainingRun(pk=42)

    monkeypatch.setattr(training, "policy_train", busy_twice)

    result = tasks.train_policy.apply(kwargs={"triggered_by": "admin"})

    assert result.successful()
    assert result.result == 42
    assert calls == ["admin"] * 3


def test_the_train_task_gives_up_after_its_retries(db):
    with another_trainer():
        result = tasks.train_policy.apply()

    assert result.failed()
    assert isinstance(result.result, TrainerBusy)
    assert not TrainingRun.objects.exists()
    assert tasks.train_policy.autoretry_for == (TrainerBusy,)
    assert tasks.sync_target_network.autoretry_for == (TrainerBusy,)
    assert tasks.train_policy.max_retries >= 1
    assert tasks.train_policy.retry_backoff


def test_a_direct_call_of_the_task_raises_retry(db, monkeypatch):
    """Run in a worker, autoretry turns TrainerBusy into a Retry that Celery
    reschedules (with backoff)."""

    def busy(**kwargs):
        raise TrainerBusy("busy")

    monkeypatch.setattr(training, "target_sync", busy)
    task = tasks.sync_target_network
    task.push_request(id="t-1", retries=0, is_eager=False, called_directly=False)
    monkeypatch.setattr(task, "apply_async", lambda *args, **kwargs: None)
    try:
        with pytest.raises(Retry):
            task.run()
    finally:
        task.pop_request()
