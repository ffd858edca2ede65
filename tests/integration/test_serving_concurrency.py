"""Shoppers served at once on the real PostgreSQL: every carousel answered is
logged with its exact propensities, and every click and add-to-cart earns its
reward on the impression that showed the item (recommender/feedback/events.py,
recommender/serving/server.py, recommender/serving/recommendations.py)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.core.cache import cache
from django.db import connection

from recommender.models import Event, EventType, Impression
from recommender.serving.server import policy_server
from tests.recommender.support import Shopper, make_catalog, store_checkpoint, tiny_agent

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SHOPPERS = 8
VISITS = 6
K = 4


@pytest.fixture
def store(real_services, settings, tmp_path):
    """A catalog with an active checkpoint; the candidates and the policy are
    re-read on every request, so the shoppers' threads also race the refreshes."""
    from recommender.serving.checkpoints import checkpoint_activate

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.SHOP_CAROUSEL_PROVIDER = "recommender.serving.carousels.carousel_provider"
    settings.RECOMMENDER_RELOAD_SECONDS = 0
    settings.RECOMMENDER_ELIGIBILITY_TTL = 0
    settings.RECOMMENDER_EPSILON = 0.3  # explore: propensities below 1 as well
    policy_server.__init__()
    catalog = make_catalog(products=30, stock=1000)
    checkpoint_activate(checkpoint=store_checkpoint(tiny_agent(), version=1))
    yield catalog
    policy_server.__init__()


def _visit(shopper: Shopper) -> list[dict]:
    """A shopper's visit: recommendations, a click on each, an add-to-cart of
    every other one, and the HTML home page with its carousel."""
    answers = []
    for n in range(VISITS):
        body = shopper.recommend("home", k=K)
        answers.append(body)
        shown = body["items"][n % K]["product"]["id"]
        assert shopper.event("click", shown, body["impression_id"]).status_code == 201
        if n % 2 == 0:
            assert shopper.add_to_cart(shown).status_code == 201
        assert shopper.client.get("/").status_code == 200
    return answers


def test_concurrent_shoppers_lose_no_impression_and_no_reward(store):
    shoppers = [Shopper() for _ in range(SHOPPERS)]
    for shopper in shoppers:
        shopper.get("/api/v1/categories/")  # a session and a CSRF cookie
    barrier = threading.Barrier(SHOPPERS)
    answers: list[list[dict] | Exception] = [[] for _ in shoppers]

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            answers[index] = _visit(shoppers[index])
        except Exception as error:  # reported below, with the others
            answers[index] = error
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(SHOPPERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    failures = [a for a in answers if isinstance(a, Exception)]
    assert not failures, failures

    # Every answer was logged as served: items, positions, exact propensities.
    served = [body for visit in answers for body in visit]
    assert len(served) == SHOPPERS * VISITS
    for body in served:
        impression = Impression.objects.get(pk=body["impression_id"])
        assert impression.policy_name == "dqn"
        logged = [
            (i.product_id, i.position, i.propensity) for i in impression.items.order_by("position")
        ]
        assert logged == [
            (item["product"]["id"], item["position"], item["propensity"]) for item in body["items"]
        ]
    # One impression per carousel shown: the API's and the home pages'.
    assert Impression.objects.count() == 2 * SHOPPERS * VISITS
    per_session = Counter(Impression.objects.values_list("session_key", flat=True))
    assert sorted(per_session.values()) == [2 * VISITS] * SHOPPERS
    # Each session's depths count its requests, whatever the interleaving.
    for shopper in shoppers:
        depths = sorted(
            Impression.objects.filter(session_key=shopper.session_key).values_list(
                "state__page_depth", flat=True
            )
        )
        assert depths == list(range(2 * VISITS))

    # Every click earned its reward on the impression it named; every
    # add-to-cart on the latest impression of its session that showed the item.
    clicks = Event.objects.filter(type=EventType.CLICK)
    assert clicks.count() == SHOPPERS * VISITS
    assert not clicks.filter(impression=None).exists()
    assert sorted(str(c.impression_id) for c in clicks) == sorted(
        body["impression_id"] for body in served
    )
    added = Event.objects.filter(type=EventType.ADD_TO_CART)
    assert added.count() == SHOPPERS * ((VISITS + 1) // 2)
    assert not added.filter(impression=None).exists()
    for event in added:
        assert event.impression.session_key == event.session_key
        assert event.impression.items.filter(product_id=event.product_id).exists()
    for impression in Impression.objects.filter(clicks__gt=0):
        assert impression.clicks == impression.events.filter(type=EventType.CLICK).count()
        assert impression.reward == pytest.approx(sum(e.reward for e in impression.events.all()))
