"""The learning loop's services: transitions from logged sessions, replay
training, target-network sync and guarded checkpoint publication.

Celery tasks (recommender/tasks.py) and management commands call these same
functions. The RL core never sees an ORM object: rows are turned into
recommender.rl types here and in recommender/serving/features.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q, Sum
from django.utils import timezone

from recommender.conf import dqn_config

# TrainerBusy is part of this module's interface: the tasks retry on it.
from recommender.learning.trainer_lock import TrainerBusy, trainer_lock  # noqa: F401
from recommender.models import (
    Event,
    Impression,
    ImpressionItem,
    TrainerState,
    TrainingRun,
)
from recommender.models import (
    Transition as TransitionRow,
)
from recommender.rl.agents import agent_kind, check_agent, load_agent, make_agent
from recommender.rl.checkpoint import CheckpointError
from recommender.rl.learner import Learner
from recommender.rl.types import ItemCatalog, Observation
from recommender.rl.types import Transition as RLTransition
from recommender.serving import features

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Transitions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    impressions: int
    created: int


def transitions_build(*, now: datetime | None = None, batch_size: int = 2000) -> BuildResult:
    """Turn impressions whose attribution window has closed into transitions.

    For each shown item: s = the impression's state, a = the item, r = the
    reward attributed to (impression, item), s' = the session's next
    impression's state, done = the session went idle with no next impression.
    Impressions whose session is still active and has no next impression yet
    wait for a later run. Idempotent: a unique constraint per (impression,
    item) and the impression's transitions_built flag make reruns no-ops.
    """
    now = now or timezone.now()
    window_closed = now - timedelta(seconds=settings.RECOMMENDER_ATTRIBUTION_WINDOW)
    idle_since = now - timedelta(seconds=settings.RECOMMENDER_SESSION_IDLE)
    total_impressions = total_created = 0
    pending_rows = Impression.objects.filter(
        transitions_built=False, created_at__lte=window_closed
    ).order_by("created_at", "id")
    after: dict | None = None
    while True:
        page = pending_rows
        if after is not None:
            # Keyset pagination: impressions still waiting for their session
            # stay pending without blocking newer ones behind them.
            page = page.filter(
                Q(created_at__gt=after["created_at"])
                | Q(created_at=after["created_at"], id__gt=after["id"])
            )
        pending = list(page.values("id", "session_key", "created_at")[:batch_size])
        if not pending:
            break
        created, built = _build_batch(pending, idle_since=idle_since)
        total_created += created
        total_impressions += built
        after = pending[-1]
    return BuildResult(impressions=total_impressions, created=total_created)


def _build_batch(pending: list[dict], *, idle_since: datetime) -> tuple[int, int]:
    sessions = {p["session_key"] for p in pending}
    earliest = min(p["created_at"] for p in pending)
    # Every later impression of these sessions, to find each one's successor.
    timeline: dict[str, list[tuple[datetime, uuid.UUID]]] = defaultdict(list)
    for key, at, pk in (
        Impression.objects.filter(session_key__in=sessions, created_at__gte=earliest)
        .order_by("created_at", "id")
        .values_list("session_key", "created_at", "id")
    ):
        timeline[key].append((at, pk))
    last_event = dict(
        Event.objects.filter(session_key__in=sessions)
        .values("session_key")
        .annotate(last=Max("created_at"))
        .values_list("session_key", "last")
    )

    ready: dict[uuid.UUID, tuple[uuid.UUID | None, bool]] = {}
    for p in pending:
        events = timeline[p["session_key"]]
        position = next(i for i, (_, pk) in enumerate(events) if pk == p["id"])
        if position + 1 < len(events):
            ready[p["id"]] = (events[position + 1][1], False)
            continue
        last_activity = max(events[-1][0], last_event.get(p["session_key"]) or events[-1][0])
        if last_activity <= idle_since:
            ready[p["id"]] = (None, True)
    if not ready:
        return 0, 0

    rewards = {
        (imp, product): total
        for imp, product, total in Event.objects.filter(impression_id__in=ready.keys())
        .values("impression_id", "product_id")
        .annotate(total=Sum("reward"))
        .values_list("impression_id", "product_id", "total")
    }
    rows = [
        TransitionRow(
            impression_id=item.impression_id,
            product_id=item.product_id,
            position=item.position,
            propensity=item.propensity,
            reward=rewards.get((item.impression_id, item.product_id), 0.0),
            next_impression_id=ready[item.impression_id][0],
            done=ready[item.impression_id][1],
        )
        for item in ImpressionItem.objects.filter(impression_id__in=ready.keys())
    ]
    # In the order they were served: replay (and so a seeded training run)
    # then sees the same log in the same order on every database.
    served_at = {p["id"]: p["created_at"] for p in pending}
    rows.sort(key=lambda t: (served_at[t.impression_id], str(t.impression_id), t.position))
    with transaction.atomic():
        created = TransitionRow.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
        Impression.objects.filter(pk__in=ready.keys()).update(transitions_built=True)
    return len(created), len(ready)


def replay_transitions(*, limit: int) -> list[RLTransition]:
    """The most recent transitions, at most ``limit``, as RL core objects: whole
    impressions only (an impression the limit would cut is left out), each
    impression's items together in slate order (how SlateQ regroups them)."""
    recent = TransitionRow.objects.order_by("-created_at", "-id").values_list(
        "impression_id", flat=True
    )[:limit]
    newest_first = list(dict.fromkeys(recent))
    by_impression: dict[uuid.UUID, list[tuple]] = defaultdict(list)
    for start in range(0, len(newest_first), 5000):  # stay under SQLite's variable limit
        for row in TransitionRow.objects.filter(
            impression_id__in=newest_first[start : start + 5000]
        ).values_list(
            "impression_id",
            "product_id",
            "reward",
            "next_impression_id",
            "done",
            "propensity",
            "position",
        ):
            by_impression[row[0]].append(row)
    rows: list[tuple] = []
    for impression_id in newest_first:
        slate = sorted(by_impression[impression_id], key=lambda row: row[6])
        if len(rows) + len(slate) > limit:
            break
        rows.extend(slate)
    impression_ids = {r[0] for r in rows} | {r[3] for r in rows if r[3] is not None}
    # Eight transitions share each impression's state: parse each state once.
    ids = list(impression_ids)
    states: dict[uuid.UUID, Observation] = {}
    sold_out: dict[uuid.UUID, tuple[int, ...]] = {}
    for start in range(0, len(ids), 5000):  # stay under SQLite's variable limit
        chunk = Impression.objects.filter(pk__in=ids[start : start + 5000])
        for pk, state, unavailable in chunk.values_list("id", "state", "sold_out__product_ids"):
            states[pk] = Observation.from_dict(state)
            sold_out[pk] = tuple(unavailable or ())
    return [
        RLTransition(
            state=states[impression_id],
            item=int(product_id),
            # Bounded so one luxury order cannot dominate the squared errors
            # (and Q stays within the publication check's bound).
            reward=min(float(reward), settings.RECOMMENDER_MAX_ABS_REWARD),
            next_state=None if done or next_id not in states else states[next_id],
            done=bool(done or next_id not in states),
            propensity=float(propensity),
            # The next request's candidates: all but its cart, page and sold-out products.
            next_unavailable=sold_out.get(next_id, ()),
        )
        for impression_id, product_id, reward, next_id, done, propensity, _ in rows
    ]


