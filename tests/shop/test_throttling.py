"""Request budgets: cart writes and checkout are throttled per visit and per
address, in the API (JSON 429) and the HTML store (a 429 page); the budgets
fail open, and stop asking a failed cache for a while."""

from __future__ import annotations

from unittest import mock

import pytest
from django.test import Client
from rest_framework.test import APIClient

from shop import throttling
from shop.models import CartItem
from tests.factories import ProductFactory
from tests.services import redis_reachable, skip_or_fail

pytestmark = pytest.mark.django_db


@pytest.fixture
def stocked(db):
    return ProductFactory(stock=100)


def _api_client() -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.get("/api/v1/cart/")
    client.credentials(HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    return client


def test_api_cart_writes_are_throttled_per_visit_with_a_json_429(stocked, throttle_rates):
    throttle_rates(cart="3/min")
    client = _api_client()

    statuses = [
        client.post(
            "/api/v1/cart/items/", {"product_id": stocked.pk, "quantity": 1}, format="json"
        ).status_code
        for _ in range(4)
    ]
    removal = client.delete(f"/api/v1/cart/items/{stocked.pk}/")
    checkout = client.post(
        "/api/v1/checkout/",
        {"email": "a@example.com", "name": "A", "address": "1 Street"},
        format="json",
    )

    assert statuses == [201, 201, 201, 429]
    assert (removal.status_code, checkout.status_code) == (429, 429)
    assert checkout.json()["code"] == "throttled"
    assert int(checkout["Retry-After"]) > 0
    assert CartItem.objects.get().quantity == 3
    # Reading the cart is not a write: never throttled.
    assert client.get("/api/v1/cart/").status_code == 200


def test_html_cart_posts_over_budget_get_a_429_page_and_change_nothing(stocked, throttle_rates):
    throttle_rates(cart="2/min")
    client = Client()
    client.get("/")

    responses = [client.post(f"/cart/add/{stocked.pk}/", {"quantity": 1}) for _ in range(3)]

    assert [r.status_code for r in responses[:2]] == [302, 302]
    over = responses[2]
    assert over.status_code == 429
    assert "Slow down a little" in over.content.decode()
    assert int(over["Retry-After"]) > 0
    assert CartItem.objects.get().quantity == 2
    # Pages are still served; only form posts count.
    assert client.get("/cart/").status_code == 200
    assert client.get("/checkout/").status_code == 200
    assert client.post("/checkout/", {"email": "a@example.com"}).status_code == 429


def test_a_new_cookie_does_not_reset_the_address_budget(stocked, throttle_rates):
    throttle_rates(cart="100/min", cart_address="3/min")

    statuses = [
        _api_client()
        .post("/api/v1/cart/items/", {"product_id": stocked.pk, "quantity": 1}, format="json")
        .status_code
        for _ in range(5)
    ]

    assert statuses == [201, 201, 201, 429, 429]


def test_budgets_fail_open_and_stop_asking_a_failed_cache(stocked, throttle_rates, monkeypatch):
    throttle_rates(cart="1/min")
    failing = mock.Mock(side_effect=ConnectionError("redis is down"))
    monkeypatch.setattr(
        throttling._BudgetThrottle, "cache", mock.Mock(get=failing, incr=failing, add=failing)
    )
    client = _api_client()

    statuses = [
        client.post(
            "/api/v1/cart/items/", {"product_id": stocked.pk, "quantity": 1}, format="json"
        ).status_code
        for _ in range(3)
    ]

    assert statuses == [201, 201, 201]  # over the rate, but the cache cannot count
    assert failing.call_count == 1  # asked once, then left alone for a while

    later = throttling._BudgetThrottle._cache_down_until + 1
    monkeypatch.setattr(throttling.time, "monotonic", lambda: later)
    client.post("/api/v1/cart/items/", {"product_id": stocked.pk, "quantity": 1}, format="json")
    assert failing.call_count == 2  # and asked again after CACHE_RETRY_SECONDS


@pytest.fixture
def redis_cache(settings):
    """The production cache: Redis, under a key prefix of this test's own."""
    import uuid

    if not redis_reachable(settings.REDIS_URL):
        skip_or_fail("needs Redis (REDIS_URL=redis://...)")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": settings.REDIS_URL,
            "KEY_PREFIX": f"throttle-test-{uuid.uuid4().hex}",
        }
    }
    from django.core.cache import cache

    yield cache
    cache.clear()


def test_on_redis_a_window_opens_with_its_first_request_and_expires(
    stocked, throttle_rates, redis_cache
):
    throttle_rates(cart="2/min")
    client = _api_client()

    statuses = [
        client.post("/api/v1/cart/items/", {"product_id": stocked.pk, "quantity": 1}, format="json")
        for _ in range(3)
    ]

    assert [r.status_code for r in statuses] == [201, 201, 429]
    assert 0 < int(statuses[2]["Retry-After"]) <= 60
    # Each counter lives in Redis for one window, then makes room for the next.
    client_redis = redis_cache._cache.get_client(write=True)
    keys = client_redis.keys(f"*{redis_cache.key_prefix}*throttle_cart*")
    assert len(keys) == 2  # per visit and per address
    assert all(0 < client_redis.ttl(key) <= 60 for key in keys)


def test_on_redis_a_budget_costs_one_round_trip(throttle_rates, redis_cache, monkeypatch):
    """Every carousel counts against a budget of two throttles (visit and
    address): together they are one request to Redis, not one per command."""
    from django.contrib.sessions.backends.cache import SessionStore
    from django.test import RequestFactory
    from redis.connection import Connection

    throttle_rates(recommendations="2/min", recommendations_address="100/min")
    request = RequestFactory().get("/")
    request.session = SessionStore()
    request.session.create()
    sent = []
    send = Connection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(command)
        return send(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)

    allowed = [throttling.allows(request, throttling.RECOMMENDATIONS) for _ in range(3)]

    assert allowed == [True, True, False]
    assert len(sent) == 3  # one per request
