"""Writes of the recommender: impressions, events with reward attribution,
and checkpoint lifecycle. Training lives in recommender/training.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from recommender.features import purchase_reward
from recommender.models import (
    Checkpoint,
    Event,
    EventType,
    Impression,
    ImpressionItem,
)
from recommender.rl.types import Observation, Slate
from shop.models import Product


class EventRejected(ValueError):
    """A client event that cannot be accepted as sent (maps to HTTP 400)."""


class CheckpointStateError(ValueError):
    """A checkpoint action that does not fit the checkpoint's status."""


# ---------------------------------------------------------------------------
# Impressions
# ---------------------------------------------------------------------------


@transaction.atomic
def impression_log(
    *,
    session_key: str,
    user_id: int | None,
    slot: str,
    product_id: int | None,
    observation: Observation,
    slate: Slate,
    policy_name: str,
    policy_version: int | None,
    epsilon: float,
    sold_out_id: int | None = None,
    now: datetime | None = None,
) -> Impression:
    """Record one served carousel with each item's position and propensity,
    and the sold-out products its candidates left out (a SoldOutSet id)."""
    impression = Impression.objects.create(
        created_at=now or timezone.now(),
        session_key=session_key,
        user_id=user_id,
        slot=slot,
        product_id=product_id,
        state=observation.to_dict(),
        policy_name=policy_name,
        policy_version=policy_version,
        epsilon=epsilon,
        sold_out_id=sold_out_id,
    )
    ImpressionItem.objects.bulk_create(
        ImpressionItem(
            impression=impression,
            product_id=int(item),
            position=position,
            propensity=float(propensity),
            score=float(score),
        )
        for position, (item, propensity, score) in enumerate(
            zip(slate.items, slate.propensities, slate.scores, strict=True)
        )
    )
    return impression


# ---------------------------------------------------------------------------
# Events and reward attribution
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedEvent:
    event: Event
    created: bool


def reward_for(*, type: str, line_value: Decimal) -> float:
    """Reward weights from settings; purchases are price-aware."""
    if type == EventType.CLICK:
        return settings.RECOMMENDER_REWARD_CLICK
    if type == EventType.ADD_TO_CART:
        return settings.RECOMMENDER_REWARD_ADD_TO_CART
    if type == EventType.PURCHASE:
        return purchase_reward(
            line_value=float(line_value),
            base=settings.RECOMMENDER_REWARD_PURCHASE,
            per_unit_price=settings.RECOMMENDER_REWARD_PURCHASE_PER_UNIT_PRICE,
        )
    return 0.0


def _attribution_window_start(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.RECOMMENDER_ATTRIBUTION_WINDOW)


def _impression_for_click(
    *, impression_id: uuid.UUID, session_key: str, product_id: int, now: datetime
) -> Impression | None:
    """The impression a click names, checked against the session and its items.

    Raises EventRejected when the impression belongs to another session or did
    not show the product; returns None when it is too old to earn reward.
    """
    impression = Impression.objects.filter(pk=impression_id).first()
    if impression is None or impression.session_key != session_key:
        # Another session's impression looks the same as a missing one, so
        # impression ids cannot be probed.
        raise EventRejected("impression_id does not name an impression shown to this session.")
    if not impression.items.filter(product_id=product_id).exists():
        raise EventRejected("That impression did not show this product.")
    if impression.created_at < _attribution_window_start(now):
        return None
    return impression


def _impression_for_server_event(
    *, session_key: str, product_id: int, type: str, now: datetime
) -> Impression | None:
    """The latest impression of this session inside the attribution window that
    showed the product and has not yet been rewarded for this event type."""
    # An Exists subquery, not .exclude(events__product_id=..., events__type=...):
    # across a multi-valued relation exclude() may match the two conditions on
    # different events, so a click on this item plus an add-to-cart of another
    # item would wrongly count as "already rewarded".
    already_rewarded = Event.objects.filter(
        impression=OuterRef("pk"), product_id=product_id, type=type
    )
    return (
        Impression.objects.filter(
            session_key=session_key,
            created_at__gte=_attribution_window_start(now),
            items__product_id=product_id,
        )
        .exclude(Exists(already_rewarded))
        .order_by("-created_at")
        .first()
    )


_COUNTER_FOR_TYPE = {
    EventType.CLICK: "clicks",
    EventType.ADD_TO_CART: "add_to_carts",
    EventType.PURCHASE: "purchases",
}


