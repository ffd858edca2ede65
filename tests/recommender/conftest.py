"""Fixtures for the recommender's tests: isolation and a small catalog for the
Django-layer tests (events, recommendations API, serving, carousels, training),
the three kinds of visitor the dashboard treats differently, and the headless
browser."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests.browser import browser  # noqa: F401  (the selenium driver fixture)
from tests.recommender.factories import StaffFactory, SuperuserFactory, UserFactory
from tests.recommender.support import isolate, make_catalog


@pytest.fixture
def recommender_isolation(settings, tmp_path):
    """See ``support.isolate``; modules opt in with
    ``pytest.mark.usefixtures("recommender_isolation")``."""
    yield from isolate(settings, tmp_path)


@pytest.fixture
def catalog(db) -> list:
    """Twelve products in three categories, ten in stock each."""
    return make_catalog()


@pytest.fixture
def superuser(db):
    return SuperuserFactory(username="boss")


@pytest.fixture
def superuser_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def staff_client(db) -> Client:
    """Staff without any permission: may read the dashboard, press nothing."""
    client = Client()
    client.force_login(StaffFactory(username="viewer"))
    return client


@pytest.fixture
def operator_client(db) -> Client:
    """Staff allowed to operate the learning loop (change checkpoints)."""
    user = StaffFactory(username="operator")
    user.user_permissions.add(Permission.objects.get(codename="change_checkpoint"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def shopper_client(db) -> Client:
    client = Client()
    client.force_login(UserFactory(username="shopper"))
    return client
