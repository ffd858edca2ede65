"""Celery tasks: another interface to the recommender's services. Each task
takes plain arguments, calls one service and owns its locking and retries."""

from __future__ import annotations

import logging

from celery import shared_task

from recommender import training
from recommender.stats import stats_rollup_catch_up

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def build_transitions() -> int:
    """Turn finished parts of shopper sessions into transitions (idempotent)."""
    return training.transitions_build().created


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=(training.TrainerBusy,),
    retry_backoff=30,
    max_retries=3,
)
def train_policy(self, triggered_by: str = "schedule", steps: int | None = None) -> int | None:
    """Replay training, then publish a checkpoint if it passes the guards.

    Safe to retry: a run that dies before saving leaves the learner as it was;
    a concurrent run waits for the lock (retried with backoff)."""
    run = training.policy_train(triggered_by=triggered_by, steps=steps)
    return run.pk


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=(training.TrainerBusy,),
    retry_backoff=10,
    max_retries=5,
)
def sync_target_network(triggered_by: str = "schedule") -> int:
    """Copy the online network's weights to the target network."""
    return training.target_sync(triggered_by=triggered_by).pk


@shared_task(acks_late=True, ignore_result=True)
def rollup_stats() -> int:
    """Rebuild the dashboard's hourly buckets since the newest one (so a
    worker that was down catches up instead of leaving a hole)."""
    return stats_rollup_catch_up()
