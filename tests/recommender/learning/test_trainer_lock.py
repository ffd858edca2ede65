"""The trainer lock dies with its holder: PostgreSQL's advisory lock when the
holder's connection ends, the SQLite lease when its holder stops renewing it;
the next run marks what a dead holder left "running" as failed."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from recommender.learning import trainer_lock
from recommender.learning.trainer_lock import (
    ADVISORY_LOCK_KEY,
    ORPHANED_OUTCOME,
    TrainerBusy,
    TrainerLockLost,
)
from recommender.learning.training import target_sync
from recommender.models import TrainerLease, TrainingRun
from tests.recommender.factories import TrainingRunFactory
from tests.recommender.support import trainer_lock_is_free

pytestmark = pytest.mark.usefixtures("recommender_isolation")

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL advisory locks (set DATABASE_URL=postgres://...)",
)


@pytest.fixture
def lease(monkeypatch, settings):
    """The lease, whatever the test database (SQLite uses it anyway)."""
    settings.RECOMMENDER_TRAINER_LEASE_SECONDS = 60
    monkeypatch.setattr(trainer_lock, "_make_lock", trainer_lock._Lease)


@pytest.mark.django_db
def test_the_next_run_marks_the_runs_of_a_dead_holder_failed():
    started = timezone.now() - timedelta(minutes=40)
    train = TrainingRunFactory(
        status=TrainingRun.Status.RUNNING, started_at=started, finished_at=None, loss=None
    )
    sync = TrainingRunFactory(
        kind=TrainingRun.Kind.SYNC_TARGET,
        status=TrainingRun.Status.RUNNING,
        started_at=started,
        finished_at=None,
    )
    done = TrainingRunFactory(status=TrainingRun.Status.SUCCEEDED, outcome="Published v1.")

    run = target_sync(triggered_by="next")

    assert run.status == TrainingRun.Status.SKIPPED
    for orphan in (train, sync):
        orphan.refresh_from_db()
        assert orphan.status == TrainingRun.Status.FAILED
        assert orphan.outcome == ORPHANED_OUTCOME
        assert orphan.finished_at is not None
    done.refresh_from_db()
    assert (done.status, done.outcome) == (TrainingRun.Status.SUCCEEDED, "Published v1.")
    assert not TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).exists()


@needs_postgres
@pytest.mark.django_db
def test_the_advisory_lock_dies_with_a_killed_holder():
    db = connection.settings_dict
    url = (
        f"postgresql://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import psycopg, sys, time\n"
            f"c = psycopg.connect({url!r}, autocommit=True)\n"
            f"c.execute('SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})')\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TrainerBusy):
            target_sync()
    finally:
        holder.kill()  # SIGKILL: no chance to unlock
        holder.wait(timeout=10)

    deadline = time.monotonic() + 10
    while not trainer_lock_is_free() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target_sync().status == TrainingRun.Status.SKIPPED  # ran: nothing to sync


@pytest.mark.django_db
def test_a_live_lease_keeps_a_second_trainer_out(lease):
    TrainerLease.objects.create(
        holder="worker-1:42:abc", expires_at=timezone.now() + timedelta(seconds=30)
    )

    with pytest.raises(TrainerBusy):
        target_sync()

    assert TrainerLease.objects.get().holder == "worker-1:42:abc"


@pytest.mark.django_db
def test_a_lapsed_lease_is_taken_over_and_its_run_marked_failed(lease):
    TrainerLease.objects.create(
        holder="worker-1:42:abc", expires_at=timezone.now() - timedelta(seconds=1)
    )
    orphan = TrainingRunFactory(status=TrainingRun.Status.RUNNING, finished_at=None)

    run = target_sync(triggered_by="next")

    assert run.status == TrainingRun.Status.SKIPPED
    orphan.refresh_from_db()
    assert (orphan.status, orphan.outcome) == (TrainingRun.Status.FAILED, ORPHANED_OUTCOME)
    assert TrainerLease.objects.get().holder == ""  # released after the run


@pytest.mark.django_db(transaction=True)
def test_the_holder_renews_its_lease_while_it_runs(lease, settings):
    settings.RECOMMENDER_TRAINER_LEASE_SECONDS = 0.6

    with trainer_lock.trainer_lock() as held:
        time.sleep(1.5)  # two and a half lease lengths
        held.ensure_held()
        with pytest.raises(TrainerBusy), trainer_lock.trainer_lock():
            pass
        assert TrainerLease.objects.get().expires_at > timezone.now()

    assert TrainerLease.objects.get().holder == ""
    with trainer_lock.trainer_lock():
        pass


@pytest.mark.django_db
def test_a_holder_whose_lease_was_taken_over_may_not_save(lease):
    with trainer_lock.trainer_lock() as held:
        TrainerLease.objects.filter(pk=1).update(
            holder="worker-2:7:def", expires_at=timezone.now() + timedelta(seconds=60)
        )
        with pytest.raises(TrainerLockLost, match="nothing was saved"):
            held.ensure_held()

    assert TrainerLease.objects.get().holder == "worker-2:7:def"  # not released by the loser