# ---------------------------------------------------------------------------
# Trainer state
# ---------------------------------------------------------------------------


def learner_load() -> tuple[Learner, ItemCatalog]:
    """The learner serving the current catalog: the stored one, or a new one of
    the RECOMMENDER_AGENT kind on first use or when that setting changed."""
    kind = settings.RECOMMENDER_AGENT
    catalog = features.build_catalog()
    state = TrainerState.objects.filter(pk=1).first()
    if state is not None:
        # The learner keeps its category table: categories created since take its
        # free rows, then share its "unknown category" row until a new learner.
        try:
            agent = load_agent(bytes(state.weights), catalog=catalog)
        except CheckpointError as exc:
            # A learner saved by an older model (or damaged) cannot go on training;
            # the transitions it learned from are all still here for a new one.
            logger.warning("The stored learner cannot be loaded (%s): starting a new learner", exc)
        else:
            if agent_kind(agent) == kind:
                return agent, catalog
            logger.warning(
                "RECOMMENDER_AGENT is %r but the stored learner is %r: starting a new learner",
                kind,
                agent_kind(agent),
            )
    n_categories = features.category_table_size(catalog)
    return make_agent(kind, dqn_config(), catalog, n_categories), catalog


def _save_learner(agent: Learner, *, target_synced: bool = False) -> None:
    defaults = {"weights": agent.save(), "step": agent.step}
    if target_synced:
        defaults["target_synced_at"] = timezone.now()
    TrainerState.objects.update_or_create(pk=1, defaults=defaults)


# ---------------------------------------------------------------------------
# Training and target sync
# ---------------------------------------------------------------------------


def _finish(run: TrainingRun, *, status: str, outcome: str, started: float) -> TrainingRun:
    run.status = status
    run.outcome = outcome
    run.finished_at = timezone.now()
    run.duration_s = time.monotonic() - started
    run.save()
    return run


