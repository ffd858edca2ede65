"""recommender.evaluation.diagnosis and ``manage.py diagnose_policy``: the probe's states
are the ones the store logs, its figures tell a state-blind policy from one
that follows the shopper, and the command reports both views, writing nothing."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from recommender.evaluation import diagnosis
from recommender.models import Event, Impression, SoldOutSet
from recommender.rl.slate import SlateBuilder
from recommender.rl.types import ItemCatalog, Observation
from recommender.serving.checkpoints import checkpoint_activate
from tests.recommender.support import Shopper, make_catalog, store_checkpoint, tiny_agent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]


def test_the_probe_states_are_the_ones_the_store_logs_for_such_a_shopper(catalog):
    client = Client()
    viewed = catalog[:3]
    for product in viewed:
        assert client.get(product.get_absolute_url()).status_code == 200
    assert client.get("/").status_code == 200
    logged = [
        Observation.from_dict(state)
        for state in Impression.objects.order_by("created_at").values_list("state", flat=True)
    ]

    on_page, home = diagnosis.probe_observations([p.pk for p in viewed])

    for probe, store in ((on_page, logged[2]), (home, logged[3])):
        assert probe.to_dict() | {"recent_ages": None} == store.to_dict() | {"recent_ages": None}
        # Oldest first, the newest view the youngest (the test's clock is real time).
        assert list(probe.recent_ages) == sorted(probe.recent_ages, reverse=True)


class _ByCatalog:
    """A fake policy over the store's catalog with a given item scorer."""

    def __init__(self, score):
        from recommender.serving import features

        self.catalog: ItemCatalog = features.build_catalog()
        self._score = score

    def q_values_batch(self, observations, candidate_ids):
        return np.stack([self._score(obs, np.asarray(candidate_ids)) for obs in observations])

    def act(self, obs, candidate_ids, k, rng, epsilon=None, groups=None):
        scores = self.q_values_batch([obs], candidate_ids)[0].astype(np.float32)
        return SlateBuilder().build(np.asarray(candidate_ids), scores, k, rng, groups=groups)


def _category_of() -> dict[int, int]:
    from shop.models import Product

    return dict(Product.objects.values_list("pk", "category_id"))


def test_the_probe_sees_a_state_blind_policy_as_one_carousel_for_all():
    make_catalog(products=24, categories=3)
    blind = _ByCatalog(lambda obs, ids: -ids.astype(np.float64))  # lowest ids first, always

    probe = diagnosis.category_probe(blind, k=4)

    assert probe.shoppers == 3
    assert probe.home_jaccard == 1.0
    assert probe.home_explained_share == 0.0
    assert probe.home_related_chance == pytest.approx(1 / 3)


def test_the_probe_sees_a_policy_that_follows_the_viewed_category():
    make_catalog(products=24, categories=3)
    category = _category_of()

    def viewed_in_category(obs, ids):
        seen = [category[int(i)] for i in obs.recent_items]
        return np.array([seen.count(category[int(i)]) for i in ids], dtype=np.float64)

    probe = diagnosis.category_probe(_ByCatalog(viewed_in_category), k=4)

    assert probe.home_jaccard == 0.0  # three categories, three disjoint carousels
    assert probe.home_related_share == probe.product_related_share == 1.0
    # Leaving out any viewed product lowers every shown item's score by one.
    assert probe.home_explained_share == 1.0
    assert probe.product_related_chance == pytest.approx(7 / 23)  # the page's product is out


def _store_with_history(catalog) -> None:
    checkpoint_activate(checkpoint=store_checkpoint(tiny_agent(steps=20), version=1))
    for n in range(3):
        shopper = Shopper()
        shopper.recommend()
        for product in catalog[n : n + 3]:
            shopper.event("view", product.pk)
            shopper.recommend("product", product_id=product.pk)


def test_the_command_reports_both_views_and_writes_nothing(catalog):
    _store_with_history(catalog)
    counts = (Impression.objects.count(), Event.objects.count(), SoldOutSet.objects.count())
    out = io.StringIO()

    call_command("diagnose_policy", states=50, k=4, stdout=out)

    text = out.getvalue()
    assert text.startswith("Policy v1 (per_item), top-4.")
    for row in ("all ", "home ", "product ", "all with context", "all without context"):
        assert f"\n{row}" in text, row
    assert "Category probe: 3 new shoppers" in text
    assert (Impression.objects.count(), Event.objects.count(), SoldOutSet.objects.count()) == counts

    out = io.StringIO()
    call_command("diagnose_policy", checkpoint=1, states=50, k=4, json=True, stdout=out)
    data = json.loads(out.getvalue())
    assert data["version"] == 1 and data["k"] == 4
    assert data["logged"]["all"]["n_states"] == Impression.objects.count()
    shares = data["logged"]["all"]["variance_share"]
    assert set(shares) >= {"item_bias", "interaction"}
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert set(data["logged"]["all"]["variance_share_cold"]) == set(shares)
    assert 0.0 <= data["probe"]["home_jaccard"] <= 1.0


def test_the_command_says_what_it_cannot_diagnose(catalog):
    with pytest.raises(CommandError, match="No active checkpoint"):
        call_command("diagnose_policy", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No checkpoint v7"):
        call_command("diagnose_policy", checkpoint=7, stdout=io.StringIO())
    store_checkpoint(None, version=2, weights=b"not a checkpoint")
    with pytest.raises(CommandError, match="v2 cannot be loaded"):
        call_command("diagnose_policy", checkpoint=2, stdout=io.StringIO())
