"""The store admin's screens for categories, products and orders."""

from __future__ import annotations

import pytest
from django.test import Client

from shop.models import Order
from tests.factories import OrderFactory, OrderLineFactory, ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    return client


def test_catalog_screens_render(admin_client):
    product = ProductFactory(name="Lumen Desk Lamp")
    for url in [
        "/admin/shop/category/",
        "/admin/shop/category/add/",
        "/admin/shop/product/?is_active__exact=1&q=lumen",
        f"/admin/shop/product/{product.pk}/change/",
    ]:
        response = admin_client.get(url)
        assert response.status_code == 200, url
    assert "Lumen Desk Lamp" in admin_client.get("/admin/shop/product/?q=lumen").content.decode()


def test_stock_and_availability_are_edited_from_the_product_list(admin_client):
    product = ProductFactory(stock=10)
    response = admin_client.post(
        "/admin/shop/product/",
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(product.pk),
            "form-0-stock": "3",
            "form-0-is_active": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    product.refresh_from_db()
    assert product.stock == 3 and product.is_active


def test_orders_are_found_by_number_or_email_and_their_lines_are_read_only(admin_client):
    order = OrderFactory(email="ada@example.com")
    OrderLineFactory(order=order, product_name="Ferro Skillet")
    OrderFactory(email="someone@example.com")

    for query in (str(order.pk), f"%23{order.pk}", "ada@"):
        page = admin_client.get(f"/admin/shop/order/?q={query}").content.decode()
        assert "1 result" in page, query
    for query in ("not-a-number", "%C2%B2", "%23" + "9" * 30):  # "²": a digit int() refuses
        assert admin_client.get(f"/admin/shop/order/?q={query}").status_code == 200, query

    change = admin_client.get(f"/admin/shop/order/{order.pk}/change/").content.decode()
    assert "Ferro Skillet" in change
    assert 'name="lines-0-quantity"' not in change  # shown, not editable
    assert admin_client.get("/admin/shop/order/add/").status_code == 403


def test_only_the_status_of_an_order_changes(admin_client):
    order = OrderFactory(email="ada@example.com")
    admin_client.post(
        f"/admin/shop/order/{order.pk}/change/",
        {
            "status": Order.Status.SHIPPED,
            "email": "changed@example.com",
            "lines-TOTAL_FORMS": "0",
            "lines-INITIAL_FORMS": "0",
        },
    )
    order.refresh_from_db()
    assert (order.status, order.email) == (Order.Status.SHIPPED, "ada@example.com")


def test_categories_get_a_slug_from_their_name(admin_client):
    form = admin_client.get("/admin/shop/category/add/").context["adminform"]
    assert [
        (p["field"].name, [d.name for d in p["dependencies"]]) for p in form.prepopulated_fields
    ] == [("slug", ["name"])]
