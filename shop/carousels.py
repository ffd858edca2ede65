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
<reason>"; empty for none): a provider may pass these
dataclasses or any objects (or dicts) with those attributes. `item.url` is
used as is, so a provider can put tracking data (an impression id) in it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Literal

from django.conf import settings
from django.http import HttpRequest
from django.utils.module_loading import import_string

from shop.models import Product

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

    @classmethod
    def from_product(
        cls, product: Product, *, url: str | None = None, reason: str = ""
    ) -> CarouselItem:
        return cls(
            product_id=product.pk,
            name=product.name,
            url=url or product.get_absolute_url(),
            price=product.price,
            image_url=product.image.url if product.image else "",
            brand=product.brand,
            reason=reason,
        )


@dataclass(frozen=True)
class Carousel:
    slot: str
    items: Sequence[CarouselItem] = field(default_factory=tuple)
    heading: str = ""

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
    return _provider(path)(request, slot=slot, product=product)
