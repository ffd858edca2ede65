"""A worker killed mid-run must not stop learning: on the real PostgreSQL, Redis
broker and `celery worker` processes, SIGKILL the worker while it trains, start
another, and the next training run goes through."""

from __future__ import annotations

import random
import time

import pytest
from django.utils import timezone

from recommender.models import Checkpoint, Impression, ImpressionItem, TrainingRun, Transition
from recommender.rl.types import Observation, Slot
from recommender.tasks import train_policy
from tests.factories import CategoryFactory, ProductFactory
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _history(impressions: int = 40, k: int = 8) -> None:
    """Finished impressions with their transitions: enough to train on."""
    categories = [CategoryFactory(name=f"Aisle {c}", slug=f"aisle-{c}") for c in range(4)]
    products = [
        ProductFactory(category=categories[i % 4], price=f"{10 + i}.00", stock=100)
        for i in range(24)
    ]
    rng = random.Random(5)
    for n in range(impressions):
        shown = rng.sample(products, k)
        state = Observation(
            slot=Slot.HOME, recent_items=(shown[0].pk,), recent_events=(1,), recent_ages=(30.0,)
        )
        impression = Impression.objects.create(
            created_at=timezone.now(),
            session_key=f"history-{n}",
            slot="home",
            state=state.to_dict(),
            policy_name="popularity",
            epsilon=0.1,
            transitions_built=True,
        )
        for position, product in enumerate(shown):
            ImpressionItem.objects.create(
                impression=impression, product=product, position=position, propensity=0.5
            )
            Transition.objects.create(
                impression=impression,
                product=product,
                position=position,
                propensity=0.5,
                reward=float(rng.random() < 0.2),
                done=True,
            )


def test_a_worker_killed_mid_training_does_not_stop_learning(celery_workers):
    _history()
    # Any trained version may go live here: the off-policy gate and the
    # personalisation check have tests of their own.
    guards_off = {"RECOMMENDER_OPE_MARGIN": "1.0", "RECOMMENDER_PERSONALISATION_MAX_JACCARD": "1.1"}
    first = celery_workers(**guards_off)
    train_policy.apply_async(
        kwargs={"triggered_by": "doomed", "steps": 1_000_000}, queue=first.queue
    )
    doomed = wait_for(
        lambda: TrainingRun.objects.filter(
            triggered_by="doomed", status=TrainingRun.Status.RUNNING
        ).first(),
        timeout=60,
        what="the first training run to start",
    )
    time.sleep(2)  # well into its gradient steps
    first.kill()

    second = celery_workers(first.queue, **guards_off)
    started = time.monotonic()
    train_policy.apply_async(kwargs={"triggered_by": "next", "steps": 20}, queue=second.queue)
    run = wait_for(
        lambda: (
            TrainingRun.objects.filter(triggered_by="next")
            .exclude(status=TrainingRun.Status.RUNNING)
            .first()
        ),
        timeout=60,
        what="the next training run to finish",
    )

    elapsed = time.monotonic() - started
    print(f"The next run finished {elapsed:.1f} s after it was sent to the new worker")
    assert run.status == TrainingRun.Status.SUCCEEDED, run.outcome
    assert elapsed < 60
    assert Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).count() == 1
    assert Checkpoint.objects.get(status=Checkpoint.Status.ACTIVE).training_run == run
    assert not TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).exists()
    doomed.refresh_from_db()
    assert doomed.status == TrainingRun.Status.FAILED
    assert "stopped before it finished" in doomed.outcome
    assert doomed.finished_at is not None
