"""One trainer at a time (training runs and target syncs), with a lock that dies
with its holder, so a worker killed mid-run cannot stop learning.

PostgreSQL: a session-level advisory lock taken on the connection that runs the
training. The server releases it the moment that connection ends, which is
what a killed worker's connection does. (Behind a pooler in transaction mode,
e.g. PgBouncer, session locks do not hold: point the worker at PostgreSQL.)

Other databases (SQLite, the embedded demo): a lease, the one TrainerLease row,
that the holder renews from a background thread every third of
RECOMMENDER_TRAINER_LEASE_SECONDS. A dead holder stops renewing, and its lease
lapses within that many seconds.

Whoever takes the lock next marks the runs a dead holder left "running" as
failed, with a reason the dashboard shows.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from recommender.models import TrainerLease, TrainingRun

logger = logging.getLogger(__name__)

# The advisory lock's key: any constant bigint, the same in every process.
# Advisory locks are scoped to one database, so stores sharing a server don't collide.
ADVISORY_LOCK_KEY = 0x72_65_63_2D_74_72_61_69  # "rec-trai"

ORPHANED_OUTCOME = (
    "The worker running it stopped before it finished (killed, or its database "
    "connection was lost): marked failed when the next run took the trainer lock."
)


class TrainerBusy(RuntimeError):
    """Another training or sync run holds the trainer lock."""


class TrainerLockLost(RuntimeError):
    """The lease lapsed while this run held it (the process stalled longer than
    RECOMMENDER_TRAINER_LEASE_SECONDS): another run may have started, so this
    one must not save or publish what it trained."""


class _AdvisoryLock:
    """PostgreSQL: held by this process's database session."""

    def acquire(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
            return bool(cursor.fetchone()[0])

    def ensure_held(self) -> None:
        # Only the end of this session releases it, and then this run's own
        # queries fail too.
        return

    def release(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
        except DatabaseError:
            # An aborted transaction cannot run the unlock: end the session
            # instead, which releases it all the same.
            logger.warning("Could not release the trainer lock: closing the connection")
            connection.close()


class _Lease:
    """Any other database: the TrainerLease row, renewed while the holder lives."""

    def __init__(self) -> None:
        self.holder = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.seconds = float(settings.RECOMMENDER_TRAINER_LEASE_SECONDS)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._renewer: threading.Thread | None = None

    def _expiry(self):
        return timezone.now() + timedelta(seconds=self.seconds)

    def acquire(self) -> bool:
        with transaction.atomic():
            TrainerLease.objects.get_or_create(pk=1)
            # One conditional UPDATE: atomic on every database, so two workers
            # racing for a lapsed lease cannot both win it.
            taken = (
                TrainerLease.objects.filter(pk=1)
                .filter(
                    Q(holder="") | Q(expires_at__isnull=True) | Q(expires_at__lt=timezone.now())
                )
                .update(holder=self.holder, expires_at=self._expiry(), acquired_at=timezone.now())
            )
        if taken:
            self._renewer = threading.Thread(
                target=self._renew_until_released, name="trainer-lease", daemon=True
            )
            self._renewer.start()
        return bool(taken)

    def _renew_until_released(self) -> None:
        try:
            while not self._stop.wait(self.seconds / 3):
                try:
                    renewed = TrainerLease.objects.filter(pk=1, holder=self.holder).update(
                        expires_at=self._expiry()
                    )
                except DatabaseError:
                    # A busy SQLite file: the next beat tries again, well before expiry.
                    logger.warning("Could not renew the trainer lease", exc_info=True)
                    continue
                if not renewed:
                    logger.error("The trainer lease was taken over by another run")
                    self._lost.set()
                    return
        finally:
            connection.close()  # this thread's own connection

    def ensure_held(self) -> None:
        if (
            self._lost.is_set()
            or not TrainerLease.objects.filter(
                pk=1, holder=self.holder, expires_at__gte=timezone.now()
            ).exists()
        ):
            raise TrainerLockLost(
                "The trainer lease lapsed while this run held it "
                f"(no renewal for {self.seconds:g} s): nothing was saved."
            )

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        TrainerLease.objects.filter(pk=1, holder=self.holder).update(holder="", expires_at=None)


class HeldLock:
    """What the holder of the trainer lock may ask of it."""

    def __init__(self, lock: _AdvisoryLock | _Lease) -> None:
        self._lock = lock

    def ensure_held(self) -> None:
        """Raise TrainerLockLost unless this run still holds the lock; call
        before writing what the run produced."""
        self._lock.ensure_held()


def _make_lock() -> _AdvisoryLock | _Lease:
    return _AdvisoryLock() if connection.vendor == "postgresql" else _Lease()


@contextmanager
def trainer_lock() -> Iterator[HeldLock]:
    """Hold the trainer lock for the block, or raise TrainerBusy at once.

    Runs a dead holder left "running" are marked failed on the way in.
    """
    lock = _make_lock()
    if not lock.acquire():
        raise TrainerBusy("Another training run is in progress.")
    try:
        orphaned_runs_fail()
        yield HeldLock(lock)
    finally:
        lock.release()


def orphaned_runs_fail() -> int:
    """Mark the training and sync runs still "running" as failed.

    Precondition: the caller holds the trainer lock. Every such run was started
    under the lock by a holder that is gone, so none of them can still finish.
    """
    return TrainingRun.objects.filter(
        kind__in=(TrainingRun.Kind.TRAIN, TrainingRun.Kind.SYNC_TARGET),
        status=TrainingRun.Status.RUNNING,
    ).update(status=TrainingRun.Status.FAILED, finished_at=timezone.now(), outcome=ORPHANED_OUTCOME)
