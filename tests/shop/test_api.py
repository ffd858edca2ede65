"""The HTTP API as DESIGN.md specifies it (shapes, statuses, CSRF, JSON errors)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from shop.models import CartItem, Order, Product
from tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db

CONTACT = {
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "address": "12 St James's Square, London",
}
PRODUCT_KEYS = {"id", "name", "slug", "price", "category", "in_stock", "url", "image"}


def csrf_headers(client: APIClient) -> dict[str, str]:
    """What a browser client does: read the csrftoken cookie any GET sets."""
    client.get("/api/v1/cart/")
    return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}


def add(client: APIClient, product: Product, quantity: object = 1, **headers):
    return client.post(
        "/api/v1/cart/items/",
        {"product_id": product.pk, "quantity": quantity},
        format="json",
        **headers,
    )


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    if code:
        assert body["code"] == code
    return body


# ---------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------
def test_categories(api_client):
    CategoryFactory(name="Audio", slug="audio")
    body = api_client.get("/api/v1/categories/").json()
    assert [{k: c[k] for k in ("name", "slug")} for c in body] == [
        {"name": "Audio", "slug": "audio"}
    ]
    assert set(body[0]) == {"id", "name", "slug"}


def test_product_list_is_paginated_per_contract(api_client):
    category = CategoryFactory(slug="knitwear")
    for i in range(30):
        ProductFactory(category=category, price=Decimal("49.50"), units_sold=i)
    body = api_client.get("/api/v1/products/").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 30 and len(body["results"]) == 24
    assert body["previous"] is None and body["next"].endswith("/api/v1/products/?page=2")
    first = body["results"][0]
    assert set(first) == PRODUCT_KEYS
    assert first["price"] == "49.50"
    assert first["in_stock"] is True
    assert first["category"]["slug"] == "knitwear"
    assert first["url"].startswith("http://testserver/p/")
    assert first["image"] is None  # factories draw no images
    assert len(api_client.get("/api/v1/products/?page=2").json()["results"]) == 6


def test_product_list_filters(api_client):
    audio = CategoryFactory(slug="audio")
    ProductFactory(category=audio, name="Sonance Wireless Headphones")
    ProductFactory(name="Ferro Skillet")
    ProductFactory(category=audio, name="Retired Radio", is_active=False)

    def names(query: str) -> list[str]:
        return [p["name"] for p in api_client.get(f"/api/v1/products/?{query}").json()["results"]]

    assert names("category=audio") == ["Sonance Wireless Headphones"]
    assert names(f"category={audio.pk}") == ["Sonance Wireless Headphones"]
    assert names("category=nope") == []
    # Not ids: a Unicode digit that int() refuses, a number beyond any id.
    assert names("category=%C2%B2") == []  # "²"
    assert names("category=" + "9" * 30) == []
    assert names("q=skillet") == ["Ferro Skillet"]
    assert names("q=skillet&category=audio") == []


def test_product_list_errors_are_json(api_client):
    assert_error(api_client.get("/api/v1/products/?page=9"), 404, "not_found")
    assert_error(api_client.get("/api/v1/products/?q=" + "x" * 101), 400, "invalid")


def test_product_detail(api_client):
    product = ProductFactory(price=Decimal("7.00"), stock=0)
    body = api_client.get(f"/api/v1/products/{product.pk}/").json()
    assert set(body) >= PRODUCT_KEYS | {"description", "brand", "colour", "material", "stock"}
    assert body["price"] == "7.00" and body["in_stock"] is False
    retired = ProductFactory(is_active=False)
    assert_error(api_client.get(f"/api/v1/products/{retired.pk}/"), 404, "not_found")


def test_every_get_sets_the_csrf_and_session_cookies():
    client = APIClient()
    response = client.get("/api/v1/categories/")
    assert "csrftoken" in response.cookies
    assert "sessionid" in response.cookies


# ---------------------------------------------------------------------------
# Cart
# ---------------------------------------------------------------------------
def test_cart_round_trip_with_a_csrf_token(csrf_api_client):
    lamp = ProductFactory(price=Decimal("40.00"))
    mug = ProductFactory(price=Decimal("9.50"))
    headers = csrf_headers(csrf_api_client)

    response = add(csrf_api_client, lamp, 2, **headers)
    assert response.status_code == 201
    add(csrf_api_client, mug, 1, **headers)
    body = csrf_api_client.patch(
        f"/api/v1/cart/items/{lamp.pk}/", {"quantity": 3}, format="json", **headers
    ).json()
    assert body["total"] == "129.50"
    assert [(i["product"]["id"], i["quantity"], i["line_total"]) for i in body["items"]] == [
        (lamp.pk, 3, "120.00"),
        (mug.pk, 1, "9.50"),
    ]
    assert set(body["items"][0]["product"]) == PRODUCT_KEYS

    body = csrf_api_client.delete(f"/api/v1/cart/items/{mug.pk}/", **headers).json()
    assert [i["product"]["id"] for i in body["items"]] == [lamp.pk]
    assert csrf_api_client.get("/api/v1/cart/").json()["count"] == 3


@pytest.mark.parametrize("method", ["post", "patch", "delete"])
def test_writes_without_a_csrf_token_are_refused_for_guests(csrf_api_client, product, method):
    csrf_api_client.get("/api/v1/cart/")
    if method == "post":
        response = add(csrf_api_client, product)
    else:
        response = getattr(csrf_api_client, method)(
            f"/api/v1/cart/items/{product.pk}/", {"quantity": 1}, format="json"
        )
    body = assert_error(response, 403)
    assert "CSRF" in body["detail"]
    assert not CartItem.objects.exists()


def test_checkout_without_a_csrf_token_is_refused_for_signed_in_shoppers(
    csrf_api_client, user, product
):
    csrf_api_client.force_login(user)
    assert_error(csrf_api_client.post("/api/v1/checkout/", CONTACT, format="json"), 403)


@pytest.mark.parametrize("quantity", [0, 51, -1, "abc", None, 2.5])
def test_bad_quantities_are_a_clear_400(api_client, product, quantity):
    body = assert_error(add(api_client, product, quantity), 400, "invalid")
    assert "between 1 and 50" in body["detail"]
    assert body["errors"]["quantity"]
    assert not CartItem.objects.exists()


def test_a_missing_quantity_is_a_clear_400(api_client, product):
    response = api_client.post("/api/v1/cart/items/", {"product_id": product.pk}, format="json")
    assert "quantity" in assert_error(response, 400)["detail"]


def test_more_than_fifty_in_one_line_is_a_400(api_client):
    product = ProductFactory(stock=100)
    add(api_client, product, 30)
    assert_error(add(api_client, product, 30), 400, "invalid_quantity")
    assert CartItem.objects.get().quantity == 30


def test_unknown_products_are_a_400(api_client):
    body = assert_error(
        api_client.post(
            "/api/v1/cart/items/", {"product_id": 999999, "quantity": 1}, format="json"
        ),
        400,
    )
    assert "product_id" in body["errors"]


def test_out_of_stock_is_a_409_naming_the_product(api_client):
    product = ProductFactory(stock=2, name="Kiln Teapot")
    body = assert_error(add(api_client, product, 3), 409, "out_of_stock")
    assert body["products"] == [
        {"id": product.pk, "name": "Kiln Teapot", "requested": 3, "available": 2}
    ]
    assert not CartItem.objects.exists()


def test_inactive_products_cannot_be_added(api_client):
    product = ProductFactory(is_active=False)
    assert_error(add(api_client, product), 409, "product_unavailable")


def test_updating_a_product_not_in_the_cart_is_a_404(api_client, product):
    assert_error(
        api_client.patch(f"/api/v1/cart/items/{product.pk}/", {"quantity": 1}, format="json"), 404
    )
    assert_error(
        api_client.patch("/api/v1/cart/items/999999/", {"quantity": 1}, format="json"), 404
    )


@pytest.mark.parametrize("quantity", [0, 51, "abc"])
def test_bad_update_quantities_are_a_400_and_change_nothing(api_client, product, quantity):
    add(api_client, product, 2)
    response = api_client.patch(
        f"/api/v1/cart/items/{product.pk}/", {"quantity": quantity}, format="json"
    )
    assert_error(response, 400)
    assert CartItem.objects.get().quantity == 2


# ---------------------------------------------------------------------------
# Checkout
# ---------------------------------------------------------------------------
def test_checkout_places_the_order(api_client):
    product = ProductFactory(price=Decimal("19.99"), stock=5)
    add(api_client, product, 2)
    response = api_client.post("/api/v1/checkout/", CONTACT, format="json")
    assert response.status_code == 201
    body = response.json()
    order = Order.objects.get()
    # Under the $75 of free delivery: the fee is charged and stored.
    assert body == {
        "order_id": order.pk,
        "subtotal": "39.98",
        "delivery_fee": "4.95",
        "total": "44.93",
        "items": [
            {
                "product_id": product.pk,
                "name": product.name,
                "unit_price": "19.99",
                "quantity": 2,
                "line_total": "39.98",
            }
        ],
    }
    product.refresh_from_db()
    assert (product.stock, product.units_sold) == (3, 2)
    assert api_client.get("/api/v1/cart/").json()["items"] == []


def test_a_retried_checkout_returns_the_same_order_with_200(api_client, product):
    add(api_client, product, 1)
    token = api_client.get("/api/v1/cart/").json()["checkout_token"]
    first = api_client.post(
        "/api/v1/checkout/", {**CONTACT, "checkout_token": token}, format="json"
    )
    retry = api_client.post(
        "/api/v1/checkout/", {**CONTACT, "checkout_token": token}, format="json"
    )
    assert (first.status_code, retry.status_code) == (201, 200)
    assert first.json() == retry.json()
    product.refresh_from_db()
    assert product.stock == 9


def test_checkout_of_an_empty_cart_is_a_400(api_client):
    assert_error(api_client.post("/api/v1/checkout/", CONTACT, format="json"), 400, "empty_cart")


def test_checkout_with_bad_contact_data_is_a_400(api_client, product):
    add(api_client, product)
    body = assert_error(
        api_client.post("/api/v1/checkout/", {**CONTACT, "email": "nope"}, format="json"), 400
    )
    assert "email" in body["errors"]
    assert not Order.objects.exists()


def test_checkout_when_stock_ran_out_is_a_409(api_client):
    product = ProductFactory(stock=3)
    add(api_client, product, 3)
    Product.objects.filter(pk=product.pk).update(stock=1)
    body = assert_error(
        api_client.post("/api/v1/checkout/", CONTACT, format="json"), 409, "out_of_stock"
    )
    assert body["products"][0]["available"] == 1
    assert not Order.objects.exists()


# ---------------------------------------------------------------------------
# Errors and schema
# ---------------------------------------------------------------------------
def test_unknown_api_paths_answer_json(api_client):
    assert_error(api_client.get("/api/v1/no-such-endpoint/"), 404, "not_found")


def test_a_crash_under_the_api_answers_json(monkeypatch):
    def crash():
        raise RuntimeError("database on fire")

    monkeypatch.setattr("shop.api.views.selectors.category_list", crash)
    response = APIClient(raise_request_exception=False).get("/api/v1/categories/")
    assert_error(response, 500, "server_error")


def test_the_openapi_schema_describes_the_contract(api_client):
    response = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert response.status_code == 200
    paths = yaml.safe_load(response.content)["paths"]
    expected = {
        "/api/v1/categories/": {"get"},
        "/api/v1/products/": {"get"},
        "/api/v1/products/{product_id}/": {"get"},
        "/api/v1/cart/": {"get"},
        "/api/v1/cart/items/": {"post"},
        "/api/v1/cart/items/{product_id}/": {"patch", "delete"},
        "/api/v1/checkout/": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    checkout = paths["/api/v1/checkout/"]["post"]["responses"]
    assert {"200", "201", "400", "403", "409"} <= set(checkout)


def test_the_shop_schema_is_valid_openapi_without_warnings(tmp_path):
    # Raises (SystemExit / SchemaValidationError) on an invalid schema or any warning.
    call_command(
        "spectacular",
        "--urlconf",
        "shop.api.urls",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
    )
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3")


def test_swagger_docs_are_served_without_a_cdn(api_client):
    page = api_client.get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()
