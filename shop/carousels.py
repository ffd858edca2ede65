"""The carousel places of the storefront and the data they render.

Three pages each have one carousel place, named by slot:

    home     "Recommended for you"   templates/shop/home.html
    product  "You may also like"     templates/shop/product_detail.html
    cart     "Complete your order"   templates/shop/cart.html

Each view asks `carousel_for(request, slot=..., product=...)` and puts the
answer in its context as `carousel`; templates/recommender/_carousel.html
renders it and renders nothing for None. Who fills a carousel is a setting:
SHOP_CAROUSEL_PROVIDER names a callable with this function's signature that
returns a `Carousel` (or None to leave the place empty). Without the setting
every place stays empty, so the shop works with no recommender installed.

The template reads only `carousel.heading`, `carousel.slot` and, per item,
`url`, `name`, `price`, `image_url`, `brand` and `reason` (the name of the
product that item is recommended because of, shown as "Because you viewed
<reason>"; empty for none), and `card` if it has one: a provider may pass these
dataclasses or any objects (or dicts) with those attributes. `item.url` is
used as is, so a provider can put tracking data (an impression id) in it.

A provider that read the shopper's cart units on its way (the recommender's
state read does) may return them as `Carousel.cart_units`: the page's cart
badge then shows them instead of counting again (`shop.selectors.cart_units`).

`CarouselItem.from_product` fills `card`: the item's picture, brand, name and
price as HTML, rendered once per process for what they show
(`product_card`), so that a carousel renders only its links and reasons per
request. Without `card` the template renders those parts itself
(templates/recommender/_carousel_card.html, the same markup).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Literal

from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import get_script_prefix, get_urlconf
from django.utils.module_loading import import_string
from django.utils.translation import get_language

from shop.models import Product
from shop.selectors import remember_cart_units

Slot = Literal["home", "product", "cart"]

HEADINGS: dict[str, str] = {
    "home": "Recommended for you",
    "product": "You may also like",
    "cart": "Complete your order",
}


@dataclass(frozen=True)
class CarouselItem:
    product_id: int
    name: str
    url: str
    price: Decimal
    image_url: str = ""
    brand: str = ""
    reason: str = ""  # "Because you viewed <reason>"; empty: no reason shown
    card: str = ""  # picture, brand, name and price as safe HTML; empty: the template renders them

    @classmethod
    def from_product(
        cls, product: Product, *, url: str | None = None, query: str = "", reason: str = ""
    ) -> CarouselItem:
        """The item of ``product``, linking to ``url`` (default: the product's
        page, with ``query`` as its query string)."""
        card = product_card(product)
        return cls(
            product_id=product.pk,
            name=product.name,
            url=url or (f"{card.path}?{query}" if query else card.path),
            price=product.price,
            image_url=card.image_url,
            brand=product.brand,
            reason=reason,
            card=card.html,
        )


CARD_TEMPLATE = "recommender/_carousel_card.html"
CARDS_REMEMBERED = 4096


@dataclass(frozen=True)
class ProductCard:
    path: str  # the product's page
    image_url: str
    html: str  # CARD_TEMPLATE rendered (a SafeString)


_cards: dict[tuple, ProductCard] = {}


def product_card(product: Product) -> ProductCard:
    """The parts of a carousel item that depend on its product alone, built
    once per process for what they show: keyed by the values they are made
    of (not by ``updated_at``, which a queryset update() leaves alone), so a
    product whose name, price, picture, brand or slug changed gets a new card
    at once. The card shows no stock."""
    image = product.image.name or ""
    key = (
        product.pk,
        product.slug,
        product.name,
        product.brand,
        product.price,
        image,
        get_script_prefix(),
        get_urlconf(),
        get_language(),
    )
    card = _cards.get(key)
    if card is None:
        image_url = product.image.url if image else ""
        html = render_to_string(
            CARD_TEMPLATE,
            {
                "item": {
                    "name": product.name,
                    "brand": product.brand,
                    "price": product.price,
                    "image_url": image_url,
                }
            },
        )
        card = ProductCard(path=product.get_absolute_url(), image_url=image_url, html=html)
        if len(_cards) >= CARDS_REMEMBERED:
            _cards.clear()  # a catalog larger than this: start over rather than track use
        _cards[key] = card
    return card


def _forget_cards(**kwargs) -> None:
    # Templates, storage and URL settings change only in tests.
    _cards.clear()


setting_changed.connect(_forget_cards)


@dataclass(frozen=True)
class Carousel:
    slot: str
    items: Sequence[CarouselItem] = field(default_factory=tuple)
    heading: str = ""
    # The units in the shopper's cart as ``shop.selectors.cart_item_count``
    # counts them, read by the provider after any change this request made
    # to the cart; None: not read (the badge counts them itself).
    cart_units: int | None = None

    def __post_init__(self) -> None:
        if not self.heading:
            object.__setattr__(self, "heading", HEADINGS.get(self.slot, "Recommended for you"))


CarouselProvider = Callable[..., Carousel | None]


@cache
def _provider(path: str) -> CarouselProvider:
    return import_string(path)


def carousel_for(
    request: HttpRequest, *, slot: Slot, product: Product | None = None
) -> Carousel | None:
    """The carousel for one place on one page, or None to render nothing."""
    path = getattr(settings, "SHOP_CAROUSEL_PROVIDER", "")
    if not path:
        return None
    carousel = _provider(path)(request, slot=slot, product=product)
    if carousel is not None and carousel.cart_units is not None:
        remember_cart_units(request, carousel.cart_units)
    return carousel
