"""The HTML store's carousels: each page logs an impression and links its
items with the impression id, so a click is recorded without JavaScript."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import connection
from django.test import Client

from recommender.models import Event, EventType, Impression
from recommender.serving import features
from recommender.serving.checkpoints import checkpoint_activate
from tests.factories import PASSWORD, UserFactory
from tests.recommender.support import (
    Shopper,
    shown_ids,
    store_checkpoint,
    tiny_agent,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]


LINK = re.compile(r'href="(/[^"?]*)\?imp=([0-9a-f-]{36})"')


def _carousel_links(response) -> list[tuple[str, str]]:
    """(product path, impression id) of every carousel link on the page."""
    return LINK.findall(response.content.decode())


def _page(client: Client, path: str, heading: str) -> tuple[Impression, list[str]]:
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert heading in html
    links = _carousel_links(response)
    assert links, "the carousel has no tracked links"
    impression_ids = {imp for _, imp in links}
    assert len(impression_ids) == 1
    impression = Impression.objects.get(pk=impression_ids.pop())
    assert impression.session_key == client.session.session_key
    return impression, [path for path, _ in links]


def test_home_page_shows_the_recommended_for_you_carousel(catalog):
    client = Client()

    impression, paths = _page(client, "/", "Recommended for you")

    assert impression.slot == "home"
    assert len(paths) == 8
    shown = list(impression.items.order_by("position").values_list("product__slug", flat=True))
    assert [p.rstrip("/").rsplit("/", 1)[-1] for p in paths] == shown


REASON = re.compile(
    r'href="(/[^"?]*)\?imp=[^"]*">.*?(?:<p class="carousel-reason">([^<]*)</p>)?\s*</a>', re.S
)


def test_carousel_items_say_which_viewed_product_they_are_there_for(catalog, settings):
    settings.RECOMMENDER_REASON_MIN_CONTRIBUTION = 0.0
    checkpoint_activate(checkpoint=store_checkpoint(tiny_agent(steps=20), version=1))
    client = Client()
    for product in catalog[:3]:
        assert client.get(product.get_absolute_url()).status_code == 200

    html = client.get("/").content.decode()

    reasons = dict(REASON.findall(html))
    viewed = {f"Because you viewed {p.name}" for p in catalog[:3]}
    assert len(reasons) == 8
    assert any(reasons.values())
    assert {text for text in reasons.values() if text} <= viewed
    # A new visitor's carousel gives no reasons.
    assert not any(dict(REASON.findall(Client().get("/").content.decode())).values())


def test_product_page_shows_you_may_also_like_without_the_product_itself(catalog):
    client = Client()
    product = catalog[3]

    impression, paths = _page(client, product.get_absolute_url(), "You may also like")

    assert impression.slot == "product"
    assert impression.product_id == product.pk
    assert product.get_absolute_url() not in paths


def test_cart_page_shows_complete_your_order_without_cart_items(catalog):
    client = Client()
    client.get("/")
    response = client.post(f"/cart/add/{catalog[0].pk}/", {"quantity": 1})
    assert response.status_code in (302, 303), response.status_code

    impression, paths = _page(client, "/cart/", "Complete your order")

    assert impression.slot == "cart"
    assert catalog[0].get_absolute_url() not in paths
    assert impression.state["cart_items"] == [catalog[0].pk]


def test_a_product_page_view_is_part_of_the_state_its_carousel_is_chosen_for(catalog):
    client = Client()
    client.get(catalog[1].get_absolute_url())

    impression, _ = _page(client, catalog[2].get_absolute_url(), "You may also like")

    views = Event.objects.filter(type=EventType.VIEW).order_by("created_at")
    assert [v.product_id for v in views] == [catalog[1].pk, catalog[2].pk]
    assert impression.state["recent_items"] == [catalog[1].pk, catalog[2].pk]
    assert views.last().session_key == impression.session_key


def test_a_product_page_view_counts_when_its_carousel_cannot_be_served(
    catalog, monkeypatch, throttle_rates
):
    client = Client()
    product = catalog[4]
    throttle_rates(recommendations="1/min")
    client.get("/")  # the visit's one carousel

    over_budget = client.get(product.get_absolute_url())
    monkeypatch.setattr(
        features,
        "_state_sql",
        lambda *args: "SELECT * FROM no_such_table",
    )
    throttle_rates(recommendations="100/min")
    failed = client.get(product.get_absolute_url())

    assert over_budget.status_code == failed.status_code == 200
    assert not _carousel_links(over_budget) and not _carousel_links(failed)
    assert Event.objects.filter(type=EventType.VIEW, product=product).count() == 2


def test_following_a_carousel_link_records_the_click_and_the_view(catalog, settings):
    settings.RECOMMENDER_REWARD_CLICK = 1.0
    client = Client()
    home, paths = _page(client, "/", "Recommended for you")

    response = client.get(f"{paths[1]}?imp={home.pk}")

    assert response.status_code == 200
    clicked = home.items.get(position=1).product_id
    click = Event.objects.get(type=EventType.CLICK)
    assert (click.product_id, click.impression_id, click.reward) == (clicked, home.pk, 1.0)
    assert click.session_key == client.session.session_key
    view = Event.objects.get(type=EventType.VIEW)
    assert (view.product_id, view.impression_id) == (clicked, None)
    home.refresh_from_db()
    assert (home.clicks, home.reward) == (1, 1.0)
    # The product page's own carousel saw the click and the view in its state.
    product_impression = Impression.objects.get(slot="product")
    assert product_impression.state["recent_items"][-2:] == [clicked, clicked]


def test_reloading_a_carousel_link_earns_the_click_once(catalog):
    client = Client()
    home, paths = _page(client, "/", "Recommended for you")

    client.get(f"{paths[0]}?imp={home.pk}")
    client.get(f"{paths[0]}?imp={home.pk}")

    assert Event.objects.filter(type=EventType.CLICK).count() == 2
    assert Event.objects.filter(type=EventType.CLICK, impression=home).count() == 1
    assert Event.objects.filter(type=EventType.VIEW).count() == 2
    home.refresh_from_db()
    assert home.clicks == 1


def test_a_link_shared_from_another_session_counts_only_the_view(catalog):
    owner = Client()
    home, paths = _page(owner, "/", "Recommended for you")
    visitor = Client()

    response = visitor.get(f"{paths[0]}?imp={home.pk}")

    assert response.status_code == 200
    assert "You may also like" in response.content.decode()
    assert not Event.objects.filter(type=EventType.CLICK).exists()
    assert Event.objects.filter(type=EventType.VIEW).count() == 1
    home.refresh_from_db()
    assert home.clicks == 0


@pytest.mark.parametrize("imp", ["garbage", "", str(uuid.uuid4()), "1; DROP TABLE x"])
def test_a_garbage_impression_id_counts_only_the_view(catalog, imp):
    client = Client()

    response = client.get(catalog[0].get_absolute_url(), {"imp": imp})

    assert response.status_code == 200
    assert not Event.objects.filter(type=EventType.CLICK).exists()
    assert Event.objects.filter(type=EventType.VIEW, product=catalog[0]).count() == 1


def test_an_impression_that_did_not_show_the_product_counts_only_the_view(catalog):
    client = Client()
    home, paths = _page(client, "/", "Recommended for you")
    shown = set(home.items.values_list("product_id", flat=True))
    other = next(p for p in catalog if p.pk not in shown)

    response = client.get(f"{other.get_absolute_url()}?imp={home.pk}")

    assert response.status_code == 200
    assert not Event.objects.filter(type=EventType.CLICK).exists()
    assert Event.objects.filter(type=EventType.VIEW, product=other).exists()


def test_api_and_html_share_the_session(catalog):
    """An impression served by the API can be clicked through the HTML link
    form too: both are the same shopper session."""
    shopper = Shopper()
    rec = shopper.recommend()
    product = next(p for p in catalog if p.pk == shown_ids(rec)[0])

    response = shopper.client.get(f"{product.get_absolute_url()}?imp={rec['impression_id']}")

    assert response.status_code == 200
    click = Event.objects.get(type=EventType.CLICK)
    assert str(click.impression_id) == rec["impression_id"]


def test_a_carousel_shown_before_signing_in_earns_its_click_and_purchase_after(catalog, settings):
    settings.RECOMMENDER_REWARD_CLICK = 1.0
    settings.RECOMMENDER_REWARD_ADD_TO_CART = 3.0
    UserFactory(username="ada")
    client = Client()
    home, paths = _page(client, "/", "Recommended for you")
    before = client.session.session_key

    signed_in = client.post("/account/login/", {"username": "ada", "password": PASSWORD})
    assert signed_in.status_code == 302
    assert client.session.session_key != before  # Django cycles the key at sign-in
    client.get(f"{paths[0]}?imp={home.pk}")
    clicked = home.items.get(position=0).product
    client.post(f"/cart/add/{clicked.pk}/", {"quantity": 1})
    checkout = client.post(
        "/api/v1/checkout/",
        {"email": "ada@example.com", "name": "Ada Lovelace", "address": "1 Demo Street"},
        content_type="application/json",
    )

    assert checkout.status_code == 201, checkout.content
    home.refresh_from_db()
    assert (home.clicks, home.add_to_carts, home.purchases) == (1, 1, 1)
    assert home.reward > 1.0 + 3.0
    # The whole visit is one session for the recommender: one state, one trajectory.
    assert set(Event.objects.values_list("session_key", flat=True)) == {before}
    assert set(Impression.objects.values_list("session_key", flat=True)) == {before}


# ---------------------------------------------------------------------------
# Database work per page
# ---------------------------------------------------------------------------
# What a carousel adds to its page's queries (tests/shop/test_views.py holds
# the pages' budgets without one), once a web process has its policy and
# candidates in memory: the session's state (one read), and the slate's check,
# products and impression (one statement on PostgreSQL; elsewhere a read and a
# transaction of two INSERTs: 5). A product page also records its view: in the
# state's statement on PostgreSQL, elsewhere with an INSERT of its own. The
# state's statement counts the page's cart badge too, sparing the page its
# own count (BADGE_QUERIES).
CAROUSEL_QUERIES = {"postgresql": 2, "sqlite": 6}
VIEW_QUERIES = {"postgresql": 0, "sqlite": 1}
BADGE_QUERIES = 1
PAGE_QUERIES = {"home": 5, "product": 3, "cart": 6}


@pytest.mark.parametrize("page", sorted(PAGE_QUERIES))
def test_a_carousel_costs_its_page_a_fixed_number_of_queries_however_long_the_visit(
    catalog, settings, page, django_assert_max_num_queries
):
    settings.RECOMMENDER_RELOAD_SECONDS = settings.RECOMMENDER_ELIGIBILITY_TTL = 3600
    _activate_tiny_agent()
    client = Client()
    for product in catalog[:2]:
        client.post(f"/cart/add/{product.pk}/", {"quantity": 1})
    path = {"home": "/", "product": catalog[5].get_absolute_url(), "cart": "/cart/"}[page]
    for _ in range(12):  # a long visit: its events and impressions add up
        client.get(path)

    budget = PAGE_QUERIES[page] + CAROUSEL_QUERIES[connection.vendor] - BADGE_QUERIES
    budget += VIEW_QUERIES[connection.vendor] if page == "product" else 0
    with django_assert_max_num_queries(budget):
        response = client.get(path)

    assert response.status_code == 200
    latest = Impression.objects.filter(session_key=client.session["shop:visit"]).latest(
        "created_at"
    )
    assert latest.policy_name == "dqn"
    assert latest.state["page_depth"] == 12
    assert len(_carousel_links(response)) == latest.items.count() > 0


BADGE = re.compile(r'<span class="cart-count"[^>]*>(\d+)</span>')


def _badge(response) -> int:
    (units,) = BADGE.findall(response.content.decode())
    return int(units)


@pytest.mark.parametrize("page", sorted(PAGE_QUERIES))
def test_the_cart_badge_on_a_carousel_page_counts_what_the_cart_holds(catalog, settings, page):
    settings.RECOMMENDER_RELOAD_SECONDS = settings.RECOMMENDER_ELIGIBILITY_TTL = 3600
    _activate_tiny_agent()
    client = Client()
    client.post(f"/cart/add/{catalog[0].pk}/", {"quantity": 2})
    client.post(f"/cart/add/{catalog[1].pk}/", {"quantity": 1})
    path = {"home": "/", "product": catalog[5].get_absolute_url(), "cart": "/cart/"}[page]

    guest = client.get(path)
    # Signing in brings the guest cart into the account's, under a new session key.
    user = UserFactory()
    client.post(f"/cart/add/{catalog[2].pk}/", {"quantity": 1})
    login = client.post("/account/login/", {"username": user.username, "password": PASSWORD})
    assert login.status_code == 302
    signed_in = client.get(path)
    settings.SHOP_CAROUSEL_PROVIDER = ""
    without_carousels = client.get(path)

    assert _carousel_links(guest) and _carousel_links(signed_in)
    assert _badge(guest) == 3
    assert _badge(signed_in) == _badge(without_carousels) == 4


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL")
@pytest.mark.parametrize("prepared", [True, False])
def test_on_postgresql_the_carousel_statements_are_planned_once_per_connection(
    catalog, settings, monkeypatch, prepared
):
    """Django never prepares; the carousel's two statements are prepared
    (recommender/db.py) unless DJANGO_DB_PREPARED_STATEMENTS=false."""
    settings.RECOMMENDER_RELOAD_SECONDS = settings.RECOMMENDER_ELIGIBILITY_TTL = 3600
    options = connection.settings_dict["OPTIONS"]
    assert options["prepare_threshold"] == 0
    if not prepared:
        monkeypatch.delitem(options, "prepare_threshold")
    _activate_tiny_agent()
    client = Client()
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # psycopg forgets what it prepared, too

    for _ in range(3):
        assert len(_carousel_links(client.get("/"))) == 8

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    state = [s for s in statements if "UNION ALL" in s]
    logging = [s for s in statements if 'INSERT INTO "recommender_impression"' in s]
    assert (len(state), len(logging)) == ((1, 1) if prepared else (0, 0))


def _activate_tiny_agent() -> None:
    checkpoint_activate(checkpoint=store_checkpoint(tiny_agent(), version=1))
