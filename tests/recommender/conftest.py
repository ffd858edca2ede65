"""Fixtures for the recommender's tests: isolation and a small catalog for the
Django-layer tests (events, recommendations API, serving, carousels, training),
the three kinds of visitor the dashboard treats differently, and the headless
browser."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from recommender.learning.training import transitions_build
from recommender.models import Impression
from recommender.simulation.traffic import (
    InProcessShopClient,
    ShopperDriver,
    shopper_seeds,
    store_simulator,
)
from tests.browser import browser  # noqa: F401  (the selenium driver fixture)
from tests.recommender.factories import StaffFactory, SuperuserFactory, UserFactory
from tests.recommender.support import LOOP_IDLE, LOOP_WINDOW, isolate, make_catalog


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


@pytest.fixture
def shopper_history(db, settings, monkeypatch):
    """Simulated shoppers through the store's full request stack over a
    60-product catalog, turned into transitions (their sessions are over):
    enough for the real trainer to train and publish a tiny policy."""
    settings.RECOMMENDER_ATTRIBUTION_WINDOW = 600
    settings.RECOMMENDER_SESSION_IDLE = 900
    settings.RECOMMENDER_TRAIN_STEPS = 5
    settings.RECOMMENDER_MIN_TRANSITIONS = 80
    # The off-policy gate and the personalisation check have tests of their own;
    # here any trained policy may go live.
    settings.RECOMMENDER_OPE_MARGIN = 1.0
    settings.RECOMMENDER_PERSONALISATION_MAX_JACCARD = 1.1
    rng = np.random.default_rng(11)
    monkeypatch.setattr("recommender.serving.recommendations._rng", lambda: rng)
    make_catalog(products=60, categories=6, stock=1000)
    simulator = store_simulator(seed=3)
    for number, seed in enumerate(shopper_seeds(3, 40)):
        ShopperDriver(InProcessShopClient()).run(
            simulator.new_shopper(int(seed)), session_number=number
        )
        if Impression.objects.count() * 8 >= 96:
            break
    result = transitions_build(now=timezone.now() + timedelta(hours=1))
    assert result.created >= 80
    return result


# The learning loop's tests (transitions, tasks, commands): short windows and runs.


@pytest.fixture
def loop_settings(settings):
    settings.RECOMMENDER_ATTRIBUTION_WINDOW = LOOP_WINDOW
    settings.RECOMMENDER_SESSION_IDLE = LOOP_IDLE
    settings.RECOMMENDER_TRAIN_STEPS = 5


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def products(db):
    """Four products in two categories."""
    return make_catalog(products=4, categories=2)


@pytest.fixture
def history(shopper_history):
    return shopper_history
