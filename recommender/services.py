"""Writes of the recommender: impressions, events with reward attribution,
and checkpoint lifecycle. Training lives in recommender/training.py."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache, reduce

from django.conf import settings
from django.db import IntegrityError, connections, router, transaction
from django.db.models import CharField, Exists, F, OuterRef, Q
from django.utils import timezone

from recommender.features import purchase_reward
from recommender.models import (
    Checkpoint,
    Event,
    EventType,
    Impression,
    ImpressionItem,
    ServingHeartbeat,
    Transition,
)
from recommender.rl.types import Observation, Slate
from shop.models import Category, Product


class EventRejected(ValueError):
    """A client event that cannot be accepted as sent (maps to HTTP 400)."""


class CheckpointStateError(ValueError):
    """A checkpoint action that does not fit the checkpoint's status."""


# ---------------------------------------------------------------------------
# Impressions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedImpression:
    impression: Impression
    products: list[Product]  # the slate's products in slate order, as read when it was logged
    also: dict[int, Product]  # the ``also_read`` products, by id (whatever their stock)


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
    available_only: bool = False,
    also_read: Sequence[int] = (),
    now: datetime | None = None,
) -> LoggedImpression | None:
    """Record one served carousel with each item's position and propensity,
    and the sold-out products its candidates left out (a SoldOutSet id), and
    read the slate's products to render it.

    ``also_read`` names products to read with the slate's (a carousel's
    reasons), in the same query.

    With ``available_only``, nothing is written and None is returned unless
    every item is still active and in stock: the caller draws another slate.
    On PostgreSQL the check, the read and the writes are one statement
    (``_log_in_one_statement``), so what is logged is exactly what was found
    available and is shown. The impression is committed before the page that
    shows it is sent: a click can name it at once, and a worker that dies
    afterwards loses nothing.
    """
    impression = Impression(
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
    items = [
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
    ]
    alias = router.db_for_write(Impression)
    connection = connections[alias]
    if not items:
        impression.save(force_insert=True, using=alias)
        return LoggedImpression(impression, [], {})
    extra = sorted({int(i) for i in also_read})
    if connection.vendor == "postgresql":
        by_id, available = _log_in_one_statement(
            impression, items, extra, force=not available_only, connection=connection
        )
    else:
        by_id, available = _log_in_a_transaction(
            impression, items, extra, force=not available_only, alias=alias
        )
    if not available and available_only:
        return None
    for row in (impression, *items):
        row._state.adding, row._state.db = False, alias
    products = [by_id[item.product_id] for item in items if item.product_id in by_id]
    return LoggedImpression(impression, products, {pk: by_id[pk] for pk in extra if pk in by_id})


def _slate_available(by_id: dict[int, Product], item_ids: list[int]) -> bool:
    return all(pk in by_id and by_id[pk].is_active and by_id[pk].stock > 0 for pk in item_ids)


def _log_in_a_transaction(
    impression: Impression,
    items: list[ImpressionItem],
    extra: list[int],
    *,
    force: bool,
    alias: str,
) -> tuple[dict[int, Product], bool]:
    """``impression_log`` for databases other than PostgreSQL: a read, then a
    short transaction of two INSERTs."""
    ids = [item.product_id for item in items]
    by_id = Product.objects.using(alias).select_related("category").in_bulk([*ids, *extra])
    available = _slate_available(by_id, ids)
    if available or force:
        with transaction.atomic(using=alias):
            impression.save(force_insert=True, using=alias)
            ImpressionItem.objects.using(alias).bulk_create(items)
    return by_id, available


def _log_in_one_statement(
    impression: Impression,
    items: list[ImpressionItem],
    extra: list[int],
    *,
    force: bool,
    connection,
) -> tuple[dict[int, Product], bool]:
    """``impression_log`` on PostgreSQL: one round trip and one commit.

    A data-modifying CTE checks that every item is active and in stock, inserts
    the impression and its items when they are (or when forced), and reads the
    items' products with their categories; the items' foreign key to the
    impression is checked at commit (Django's foreign keys are deferred).

    Outside a surrounding transaction its commit is asynchronous
    (``synchronous_commit = off`` for this statement's transaction only): the
    page does not wait for the disk. A crashed web worker loses nothing (the
    row is in PostgreSQL); a crash of the database server itself may lose the
    last fraction of a second of impressions, never half of one, and later
    events naming a lost impression are refused as unknown. Orders, carts and
    rewards keep synchronous commits.
    """
    ids = [item.product_id for item in items]
    head_values = _row_values(impression, connection)
    # One array per item column.
    item_columns = [
        list(c) for c in zip(*(_row_values(item, connection) for item in items), strict=True)
    ]
    with connection.cursor() as cursor:
        asynchronous = not connection.in_atomic_block
        cursor.execute(
            _logging_sql(),
            (ids, asynchronous, *head_values, force, *item_columns, force, extra),
        )
        rows = cursor.fetchall()
    available = bool(rows) and rows[0][0]
    product_fields, category_fields = _read_fields()
    by_id = {}
    split = 1 + len(product_fields)
    for row in rows:
        product = Product.from_db(
            connection.alias, [f.attname for f in product_fields], row[1:split]
        )
        product.category = Category.from_db(
            connection.alias, [f.attname for f in category_fields], row[split:]
        )
        by_id[product.pk] = product
    return by_id, available


def _written_fields(model) -> list:
    """The columns an INSERT of ``model`` sets: every concrete field but
    generated ones and an auto-incremented primary key."""
    return [
        f
        for f in model._meta.concrete_fields
        if not f.generated and not (f.primary_key and f.db_returning)
    ]


def _row_values(row, connection) -> list:
    """What Django's INSERT would send for ``row``'s columns (defaults, auto
    fields, JSON adaptation)."""
    return [
        f.get_db_prep_save(f.pre_save(row, add=True), connection=connection)
        for f in _written_fields(type(row))
    ]


@cache
def _read_fields() -> tuple[list, list]:
    return list(Product._meta.concrete_fields), list(Category._meta.concrete_fields)


@cache
def _logging_sql() -> str:
    """The statement of ``_log_in_one_statement``. Its parameters: the item
    ids (an array), whether to commit asynchronously, the impression's values,
    the force flag, one array per item column, the force flag, the ids of other
    products to read (an array). The same text for every slate size, so that
    psycopg parses it once."""
    connection = connections[router.db_for_write(Impression)]
    qn = connection.ops.quote_name

    def columns(fields) -> str:
        return ", ".join(qn(f.column) for f in fields)

    def typed(fields, suffix: str = "") -> str:
        # Typed, so that a NULL or a string is read as its column's type; text
        # for strings, whose assignment to a too-short column fails loudly
        # (a cast to varchar(n) would truncate).
        return ", ".join(
            f"%s::{'text' if isinstance(f, CharField) else f.cast_db_type(connection)}{suffix}"
            for f in fields
        )

    head, item = _written_fields(Impression), _written_fields(ImpressionItem)
    product_fields, category_fields = _read_fields()
    product, category = qn(Product._meta.db_table), qn(Category._meta.db_table)
    # set_config(..., true) lasts to the end of the transaction: the statement's
    # own when the flag is true (see _log_in_one_statement); ``ids`` is read
    # below, so it runs.
    return f"""WITH ids AS (SELECT %s::bigint[] AS ids,
 set_config('synchronous_commit',
  CASE WHEN %s THEN 'off' ELSE current_setting('synchronous_commit') END, true) AS commit_mode),
available AS (
 SELECT cardinality(ids.ids) = (SELECT count(*) FROM {product} p
  WHERE p.id = ANY(ids.ids) AND p.is_active AND p.stock > 0) AS ok FROM ids),
impression AS (
 INSERT INTO {qn(Impression._meta.db_table)} ({columns(head)})
 SELECT {typed(head)} FROM available WHERE ok OR %s),
items AS (
 INSERT INTO {qn(ImpressionItem._meta.db_table)} ({columns(item)})
 SELECT u.* FROM unnest({typed(item, "[]")}) AS u, available WHERE ok OR %s)
SELECT available.ok, {", ".join(f"p.{qn(f.column)}" for f in product_fields)},
 {", ".join(f"c.{qn(f.column)}" for f in category_fields)}
FROM ids, available, {product} p JOIN {category} c ON c.id = p.category_id
WHERE p.id = ANY(ids.ids || %s::bigint[])"""


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
    elif type in (EventType.ADD_TO_CART, EventType.PURCHASE) and rewardable:
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
    if impression is None and fresh:
        # Nothing to attribute and no key to collide with: one INSERT.
        return RecordedEvent(Event.objects.create(**fields), created=True)
    with transaction.atomic():
        if impression is not None:
            try:
                # The savepoint lets a lost race on the reward-once constraint,
                # or a click past the impression's cap, fall back to an
                # unattributed event instead of failing.
                with transaction.atomic():
                    reward = reward_for(type=type, line_value=line_value)
                    event = Event.objects.create(**fields, impression=impression, reward=reward)
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
                        revenue=F("revenue") + fields["value"],
                    ):
                        raise _ClickCapReached
                    return RecordedEvent(event, created=True)
            except _ClickCapReached:
                pass
            except IntegrityError:
                stored = Event.objects.filter(event_id=event_id).first()
                if stored is not None:
                    return _concurrent_repeat(stored, session_key=session_key)
        try:
            with transaction.atomic():
                return RecordedEvent(Event.objects.create(**fields), created=True)
        except IntegrityError:
            return _concurrent_repeat(Event.objects.get(event_id=event_id), session_key=session_key)


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
    """A concurrent request stored the same event_id first."""
    if stored.session_key != session_key:
        raise EventRejected("event_id was already used by another session.")
    return RecordedEvent(stored, created=False)


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
    from recommender.serving import load_error_text, load_servable

    weights = Checkpoint.objects.filter(pk=checkpoint.pk).values_list("weights", flat=True).get()
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


# ---------------------------------------------------------------------------
# What the web processes serve
# ---------------------------------------------------------------------------


def serving_heartbeat_record(
    *,
    process: str,
    policy_version: int | None,
    failed_version: int | None,
    error: str,
    loaded_at: datetime | None,
    now: datetime | None = None,
) -> ServingHeartbeat:
    """Record what one web process serves (recommender.serving calls it)."""
    now = now or timezone.now()
    with transaction.atomic():
        heartbeat, created = ServingHeartbeat.objects.update_or_create(
            process=process,
            defaults={
                "policy_version": policy_version,
                "failed_version": failed_version,
                "error": error[:300],
                "loaded_at": loaded_at,
                "seen_at": now,
            },
        )
        if created:
            # A process starting up clears out the rows of long-gone ones.
            ServingHeartbeat.objects.filter(seen_at__lt=now - timedelta(days=1)).delete()
    return heartbeat
