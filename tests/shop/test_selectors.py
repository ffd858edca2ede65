"""What shoppers see in listings, search, carts and order history."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from shop import selectors
from shop.models import Cart, Order, Product
from tests.factories import (
    CartFactory,
    CartItemFactory,
    CategoryFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL full-text search only"
)


def names(products) -> list[str]:
    return [product.name for product in products]


@pytest.fixture
def priced():
    category = CategoryFactory()
    now = timezone.now()
    specs = [("Mid", "20.00", 5, 2), ("Cheap", "5.00", 50, 1), ("Dear", "90.00", 1, 3)]
    for name, price, sold, days_old in specs:
        product = ProductFactory(
            category=category, name=name, price=Decimal(price), units_sold=sold
        )
        Product.objects.filter(pk=product.pk).update(created_at=now - timedelta(days=days_old))
    return category


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("popular", ["Cheap", "Mid", "Dear"]),
        ("price_asc", ["Cheap", "Mid", "Dear"]),
        ("price_desc", ["Dear", "Mid", "Cheap"]),
        ("newest", ["Cheap", "Mid", "Dear"]),
        ("no-such-sort", ["Cheap", "Mid", "Dear"]),
    ],
)
def test_product_list_sorts(priced, sort, expected):
    assert names(selectors.product_list(category=priced, sort=sort)) == expected


def test_product_list_shows_only_active_products_of_the_category(priced):
    ProductFactory(category=priced, name="Retired", is_active=False)
    ProductFactory(name="Elsewhere")
    assert sorted(names(selectors.product_list(category=priced))) == ["Cheap", "Dear", "Mid"]
    assert "Elsewhere" in names(selectors.product_list())


def test_product_get_hides_inactive_products():
    product = ProductFactory(is_active=False)
    with pytest.raises(Product.DoesNotExist):
        selectors.product_get(slug=product.slug)


@pytest.fixture
def searchable():
    knitwear = CategoryFactory(name="Knitwear", slug="knitwear")
    kitchen = CategoryFactory(name="Kitchen", slug="kitchen")
    ProductFactory(category=knitwear, name="Northwind Merino Crew Sweater", brand="Northwind",
                   description="Soft merino wool.")  # fmt: skip
    ProductFactory(category=knitwear, name="Fjell Cable-Knit Cardigan", brand="Fjell", material="lambswool",
                   description="A warm cardigan.")  # fmt: skip
    ProductFactory(category=kitchen, name="Ferro Cast-Iron Skillet", brand="Ferro", material="cast iron",
                   colour="Black", description="Sears like a dream.")  # fmt: skip
    ProductFactory(category=kitchen, name="Hidden Merino Pan", brand="Ferro", is_active=False)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("merino", ["Northwind Merino Crew Sweater"]),
        ("MERINO sweater", ["Northwind Merino Crew Sweater"]),
        ("fjell", ["Fjell Cable-Knit Cardigan"]),
        ("kitchen", ["Ferro Cast-Iron Skillet"]),
        ("skillet", ["Ferro Cast-Iron Skillet"]),
        ("merino skillet", []),
        # Plurals find the singular (PostgreSQL's stemmer; SQLite's fallback).
        ("sweaters", ["Northwind Merino Crew Sweater"]),
        ("skillets", ["Ferro Cast-Iron Skillet"]),
        ("<script>alert(1)</script>", []),
        ("'; DROP TABLE shop_product; --", []),
    ],
)
def test_product_search_finds_active_products_matching_every_word(searchable, query, expected):
    assert sorted(names(selectors.product_search(query=query))) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("tents", "tent"),
        ("Tents", "Tent"),
        ("boxes", "box"),
        ("brushes", "brush"),
        ("berries", "berry"),
        ("glass", "glass"),
        ("bus", "bus"),
        ("tent", "tent"),
        ("is", "is"),
    ],
)
def test_the_sqlite_fallback_searches_for_singulars(word, expected):
    assert selectors.singular(word) == expected


@pytest.mark.parametrize("query", ["", "   ", "\n"])
def test_an_empty_search_matches_nothing(searchable, query):
    assert list(selectors.product_search(query=query)) == []


def test_search_is_limited_to_a_category(searchable):
    kitchen = selectors.category_list().get(slug="kitchen")
    assert names(selectors.product_search(query="ferro", category=kitchen)) == [
        "Ferro Cast-Iron Skillet"
    ]
    assert names(selectors.product_search(query="merino", category=kitchen)) == []


@on_postgres
def test_postgres_search_ranks_name_matches_first_and_understands_websearch(searchable):
    ProductFactory(
        name="Plain Scarf", description="Pairs well with a merino sweater.", units_sold=1000
    )
    assert names(selectors.product_search(query="merino"))[0] == "Northwind Merino Crew Sweater"
    assert names(selectors.product_search(query="merino -scarf")) == [
        "Northwind Merino Crew Sweater"
    ]
    assert names(selectors.product_search(query="sweaters")) != []  # stemming


def test_popular_products_are_in_stock_best_sellers():
    ProductFactory(name="Hit", units_sold=100)
    ProductFactory(name="Sold out hit", units_sold=500, stock=0)
    ProductFactory(name="Niche", units_sold=1)
    assert names(selectors.product_popular(limit=2)) == ["Hit", "Niche"]


def test_cart_detail_totals_and_counts():
    cart = CartFactory()
    CartItemFactory(cart=cart, product=ProductFactory(price=Decimal("49.50")), quantity=2)
    CartItemFactory(cart=cart, product=ProductFactory(price=Decimal("0.99")), quantity=1)
    summary = selectors.cart_detail(cart=cart)
    assert summary.total == Decimal("99.99")
    assert summary.count == 3
    assert selectors.cart_detail(cart=None).total == Decimal("0.00")


def test_cart_item_count_reads_without_creating_carts(user, django_assert_num_queries):
    cart = CartItemFactory(quantity=3).cart
    with django_assert_num_queries(1):
        assert selectors.cart_item_count(user=None, session_key=cart.session_key) == 3
    assert selectors.cart_item_count(user=user, session_key=cart.session_key) == 0
    assert selectors.cart_item_count(user=None, session_key=None) == 0
    assert Cart.objects.count() == 1


def test_order_history_lists_only_the_users_orders_newest_first(user, django_assert_num_queries):
    older = OrderFactory(user=user)
    newer = OrderFactory(user=user)
    OrderFactory(user=UserFactory())
    OrderLineFactory(order=newer, quantity=2)
    OrderLineFactory(order=newer, quantity=1)
    Order.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(days=3))

    with django_assert_num_queries(3):  # orders, lines, products: never one per order
        orders = list(selectors.order_list_for_user(user=user))
        assert [line.product.name for order in orders for line in order.lines.all()]
    assert orders == [newer, older]
    assert orders[0].units == 3


def test_checkout_prefill_uses_the_account_and_the_last_address(user):
    assert selectors.checkout_initial(user=user)["address"] == ""
    OrderFactory(user=user, address="1 Old Road")
    OrderFactory(user=user, address="2 New Street")
    prefill = selectors.checkout_initial(user=user)
    assert prefill == {"email": user.email, "name": user.get_full_name(), "address": "2 New Street"}


def test_checkout_prefill_never_offers_the_username_as_a_name(db):
    shopper = UserFactory(username="kitesurfer88", first_name="", last_name="")
    assert selectors.checkout_initial(user=shopper)["name"] == ""
    OrderFactory(user=shopper, name="Grace Hopper")
    assert selectors.checkout_initial(user=shopper)["name"] == "Grace Hopper"


def test_category_menu_is_cached_and_refreshed_when_categories_change(django_assert_num_queries):
    CategoryFactory(name="Audio", slug="audio")
    assert [c.name for c in selectors.category_menu()] == ["Audio"]
    with django_assert_num_queries(0):
        selectors.category_menu()
    CategoryFactory(name="Bags", slug="bags")
    assert [c.name for c in selectors.category_menu()] == ["Audio", "Bags"]


def test_the_delivery_rule_charges_below_the_threshold_only():
    rule = selectors.DeliveryRule(fee=Decimal("4.95"), free_from=Decimal("75"))
    assert rule.fee_for(Decimal("0")) == 0  # an empty cart costs nothing
    assert rule.fee_for(Decimal("74.99")) == Decimal("4.95")
    assert rule.fee_for(Decimal("75.00")) == 0
    assert rule.short_of_free(Decimal("60")) == Decimal("15")
    assert rule.short_of_free(Decimal("80")) is None
    assert rule.promise == "Free delivery on orders of $75.00 or more ($4.95 below)."
    never_free = selectors.DeliveryRule(fee=Decimal("4.95"), free_from=None)
    assert never_free.fee_for(Decimal("1000")) == Decimal("4.95")
    assert never_free.short_of_free(Decimal("1000")) is None
    assert never_free.promise == "Delivery $4.95 per order."
    assert selectors.DeliveryRule(fee=Decimal("0"), free_from=None).promise == (
        "Free delivery on every order."
    )
