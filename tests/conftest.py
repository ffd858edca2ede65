"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import ProductFactory, UserFactory


@pytest.fixture
def api_client() -> APIClient:
    """An API client that skips CSRF checks (like Django's test Client)."""
    return APIClient()


@pytest.fixture
def csrf_api_client() -> APIClient:
    """An API client that is held to CSRF like a browser."""
    return APIClient(enforce_csrf_checks=True)


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def product(db):
    return ProductFactory(stock=10)


@pytest.fixture(autouse=True)
def _fresh_policy_server():
    """Each test starts with the web process's policy server as a new process
    has it: no loaded policy, candidates, popularity or sold-out sets of an
    earlier test's database."""
    from recommender.serving.server import policy_server

    policy_server.__init__()
    yield
    policy_server.__init__()


@pytest.fixture
def throttle_rates(settings):
    """Set request budgets for one test: ``throttle_rates(events="3/min")``.
    The throttles read their rates at each request, so this takes effect at once."""

    def set_rates(**rates: str) -> None:
        framework = dict(settings.REST_FRAMEWORK)
        framework["DEFAULT_THROTTLE_RATES"] = {**framework["DEFAULT_THROTTLE_RATES"], **rates}
        settings.REST_FRAMEWORK = framework

    return set_rates


@pytest.fixture(autouse=True)
def _throttles_ask_the_cache():
    """A test that broke the cache must not leave the throttles skipping it
    (they stop asking a failed cache for a while)."""
    from shop.throttling import _BudgetThrottle

    _BudgetThrottle._cache_down_until = 0.0
    yield
    _BudgetThrottle._cache_down_until = 0.0
