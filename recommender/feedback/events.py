"""Events with reward attribution: the one place where a click, add-to-cart or
purchase earns its reward and is credited to the impression that showed the item."""

from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import reduce

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from recommender.models import (
    Event,
    EventType,
    Impression,
    Transition,
)
from shop.models import Product


class EventRejected(ValueError):
    """A client event that cannot be accepted as sent (maps to HTTP 400)."""


def purchase_reward(*, line_value: float, base: float, per_unit_price: float) -> float:
    """Price-aware purchase reward: a base per purchased line plus a share of
    the line's value (price x quantity), so dearer purchases are worth more."""
    return base + per_unit_price * line_value


# ---------------------------------------------------------------------------
# Events and reward attribution
#
# The reward rules, all enforced here (the README's "Security and reliability"
# section states them for operators):
# - Only events of the visit an impression was shown to, on an item it showed,
#   inside RECOMMENDER_ATTRIBUTION_WINDOW, earn reward; each (impression, item,
#   event type) earns once.
# - A click names its impression; at most RECOMMENDER_REWARDED_CLICKS_PER_IMPRESSION
#   items of one impression earn a click reward. Further clicks are kept, unrewarded.
# - An add-to-cart earns only when it puts the item in the cart (more units on a
#   line already there earn nothing), credited to the latest impression that
#   showed the item. Removing the line before checkout takes that reward back,
#   from the impression and from a transition already built of it.
# - A purchase earns per order line (price-aware), credited the same way.
# - Clients report only views and clicks; the shop records add-to-carts and
#   purchases itself, in the transaction of the cart or order change.
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
    rewardable: bool = True,
    now: datetime | None = None,
) -> RecordedEvent:
    """Record an interaction and attribute its reward, once.

    ``rewardable=False`` stores the event without looking for an impression
    (an add-to-cart of more units on a line already in the cart).

    Idempotent on ``event_id``: a repeat returns the stored event. Clicks name
    their impression (validated against the session and its items); add-to-cart
    and purchase events are attributed by the server to the latest impression
    of the session that showed the product within the attribution window. Each
    (impression, product, type) earns reward once; repeats are stored without it.
    Call inside the transaction of the change it records (cart, order) so both
    commit or neither does.
    """
    now = now or timezone.now()
    # A key made here is new: no repeat to look up, no duplicate to race with.
    fresh = event_id is None
    event_id = event_id or uuid.uuid4()
    if not fresh:
        repeat = _stored_repeat(event_id, session_key=session_key)
        if repeat is not None:
            return repeat
    impression = _impression_to_credit(
        type=type,
        product_id=product.pk,
        session_key=session_key,
        impression_id=impression_id,
        rewardable=rewardable,
        now=now,
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
    if impression is None and fresh:
        # Nothing to attribute and no key to collide with: one INSERT.
        return RecordedEvent(Event.objects.create(**fields), created=True)
    with transaction.atomic():
        if impression is not None:
            credited = _create_credited(fields, impression=impression, line_value=line_value)
            if credited is not None:
                return credited
        return _create_uncredited(fields)


def _stored_repeat(event_id: uuid.UUID, *, session_key: str) -> RecordedEvent | None:
    """The event already stored under a client's ``event_id``, if any."""
    existing = Event.objects.filter(event_id=event_id).first()
    if existing is None:
        return None
    return _concurrent_repeat(existing, session_key=session_key)


def _impression_to_credit(
    *,
    type: str,
    product_id: int,
    session_key: str,
    impression_id: uuid.UUID | None,
    rewardable: bool,
    now: datetime,
) -> Impression | None:
    """The impression an event earns reward for: the one a click names, or
    the one the server finds for an add-to-cart or purchase."""
    if type == EventType.CLICK and impression_id is not None:
        return _impression_for_click(
            impression_id=impression_id, session_key=session_key, product_id=product_id, now=now
        )
    if type in (EventType.ADD_TO_CART, EventType.PURCHASE) and rewardable:
        return _impression_for_server_event(
            session_key=session_key, product_id=product_id, type=type, now=now
        )
    return None


def _create_credited(
    fields: dict, *, impression: Impression, line_value: Decimal
) -> RecordedEvent | None:
    """Store the event with its reward and add both to the impression.

    Returns None when the event must be stored unattributed instead: the click
    cap is reached, or another request won the reward-once race. A concurrent
    repeat of the same ``event_id`` returns that stored event.
    """
    try:
        # The savepoint lets a lost race on the reward-once constraint, or a
        # click past the impression's cap, fall back to an unattributed event
        # instead of failing.
        with transaction.atomic():
            reward = reward_for(type=fields["type"], line_value=line_value)
            event = Event.objects.create(**fields, impression=impression, reward=reward)
            _credit_impression(
                impression, type=fields["type"], reward=reward, value=fields["value"]
            )
            return RecordedEvent(event, created=True)
    except _ClickCapReached:
        return None
    except IntegrityError:
        stored = Event.objects.filter(event_id=fields["event_id"]).first()
        if stored is None:
            return None
        return _concurrent_repeat(stored, session_key=fields["session_key"])


def _credit_impression(impression: Impression, *, type: str, reward: float, value: Decimal) -> None:
    """Add an event's reward, revenue and count to its impression's totals;
    raises _ClickCapReached when a click would pass the impression's cap."""
    counter = _COUNTER_FOR_TYPE[type]
    impression_row = Impression.objects.filter(pk=impression.pk)
    if type == EventType.CLICK:
        # In the UPDATE itself, so concurrent clicks cannot pass the cap.
        impression_row = impression_row.filter(
            clicks__lt=settings.RECOMMENDER_REWARDED_CLICKS_PER_IMPRESSION
        )
    if not impression_row.update(
        **{counter: F(counter) + 1},
        reward=F("reward") + reward,
        revenue=F("revenue") + value,
    ):
        raise _ClickCapReached


def _create_uncredited(fields: dict) -> RecordedEvent:
    """Store the event without reward (or return a concurrent repeat of it)."""
    try:
        with transaction.atomic():
            return RecordedEvent(Event.objects.create(**fields), created=True)
    except IntegrityError:
        stored = Event.objects.get(event_id=fields["event_id"])
        return _concurrent_repeat(stored, session_key=fields["session_key"])


class _ClickCapReached(Exception):
    """The impression has rewarded as many clicks as it may."""


def add_to_cart_record(
    *, product: Product, quantity: int, new_line: bool, session_key: str, user_id: int | None
) -> RecordedEvent:
    """Record units put in a cart; only the add that created the cart line can
    earn reward (see the rules above)."""
    return event_record(
        type=EventType.ADD_TO_CART,
        product=product,
        session_key=session_key,
        user_id=user_id,
        quantity=quantity,
        source=Event.Source.SERVER,
        rewardable=new_line,
    )


def add_to_cart_reverse(
    *, product: Product, line_added_at: datetime, session_key: str | None, user_id: int | None
) -> float:
    """Take back the add-to-cart reward of a cart line removed before checkout:
    from its event, its impression and the transition built of it, if any.
    Returns the reward taken back. Call in the transaction of the removal."""
    # The visit that added it, or (signed in) the account, whose cart outlives visits.
    owners = [Q(session_key=session_key)] if session_key else []
    if user_id is not None:
        owners.append(Q(user_id=user_id))
    if not owners:
        return 0.0
    events = list(
        Event.objects.select_for_update().filter(
            reduce(operator.or_, owners),
            type=EventType.ADD_TO_CART,
            product=product,
            reward__gt=0,
            impression__isnull=False,
            created_at__gte=line_added_at,
        )
    )
    taken = 0.0
    for event in events:
        Impression.objects.filter(pk=event.impression_id).update(
            add_to_carts=F("add_to_carts") - 1, reward=F("reward") - event.reward
        )
        Transition.objects.filter(impression_id=event.impression_id, product=product).update(
            reward=F("reward") - event.reward
        )
        taken += event.reward
        # The event keeps its impression: that impression cannot earn an
        # add-to-cart of this item a second time.
        event.reward = 0.0
        event.save(update_fields=["reward"])
    return taken


def _concurrent_repeat(stored: Event, *, session_key: str) -> RecordedEvent:
    """The event a repeat (or a concurrent request) stored under the same
    event_id first; refused when another session sent it."""
    if stored.session_key != session_key:
        raise EventRejected("event_id was already used by another session.")
    return RecordedEvent(stored, created=False)
