"""Helpers for the tests of the recommender's Django layer (events,
recommendations API, serving, carousels, training).

Those modules use the ``recommender_isolation`` and ``catalog`` fixtures of
tests/recommender/conftest.py, which wrap ``isolate`` and ``make_catalog``::

    pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import numpy as np
import torch
from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from recommender.conf import dqn_config
from recommender.learning.trainer_lock import ADVISORY_LOCK_KEY
from recommender.models import Checkpoint, TrainerLease
from recommender.rl.agents import agent_kind, make_agent
from recommender.rl.learner import Learner
from recommender.rl.types import Observation, Slot
from recommender.rl.types import Transition as RLTransition
from recommender.serving import features
from tests.factories import CategoryFactory, ProductFactory

RECOMMENDATIONS_URL = "/api/v1/recommendations/"
EVENTS_URL = "/api/v1/events/"
CART_ITEMS_URL = "/api/v1/cart/items/"
CHECKOUT_URL = "/api/v1/checkout/"

BRANDS = ("Northwind", "Fjallraven", "Patagonia", "Arcteryx", "Muji", "Uniqlo", "Barbour")
COLOURS = ("navy", "olive", "black", "white", "red", "grey", "sand")
MATERIALS = ("merino wool", "cotton", "linen", "nylon", "leather", "cashmere")


def isolate(settings, tmp_path) -> Iterator[None]:
    """Each test starts with an empty in-memory cache (throttles, the trainer
    lock), the recommender as the shop's carousel provider and a policy
    server that re-reads the database on every request (every test gets a
    fresh one: ``tests/conftest.py``)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "recommender-tests",
        }
    }
    cache.clear()
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.SHOP_CAROUSEL_PROVIDER = "recommender.serving.carousels.carousel_provider"
    settings.RECOMMENDER_RELOAD_SECONDS = 0
    settings.RECOMMENDER_ELIGIBILITY_TTL = 0
    yield


# The learning loop's tests: attribution window and session idle time, seconds.
LOOP_WINDOW = 600
LOOP_IDLE = 900


# ---------------------------------------------------------------------------
# Catalogs
# ---------------------------------------------------------------------------


def make_catalog(*, products: int = 12, categories: int = 3, stock: int = 10) -> list:
    """Products spread over categories, with varied prices and attributes."""
    cats = [CategoryFactory() for _ in range(categories)]
    return [
        ProductFactory(
            category=cats[i % categories],
            brand=BRANDS[i % len(BRANDS)],
            colour=COLOURS[(i * 3) % len(COLOURS)],
            material=MATERIALS[(i * 5) % len(MATERIALS)],
            price=Decimal(10 + (i * 7) % 90) + Decimal("0.50"),
            stock=stock,
        )
        for i in range(products)
    ]


# ---------------------------------------------------------------------------
# A shopper's browser against the API
# ---------------------------------------------------------------------------


class Shopper:
    """An anonymous shopper's API client held to CSRF like a browser: it reads
    the csrftoken cookie set by any GET and sends it back as X-CSRFToken."""

    def __init__(self, **headers: str) -> None:
        # headers: WSGI environ defaults for every request, e.g. REMOTE_ADDR.
        self.client = APIClient(enforce_csrf_checks=True, **headers)

    @property
    def session_key(self) -> str:
        return self.client.cookies["sessionid"].value

    def get(self, path: str, params: dict | None = None):
        return self.client.get(path, params or {})

    def post(self, path: str, payload: dict, *, csrf: bool = True):
        if "csrftoken" not in self.client.cookies:
            self.get("/api/v1/categories/")
        headers = {"HTTP_X_CSRFTOKEN": self.client.cookies["csrftoken"].value} if csrf else {}
        return self.client.post(path, payload, format="json", **headers)

    def recommend(self, slot: str = "home", **params) -> dict:
        response = self.get(RECOMMENDATIONS_URL, {"slot": slot, **params})
        assert response.status_code == 200, response.content
        return response.json()

    def event(self, type: str, product_id: int, impression_id=None, event_id=None):
        payload = {
            "event_id": str(event_id or uuid.uuid4()),
            "type": type,
            "product_id": product_id,
        }
        if impression_id is not None:
            payload["impression_id"] = str(impression_id)
        return self.post(EVENTS_URL, payload)

    def add_to_cart(self, product_id: int, quantity: int = 1):
        return self.post(CART_ITEMS_URL, {"product_id": product_id, "quantity": quantity})

    def remove_from_cart(self, product_id: int):
        if "csrftoken" not in self.client.cookies:
            self.get("/api/v1/categories/")
        return self.client.delete(
            f"{CART_ITEMS_URL}{product_id}/",
            HTTP_X_CSRFTOKEN=self.client.cookies["csrftoken"].value,
        )

    def checkout(self):
        return self.post(
            CHECKOUT_URL,
            {"email": "ada@example.com", "name": "Ada Lovelace", "address": "1 Demo Street"},
        )


