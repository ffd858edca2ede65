"""Carousels that follow the shopper, on the real services (issue 14).

The demo's history is built with ``funnel`` shoppers; here the store meets
shoppers of another family, ``category``, over HTTP: first on the
popularity fallback, then a real Celery worker builds transitions, trains
and publishes a version, and the store must personalise for them.

Why ``category`` shoppers: their taste is a favourite category and interest
in the category just looked at, and nothing else (no premium loop, no pull
towards complementary categories). So "related to the page's product" has
one meaning a shopper of this family rewards: the same category. With
``brand`` shoppers the same-category share of a carousel would say little
about what they click (brand and colour cut across categories), and with
``funnel`` shoppers the right neighbours are partly the complementary
categories; either would make (b) a weaker test of following the shopper.

The store's catalog has 14 categories of equal size, so a carousel that
ignores the shopper holds about one item in fourteen of any given category.
"""

from __future__ import annotations

import io
import itertools
import json
import uuid
from collections import defaultdict

import pytest
from django.core.management import call_command
from django.db.models import Count, Q

from recommender.models import Impression
from recommender.serving.recommendations import replayable_serving
from recommender.simulation.traffic import HttpShopClient
from shop.demo import catalog_seed
from shop.models import Product
from tests.integration.conftest import train_and_publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAMILY = "category"
PRODUCTS = 140  # ten per category
SESSIONS = 200
TRAIN_STEPS = 800
K = 8
SEED = 1


def _ctr(policy_name: str) -> tuple[float, int]:
    stats = Impression.objects.filter(policy_name=policy_name).aggregate(
        n=Count("id"), clicked=Count("id", filter=Q(clicks__gt=0))
    )
    return stats["clicked"] / max(stats["n"], 1), stats["n"]


def _shoppers(base_url: str, seed: int) -> None:
    # The live server runs in this process: its exploration is seeded too, and
    # the worker's training (below), so runs differ only by the real seconds
    # between a shopper's requests (the state's recency weights).
    with replayable_serving(seed):
        call_command(
            "simulate_traffic",
            base_url=base_url,
            sessions=SESSIONS,
            seed=seed,
            family=FAMILY,
            verbosity=0,
            stdout=io.StringIO(),
        )


class Probe:
    """A fresh shopper session over HTTP that views products and asks for carousels."""

    def __init__(self, base_url: str) -> None:
        self.client = HttpShopClient(base_url)
        status, _ = self.client.get("/api/v1/categories/", {})
        assert status == 200

    def view(self, product_id: int) -> None:
        status, body = self.client.post(
            "/api/v1/events/",
            {"event_id": str(uuid.uuid4()), "type": "view", "product_id": product_id},
        )
        assert status < 300, (status, body)

    def carousel(self, slot: str, product_id: int | None = None) -> tuple[list[int], dict]:
        params: dict = {"slot": slot, "k": K}
        if product_id is not None:
            params["product_id"] = product_id
        status, body = self.client.get("/api/v1/recommendations/", params)
        assert status == 200, (status, body)
        return [item["product"]["id"] for item in body["items"]], body["policy"]


def _jaccard(a: list[int], b: list[int]) -> float:
    return len(set(a) & set(b)) / len(set(a) | set(b))


def test_carousels_follow_shoppers_of_a_family_the_demo_was_not_built_on(
    celery_workers, live_server, settings, throttle_rates
):
    celery_worker = celery_workers(RECOMMENDER_TRAIN_SEED=str(SEED)).queue
    settings.RECOMMENDER_RELOAD_SECONDS = 0
    throttle_rates(
        events_address="60000/min", recommendations_address="60000/min", cart_address="60000/min"
    )
    catalog_seed(seed=1, product_count=PRODUCTS)
    category_of = dict(Product.objects.values_list("id", "category_id"))
    by_category: dict[int, list[int]] = defaultdict(list)
    for product_id, category_id in sorted(category_of.items()):
        by_category[category_id].append(product_id)
    chance = 1 / len(by_category)

    # 1. Shoppers of the held-apart family meet the popularity fallback.
    _shoppers(live_server.url, seed=SEED)
    fallback_ctr, fallback_n = _ctr("popularity")
    assert fallback_n > 500

    # 2. The worker builds transitions, trains and publishes a version.
    _, active = train_and_publish(
        celery_worker, transitions=K * fallback_n * 0.9, steps=TRAIN_STEPS
    )

    # 3. (c) The same shoppers (same seeds) click more on the trained version.
    _shoppers(live_server.url, seed=SEED)
    learned_ctr, learned_n = _ctr("dqn")
    assert learned_n > 500

    # The probes below see the version's own ranking, not its exploration.
    settings.RECOMMENDER_EPSILON = 0.0

    # 4. (a) Shoppers who viewed three products of different categories.
    home: dict[int, list[int]] = {}
    for category_id, products in sorted(by_category.items()):
        probe = Probe(live_server.url)
        for product_id in products[:3]:
            probe.view(product_id)
        home[category_id], policy = probe.carousel("home")
        assert policy == {"name": "dqn", "version": active.version}
        assert len(home[category_id]) == K
    jaccards = [_jaccard(home[a], home[b]) for a, b in itertools.combinations(home, 2)]
    mean_jaccard = sum(jaccards) / len(jaccards)
    viewed_share = {c: sum(category_of[p] == c for p in items) / K for c, items in home.items()}

    # 5. (b) Product pages: how much of the carousel is the page's category.
    related_shares = []
    for category_id, products in sorted(by_category.items()):
        for product_id in products[3:5]:
            probe = Probe(live_server.url)
            probe.view(product_id)
            items, _ = probe.carousel("product", product_id)
            assert product_id not in items
            related_shares.append(
                sum(category_of[p] == category_id for p in items) / max(len(items), 1)
            )
    related_share = sum(related_shares) / len(related_shares)

    print(
        f"\n{FAMILY} shoppers, v{active.version}: CTR fallback {fallback_ctr:.3f} "
        f"({fallback_n}), trained {learned_ctr:.3f} ({learned_n}); home carousels' mean "
        f"pairwise Jaccard {mean_jaccard:.2f}, viewed category's share "
        f"{sum(viewed_share.values()) / len(viewed_share):.2f} "
        f"(min {min(viewed_share.values()):.2f}); product pages' same-category share "
        f"{related_share:.2f} (chance {chance:.2f})\n"
        f"viewed share by category {json.dumps(viewed_share)}"
    )
    # (a) Different shoppers, different carousels.
    assert mean_jaccard < 0.5, mean_jaccard
    # (b) Most of a product page's carousel is the page's category (chance: one
    # item in fourteen). What these shoppers reward: one who opened the page most
    # likely favours its category, and has just been drawn to it.
    assert related_share > 0.5, related_shares
    # (c) Clearly above: several standard errors at these impression counts.
    assert learned_ctr > fallback_ctr + 0.05, (learned_ctr, fallback_ctr)
    # (a) Each carousel follows what its shopper viewed: on average well above
    # the viewed category's chance share, and nearly every probe gets some of it
    # (a carousel blind to the shopper misses a given category about half the time).
    missed = sorted(c for c, share in viewed_share.items() if share == 0)
    mean_viewed = sum(viewed_share.values()) / len(viewed_share)
    assert mean_viewed > 3 * chance, viewed_share
    assert len(missed) <= len(viewed_share) // 4, viewed_share