def event_record(
    *,
    type: str,
    product: Product,
    session_key: str,
    user_id: int | None = None,
    event_id: uuid.UUID | None = None,
    impression_id: uuid.UUID | None = None,
    quantity: int = 1,
    line_value: Decimal = Decimal("0"),
    source: str = Event.Source.SERVER,
    now: datetime | None = None,
) -> RecordedEvent:
    """Record an interaction and attribute its reward, once.

    Idempotent on ``event_id``: a repeat returns the stored event. Clicks name
    their impression (validated against the session and its items); add-to-cart
    and purchase events are attributed by the server to the latest impression
    of the session that showed the product within the attribution window. Each
    (impression, product, type) earns reward once; repeats are stored without it.
    Call inside the transaction of the change it records (cart, order) so both
    commit or neither does.
    """
    now = now or timezone.now()
    event_id = event_id or uuid.uuid4()
    existing = Event.objects.filter(event_id=event_id).first()
    if existing is not None:
        if existing.session_key != session_key:
            raise EventRejected("event_id was already used by another session.")
        return RecordedEvent(existing, created=False)

    impression = None
    if type == EventType.CLICK and impression_id is not None:
        impression = _impression_for_click(
            impression_id=impression_id, session_key=session_key, product_id=product.pk, now=now
        )
    elif type in (EventType.ADD_TO_CART, EventType.PURCHASE):
        impression = _impression_for_server_event(
            session_key=session_key, product_id=product.pk, type=type, now=now
        )

    fields = dict(
        event_id=event_id,
        created_at=now,
        session_key=session_key,
        user_id=user_id,
        type=type,
        product=product,
        quantity=quantity,
        value=line_value if type == EventType.PURCHASE else Decimal("0"),
        source=source,
    )
    with transaction.atomic():
        if impression is not None:
            try:
                # The savepoint lets a lost race on the reward-once constraint
                # fall back to an unattributed event instead of failing.
                with transaction.atomic():
                    reward = reward_for(type=type, line_value=line_value)
                    event = Event.objects.create(**fields, impression=impression, reward=reward)
                    Impression.objects.filter(pk=impression.pk).update(
                        **{_COUNTER_FOR_TYPE[type]: F(_COUNTER_FOR_TYPE[type]) + 1},
                        reward=F("reward") + reward,
                        revenue=F("revenue") + fields["value"],
                    )
                    return RecordedEvent(event, created=True)
            except IntegrityError:
                stored = Event.objects.filter(event_id=event_id).first()
                if stored is not None:
                    return _concurrent_repeat(stored, session_key=session_key)
        try:
            with transaction.atomic():
                return RecordedEvent(Event.objects.create(**fields), created=True)
        except IntegrityError:
            return _concurrent_repeat(Event.objects.get(event_id=event_id), session_key=session_key)


def _concurrent_repeat(stored: Event, *, session_key: str) -> RecordedEvent:
    """A concurrent request stored the same event_id first."""
    if stored.session_key != session_key:
        raise EventRejected("event_id was already used by another session.")
    return RecordedEvent(stored, created=False)


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


@transaction.atomic
def checkpoint_activate(*, checkpoint: Checkpoint, now: datetime | None = None) -> Checkpoint:
    """Serve this version from now on; the previously active one is retired.
    Web processes pick it up within RECOMMENDER_RELOAD_SECONDS."""
    checkpoint = Checkpoint.objects.select_for_update().get(pk=checkpoint.pk)
    if checkpoint.status == Checkpoint.Status.ACTIVE:
        return checkpoint
    if not checkpoint.servable:
        raise CheckpointStateError(
            f"v{checkpoint.version} was trained offline on dataset {checkpoint.dataset.name!r}, "
            "whose item ids are not this store's products: it can be evaluated, not served."
        )
    Checkpoint.objects.select_for_update().filter(status=Checkpoint.Status.ACTIVE).update(
        status=Checkpoint.Status.RETIRED
    )
    checkpoint.status = Checkpoint.Status.ACTIVE
    checkpoint.activated_at = now or timezone.now()
    checkpoint.save(update_fields=["status", "activated_at"])
    return checkpoint


@transaction.atomic
def checkpoint_rollback(*, now: datetime | None = None) -> Checkpoint:
    """Reject the active version and re-activate the one active before it."""
    active = Checkpoint.objects.select_for_update().filter(status=Checkpoint.Status.ACTIVE).first()
    previous = (
        Checkpoint.objects.filter(status=Checkpoint.Status.RETIRED, activated_at__isnull=False)
        .order_by("-activated_at")
        .first()
    )
    if previous is None:
        raise CheckpointStateError("There is no earlier active version to roll back to.")
    if active is not None:
        # Rejected, not retired: a second rollback then goes further back
        # instead of bouncing between the same two versions.
        active.status = Checkpoint.Status.REJECTED
        active.note = f"Rolled back to v{previous.version}."
        active.save(update_fields=["status", "note"])
    return checkpoint_activate(checkpoint=previous, now=now)
