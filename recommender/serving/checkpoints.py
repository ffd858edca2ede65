"""Which checkpoint is served: activation and rollback, each load-checked as the web
processes would load it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from recommender.db import read_binary
from recommender.models import Checkpoint
from recommender.serving.server import load_error_text, load_servable


class CheckpointStateError(ValueError):
    """A checkpoint action that does not fit the checkpoint's status."""


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


class CheckpointLoadError(CheckpointStateError):
    """A checkpoint that would not load in the web processes."""

    def __init__(self, version: int, reason: str) -> None:
        super().__init__(f"v{version} does not load: {reason}")
        self.version, self.reason = version, reason


def _check_loads(checkpoint: Checkpoint) -> None:
    """Load the checkpoint as the web processes would, or raise CheckpointLoadError."""

    weights = read_binary(Checkpoint, checkpoint.pk, "weights")
    if weights is None:
        raise Checkpoint.DoesNotExist(f"checkpoint v{checkpoint.version} was deleted")
    try:
        load_servable(weights)
    except Exception as exc:  # whatever stops it loading stops it serving
        raise CheckpointLoadError(checkpoint.version, load_error_text(exc)) from exc


def _make_active(checkpoint: Checkpoint, now: datetime | None) -> Checkpoint:
    """Precondition: in a transaction, ``checkpoint`` row-locked and known to load."""
    Checkpoint.objects.select_for_update().filter(status=Checkpoint.Status.ACTIVE).update(
        status=Checkpoint.Status.RETIRED
    )
    checkpoint.status = Checkpoint.Status.ACTIVE
    checkpoint.activated_at = now or timezone.now()
    checkpoint.save(update_fields=["status", "activated_at"])
    return checkpoint


@transaction.atomic
def checkpoint_activate(*, checkpoint: Checkpoint, now: datetime | None = None) -> Checkpoint:
    """Serve this version from now on; the previously active one is retired.
    Web processes pick it up within RECOMMENDER_RELOAD_SECONDS.

    Raises CheckpointLoadError, changing nothing, when it does not load as the
    web processes would load it.
    """
    checkpoint = Checkpoint.objects.defer("weights").select_for_update().get(pk=checkpoint.pk)
    if checkpoint.status == Checkpoint.Status.ACTIVE:
        return checkpoint
    if not checkpoint.servable:
        raise CheckpointStateError(
            f"v{checkpoint.version} was trained offline on dataset {checkpoint.dataset.name!r}, "
            "whose item ids are not this store's products: it can be evaluated, not served."
        )
    _check_loads(checkpoint)
    return _make_active(checkpoint, now)


@dataclass(frozen=True)
class Rollback:
    restored: Checkpoint
    passed_over: list[CheckpointLoadError]  # newer retired versions that did not load


@transaction.atomic
def checkpoint_rollback(*, now: datetime | None = None) -> Rollback:
    """Reject the active version and re-activate the latest one active before it
    that still loads. A retired version that does not load is passed over and
    rejected with the reason, so no later rollback picks it either; when none
    loads, nothing changes (CheckpointLoadError lists why)."""
    active = (
        Checkpoint.objects.defer("weights")
        .select_for_update()
        .filter(status=Checkpoint.Status.ACTIVE)
        .first()
    )
    earlier = (
        Checkpoint.objects.defer("weights")
        .select_for_update()
        .filter(status=Checkpoint.Status.RETIRED, activated_at__isnull=False)
        .order_by("-activated_at")
    )
    failures: list[CheckpointLoadError] = []
    for previous in earlier:
        try:
            _check_loads(previous)
        except CheckpointLoadError as error:
            previous.status = Checkpoint.Status.REJECTED
            previous.note = f"Passed over by a rollback: {error.reason}"[:200]
            previous.save(update_fields=["status", "note"])
            failures.append(error)
            continue
        if active is not None:
            # Rejected, not retired: a second rollback then goes further back
            # instead of bouncing between the same two versions.
            active.status = Checkpoint.Status.REJECTED
            active.note = f"Rolled back to v{previous.version}."
            active.save(update_fields=["status", "note"])
        return Rollback(_make_active(previous, now), failures)
    if failures:
        first = failures[0]
        raise CheckpointLoadError(
            first.version,
            f"{first.reason} (and no earlier version loads either; nothing was changed)"
            if len(failures) > 1
            else f"{first.reason} (nothing was changed)",
        )
    raise CheckpointStateError("There is no earlier active version to roll back to.")