def run_skip(*, kind: str, triggered_by: str, outcome: str) -> TrainingRun:
    """Record a run that was not started, and why (shown in the dashboard)."""
    now = timezone.now()
    return TrainingRun.objects.create(
        kind=kind,
        status=TrainingRun.Status.SKIPPED,
        triggered_by=triggered_by,
        started_at=now,
        finished_at=now,
        duration_s=0.0,
        outcome=outcome,
    )


def transitions_since_last_run() -> bool:
    """Whether a transition was built since the last training run that
    succeeded started (or no run has succeeded yet)."""
    last = (
        TrainingRun.objects.filter(kind=TrainingRun.Kind.TRAIN, status=TrainingRun.Status.SUCCEEDED)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    return last is None or TransitionRow.objects.filter(created_at__gte=last).exists()


def training_seed(default: int | None = None) -> int:
    """RECOMMENDER_TRAIN_SEED, else ``default``, else a fresh one from the OS;
    the run records it, so any run can be repeated on the same log and learner."""
    seed = settings.RECOMMENDER_TRAIN_SEED
    if seed is None:
        seed = default
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    return int(seed)


def policy_train(
    *, triggered_by: str = "schedule", steps: int | None = None, seed: int | None = None
) -> TrainingRun:
    """Replay training for ``steps`` gradient steps over the recent window,
    then publish a candidate checkpoint and activate it if it passes the guards.
    ``seed`` seeds the run when RECOMMENDER_TRAIN_SEED does not.

    Raises TrainerBusy when another run holds the lock (the task retries).
    """
    steps = steps or settings.RECOMMENDER_TRAIN_STEPS
    with trainer_lock() as lock:
        started = time.monotonic()
        run = TrainingRun.objects.create(
            kind=TrainingRun.Kind.TRAIN, started_at=timezone.now(), triggered_by=triggered_by
        )
        try:
            transitions = replay_transitions(limit=settings.RECOMMENDER_REPLAY_WINDOW)
            run.replay_size = len(transitions)
            if len(transitions) < settings.RECOMMENDER_MIN_TRANSITIONS:
                return _finish(
                    run,
                    status=TrainingRun.Status.SKIPPED,
                    outcome=(
                        f"Not enough transitions yet: {len(transitions)} of "
                        f"{settings.RECOMMENDER_MIN_TRANSITIONS} needed."
                    ),
                    started=started,
                )
            agent, catalog = learner_load()
            replay = agent.make_replay(capacity=len(transitions))
            replay.add_many(transitions, catalog)
            run.seed = training_seed(seed)
            rng = np.random.default_rng(run.seed)
            stats = agent.train_steps(replay, steps, rng)
            # A learner whose weights diverged (NaN/inf) is not kept: loading
            # refuses non-finite weights, so saving it would fail every later run.
            # The next run starts again from the last finite learner.
            diverged = not check_agent(agent, [])["finite_weights"]
            lock.ensure_held()
            if not diverged:
                _save_learner(agent)
            run.steps = stats.steps
            run.loss = float(stats.loss)
            run.mean_q = float(stats.mean_q)
            run.epsilon = float(stats.epsilon)
            from recommender.learning.publishing import checkpoint_publish

            checkpoint = checkpoint_publish(agent=agent, catalog=catalog, run=run)
            outcome = f"Published v{checkpoint.version} ({checkpoint.status})."
            if diverged:
                outcome += " The learner's weights went non-finite: it was not kept."
            return _finish(
                run, status=TrainingRun.Status.SUCCEEDED, outcome=outcome, started=started
            )
        except Exception as exc:
            logger.exception("Training run %s failed", run.pk)
            _finish(
                run, status=TrainingRun.Status.FAILED, outcome=repr(exc)[:2000], started=started
            )
            raise


def target_sync(*, triggered_by: str = "schedule") -> TrainingRun:
    """Hard-copy the learner's online weights into its target network."""
    with trainer_lock() as lock:
        started = time.monotonic()
        run = TrainingRun.objects.create(
            kind=TrainingRun.Kind.SYNC_TARGET, started_at=timezone.now(), triggered_by=triggered_by
        )
        state = TrainerState.objects.filter(pk=1).first()
        if state is None:
            return _finish(
                run,
                status=TrainingRun.Status.SKIPPED,
                outcome="No learner yet: nothing to sync.",
                started=started,
            )
        try:
            agent = load_agent(bytes(state.weights))
        except CheckpointError as exc:
            return _finish(
                run,
                status=TrainingRun.Status.SKIPPED,
                outcome=f"The stored learner cannot be loaded ({exc}); the next training "
                "run starts a new one.",
                started=started,
            )
        agent.sync_target()
        lock.ensure_held()
        _save_learner(agent, target_synced=True)
        run.steps = agent.step
        return _finish(
            run,
            status=TrainingRun.Status.SUCCEEDED,
            outcome=f"Target network synced at step {agent.step}.",
            started=started,
        )
