"""Celery tasks: another interface to the recommender's services. Each task
takes plain arguments, calls one service and owns its locking and retries."""

from __future__ import annotations

import logging

from celery import shared_task

from recommender.evaluation.stats import stats_rollup_catch_up
from recommender.learning import training
from recommender.simulation import history

logger = logging.getLogger(__name__)


# While a simulated history is being written it builds transitions, trains and
# rolls up at its own simulated times (recommender/simulation/history.py): the scheduled
# tasks stand aside, or they would cut its sessions short and interleave
# real-time checkpoints with back-dated ones.
HISTORY_NOTE = "Skipped: a simulated history is being written, and it trains as it goes."

# A store without traffic would otherwise train its learner on the same window
# run after run: nothing new to learn, a new version every run, and each run
# moves the weights further from what the log supports (towards one ranking for
# everyone). Runs asked for by a person ("Train now", the command) still train.
NOTHING_NEW_NOTE = "Skipped: no transitions were built since the last training run."


@shared_task(acks_late=True, ignore_result=True)
def build_transitions() -> int:
    """Turn finished parts of shopper sessions into transitions (idempotent)."""
    if history.history_in_progress():
        return 0
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
    """Replay training, then publish a checkpoint if it passes the guards. The
    schedule's runs are skipped while no transition was built since the last
    run (NOTHING_NEW_NOTE).

    Safe to retry: a run that dies before saving leaves the learner as it was;
    a concurrent run waits for the lock (retried with backoff)."""
    if history.history_in_progress():
        return training.run_skip(
            kind=training.TrainingRun.Kind.TRAIN, triggered_by=triggered_by, outcome=HISTORY_NOTE
        ).pk
    if triggered_by == "schedule" and not training.transitions_since_last_run():
        return training.run_skip(
            kind=training.TrainingRun.Kind.TRAIN,
            triggered_by=triggered_by,
            outcome=NOTHING_NEW_NOTE,
        ).pk
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
    if history.history_in_progress():
        return training.run_skip(
            kind=training.TrainingRun.Kind.SYNC_TARGET,
            triggered_by=triggered_by,
            outcome=HISTORY_NOTE,
        ).pk
    return training.target_sync(triggered_by=triggered_by).pk


@shared_task(acks_late=True, ignore_result=True)
def rollup_stats() -> int:
    """Rebuild the dashboard's hourly buckets since the newest one (so a
    worker that was down catches up instead of leaving a hole)."""
    if history.history_in_progress():
        # The history rolls up its whole period when it finishes; a bucket
        # rolled up now would hide the older hours still being written.
        return 0
    return stats_rollup_catch_up()


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    autoretry_for=(history.HistoryBusy,),
    retry_backoff=False,
    default_retry_delay=int(history.HEARTBEAT_STALE.total_seconds()),
    max_retries=20,
)
def seed_history(self, history_id: int) -> int:
    """Write (or resume) a planned simulated history; waits (retries) while
    another worker is still writing it."""
    return history.history_run(history_id=history_id, on_progress=_log_progress).history.pk


def _log_progress(done: int, total: int, note: str) -> None:
    # One line per tenth of the history in the worker's log (the dashboard
    # shows it live).
    step = max(total // 10, 1)
    if done % step == 0 or done == total:
        logger.info("Simulated history: %s of %s sessions. %s", done, total, note)
