"""Events and reward attribution: POST /api/v1/events/ for views and clicks,
add-to-cart and purchase events recorded by the shop's own cart and checkout."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from recommender.feedback.events import EventRejected, event_record
from recommender.learning.training import transitions_build
from recommender.models import Event, EventType, Impression, Transition
from shop.models import CartItem, Product
from shop.services import cart_add_item, cart_get_or_create
from tests.recommender.support import (
    RECOMMENDATIONS_URL,
    Shopper,
    make_catalog,
    shown_ids,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]


def _first_shown(shopper: Shopper, **params) -> tuple[Impression, int]:
    rec = shopper.recommend(**params)
    return Impression.objects.get(pk=rec["impression_id"]), shown_ids(rec)[0]


# ---------------------------------------------------------------------------
# Clicks name their impression
# ---------------------------------------------------------------------------


def test_click_on_a_shown_item_earns_the_click_reward_on_its_impression(catalog, settings):
    settings.RECOMMENDER_REWARD_CLICK = 1.5
    shopper = Shopper()
    rec = shopper.recommend()
    product_id = shown_ids(rec)[2]

    response = shopper.event("click", product_id, rec["impression_id"])

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["type"] == "click"
    assert body["product_id"] == product_id
    assert body["impression_id"] == rec["impression_id"]
    assert body["reward"] == 1.5
    event = Event.objects.get(event_id=body["event_id"])
    assert event.source == Event.Source.CLIENT
    assert event.session_key == shopper.session_key
    impression = Impression.objects.get(pk=rec["impression_id"])
    assert (impression.clicks, impression.reward) == (1, 1.5)


def test_click_naming_another_sessions_impression_is_rejected(catalog):
    impression, product_id = _first_shown(Shopper())

    response = Shopper().event("click", product_id, impression.pk)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "impression" in response.json()["detail"]
    assert not Event.objects.filter(type=EventType.CLICK).exists()
    impression.refresh_from_db()
    assert impression.clicks == 0


def test_click_on_a_product_the_impression_did_not_show_is_rejected(catalog):
    shopper = Shopper()
    rec = shopper.recommend(k=2)
    hidden = next(p for p in catalog if p.pk not in shown_ids(rec))

    response = shopper.event("click", hidden.pk, rec["impression_id"])

    assert response.status_code == 400
    assert "did not show" in response.json()["detail"]
    assert not Event.objects.filter(type=EventType.CLICK).exists()


def test_click_naming_an_unknown_impression_is_rejected(catalog):
    response = Shopper().event("click", catalog[0].pk, uuid.uuid4())

    assert response.status_code == 400
    assert not Event.objects.exists()


def test_click_without_impression_id_is_rejected(catalog):
    response = Shopper().event("click", catalog[0].pk)

    assert response.status_code == 400
    body = response.json()
    assert "impression_id" in body["errors"]
    assert not Event.objects.exists()


@pytest.mark.parametrize("event_type", ["add_to_cart", "purchase", "refund"])
def test_clients_cannot_send_add_to_cart_or_purchase_events(catalog, event_type):
    shopper = Shopper()
    impression, product_id = _first_shown(shopper)

    response = shopper.event(event_type, product_id, impression.pk)

    assert response.status_code == 400
    assert "type" in response.json()["errors"]
    assert not Event.objects.exists()
    impression.refresh_from_db()
    assert impression.reward == 0


def test_event_for_an_unknown_product_is_a_400_not_a_500(catalog):
    response = Shopper().event("view", 999_999)

    assert response.status_code == 400
    assert "product_id" in response.json()["errors"]


# ---------------------------------------------------------------------------
# Idempotency on event_id
# ---------------------------------------------------------------------------


def test_repeating_an_event_id_returns_the_stored_event_once(catalog):
    shopper = Shopper()
    impression, product_id = _first_shown(shopper)
    event_id = uuid.uuid4()

    first = shopper.event("click", product_id, impression.pk, event_id=event_id)
    again = shopper.event("click", product_id, impression.pk, event_id=event_id)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Event.objects.filter(event_id=event_id).count() == 1
    assert Event.objects.count() == 1
    impression.refresh_from_db()
    assert impression.clicks == 1


def test_an_event_id_used_by_another_session_is_rejected(catalog):
    event_id = uuid.uuid4()
    assert Shopper().event("view", catalog[0].pk, event_id=event_id).status_code == 201

    response = Shopper().event("view", catalog[0].pk, event_id=event_id)

    assert response.status_code == 400
    assert "event_id" in response.json()["detail"]
    assert Event.objects.count() == 1


def test_an_event_id_reused_for_a_different_event_is_rejected(catalog):
    shopper = Shopper()
    event_id = uuid.uuid4()
    assert shopper.event("view", catalog[0].pk, event_id=event_id).status_code == 201

    response = shopper.event("view", catalog[1].pk, event_id=event_id)

    assert response.status_code == 400
    assert Event.objects.get().product_id == catalog[0].pk


def test_a_repeated_click_is_stored_but_earns_reward_once(catalog, settings):
    settings.RECOMMENDER_REWARD_CLICK = 1.0
    shopper = Shopper()
    impression, product_id = _first_shown(shopper)

    first = shopper.event("click", product_id, impression.pk)
    second = shopper.event("click", product_id, impression.pk)

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["reward"] == 1.0
    assert second.json()["reward"] == 0.0
    assert second.json()["impression_id"] is None
    assert Event.objects.filter(type=EventType.CLICK).count() == 2
    impression.refresh_from_db()
    assert (impression.clicks, impression.reward) == (1, 1.0)


# ---------------------------------------------------------------------------
# Add to cart, recorded by the shop's cart
# ---------------------------------------------------------------------------


def test_add_to_cart_after_a_carousel_showed_the_item_is_attributed(catalog, settings):
    settings.RECOMMENDER_REWARD_ADD_TO_CART = 2.5
    shopper = Shopper()
    impression, product_id = _first_shown(shopper)

    response = shopper.add_to_cart(product_id, quantity=2)

    assert response.status_code == 201, response.content
    event = Event.objects.get(type=EventType.ADD_TO_CART)
    assert event.impression_id == impression.pk
    assert event.product_id == product_id
    assert event.quantity == 2
    assert event.reward == 2.5
    assert event.source == Event.Source.SERVER
    assert event.session_key == shopper.session_key
    impression.refresh_from_db()
    assert (impression.add_to_carts, impression.reward) == (1, 2.5)


def test_add_to_cart_of_an_item_no_carousel_showed_earns_nothing(catalog):
    shopper = Shopper()
    rec = shopper.recommend(k=2)
    hidden = next(p for p in catalog if p.pk not in shown_ids(rec))

    assert shopper.add_to_cart(hidden.pk).status_code == 201

    event = Event.objects.get(type=EventType.ADD_TO_CART)
    assert (event.impression_id, event.reward) == (None, 0.0)


def test_add_to_cart_earns_once_per_item_even_after_other_rewards_on_the_impression(catalog):
    """Each (impression, item, type) earns once: a click on one item and an
    add-to-cart of another must not stop a third event from earning."""
    shopper = Shopper()
    rec = shopper.recommend()
    impression_id = rec["impression_id"]
    a, b = shown_ids(rec)[:2]

    assert shopper.event("click", b, impression_id).status_code == 201
    assert shopper.add_to_cart(a).status_code == 201
    assert shopper.add_to_cart(b).status_code == 201
    assert shopper.add_to_cart(b).status_code == 201  # more of b: no second reward

    rewarded = Event.objects.filter(type=EventType.ADD_TO_CART, impression_id=impression_id)
    assert sorted(rewarded.values_list("product_id", flat=True)) == sorted([a, b])
    assert Event.objects.filter(type=EventType.ADD_TO_CART, impression__isnull=True).count() == 1
    impression = Impression.objects.get(pk=impression_id)
    assert (impression.clicks, impression.add_to_carts) == (1, 2)


def test_add_to_cart_is_attributed_to_the_latest_impression_that_showed_it(catalog):
    shopper = Shopper()
    first = shopper.recommend(k=24)
    second = shopper.recommend(k=24)
    product_id = next(p for p in shown_ids(second) if p in shown_ids(first))

    shopper.add_to_cart(product_id)

    event = Event.objects.get(type=EventType.ADD_TO_CART)
    assert str(event.impression_id) == second["impression_id"]


def test_a_cart_add_refused_for_stock_records_no_event(catalog):
    shopper = Shopper()
    impression, product_id = _first_shown(shopper)
    stock = Product.objects.get(pk=product_id).stock

    response = shopper.add_to_cart(product_id, quantity=stock + 1)

    assert response.status_code == 409
    assert not Event.objects.filter(type=EventType.ADD_TO_CART).exists()
    impression.refresh_from_db()
    assert impression.add_to_carts == 0


def test_the_add_to_cart_event_commits_with_the_cart_change_or_not_at_all(catalog, monkeypatch):
    session_key = "a" * 32
    cart = cart_get_or_create(session_key=session_key)

    def broken(**kwargs):
        raise RuntimeError("event store down")

    monkeypatch.setattr("recommender.feedback.receivers.add_to_cart_record", broken)
    with pytest.raises(RuntimeError):
        cart_add_item(cart=cart, product=catalog[0], quantity=1, session_key=session_key)

    assert not CartItem.objects.filter(cart=cart).exists()


# ---------------------------------------------------------------------------
# Purchases, recorded by checkout
# ---------------------------------------------------------------------------


def test_checkout_records_price_aware_purchase_rewards_and_revenue(catalog, settings):
    settings.RECOMMENDER_REWARD_ADD_TO_CART = 3.0
    settings.RECOMMENDER_REWARD_PURCHASE = 5.0
    settings.RECOMMENDER_REWARD_PURCHASE_PER_UNIT_PRICE = 0.02
    shopper = Shopper()
    rec = shopper.recommend(k=2)
    shown = Product.objects.get(pk=shown_ids(rec)[0])
    other = next(p for p in catalog if p.pk not in shown_ids(rec))
    shopper.add_to_cart(shown.pk, quantity=2)
    shopper.add_to_cart(other.pk, quantity=1)

    response = shopper.checkout()

    assert response.status_code == 201, response.content
    line_value = shown.price * 2
    purchase = Event.objects.get(type=EventType.PURCHASE, product=shown)
    assert str(purchase.impression_id) == rec["impression_id"]
    assert purchase.quantity == 2
    assert purchase.value == line_value
    assert purchase.reward == pytest.approx(5.0 + 0.02 * float(line_value))
    unattributed = Event.objects.get(type=EventType.PURCHASE, product=other)
    assert (unattributed.impression_id, unattributed.reward) == (None, 0.0)
    assert unattributed.value == other.price
    impression = Impression.objects.get(pk=rec["impression_id"])
    assert impression.purchases == 1
    assert impression.revenue == line_value
    assert impression.reward == pytest.approx(3.0 + 5.0 + 0.02 * float(line_value))


def test_a_retried_checkout_records_no_second_purchase(catalog):
    shopper = Shopper()
    impression, product_id = _first_shown(shopper)
    shopper.add_to_cart(product_id)
    token = shopper.get("/api/v1/cart/").json()["checkout_token"]
    payload = {
        "email": "ada@example.com",
        "name": "Ada",
        "address": "1 Demo Street",
        "checkout_token": token,
    }

    assert shopper.post("/api/v1/checkout/", payload).status_code == 201
    assert shopper.post("/api/v1/checkout/", payload).status_code == 200

    assert Event.objects.filter(type=EventType.PURCHASE).count() == 1
    impression.refresh_from_db()
    assert impression.purchases == 1


# ---------------------------------------------------------------------------
# The attribution window
# ---------------------------------------------------------------------------


def test_events_after_the_attribution_window_are_kept_without_reward(catalog, settings):
    settings.RECOMMENDER_ATTRIBUTION_WINDOW = 60
    shopper = Shopper()
    impression, product_id = _first_shown(shopper)
    Impression.objects.filter(pk=impression.pk).update(
        created_at=timezone.now() - timedelta(seconds=120)
    )

    click = shopper.event("click", product_id, impression.pk)
    cart = shopper.add_to_cart(product_id)

    assert click.status_code == 201
    assert (click.json()["impression_id"], click.json()["reward"]) == (None, 0.0)
    assert cart.status_code == 201
    event = Event.objects.get(type=EventType.ADD_TO_CART)
    assert (event.impression_id, event.reward) == (None, 0.0)
    impression.refresh_from_db()
    assert (impression.clicks, impression.add_to_carts, impression.reward) == (0, 0, 0.0)


def test_the_attribution_window_is_measured_from_the_impression(catalog, settings):
    settings.RECOMMENDER_ATTRIBUTION_WINDOW = 600
    shopper = Shopper()
    impression, product_id = _first_shown(shopper)
    product = Product.objects.get(pk=product_id)

    inside = event_record(
        type=EventType.CLICK,
        product=product,
        session_key=shopper.session_key,
        impression_id=impression.pk,
        now=impression.created_at + timedelta(seconds=599),
    )
    late = event_record(
        type=EventType.ADD_TO_CART,
        product=product,
        session_key=shopper.session_key,
        now=impression.created_at + timedelta(seconds=601),
    )

    assert inside.event.impression_id == impression.pk
    assert inside.event.reward == settings.RECOMMENDER_REWARD_CLICK
    assert (late.event.impression_id, late.event.reward) == (None, 0.0)


def test_a_stale_click_still_has_to_name_an_impression_of_this_session(catalog, settings):
    settings.RECOMMENDER_ATTRIBUTION_WINDOW = 60
    impression, product_id = _first_shown(Shopper())

    with pytest.raises(EventRejected):
        event_record(
            type=EventType.CLICK,
            product=Product.objects.get(pk=product_id),
            session_key="someone-else",
            impression_id=impression.pk,
            now=impression.created_at + timedelta(hours=1),
        )


# ---------------------------------------------------------------------------
# Abuse: throttling and CSRF
# ---------------------------------------------------------------------------


def test_events_are_throttled_per_session_with_a_json_429(catalog, throttle_rates):
    throttle_rates(events="3/min")
    shopper = Shopper()

    statuses = [shopper.event("view", catalog[0].pk).status_code for _ in range(4)]

    assert statuses == [201, 201, 201, 429]
    response = shopper.event("view", catalog[0].pk)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0
    assert Event.objects.count() == 3
    # Another shopper has a budget of their own.
    assert Shopper().event("view", catalog[0].pk).status_code == 201


def test_anonymous_event_without_the_csrf_header_is_refused(catalog):
    shopper = Shopper()
    shopper.recommend()
    payload = {"event_id": str(uuid.uuid4()), "type": "view", "product_id": catalog[0].pk}

    response = shopper.post("/api/v1/events/", payload, csrf=False)

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert "CSRF" in response.json()["detail"]
    assert not Event.objects.exists()


def test_view_events_are_stored_without_reward(catalog):
    shopper = Shopper()

    response = shopper.event("view", catalog[0].pk)

    assert response.status_code == 201
    event = Event.objects.get()
    assert (event.type, event.reward, event.impression_id) == (EventType.VIEW, 0.0, None)
    assert event.value == Decimal("0")


def test_a_signed_in_shoppers_carousels_know_their_history_and_earn_purchases(catalog):
    from tests.factories import OrderFactory, OrderLineFactory, UserFactory

    user = UserFactory()
    OrderLineFactory(order=OrderFactory(user=user), product=catalog[5])
    shopper = Shopper()
    shopper.client.force_login(user)
    rec = shopper.recommend()
    impression = Impression.objects.get(pk=rec["impression_id"])
    product_id = shown_ids(rec)[0]

    assert shopper.add_to_cart(product_id).status_code == 201
    assert shopper.checkout().status_code == 201

    assert impression.user_id == user.pk
    assert impression.state["history_items"] == [catalog[5].pk]
    purchase = Event.objects.get(type=EventType.PURCHASE)
    assert (purchase.impression_id, purchase.user_id) == (impression.pk, user.pk)
    impression.refresh_from_db()
    assert (impression.add_to_carts, impression.purchases) == (1, 1)


# ---------------------------------------------------------------------------
# Abuse: farming rewards as an anonymous client. Each attack earns at most the
# bound the README's "Security and reliability" section documents.
# ---------------------------------------------------------------------------

CAROUSEL_LINK = re.compile(r'href="(/[^"?]*)\?imp=([0-9a-f-]{36})"')


def _earned(type: str | None = None) -> float:
    events = Event.objects.filter(type=type) if type else Event.objects.all()
    return events.aggregate(total=Sum("reward"))["total"] or 0.0


def test_clicking_through_product_pages_earns_at_most_the_click_budget(catalog, throttle_rates):
    """Each product page logs a new carousel, so following its first link page
    after page earned a click reward per page, with no limit."""
    throttle_rates(events="10/min")
    client = Client()
    page = client.get("/")

    for _ in range(30):
        path, impression_id = CAROUSEL_LINK.findall(page.content.decode())[0]
        page = client.get(f"{path}?imp={impression_id}")
        assert page.status_code == 200  # the page is served; only the click goes unrecorded

    assert Event.objects.filter(type=EventType.CLICK).count() == 10
    assert _earned() == 10.0
    assert Event.objects.filter(type=EventType.VIEW).count() == 30


def test_page_clicks_and_api_clicks_share_one_budget(catalog, throttle_rates):
    throttle_rates(events="6/min")
    shopper = Shopper()
    rec = shopper.recommend()
    for product_id in shown_ids(rec)[:2]:
        assert shopper.event("click", product_id, rec["impression_id"]).status_code == 201
    page = shopper.client.get("/")

    for _ in range(8):
        path, impression_id = CAROUSEL_LINK.findall(page.content.decode())[0]
        page = shopper.client.get(f"{path}?imp={impression_id}")

    assert Event.objects.filter(type=EventType.CLICK).count() == 6
    assert shopper.event("view", catalog[0].pk).status_code == 429


def test_recommendations_are_throttled_and_over_budget_log_no_impression(catalog, throttle_rates):
    throttle_rates(recommendations="5/min")
    shopper = Shopper()

    statuses = [shopper.get(RECOMMENDATIONS_URL, {"slot": "home"}).status_code for _ in range(7)]
    home = shopper.client.get("/")

    assert statuses == [200] * 5 + [429] * 2
    # The HTML carousels draw on the same budget: the page is served without one.
    assert home.status_code == 200
    assert "Recommended for you" not in home.content.decode()
    assert Impression.objects.count() == 5


def test_a_forged_x_forwarded_for_buys_no_fresh_address_budget(catalog, throttle_rates):
    throttle_rates(recommendations_address="5/min")
    statuses = []
    for n in range(8):
        # A new client each time (no cookie: no per-visit budget) that claims
        # a new address each time.
        shopper = Shopper(HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        response = shopper.get(RECOMMENDATIONS_URL, {"slot": "home"})
        statuses.append(response.status_code)

    assert statuses == [200] * 5 + [429] * 3
    assert Impression.objects.count() == 5


def test_behind_one_proxy_the_address_is_the_one_the_proxy_saw(catalog, throttle_rates, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    throttle_rates(recommendations_address="3/min")

    def fetch(forwarded_for: str) -> int:
        shopper = Shopper(HTTP_X_FORWARDED_FOR=forwarded_for)
        return shopper.get(RECOMMENDATIONS_URL, {"slot": "home"}).status_code

    # The proxy appends the address it saw; what the client sent comes before it.
    forged = [fetch(f"10.0.0.{n}, 203.0.113.7") for n in range(4)]
    other_client = fetch("198.51.100.9")

    assert forged == [200, 200, 200, 429]
    assert other_client == 200


def test_dropping_the_cookie_earns_at_most_the_address_budget(catalog, throttle_rates, settings):
    """A new session per carousel, clicking every item it showed."""
    throttle_rates(recommendations_address="6/min", events_address="1000/min")
    settings.RECOMMENDER_REWARD_CLICK = 1.0
    settings.RECOMMENDER_REWARDED_CLICKS_PER_IMPRESSION = 2

    for _ in range(20):
        shopper = Shopper()
        response = shopper.get(RECOMMENDATIONS_URL, {"slot": "home"})
        if response.status_code != 200:
            continue
        rec = response.json()
        for product_id in shown_ids(rec):
            shopper.event("click", product_id, rec["impression_id"])

    # Bound: recommendations per address x rewarded clicks per impression x click reward.
    assert Impression.objects.count() == 6
    assert _earned() == 6 * 2 * 1.0


def test_an_impression_rewards_at_most_the_capped_number_of_clicks(catalog, settings):
    settings.RECOMMENDER_REWARDED_CLICKS_PER_IMPRESSION = 2
    shopper = Shopper()
    rec = shopper.recommend()

    bodies = [shopper.event("click", p, rec["impression_id"]).json() for p in shown_ids(rec)]

    assert [body["reward"] for body in bodies] == [1.0, 1.0] + [0.0] * 6
    assert Event.objects.filter(type=EventType.CLICK).count() == 8  # all kept, two rewarded
    impression = Impression.objects.get(pk=rec["impression_id"])
    assert (impression.clicks, impression.reward) == (2, 2.0)


def test_adding_and_removing_an_item_over_and_over_earns_nothing(db, settings):
    """The attack earned the add-to-cart reward on every cycle, with nothing bought."""
    settings.RECOMMENDER_REWARD_ADD_TO_CART = 3.0
    catalog = make_catalog(products=6)  # fewer than k: every item outside the cart is shown
    product_id = catalog[0].pk
    shopper = Shopper()

    for _ in range(5):
        assert product_id in shown_ids(shopper.recommend())
        assert shopper.add_to_cart(product_id).status_code == 201
        assert _earned(EventType.ADD_TO_CART) == 3.0  # in the cart: rewarded once
        assert shopper.remove_from_cart(product_id).status_code == 200
        assert _earned(EventType.ADD_TO_CART) == 0.0  # removed before purchase: taken back

    assert Event.objects.filter(type=EventType.ADD_TO_CART).count() == 5
    assert sum(Impression.objects.values_list("reward", flat=True)) == 0.0
    assert sum(Impression.objects.values_list("add_to_carts", flat=True)) == 0


def test_adding_more_units_earns_the_add_to_cart_reward_once(db, settings):
    """Every earlier carousel that showed the item used to pay out in turn."""
    settings.RECOMMENDER_REWARD_ADD_TO_CART = 3.0
    catalog = make_catalog(products=6)
    shopper = Shopper()
    for _ in range(4):
        shopper.recommend()

    for _ in range(4):
        assert shopper.add_to_cart(catalog[0].pk).status_code == 201

    assert _earned(EventType.ADD_TO_CART) == 3.0
    assert Event.objects.filter(type=EventType.ADD_TO_CART, reward__gt=0).count() == 1


def test_an_item_bought_keeps_its_add_to_cart_reward(db, settings):
    settings.RECOMMENDER_REWARD_ADD_TO_CART = 3.0
    catalog = make_catalog(products=6)
    shopper = Shopper()
    shopper.recommend()

    assert shopper.add_to_cart(catalog[0].pk).status_code == 201
    assert shopper.checkout().status_code == 201

    assert _earned(EventType.ADD_TO_CART) == 3.0
    assert _earned(EventType.PURCHASE) > 0


def test_removing_an_item_takes_back_its_reward_from_a_built_transition(db, settings):
    settings.RECOMMENDER_REWARD_ADD_TO_CART = 3.0
    settings.RECOMMENDER_REWARD_CLICK = 1.0
    make_catalog(products=6)
    shopper = Shopper()
    rec = shopper.recommend()
    product_id = shown_ids(rec)[0]
    shopper.event("click", product_id, rec["impression_id"])
    shopper.add_to_cart(product_id)
    transitions_build(now=timezone.now() + timedelta(days=1))
    transition = Transition.objects.get(impression_id=rec["impression_id"], product_id=product_id)
    assert transition.reward == 4.0

    shopper.remove_from_cart(product_id)

    transition.refresh_from_db()
    assert transition.reward == 1.0  # the click stays
    impression = Impression.objects.get(pk=rec["impression_id"])
    assert (impression.clicks, impression.add_to_carts, impression.reward) == (1, 0, 1.0)
