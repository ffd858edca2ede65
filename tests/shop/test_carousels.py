"""Carousel items built from products: their cards are rendered once per
process, and show a product's new name or price as soon as it changes."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from django.template.loader import render_to_string

from shop.carousels import Carousel, CarouselItem
from shop.models import Product
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def _render(items) -> str:
    return render_to_string("recommender/_carousel.html", {"carousel": Carousel("home", items)})


def test_a_pre_rendered_card_renders_as_the_template_would():
    products = [
        ProductFactory(name="Tern <Roll-Top> Backpack", brand="", price=Decimal("1234.5")),
        ProductFactory(name="Fell Flask", brand="Larkhill & Co", image="products/flask.jpg"),
    ]
    items = [
        CarouselItem.from_product(p, query="imp=42", reason="Fell & Tern" if i else "")
        for i, p in enumerate(products)
    ]

    html = _render(items)

    assert all(item.card for item in items)
    assert html == _render([dataclasses.replace(item, card="") for item in items])
    assert f'<a href="{products[0].get_absolute_url()}?imp=42">' in html
    assert "Tern &lt;Roll-Top&gt; Backpack" in html and "$1,234.50" in html
    assert 'src="/media/products/flask.jpg"' in html and "Larkhill &amp; Co" in html
    assert "Because you viewed Fell &amp; Tern" in html


def test_a_card_shows_a_changed_price_and_name_at_once():
    product = ProductFactory(name="Fell Flask", price=Decimal("20.00"))
    assert "$20.00" in CarouselItem.from_product(product).card

    # A queryset update leaves updated_at alone: the card must not rely on it.
    Product.objects.filter(pk=product.pk).update(name="Fell Flask 1L", price=Decimal("24.00"))
    html = _render([CarouselItem.from_product(Product.objects.get(pk=product.pk))])

    assert "Fell Flask 1L" in html and "$24.00" in html and "$20.00" not in html