def shown_ids(recommendation: dict) -> list[int]:
    return [item["product"]["id"] for item in recommendation["items"]]


# ---------------------------------------------------------------------------
# Agents and checkpoints
# ---------------------------------------------------------------------------


def tiny_agent(*, steps: int = 3, seed: int = 0, kind: str | None = None) -> Learner:
    """An agent of ``kind`` (default: RECOMMENDER_AGENT) over the store's current
    catalog, trained a few steps on made-up transitions (so its weights differ
    from a fresh one's)."""
    # As the trainer makes its first learner (recommender.learning.training.learner_load).
    catalog = features.build_catalog()
    torch.manual_seed(seed)  # the same weights every run: tests do not flake on an unlucky init
    n_categories = features.category_table_size(catalog)
    agent = make_agent(
        kind or settings.RECOMMENDER_AGENT, dqn_config(), catalog, n_categories=n_categories
    )
    if steps:
        rng = np.random.default_rng(seed)
        ids = [int(i) for i in catalog.ids]
        transitions = []
        for _ in range(64):
            a, b = rng.choice(ids, size=2, replace=False)
            state = Observation(
                slot=Slot.HOME, recent_items=(int(a),), recent_events=(1,), recent_ages=(5.0,)
            )
            following = Observation(slot=Slot.PRODUCT, current_item=int(b), page_depth=1)
            transitions.append(
                RLTransition(state, int(b), float(rng.random() < 0.3), following, False, 0.5)
            )
        replay = agent.make_replay(capacity=len(transitions))
        replay.add_many(transitions, catalog)
        agent.train_steps(replay, steps, rng)
    return agent


def loadable_weights() -> bytes:
    """Checkpoint bytes that load as a web process loads them (over a catalog
    made here if the store has none), for tests that activate versions."""
    from shop.models import Product

    if not Product.objects.exists():
        make_catalog()
    return tiny_agent(steps=0).save()


def store_checkpoint(
    agent: Learner | None, *, version: int, weights: bytes | None = None
) -> Checkpoint:
    """A candidate checkpoint holding ``agent`` (or raw ``weights``)."""
    return Checkpoint.objects.create(
        version=version,
        weights=weights if weights is not None else agent.save(),
        config={"agent": agent_kind(agent), **agent.config.to_dict()} if agent else {},
        checks={"passed": True},
    )


# ---------------------------------------------------------------------------
# The trainer lock, as another process sees it
# ---------------------------------------------------------------------------


@contextmanager
def another_trainer() -> Iterator[None]:
    """The trainer lock held by another worker for the block: on PostgreSQL an
    advisory lock on a second connection, elsewhere a live lease of another holder."""
    if connection.vendor == "postgresql":
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
                yield
                # Explicitly: the server ends a closed session a moment later.
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
        finally:
            other.close()
    else:
        TrainerLease.objects.update_or_create(
            pk=1,
            defaults={"holder": "elsewhere:1:x", "expires_at": timezone.now() + timedelta(hours=1)},
        )
        yield
        TrainerLease.objects.filter(pk=1).update(holder="", expires_at=None)


def trainer_lock_is_free() -> bool:
    """Whether another worker could take the trainer lock now."""
    if connection.vendor == "postgresql":
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
                free = bool(cursor.fetchone()[0])
                if free:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
                return free
        finally:
            other.close()
    lease = TrainerLease.objects.filter(pk=1).first()
    return lease is None or not lease.holder or lease.expires_at < timezone.now()
