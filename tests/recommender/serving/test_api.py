"""GET /api/v1/recommendations/: the contract of DESIGN.md, exclusions, and
the impression each answer logs."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from recommender.models import Impression, ImpressionItem, SoldOutSet
from recommender.rl.explain import reasons
from recommender.rl.types import Observation, Slot
from recommender.serving.checkpoints import checkpoint_activate
from recommender.serving.server import reason_scorer
from shop.models import Product
from tests.factories import CategoryFactory, ProductFactory
from tests.recommender.support import (
    RECOMMENDATIONS_URL,
    Shopper,
    shown_ids,
    store_checkpoint,
    tiny_agent,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]


PRODUCT_FIELDS = {"id", "name", "slug", "price", "category", "in_stock", "url", "image"}


def test_answer_follows_the_contract(catalog):
    response = Shopper().get(RECOMMENDATIONS_URL, {"slot": "home", "k": 5})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"impression_id", "slot", "policy", "items"}
    uuid.UUID(body["impression_id"])
    assert body["slot"] == "home"
    assert set(body["policy"]) == {"name", "version"}
    assert len(body["items"]) == 5
    assert [item["position"] for item in body["items"]] == list(range(5))
    for item in body["items"]:
        assert set(item) == {"product", "position", "propensity", "reason"}
        assert item["reason"] is None  # a new session: nothing to be a reason
        assert set(item["product"]) == PRODUCT_FIELDS
        assert set(item["product"]["category"]) == {"id", "name", "slug"}
        assert item["product"]["in_stock"] is True
        assert item["product"]["url"].startswith("http://testserver/")
        assert 0.0 < item["propensity"] <= 1.0
    assert len(set(shown_ids(body))) == 5
    product = Product.objects.get(pk=body["items"][0]["product"]["id"])
    assert body["items"][0]["product"]["price"] == f"{product.price:.2f}"


def test_default_k_is_eight(catalog):
    assert len(Shopper().recommend()["items"]) == 8


def test_default_k_follows_the_setting(catalog, settings):
    settings.RECOMMENDER_DEFAULT_K = 5

    assert len(Shopper().recommend()["items"]) == 5


def test_k_up_to_24_is_capped_by_the_eligible_items(catalog):
    body = Shopper().recommend(k=24)

    assert len(body["items"]) == len(catalog)


@pytest.mark.parametrize("k", ["0", "25", "x", "-1"])
def test_k_outside_1_to_24_is_a_400(catalog, k):
    response = Shopper().get(RECOMMENDATIONS_URL, {"slot": "home", "k": k})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "k" in response.json()["errors"]
    assert not Impression.objects.exists()


@pytest.mark.parametrize("slot", [None, "", "footer"])
def test_slot_is_required_and_must_be_known(catalog, slot):
    params = {} if slot is None else {"slot": slot}

    response = Shopper().get(RECOMMENDATIONS_URL, params)

    assert response.status_code == 400
    assert "slot" in response.json()["errors"]


def test_product_slot_requires_product_id(catalog):
    response = Shopper().get(RECOMMENDATIONS_URL, {"slot": "product"})

    assert response.status_code == 400
    assert "product_id" in response.json()["errors"]


def test_product_slot_for_a_missing_or_retired_product_is_a_404(catalog):
    retired = ProductFactory(is_active=False)
    shopper = Shopper()

    missing = shopper.get(RECOMMENDATIONS_URL, {"slot": "product", "product_id": 999_999})
    inactive = shopper.get(RECOMMENDATIONS_URL, {"slot": "product", "product_id": retired.pk})

    assert (missing.status_code, inactive.status_code) == (404, 404)
    assert missing["Content-Type"] == "application/json"
    assert missing.json()["code"] == "not_found"
    assert not Impression.objects.exists()


def test_ineligible_items_are_never_recommended(catalog):
    sold_out = ProductFactory(stock=0)
    retired = ProductFactory(is_active=False)
    shopper = Shopper()
    in_cart, on_page = catalog[0], catalog[1]
    assert shopper.add_to_cart(in_cart.pk).status_code == 201

    seen: set[int] = set()
    for slot, params in (
        ("home", {}),
        ("cart", {}),
        ("product", {"product_id": on_page.pk}),
    ):
        for _ in range(3):
            ids = shown_ids(shopper.recommend(slot, k=24, **params))
            assert sold_out.pk not in ids
            assert retired.pk not in ids
            assert in_cart.pk not in ids
            if slot == "product":
                assert on_page.pk not in ids
            seen.update(ids)
    # Everything else is a candidate (the product slot shows the cart-page items too).
    assert seen == {p.pk for p in catalog} - {in_cart.pk}


def test_a_product_that_sells_out_is_not_shown_even_while_eligibility_is_cached(catalog, settings):
    """The candidate list is cached per process for RECOMMENDER_ELIGIBILITY_TTL
    seconds, but a slate's items are checked before it is served: a product
    sold out in the meantime (here by another process) is never shown, and the
    impression logs the slate that was really served."""
    settings.RECOMMENDER_ELIGIBILITY_TTL = 3600
    shopper = Shopper()
    assert catalog[0].pk in shown_ids(shopper.recommend(k=24))

    Product.objects.filter(pk=catalog[0].pk).update(stock=0)  # no refresh of the cache

    body = shopper.recommend(k=24)
    assert sorted(shown_ids(body)) == sorted(p.pk for p in catalog[1:])
    logged = ImpressionItem.objects.filter(impression_id=body["impression_id"])
    assert sorted(logged.values_list("product_id", flat=True)) == sorted(shown_ids(body))
    # The reloaded list serves later requests without the product too.
    assert sorted(shown_ids(shopper.recommend(k=24))) == sorted(p.pk for p in catalog[1:])
    # The slate drawn from the stale list was never logged: one impression per answer.
    assert Impression.objects.count() == 3


def test_each_impression_records_the_sold_out_products_its_candidates_left_out(catalog, settings):
    """What training and off-policy evaluation need to know each request's real
    candidate set: one shared SoldOutSet row per distinct set."""
    settings.RECOMMENDER_ELIGIBILITY_TTL = 0  # every request reads the stock
    shopper = Shopper()
    first = Impression.objects.get(pk=shopper.recommend()["impression_id"])
    assert first.sold_out is None  # nothing sold out

    sold_out = [ProductFactory(stock=0), ProductFactory(stock=0)]
    ProductFactory(is_active=False, stock=0)  # retired: not a product of the catalog at all
    second = Impression.objects.get(pk=shopper.recommend()["impression_id"])
    third = Impression.objects.get(pk=shopper.recommend("cart")["impression_id"])
    assert second.sold_out.product_ids == sorted(p.pk for p in sold_out)
    assert third.sold_out_id == second.sold_out_id == SoldOutSet.objects.get().pk

    Product.objects.filter(pk=sold_out[0].pk).update(stock=4)  # restocked
    fourth = Impression.objects.get(pk=shopper.recommend()["impression_id"])
    assert fourth.sold_out.product_ids == [sold_out[1].pk]
    assert SoldOutSet.objects.count() == 2


def test_each_answer_is_logged_as_an_impression_with_its_state(catalog):
    shopper = Shopper()
    in_cart, on_page = catalog[0], catalog[1]
    shopper.add_to_cart(in_cart.pk)
    shopper.event("view", on_page.pk)
    shopper.recommend("home")

    body = shopper.recommend("product", product_id=on_page.pk, k=4)

    impression = Impression.objects.get(pk=body["impression_id"])
    assert impression.session_key == shopper.session_key
    assert impression.slot == "product"
    assert impression.product_id == on_page.pk
    assert (impression.policy_name, impression.policy_version) == ("popularity", None)
    items = list(ImpressionItem.objects.filter(impression=impression).order_by("position"))
    assert [i.product_id for i in items] == shown_ids(body)
    assert [i.position for i in items] == [0, 1, 2, 3]
    assert [i.propensity for i in items] == [item["propensity"] for item in body["items"]]
    assert all(0.0 < i.propensity <= 1.0 for i in items)
    state = impression.state
    assert state["slot"] == int(Slot.PRODUCT)
    assert state["current_item"] == on_page.pk
    assert state["cart_items"] == [in_cart.pk]
    assert on_page.pk in state["recent_items"]
    assert in_cart.pk in state["recent_items"]  # its add-to-cart event
    assert len(state["recent_ages"]) == len(state["recent_items"])
    assert state["page_depth"] == 1  # one recommendation request before this one


def test_without_a_checkpoint_the_popularity_fallback_says_so(catalog, settings):
    # No exploration: what is left is the fallback's own order.
    settings.RECOMMENDER_EPSILON = 0.0
    Product.objects.filter(pk=catalog[5].pk).update(units_sold=500)
    Product.objects.filter(pk=catalog[7].pk).update(units_sold=300)

    bodies = [Shopper().recommend(k=2) for _ in range(5)]

    assert all(body["policy"] == {"name": "popularity", "version": None} for body in bodies)
    # The best sellers lead the slate, in order.
    assert all(shown_ids(body) == [catalog[5].pk, catalog[7].pk] for body in bodies)
    assert Impression.objects.filter(policy_name="popularity", policy_version=None).count() == 5


def test_sets_the_csrf_cookie(catalog):
    response = Shopper().get(RECOMMENDATIONS_URL, {"slot": "home"})

    assert response.status_code == 200
    assert response.cookies["csrftoken"].value


def test_an_empty_store_answers_an_empty_slate(db):
    body = Shopper().recommend()

    assert body["items"] == []
    assert Impression.objects.filter(pk=body["impression_id"]).exists()


def test_the_schema_documents_the_endpoint(db):
    response = Shopper().get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200
    paths = response.json()["paths"]
    # Every status a client can get is documented, errors with the shared error body.
    recommendations = paths["/api/v1/recommendations/"]["get"]["responses"]
    events = paths["/api/v1/events/"]["post"]["responses"]
    assert set(recommendations) == {"200", "400", "404", "429"}
    assert set(events) == {"200", "201", "400", "403", "429"}
    for answer in (
        recommendations["400"],
        recommendations["404"],
        recommendations["429"],
        events["400"],
        events["429"],
    ):
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
    # Each item's reason: the session's product behind it, or null.
    components = response.json()["components"]["schemas"]
    item = components["RecommendedItem"]["properties"]
    assert "reason" in components["RecommendedItem"]["required"]
    reason = item["reason"]
    assert reason.get("nullable") is True or {"type": "null"} in reason.get("oneOf", [])
    ref = (reason.get("allOf") or reason.get("oneOf"))[0]["$ref"].rsplit("/", 1)[-1]
    assert set(components[ref]["properties"]) == {"product_id", "name"}


def test_asking_for_recommendations_creates_no_cart(catalog):
    from shop.models import Cart

    Shopper().recommend()
    Shopper().recommend("product", product_id=catalog[0].pk)

    assert not Cart.objects.exists()


# The session, its state, and the slate's check, products and impression in one
# statement (on PostgreSQL; elsewhere a read and a transaction of two INSERTs).
API_QUERIES = {"postgresql": 3, "sqlite": 7}


def test_a_recommendation_needs_a_fixed_number_of_queries_however_long_the_visit(
    catalog, settings, django_assert_max_num_queries
):
    settings.RECOMMENDER_RELOAD_SECONDS = settings.RECOMMENDER_ELIGIBILITY_TTL = 3600
    checkpoint_activate(checkpoint=store_checkpoint(tiny_agent(), version=1))
    shopper = Shopper()
    shopper.add_to_cart(catalog[0].pk)
    for _ in range(12):
        body = shopper.recommend(k=4)
        shopper.event("click", body["items"][0]["product"]["id"], body["impression_id"])

    with django_assert_max_num_queries(API_QUERIES[connection.vendor]):
        body = shopper.recommend(k=4)

    assert body["policy"] == {"name": "dqn", "version": 1}
    impression = Impression.objects.get(pk=body["impression_id"])
    assert impression.state["page_depth"] == 12
    assert [(i.product_id, i.propensity) for i in impression.items.order_by("position")] == [
        (item["product"]["id"], item["propensity"]) for item in body["items"]
    ]


# ---------------------------------------------------------------------------
# Reasons and near-duplicates
# ---------------------------------------------------------------------------


def _viewed(shopper: Shopper, products) -> None:
    for product in products:
        assert shopper.event("view", product.pk).status_code == 201


@pytest.mark.parametrize("kind", ["per_item", "slateq"])
def test_each_item_names_the_viewed_product_that_raised_it_most(catalog, settings, kind):
    settings.RECOMMENDER_EPSILON = 0.0
    settings.RECOMMENDER_REASON_MIN_CONTRIBUTION = 0.0
    agent = tiny_agent(kind=kind, steps=20)
    checkpoint_activate(checkpoint=store_checkpoint(agent, version=1))
    shopper = Shopper()
    _viewed(shopper, catalog[:3])

    body = shopper.recommend(k=6)

    impression = Impression.objects.get(pk=body["impression_id"])
    state = Observation.from_dict(impression.state)
    # What leaving each viewed product out of the session does to each item's Q,
    # beyond what it does to the candidates' (here the whole catalog).
    scorer = reason_scorer(agent, np.array(sorted(p.pk for p in catalog)))
    expected = reasons(scorer, state, shown_ids(body), min_contribution=0.0)
    names = {p.pk: p.name for p in catalog}
    got = [item["reason"] for item in body["items"]]
    assert got == [
        None
        if reason.item is None or reason.item == item
        else {"product_id": reason.item, "name": names[reason.item]}
        for item, reason in zip(shown_ids(body), expected, strict=True)
    ]
    assert any(got), "no item had a reason"
    assert {r["product_id"] for r in got if r} <= {p.pk for p in catalog[:3]}


def test_reasons_need_a_minimum_contribution_and_a_learned_policy(catalog, settings):
    settings.RECOMMENDER_REASON_MIN_CONTRIBUTION = 1e9
    shopper = Shopper()
    _viewed(shopper, catalog[:3])
    # The popularity fallback explains nothing.
    assert [item["reason"] for item in shopper.recommend(k=4)["items"]] == [None] * 4

    checkpoint_activate(checkpoint=store_checkpoint(tiny_agent(steps=20), version=1))
    body = shopper.recommend(k=4)
    assert body["policy"]["name"] == "dqn"
    assert [item["reason"] for item in body["items"]] == [None] * 4


def test_reasons_cost_no_extra_query(catalog, settings):
    settings.RECOMMENDER_REASON_MIN_CONTRIBUTION = 0.0
    settings.RECOMMENDER_EPSILON = 0.0  # the same greedy slate both times
    checkpoint_activate(checkpoint=store_checkpoint(tiny_agent(steps=20), version=1))
    shopper = Shopper()
    _viewed(shopper, catalog[:3])
    shopper.recommend(k=6)  # loads the policy and the candidates

    def queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as context:
            body = shopper.recommend(k=6)
        return len(context.captured_queries), sum(
            item["reason"] is not None for item in body["items"]
        )

    with_reasons, explained = queries()
    settings.RECOMMENDER_REASON_MIN_CONTRIBUTION = 1e9
    without_reasons, none = queries()
    assert explained > 0 and none == 0
    assert with_reasons == without_reasons


def _near_duplicate_store() -> tuple[list, list]:
    """Six colours of one tent (the best sellers) and six unrelated products."""
    camping, other = CategoryFactory(name="Camping"), CategoryFactory(name="Kitchen")
    tents = [
        ProductFactory(
            category=camping,
            name="Kestrel Outdoor Ultralight Tent",
            brand="Kestrel Outdoor",
            colour=colour,
            units_sold=100 - i,
        )
        for i, colour in enumerate(["Olive", "Sand", "Navy", "Rust", "Forest", "Slate"])
    ]
    others = [
        ProductFactory(category=other, name=f"Ferro {noun}", brand="Ferro", units_sold=10 - i)
        for i, noun in enumerate(["Skillet", "Wok", "Saucepan", "Stock Pot", "Dutch Oven", "Knife"])
    ]
    return tents, others


@pytest.mark.parametrize("learned", [False, True])
def test_a_slate_holds_one_product_of_each_near_duplicate_group(settings, learned):
    settings.RECOMMENDER_EPSILON = 0.0
    tents, others = _near_duplicate_store()
    if learned:
        checkpoint_activate(checkpoint=store_checkpoint(tiny_agent(), version=1))

    body = Shopper().recommend(k=8)

    shown = shown_ids(body)
    assert len(shown) == 7  # one tent and the six others
    assert len(set(shown) & {t.pk for t in tents}) == 1
    assert set(shown) >= {p.pk for p in others}
    if not learned:
        assert shown[0] == tents[0].pk  # the best-selling colour stands for its group


def test_propensities_are_over_the_products_that_remained_eligible(settings):
    settings.RECOMMENDER_EPSILON = 0.5
    tents, others = _near_duplicate_store()
    sold = {p.pk: p.units_sold for p in [*tents, *others]}
    group = {p.pk: "tent" if p in tents else p.pk for p in [*tents, *others]}
    for _ in range(20):
        body = Shopper().recommend(k=4)
        eligible = set(sold)
        for item in body["items"]:
            product = item["product"]["id"]
            assert product in eligible
            greedy = max(eligible, key=sold.get)  # the fallback ranks by units sold
            assert item["propensity"] == pytest.approx(
                0.5 / len(eligible) + 0.5 * (product == greedy)
            )
            eligible = {p for p in eligible if group[p] != group[product]}
