"""Reads of the shop domain. Each selector returns data ready to render:
querysets come with their joins (select_related / prefetch_related) applied,
so templates and serializers never trigger a query per row."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.core.cache import cache
from django.db import connection
from django.db.models import Q, QuerySet, Sum
from django.http import HttpRequest

from shop.models import Cart, CartItem, Category, Order, Product

ProductSort = Literal["popular", "price_asc", "price_desc", "newest"]
PRODUCT_SORTS: dict[str, tuple[str, list[str]]] = {
    # key: (label shown to shoppers, ORDER BY); pk last keeps pagination stable.
    "popular": ("Most popular", ["-units_sold", "pk"]),
    "price_asc": ("Price: low to high", ["price", "pk"]),
    "price_desc": ("Price: high to low", ["-price", "pk"]),
    "newest": ("Newest", ["-created_at", "-pk"]),
}
DEFAULT_SORT: ProductSort = "popular"
SEARCH_MAX_LENGTH = 100

CATEGORY_MENU_CACHE_KEY = "shop:category-menu:v1"
CATEGORY_MENU_TIMEOUT = 60 * 10

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------
def category_list() -> QuerySet[Category]:
    return Category.objects.all()


@dataclass(frozen=True)
class MenuCategory:
    name: str
    slug: str
    url: str


def category_menu() -> list[MenuCategory]:
    """Categories for the header of every page, from the cache: the menu
    changes only when an admin edits categories (receivers.py clears it)."""

    def load() -> list[MenuCategory]:
        return [MenuCategory(c.name, c.slug, c.get_absolute_url()) for c in category_list()]

    try:
        return cache.get_or_set(CATEGORY_MENU_CACHE_KEY, load, CATEGORY_MENU_TIMEOUT)
    except Exception:
        # A cache outage (Redis down) must not take every page with it.
        logger.warning("Cache unavailable; reading the category menu from the database")
        return load()


def category_menu_invalidate() -> None:
    try:
        cache.delete(CATEGORY_MENU_CACHE_KEY)
    except Exception:
        # The entry expires on its own after CATEGORY_MENU_TIMEOUT.
        logger.warning("Cache unavailable; the category menu refreshes when it expires")


def product_list(
    *, category: Category | None = None, sort: str = DEFAULT_SORT
) -> QuerySet[Product]:
    """Active products, optionally of one category, in a known sort order
    (an unknown `sort` falls back to the default rather than failing)."""
    products = Product.objects.filter(is_active=True).select_related("category")
    if category is not None:
        products = products.filter(category=category)
    _, ordering = PRODUCT_SORTS.get(sort, PRODUCT_SORTS[DEFAULT_SORT])
    return products.order_by(*ordering)


def product_search(*, query: str, category: Category | None = None) -> QuerySet[Product]:
    """Active products matching a shopper's free-text query, best first.

    PostgreSQL: full-text search in websearch syntax ("quoted phrases",
    -exclusions, or), ranked with name and brand above description.
    Elsewhere (SQLite): every word, reduced to its singular (``singular``),
    must appear in the name, brand, category or description, ordered by
    popularity, so "tents" finds a "Tent" as PostgreSQL's stemmer does. The
    query is only ever passed as a bound parameter. An empty query matches
    nothing.
    """
    query = " ".join(query.split())[:SEARCH_MAX_LENGTH]
    products = product_list(category=category)
    if not query:
        return products.none()
    if connection.vendor == "postgresql":
        vector = (
            SearchVector("name", weight="A", config="english")
            + SearchVector("brand", weight="A", config="english")
            + SearchVector("category__name", weight="B", config="english")
            + SearchVector("colour", "material", weight="B", config="english")
            + SearchVector("description", weight="C", config="english")
        )
        search_query = SearchQuery(query, search_type="websearch", config="english")
        return (
            products.annotate(search=vector, rank=SearchRank(vector, search_query))
            .filter(search=search_query)
            .order_by("-rank", "-units_sold", "pk")
        )
    for word in map(singular, query.split()):
        products = products.filter(
            Q(name__icontains=word)
            | Q(brand__icontains=word)
            | Q(category__name__icontains=word)
            | Q(colour__icontains=word)
            | Q(material__icontains=word)
            | Q(description__icontains=word)
        )
    return products


def singular(word: str) -> str:
    """An English plural's singular by its ending, for the SQLite search
    fallback: "tents" → "tent", "boxes" → "box", "berries" → "berry". Words it
    does not know are left alone ("glass", "bus"); a substring match then
    still finds the plural from its singular."""
    lower = word.lower()
    if len(lower) > 4 and lower.endswith("ies"):
        return word[:-3] + "y"
    if len(lower) > 3 and lower.endswith("es") and lower[:-2].endswith(("s", "x", "z", "ch", "sh")):
        return word[:-2]
    if len(lower) > 3 and lower.endswith("s") and not lower.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def product_get(*, slug: str) -> Product:
    """An active product by slug; raises Product.DoesNotExist otherwise."""
    return Product.objects.select_related("category").get(slug=slug, is_active=True)


def product_popular(*, limit: int = 8, exclude_ids: tuple[int, ...] = ()) -> list[Product]:
    """Best sellers that can be bought right now."""
    return list(
        product_list(sort="popular").filter(stock__gt=0).exclude(pk__in=exclude_ids)[:limit]
    )


def product_newest(*, limit: int = 8) -> list[Product]:
    return list(product_list(sort="newest").filter(stock__gt=0)[:limit])


# ---------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryRule:
    """What delivery costs: ``fee`` per order, nothing from ``free_from`` of
    goods on (None: never free). The one place the fee is computed: carts,
    checkout and orders all ask it."""

    fee: Decimal
    free_from: Decimal | None

    def fee_for(self, subtotal: Decimal) -> Decimal:
        if subtotal <= 0 or (self.free_from is not None and subtotal >= self.free_from):
            return Decimal("0.00")
        return self.fee

    def short_of_free(self, subtotal: Decimal) -> Decimal | None:
        """How much more in goods would make delivery free (None: it is, or never will be)."""
        if self.free_from is None or self.fee_for(subtotal) == 0:
            return None
        return self.free_from - subtotal

    @property
    def promise(self) -> str:
        """The rule in one sentence, as the shop tells shoppers."""
        if self.fee <= 0:
            return "Free delivery on every order."
        if self.free_from is None:
            return f"Delivery ${self.fee:,.2f} per order."
        return (
            f"Free delivery on orders of ${self.free_from:,.2f} or more (${self.fee:,.2f} below)."
        )


def delivery_rule() -> DeliveryRule:
    return DeliveryRule(
        fee=settings.SHOP_DELIVERY_FEE.quantize(Decimal("0.01")),
        free_from=settings.SHOP_FREE_DELIVERY_FROM,
    )


# ---------------------------------------------------------------------------
# Carts
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CartSummary:
    cart: Cart | None
    items: list[CartItem] = field(default_factory=list)
    delivery: DeliveryRule = field(default_factory=delivery_rule)

    @property
    def subtotal(self) -> Decimal:
        """The goods, without delivery."""
        return sum((item.line_total for item in self.items), Decimal("0.00"))

    @property
    def delivery_fee(self) -> Decimal:
        return self.delivery.fee_for(self.subtotal)

    @property
    def total(self) -> Decimal:
        """What checking out would charge: goods plus delivery."""
        return self.subtotal + self.delivery_fee

    @property
    def short_of_free_delivery(self) -> Decimal | None:
        return self.delivery.short_of_free(self.subtotal)

    @property
    def count(self) -> int:
        """Units in the cart, as the header badge shows them."""
        return sum(item.quantity for item in self.items)

    @property
    def product_ids(self) -> list[int]:
        return [item.product_id for item in self.items]


def cart_detail(*, cart: Cart | None) -> CartSummary:
    if cart is None:
        return CartSummary(cart=None)
    items = list(cart.items.select_related("product", "product__category"))
    return CartSummary(cart=cart, items=items)


# Where a request keeps its cart units once something has counted them.
_CART_UNITS_ATTRIBUTE = "_shop_cart_units"


def remember_cart_units(request: HttpRequest, units: int) -> None:
    """Let the rest of ``request`` (its cart badge) use ``units``, counted as
    ``cart_item_count`` counts them by a query the request made anyway, after
    any change it made to the cart."""
    setattr(request, _CART_UNITS_ATTRIBUTE, int(units))


def cart_units(request: HttpRequest) -> int:
    """The units in the cart of ``request``'s shopper: as remembered
    (``remember_cart_units``), else counted (``cart_item_count``)."""
    units = getattr(request, _CART_UNITS_ATTRIBUTE, None)
    if units is None:
        units = cart_item_count(user=request.user, session_key=request.session.session_key)
    return units


def cart_item_count(*, user: AbstractBaseUser | None, session_key: str | None) -> int:
    """Units in the shopper's cart with one aggregate query and no cart creation."""
    if user is not None and user.is_authenticated:
        lines = CartItem.objects.filter(cart__user=user)
    elif session_key:
        lines = CartItem.objects.filter(cart__session_key=session_key, cart__user=None)
    else:
        return 0
    return lines.aggregate(units=Sum("quantity"))["units"] or 0


# ---------------------------------------------------------------------------
# Orders
# ---------------------------------------------------------------------------
def order_detail_queryset() -> QuerySet[Order]:
    return Order.objects.prefetch_related("lines__product")


def order_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Order]:
    return (
        order_detail_queryset()
        .filter(user=user)
        .annotate(units=Sum("lines__quantity"))
        .order_by("-created_at", "-pk")
    )


def order_get_for_user(*, user: AbstractBaseUser, pk: int) -> Order:
    """One of the user's own orders; raises Order.DoesNotExist for anyone else's."""
    return order_detail_queryset().get(user=user, pk=pk)


def checkout_initial(*, user: AbstractBaseUser | None) -> dict[str, str]:
    """Prefill for the checkout form: the account's e-mail and full name (else
    the name on the user's latest order; never the username, which is not a
    name to deliver to), and the address of the latest order."""
    if user is None or not user.is_authenticated:
        return {}
    last = Order.objects.filter(user=user).order_by("-created_at").values("name", "address").first()
    last = last or {"name": "", "address": ""}
    return {
        "email": user.email,
        "name": user.get_full_name() or last["name"],
        "address": last["address"],
    }
