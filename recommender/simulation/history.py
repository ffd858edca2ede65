"""A simulated shopping history for the demo store.

Simulated shoppers (recommender.rl.simulator, not people) browse the store
through its full request stack while the clock is moved back over past days,
and the policy is trained along the way as beat would have trained it. A new
demo store then has traffic, a learning curve and a trained policy.

``make demo`` plans a history (``history_plan``) and queues the
``seed_history`` task, so the store serves (the popularity fallback) while a
worker lays the history down; ``manage.py seed_history`` runs the same thing
inline. Progress lives in a SimulatedHistory row that the dashboard shows.
While a history is being written the scheduled learning-loop tasks stand
aside (``history_in_progress``): the history builds transitions and trains at
its own simulated times, so checkpoints and training runs stay in time order
and no transition is cut from a session the history has not finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

import time_machine
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from recommender.models import Impression, SimulatedHistory

if TYPE_CHECKING:  # the simulator imports torch: web processes load it lazily
    from recommender.simulation.traffic import TrafficStats

logger = logging.getLogger(__name__)

# A running history writes a heartbeat after every session; one silent for
# longer than this belongs to a worker that died, and may be resumed.
HEARTBEAT_STALE = timedelta(seconds=90)

# (sessions done, sessions in all, what the last training did)
ProgressCallback = Callable[[int, int, str], None]


class HistoryBusy(RuntimeError):
    """Another worker is writing this history right now."""


def real_now() -> datetime:
    """The wall-clock time, also while the simulated clock is moved back."""
    if time_machine.escape_hatch.is_travelling():
        return time_machine.escape_hatch.datetime.datetime.now(tz=UTC)
    return timezone.now()


# ---------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------


def history_latest() -> SimulatedHistory | None:
    return SimulatedHistory.objects.order_by("-created_at", "-pk").first()


def history_in_progress(*, now: datetime | None = None) -> bool:
    """A history is queued, or running with a recent heartbeat."""
    now = now or real_now()
    return SimulatedHistory.objects.filter(
        Q(status=SimulatedHistory.Status.QUEUED)
        | Q(status=SimulatedHistory.Status.RUNNING, heartbeat_at__gte=now - HEARTBEAT_STALE)
    ).exists()


# ---------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------


def history_plan(
    *,
    sessions: int,
    days: float,
    first_train: int,
    train_every: int,
    seed: int = 0,
    family: str = "funnel",
    force: bool = False,
) -> SimulatedHistory | None:
    """The history to write: an unfinished one (to resume, with its own
    shopper family), or a new one of ``family``'s shoppers.

    None when there is nothing to do: a history was finished already, or the
    store has traffic of its own and ``force`` is not set (a simulated past
    must not be laid under real shoppers' data unasked). A ValueError for bad
    numbers or an unknown family.
    """
    if sessions < 1 or days <= 0 or first_train < 1 or train_every < 1:
        raise ValueError("sessions, days, first_train and train_every must be positive.")
    # The simulator loads torch (through the RL core's types): only when planning.
    from recommender.rl.simulator.families import family as shopper_family

    family = shopper_family(family).name
    unfinished = SimulatedHistory.objects.exclude(status=SimulatedHistory.Status.FINISHED).first()
    if unfinished is not None:
        if unfinished.status == SimulatedHistory.Status.FAILED:
            unfinished.status = SimulatedHistory.Status.QUEUED
            unfinished.save(update_fields=["status"])
        return unfinished
    if not force and (SimulatedHistory.objects.exists() or Impression.objects.exists()):
        return None
    now = real_now()
    return SimulatedHistory.objects.create(
        created_at=now,
        period_start=now - timedelta(days=days),
        period_end=now,
        sessions_total=sessions,
        seed=seed,
        family=family,
        first_train=first_train,
        train_every=train_every,
    )


def _claim(history: SimulatedHistory) -> bool:
    """Mark the history running here unless a live worker already runs it."""
    now = real_now()
    claimed = (
        SimulatedHistory.objects.filter(pk=history.pk)
        .exclude(status=SimulatedHistory.Status.FINISHED)
        .filter(
            ~Q(status=SimulatedHistory.Status.RUNNING)
            | Q(heartbeat_at__isnull=True)
            | Q(heartbeat_at__lt=now - HEARTBEAT_STALE)
        )
        .update(
            status=SimulatedHistory.Status.RUNNING,
            started_at=history.started_at or now,
            heartbeat_at=now,
        )
    )
    return claimed == 1


@contextmanager
def _debug_off() -> Iterator[None]:
    # Thousands of in-process requests: with DEBUG on (local settings) every
    # query would be recorded and every error page rendered in full.
    debug = settings.DEBUG
    settings.DEBUG = False
    try:
        yield
    finally:
        settings.DEBUG = debug


class HistoryRun(NamedTuple):
    history: SimulatedHistory
    traffic: TrafficStats  # what the simulated shoppers did in this run


def history_run(*, history_id: int, on_progress: ProgressCallback | None = None) -> HistoryRun:
    """Write (or resume) a planned history, then finish it.

    Raises HistoryBusy when another worker is writing it. A history that was
    finished already is returned unchanged (with no traffic).
    """
    from recommender.evaluation.stats import stats_rollup
    from recommender.serving.recommendations import replayable_serving
    from recommender.simulation.traffic import (
        InProcessShopClient,
        ShopperDriver,
        TrafficStats,
        shopper_seeds,
        store_simulator,
    )

    history = SimulatedHistory.objects.get(pk=history_id)
    if history.status == SimulatedHistory.Status.FINISHED:
        return HistoryRun(history, TrafficStats())
    if not _claim(history):
        raise HistoryBusy(f"Simulated history {history.pk} is being written by another worker.")
    history.refresh_from_db()
    report = on_progress or (lambda done, total, note: None)
    total = history.sessions_total
    start, end = history.period_start, history.period_end
    spacing = (end - start) / total
    seeds = shopper_seeds(history.seed, total)
    stats = TrafficStats()
    note = history.outcome
    try:
        simulator = store_simulator(seed=history.seed, family=history.family)
        first = history.sessions_done
        report(first, total, note)
        # The history's seed fixes its shoppers, the store's exploration and
        # each training run: a history written in one go is the same every time.
        with (
            _debug_off(),
            replayable_serving(history.seed + first),
            time_machine.travel(start + spacing * first, tick=False) as traveller,
        ):
            for number in range(first, total):
                traveller.move_to(start + spacing * number)
                driver = ShopperDriver(InProcessShopClient(), on_clock=traveller.shift)
                stats.merge(
                    driver.run(simulator.new_shopper(int(seeds[number])), session_number=number)
                )
                done = number + 1
                if done < total and _trains_after(done, history):
                    note = _train(done, seed=history.seed)
                SimulatedHistory.objects.filter(pk=history.pk).update(
                    sessions_done=done, heartbeat_at=real_now(), outcome=note
                )
                report(done, total, note)
            traveller.move_to(end)
            note = _train(total, seed=history.seed)
        stats_rollup(since=start - timedelta(hours=1), until=timezone.now())
    except Exception as exc:
        logger.exception("Simulated history %s failed", history.pk)
        SimulatedHistory.objects.filter(pk=history.pk).update(
            status=SimulatedHistory.Status.FAILED, outcome=repr(exc)[:2000]
        )
        raise
    refused = stats.refusal_summary()
    SimulatedHistory.objects.filter(pk=history.pk).update(
        # Refused requests never reached the store: that history is not the one planned.
        status=SimulatedHistory.Status.FAILED if refused else SimulatedHistory.Status.FINISHED,
        finished_at=real_now(),
        heartbeat_at=real_now(),
        outcome=refused or f"{stats.sessions} sessions this run, {stats.orders} orders; {note}",
    )
    history.refresh_from_db()
    report(total, total, note)
    return HistoryRun(history, stats)


def _trains_after(done: int, history: SimulatedHistory) -> bool:
    if done < history.first_train:
        return False
    return (done - history.first_train) % history.train_every == 0


def _train(sessions_done: int, *, seed: int) -> str:
    """Build transitions and train at the simulated time, as beat would have."""
    from recommender.learning.training import (
        TrainerBusy,
        policy_train,
        target_sync,
        transitions_build,
    )
    from recommender.serving.server import policy_server

    transitions_build()
    try:
        run = policy_train(triggered_by="seed_history", seed=seed + sessions_done)
        target_sync(triggered_by="seed_history")
    except TrainerBusy:
        return f"after {sessions_done} sessions: trainer busy, training skipped"
    policy_server.refresh()
    logger.info("Simulated history, after %s sessions: %s", sessions_done, run.outcome)
    return f"after {sessions_done} sessions: {run.outcome}"
