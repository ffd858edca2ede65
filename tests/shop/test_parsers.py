"""Hostile JSON bodies, schemathesis-style: every operation the OpenAPI schema
lists with a JSON request body gets deeply nested JSON and answers a JSON 400,
never a 500."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from shop.api.parsers import MAX_DEPTH, nesting_depth
from tests.factories import ProductFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("throttles_off")]

NESTED = {
    "arrays 5000 deep": "[" * 5000 + "]" * 5000,
    "objects 5000 deep": '{"a":' * 5000 + "1" + "}" * 5000,
    # Within what Python's parser manages, beyond what any field needs.
    "arrays 200 deep in a field": '{"product_id": ' + "[" * 200 + "1" + "]" * 200 + "}",
}


@pytest.fixture
def throttles_off(throttle_rates):
    throttle_rates(cart="10000/min", cart_address="10000/min", events="10000/min")


def _json_operations() -> list[tuple[str, str]]:
    client = APIClient()
    schema = client.get("/api/v1/schema/", {"format": "json"}).json()
    return [
        (path, method)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


def test_the_schema_lists_the_json_operations():
    operations = set(_json_operations())

    assert {
        ("/api/v1/cart/items/", "post"),
        ("/api/v1/cart/items/{product_id}/", "patch"),
        ("/api/v1/checkout/", "post"),
        ("/api/v1/events/", "post"),
    } <= operations


@pytest.mark.parametrize("body", NESTED.values(), ids=NESTED.keys())
def test_deeply_nested_json_is_a_400_on_every_json_endpoint(body):
    product = ProductFactory(stock=5)
    client = APIClient(raise_request_exception=False)
    client.get("/api/v1/cart/")
    token = client.cookies["csrftoken"].value

    for path, method in _json_operations():
        url = re.sub(r"\{[^}]+\}", str(product.pk), path)
        response = getattr(client, method)(
            url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token
        )

        assert response.status_code == 400, (method, path, response.status_code)
        assert response["Content-Type"].startswith("application/json")
        error = response.json()
        assert error["code"] in ("parse_error", "invalid"), error
        assert error["detail"]


@pytest.mark.parametrize(
    ("depth", "code"), [(MAX_DEPTH, "invalid"), (MAX_DEPTH + 1, "parse_error")]
)
def test_the_nesting_limit_is_exact(depth, code):
    product = ProductFactory(stock=5)
    client = APIClient(raise_request_exception=False)
    client.get("/api/v1/cart/")
    # The body object is one level; the list around the quantity makes the rest.
    quantity = "[" * (depth - 1) + "1" + "]" * (depth - 1)
    body = f'{{"product_id": {product.pk}, "quantity": {quantity}}}'

    response = client.post(
        "/api/v1/cart/items/",
        body,
        content_type="application/json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert nesting_depth({"a": [[1]], "b": 2}) == 3
