"""The one place where ORM rows become the RL core's plain arrays.

Everything the policy sees (catalog features, session observations) is built
here, so the core stays free of Django and the simulator can produce the same
shapes directly.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import numpy as np
from django.db import connections, router
from django.db.models import QuerySet
from django.utils import timezone

from recommender.db import insert_values, prepared_cursor, typed_placeholders, written_fields
from recommender.models import Event, EventType, Impression
from recommender.rl.types import EventType as RLEventType
from recommender.rl.types import ItemCatalog, Observation, Slot
from shop.models import Cart, CartItem, Order, OrderLine, Product

# Attribute layout: one-hot buckets of brand, colour and material, hashed with
# a stable hash so a product keeps its features across processes and restarts.
BRAND_BUCKETS = 16
COLOUR_BUCKETS = 12
MATERIAL_BUCKETS = 8
N_ATTRIBUTES = BRAND_BUCKETS + COLOUR_BUCKETS + MATERIAL_BUCKETS
# A new model's category table: room for the store's categories and as many
# again, at least this many rows. Categories created beyond it share the
# table's "unknown category" row until a new model is trained.
MIN_CATEGORY_TABLE = 64

MAX_RECENT_EVENTS = 20
MAX_HISTORY_ITEMS = 20
RECENT_HORIZON = timedelta(hours=24)

SLOT_BY_NAME = {"home": Slot.HOME, "cart": Slot.CART, "product": Slot.PRODUCT}
EVENT_CODE = {
    EventType.VIEW: RLEventType.VIEW,
    EventType.CLICK: RLEventType.CLICK,
    EventType.ADD_TO_CART: RLEventType.ADD_TO_CART,
    EventType.PURCHASE: RLEventType.PURCHASE,
}


def _bucket(value: str, buckets: int) -> int:
    return zlib.crc32(value.strip().lower().encode()) % buckets


def category_table_size(catalog: ItemCatalog) -> int:
    """Rows of a new model's category table for the store's ``catalog``: sized
    by how many categories there are, never by their primary keys (a model
    maps keys to rows, ``recommender.rl.encoding.CategoryVocabulary``)."""
    return max(MIN_CATEGORY_TABLE, 2 * len(np.unique(catalog.categories)))


def catalog_from_rows(rows: Iterable[tuple]) -> ItemCatalog:
    """Build an ItemCatalog from (id, category_id, price, brand, colour, material) rows."""
    rows = list(rows)
    n = len(rows)
    ids = np.empty(n, dtype=np.int64)
    categories = np.empty(n, dtype=np.int64)
    prices = np.empty(n, dtype=np.float32)
    attributes = np.zeros((n, N_ATTRIBUTES), dtype=np.float32)
    for row, (pk, category_id, price, brand, colour, material) in enumerate(rows):
        ids[row] = pk
        categories[row] = category_id
        prices[row] = float(price)
        if brand:
            attributes[row, _bucket(brand, BRAND_BUCKETS)] = 1.0
        if colour:
            attributes[row, BRAND_BUCKETS + _bucket(colour, COLOUR_BUCKETS)] = 1.0
        if material:
            attributes[
                row, BRAND_BUCKETS + COLOUR_BUCKETS + _bucket(material, MATERIAL_BUCKETS)
            ] = 1.0
    return ItemCatalog(ids=ids, categories=categories, prices=prices, attributes=attributes)


def catalog_rows(products: QuerySet[Product] | None = None) -> list[tuple]:
    products = products if products is not None else Product.objects.filter(is_active=True)
    return list(
        products.order_by("pk").values_list(
            "pk", "category_id", "price", "brand", "colour", "material"
        )
    )


def build_catalog() -> ItemCatalog:
    """Every active product as model features (stock does not matter here:
    eligibility is decided per request)."""
    return catalog_from_rows(catalog_rows())


def build_catalog_and_groups() -> tuple[ItemCatalog, np.ndarray]:
    """``build_catalog`` and, aligned with its rows, each product's
    near-duplicate group (``near_duplicate_groups``), from one read."""
    rows = list(
        Product.objects.filter(is_active=True)
        .order_by("pk")
        .values_list("pk", "category_id", "price", "brand", "colour", "material", "name")
    )
    groups = near_duplicate_groups(
        near_duplicate_key(category_id=category, brand=brand, name=name, colour=colour)
        for _, category, _, brand, colour, _, name in rows
    )
    return catalog_from_rows(row[:6] for row in rows), groups


@dataclass(frozen=True)
class SessionState:
    observation: Observation
    # The units in the cart the shop's badge shows, when asked for
    # (``session_state(badge_session_key=...)``), else None.
    cart_units: int | None = None


def session_observation(
    *,
    session_key: str,
    user_id: int | None,
    slot: str,
    product_id: int | None = None,
    now: datetime | None = None,
    view: Event | None = None,
) -> Observation:
    """The state of a shopper session at a recommendation request.

    One query (``_STATE_SQL``) whatever the length of the visit: its recent
    events, its cart, a signed-in shopper's purchases and its page depth.

    ``view``, an unsaved event of this session (the product page's view), is
    recorded first and is part of the state: on PostgreSQL in the same
    statement (one round trip), elsewhere just before it. Whether it was
    recorded shows on the event (``view._state.adding`` is False).
    """
    return session_state(
        session_key=session_key,
        user_id=user_id,
        slot=slot,
        product_id=product_id,
        now=now,
        view=view,
    ).observation


def session_state(
    *,
    session_key: str,
    user_id: int | None,
    slot: str,
    product_id: int | None = None,
    now: datetime | None = None,
    view: Event | None = None,
    badge_session_key: str | None = None,
) -> SessionState:
    """``session_observation``, and with ``badge_session_key`` the units the
    shop's cart badge shows (``shop.selectors.cart_item_count``: the signed-in
    shopper's cart, else the guest cart of that session key, the request's
    current one, which after a sign-in is not the visit's ``session_key``),
    counted by the same statement, so that a page with a carousel needs no
    count of its own (``shop.selectors.remember_cart_units``)."""
    now = now or timezone.now()
    recent: list[tuple] = []
    cart: list[tuple] = []
    history: list[tuple] = []
    depth = 0
    cart_units = None
    for kind, item, text, at, seq in _state_rows(
        session_key=session_key,
        user_id=user_id,
        since=now - RECENT_HORIZON,
        view=view,
        badge_session_key=badge_session_key,
    ):
        if kind == _RECENT:
            recent.append((at, seq, item, text))
        elif kind == _CART:
            cart.append((at, seq, item))
        elif kind == _HISTORY:
            history.append((at, seq, item))
        elif kind == _BADGE:
            cart_units = int(seq)
        elif text is not None:
            # Every impression logs the depth it was served at, so this request
            # is one deeper than the session's latest (no count that grows
            # with the visit).
            depth = int(text) + 1
    # The branches come back in no particular order: oldest first, as
    # Observation expects, ties broken by primary key. A view recorded in the
    # statement comes on top of the latest events it read: keep the newest.
    recent.sort(key=lambda row: row[:2])
    recent = recent[-MAX_RECENT_EVENTS:]
    cart.sort(key=lambda row: row[:2])
    history.sort(key=lambda row: row[:2])
    at_now = now.timestamp()  # the rows' times are seconds since the epoch
    observation = Observation(
        slot=SLOT_BY_NAME[slot],
        current_item=product_id,
        recent_items=tuple(item for _, _, item, _ in recent),
        recent_events=tuple(int(EVENT_CODE[t]) for _, _, _, t in recent),
        recent_ages=tuple(max(0.0, at_now - at) for at, _, _, _ in recent),
        cart_items=tuple(item for _, _, item in cart),
        history_items=tuple(item for _, _, item in history),
        page_depth=depth,
    )
    return SessionState(observation, cart_units)


# Row kinds of _STATE_SQL; _VIEWED is the view recorded by the statement,
# _BADGE the cart badge's units (_BADGE_SQL).
_RECENT, _CART, _HISTORY, _DEPTH, _VIEWED, _BADGE = range(6)

_STATE_SQL = """
SELECT 0, e.product_id, e.type, EPOCH(e.created_at), e.id FROM {event} e WHERE e.id IN (
    SELECT id FROM {event} WHERE session_key = %s AND created_at >= %s
    ORDER BY created_at DESC, id DESC LIMIT {max_recent})
UNION ALL
SELECT 1, ci.product_id, NULL, EPOCH(ci.added_at), ci.id FROM {cart_item} ci
    JOIN {cart} c ON c.id = ci.cart_id WHERE c.{cart_owner} = %s
UNION ALL
SELECT 2, ol.product_id, NULL, EPOCH(o.created_at), ol.id FROM {order_line} ol
    JOIN {order} o ON o.id = ol.order_id WHERE ol.id IN (
        SELECT l.id FROM {order_line} l JOIN {order} h ON h.id = l.order_id
        WHERE h.user_id = %s ORDER BY h.created_at DESC, l.id DESC LIMIT {max_history})
UNION ALL
SELECT 3, NULL, {depth}, NULL, 0 FROM {impression} i WHERE i.id IN (
    SELECT id FROM {impression} WHERE session_key = %s ORDER BY created_at DESC LIMIT 1)
"""
"""A session's state as (kind, product id, text, time, primary key) rows, one
UNION ALL of indexed reads: the MAX_RECENT_EVENTS latest events since the
horizon, the cart's lines (the user's cart when signed in, else the
session's), a signed-in shopper's MAX_HISTORY_ITEMS latest purchased lines
(none for a guest: ``user_id = NULL`` matches nothing) and the page depth
logged by the session's latest impression. LIMITs sit in ``IN`` subqueries
because SQLite allows none in the branches of a compound SELECT. Raw SQL
because building the same union with the ORM cost more than running it.
Times are seconds since the epoch (``_state_rows``): ``EPOCH(column)`` has
PostgreSQL compute them, because Django's timestamptz loader is pure Python
and reading the times as timestamps was a good part of the statement's
cost."""


_BADGE_SQL = """
UNION ALL
SELECT {badge}, NULL, NULL, NULL, COALESCE(SUM(bi.quantity), 0) FROM {cart_item} bi
    JOIN {cart} b ON b.id = bi.cart_id WHERE {owner}
"""
"""The units in the cart the shop's badge shows (``shop.selectors.cart_item_count``),
in the primary-key column: the signed-in shopper's cart, else the guest cart
of a session key."""


# With a view to record (PostgreSQL): the event is inserted by a
# data-modifying CTE, which the other branches cannot see (one snapshot), so
# the statement returns it as one more row. Its first parameter says whether
# to commit asynchronously, as an impression is logged
# (feedback.impressions._log_in_one_statement): a crash of the database
# server may lose the last fraction of a second of views, never an order, a
# cart or a reward, which commit synchronously.
_VIEW_SQL = """WITH mode AS (SELECT set_config('synchronous_commit',
  CASE WHEN %s THEN 'off' ELSE current_setting('synchronous_commit') END, true)),
viewed AS (INSERT INTO {event} ({columns}) SELECT {values} FROM mode
 RETURNING product_id, type, created_at, id)
{state}
UNION ALL
SELECT {viewed}, product_id, type, EPOCH(created_at), id FROM viewed"""


@cache
def _state_sql(vendor: str, by_user: bool, with_view: bool = False, badge: bool = False) -> str:
    if vendor == "postgresql":
        depth = "(i.state ->> 'page_depth')"
    else:
        depth = "json_extract(i.state, '$.page_depth')"
    state = _STATE_SQL.format(
        event=Event._meta.db_table,
        cart_item=CartItem._meta.db_table,
        cart=Cart._meta.db_table,
        cart_owner="user_id" if by_user else "session_key",
        order_line=OrderLine._meta.db_table,
        order=Order._meta.db_table,
        impression=Impression._meta.db_table,
        depth=depth,
        max_recent=MAX_RECENT_EVENTS,
        max_history=MAX_HISTORY_ITEMS,
    )
    if badge:
        state += _BADGE_SQL.format(
            badge=_BADGE,
            cart_item=CartItem._meta.db_table,
            cart=Cart._meta.db_table,
            owner="b.user_id = %s" if by_user else "b.session_key = %s AND b.user_id IS NULL",
        )
    if not with_view:
        return _epochs(state, vendor)
    connection = connections[router.db_for_write(Event)]
    fields = written_fields(Event)
    return _epochs(
        _VIEW_SQL.format(
            event=connection.ops.quote_name(Event._meta.db_table),
            columns=", ".join(connection.ops.quote_name(f.column) for f in fields),
            values=typed_placeholders(fields, connection),
            state=state,
            viewed=_VIEWED,
        ),
        vendor,
    )


_EPOCH = re.compile(r"EPOCH\(([\w.]+)\)")


def _epochs(sql: str, vendor: str) -> str:
    """``sql`` with each ``EPOCH(column)`` in the database's spelling: seconds
    since the epoch on PostgreSQL (``date_part`` is a float; ``extract`` a
    numeric), the column itself elsewhere (``_state_rows`` converts it)."""
    if vendor == "postgresql":
        return _EPOCH.sub(r"date_part('epoch', \1)", sql)
    return _EPOCH.sub(r"\1", sql)


def _state_rows(
    *,
    session_key: str,
    user_id: int | None,
    since: datetime,
    view: Event | None = None,
    badge_session_key: str | None = None,
) -> list[tuple]:
    # A view is written where the state is read: the primary.
    alias = router.db_for_read(Event) if view is None else router.db_for_write(Event)
    connection = connections[alias]
    params = (
        session_key,
        connection.ops.adapt_datetimefield_value(since),
        user_id or session_key,
        user_id,
        session_key,
    )
    badge = badge_session_key is not None
    if badge:
        params += (user_id or badge_session_key,)
    in_statement = view is not None and connection.vendor == "postgresql"
    if view is not None and not in_statement:
        view.save(force_insert=True, using=alias)
    if in_statement:
        asynchronous = not connection.in_atomic_block
        params = (asynchronous, *insert_values(view, connection), *params)
    with prepared_cursor(connection) as cursor:
        cursor.execute(_state_sql(connection.vendor, bool(user_id), in_statement, badge), params)
        rows = cursor.fetchall()
    if in_statement:
        (view.pk,) = (pk for kind, _, _, _, pk in rows if kind == _VIEWED)
        view._state.adding, view._state.db = False, alias
        rows = [(_RECENT if row[0] == _VIEWED else row[0], *row[1:]) for row in rows]
    if connection.vendor != "postgresql":
        # Raw rows skip the ORM's converters (SQLite returns naive UTC text).
        convert = connection.ops.convert_datetimefield_value
        rows = [
            (k, p, t, None if at is None else convert(at, None, connection).timestamp(), s)
            for k, p, t, at, s in rows
        ]
    return rows


_WORD = re.compile(r"[^\W\d_][\w'-]*")


def near_duplicate_key(*, category_id: int, brand: str, name: str, colour: str = "") -> tuple:
    """What makes two products near-duplicates in a carousel: the same category,
    brand and product noun (the name's last word, colour words left out), e.g.
    two tents of one brand, or one sweater in two colours."""
    colour_words = {w.casefold() for w in _WORD.findall(colour or "")}
    words = [w.casefold() for w in _WORD.findall(name or "")]
    nouns = [w for w in words if w not in colour_words] or words
    return (category_id, (brand or "").strip().casefold(), nouns[-1] if nouns else "")


def near_duplicate_groups(keys: Iterable[tuple]) -> np.ndarray:
    """One integer per key, equal for equal keys (``SlateBuilder``'s groups)."""
    numbers: dict[tuple, int] = {}
    return np.fromiter((numbers.setdefault(key, len(numbers)) for key in keys), dtype=np.int64)
