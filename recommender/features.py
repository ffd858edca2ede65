"""The one place where ORM rows become the RL core's plain arrays.

Everything the policy sees (catalog features, session observations) is built
here, so the core stays free of Django and the simulator can produce the same
shapes directly.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
from django.db.models import QuerySet
from django.utils import timezone

from recommender.models import Event, EventType, Impression
from recommender.rl.types import EventType as RLEventType
from recommender.rl.types import ItemCatalog, Observation, Slot
from shop.models import Cart, OrderLine, Product

# Attribute layout: one-hot buckets of brand, colour and material, hashed with
# a stable hash so a product keeps its features across processes and restarts.
BRAND_BUCKETS = 16
COLOUR_BUCKETS = 12
MATERIAL_BUCKETS = 8
N_ATTRIBUTES = BRAND_BUCKETS + COLOUR_BUCKETS + MATERIAL_BUCKETS
# Category embeddings are indexed by category primary key; keys beyond a
# model's table share its "unknown category" row until a larger model is trained.
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


def category_table_size(max_category_id: int) -> int:
    return max(MIN_CATEGORY_TABLE, max_category_id + 1)


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


def session_observation(
    *,
    session_key: str,
    user_id: int | None,
    slot: str,
    product_id: int | None = None,
    now: datetime | None = None,
) -> Observation:
    """The state of a shopper session at a recommendation request."""
    now = now or timezone.now()
    recent = list(
        Event.objects.filter(session_key=session_key, created_at__gte=now - RECENT_HORIZON)
        .order_by("-created_at")
        .values_list("product_id", "type", "created_at")[:MAX_RECENT_EVENTS]
    )
    recent.reverse()  # oldest first, as Observation expects
    cart_items: tuple[int, ...] = ()
    cart_filter = {"user_id": user_id} if user_id else {"session_key": session_key}
    cart = Cart.objects.filter(**cart_filter).only("pk").first()
    if cart is not None:
        cart_items = tuple(cart.items.values_list("product_id", flat=True))
    history: tuple[int, ...] = ()
    if user_id:
        history = tuple(
            OrderLine.objects.filter(order__user_id=user_id)
            .order_by("-order__created_at")
            .values_list("product_id", flat=True)[:MAX_HISTORY_ITEMS]
        )[::-1]
    depth = Impression.objects.filter(session_key=session_key).count()
    return Observation(
        slot=SLOT_BY_NAME[slot],
        current_item=product_id,
        recent_items=tuple(pid for pid, _, _ in recent),
        recent_events=tuple(int(EVENT_CODE[t]) for _, t, _ in recent),
        recent_ages=tuple(max(0.0, (now - at).total_seconds()) for _, _, at in recent),
        cart_items=cart_items,
        history_items=history,
        page_depth=depth,
    )


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


def purchase_reward(*, line_value: float, base: float, per_unit_price: float) -> float:
    """Price-aware purchase reward: a base per purchased line plus a share of
    the line's value (price x quantity), so dearer purchases are worth more."""
    return base + per_unit_price * line_value
