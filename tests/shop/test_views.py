"""The server-rendered store, page by page, as a shopper uses it."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from shop.carousels import Carousel, CarouselItem
from shop.models import Cart, CartItem, Order, Product
from shop.views import server_error
from tests.factories import (
    PASSWORD,
    CartFactory,
    CartItemFactory,
    CategoryFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

CONTACT = {
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "address": "12 St James's Square\nLondon",
}


def text(response) -> str:
    return response.content.decode()


def cart_of(client: Client) -> dict[str, int]:
    """Product name → quantity in the cart the client's session or account holds."""
    response = client.get(reverse("shop:cart"))
    return {item.product.name: item.quantity for item in response.context["summary"].items}


def add_to_cart(client: Client, product: Product, quantity: object = 1):
    return client.post(reverse("shop:cart_add", args=[product.pk]), {"quantity": quantity})


def recommended(request, *, slot, product=None) -> Carousel:
    """A stand-in for the recommender's SHOP_CAROUSEL_PROVIDER."""
    return Carousel(
        slot=slot,
        items=[
            CarouselItem(
                product_id=1,
                name="Tern Roll-Top Backpack",
                url="/p/tern/?imp=42",
                price=Decimal("89.00"),
            )
        ],
    )


def recommended_with_cart_units(request, *, slot, product=None) -> Carousel:
    """``recommended`` from a provider that read the cart's units on its way."""
    return replace(recommended(request, slot=slot, product=product), cart_units=7)


CAROUSEL_REQUESTS: list[str] = []


def counted(request, *, slot, product=None) -> Carousel:
    """``recommended``, noting each slot it was asked for."""
    CAROUSEL_REQUESTS.append(slot)
    return recommended(request, slot=slot, product=product)


# ---------------------------------------------------------------------------
# Catalog pages
# ---------------------------------------------------------------------------
def test_home_shows_categories_and_best_sellers(client):
    category = CategoryFactory(name="Outerwear", slug="outerwear")
    ProductFactory(category=category, name="Stormfront Parka", units_sold=40)
    response = client.get("/")
    assert response.status_code == 200
    page = text(response)
    assert "Stormfront Parka" in page
    assert 'href="/c/outerwear/"' in page  # header menu and category tiles
    assert "Recommended for you" not in page  # no recommender: the carousel place stays empty


@pytest.mark.parametrize(
    ("url_name", "kwargs", "heading"),
    [
        ("shop:home", {}, "Recommended for you"),
        ("shop:product", {"slug": "tern-backpack"}, "You may also like"),
        ("shop:cart", {}, "Complete your order"),
    ],
)
def test_carousel_places_render_what_the_provider_returns(
    client, settings, url_name, kwargs, heading
):
    settings.SHOP_CAROUSEL_PROVIDER = "tests.shop.test_views.recommended"
    backpack = ProductFactory(slug="tern-backpack")
    if url_name == "shop:cart":
        add_to_cart(client, backpack)
    page = text(client.get(reverse(url_name, kwargs=kwargs)))
    assert heading in page
    assert '<a href="/p/tern/?imp=42">' in page
    assert "Tern Roll-Top Backpack" in page and "$89.00" in page


def test_the_cart_badge_shows_the_units_a_provider_read_without_counting_again(
    client, settings, django_assert_num_queries
):
    ProductFactory(slug="tern-backpack")
    settings.SHOP_CAROUSEL_PROVIDER = "tests.shop.test_views.recommended"
    client.get("/")
    with CaptureQueriesContext(connection) as counting:
        counted_page = text(client.get("/"))
    settings.SHOP_CAROUSEL_PROVIDER = "tests.shop.test_views.recommended_with_cart_units"

    with django_assert_num_queries(len(counting) - 1):
        page = text(client.get("/"))

    assert 'aria-label="0 items in cart">0<' in counted_page
    assert 'aria-label="7 items in cart">7<' in page


def test_an_empty_cart_asks_for_no_carousel(client, settings):
    settings.SHOP_CAROUSEL_PROVIDER = "tests.shop.test_views.counted"
    CAROUSEL_REQUESTS.clear()
    page = text(client.get(reverse("shop:cart")))
    assert "Your cart is empty." in page
    assert "Complete your order" not in page
    assert CAROUSEL_REQUESTS == []  # so no impression is logged for it either


def test_category_page_sorts_and_paginates(client):
    category = CategoryFactory(slug="knitwear", name="Knitwear")
    for i in range(30):
        ProductFactory(category=category, name=f"Sweater {i:02d}", price=Decimal(10 + i))

    first = client.get("/c/knitwear/?sort=price_asc")
    second = client.get("/c/knitwear/?sort=price_asc&page=2")

    assert first.status_code == second.status_code == 200
    assert [p.name for p in first.context["page"]][:2] == ["Sweater 00", "Sweater 01"]
    assert [p.name for p in second.context["page"]] == [f"Sweater {i}" for i in range(24, 30)]
    assert "Page 2 of 2" in text(second)
    assert 'href="?sort=price_asc&amp;page=1"' in text(second)  # the pager keeps the sort
    cheapest_last = client.get("/c/knitwear/?sort=price_desc&page=2")
    assert [p.name for p in cheapest_last.context["page"]][-1] == "Sweater 00"


@pytest.mark.parametrize("query", ["sort=bogus", "page=999", "page=abc", "page=-1"])
def test_category_page_tolerates_hand_edited_urls(client, query):
    category = CategoryFactory(slug="audio")
    ProductFactory(category=category)
    assert client.get(f"/c/audio/?{query}").status_code == 200


def test_search_finds_products(client):
    ProductFactory(name="Ferro Cast-Iron Skillet")
    response = client.get("/search/", {"q": "skillet"})
    assert "Ferro Cast-Iron Skillet" in text(response)
    assert "1 product found" in text(response)


def test_search_shows_markup_in_the_query_as_text(client):
    response = client.get("/search/", {"q": "<script>alert('x')</script>"})
    page = text(response)
    assert response.status_code == 200
    assert "<script>alert(" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


def test_an_empty_search_explains_what_to_do(client):
    response = client.get("/search/", {"q": "  "})
    assert response.status_code == 200
    assert "Type a product, brand, colour or material" in text(response)


def test_product_page_shows_price_stock_and_the_add_form(client):
    product = ProductFactory(name="Lumen Brass Table Lamp", price=Decimal("129.00"), stock=3)
    page = text(client.get(product.get_absolute_url()))
    assert "Lumen Brass Table Lamp" in page
    assert "$129.00" in page
    assert "Only 3 left in stock" in page
    assert f'action="/cart/add/{product.pk}/"' in page and 'max="3"' in page


def test_a_sold_out_product_cannot_be_ordered_from_its_page(client):
    product = ProductFactory(stock=0)
    page = text(client.get(product.get_absolute_url()))
    assert "Out of stock" in page
    assert "Add to cart" not in page


def test_inactive_and_unknown_products_are_a_friendly_404(client):
    product = ProductFactory(is_active=False)
    response = client.get(product.get_absolute_url())
    assert response.status_code == 404
    assert "We couldn’t find that page." in text(response)
    assert client.get("/p/no-such-thing/").status_code == 404


# ---------------------------------------------------------------------------
# Cart
# ---------------------------------------------------------------------------
def test_adding_to_the_cart_updates_the_header_count(client, product):
    response = add_to_cart(client, product, 2)
    assert response.status_code == 302 and response.url == reverse("shop:cart")
    assert cart_of(client) == {product.name: 2}
    page = text(client.get("/"))
    assert re.search(r'class="cart-count"[^>]*>2<', page)


@pytest.mark.parametrize("quantity", ["0", "51", "abc", "-1", ""])
def test_bad_quantities_are_explained_on_the_product_page(client, product, quantity):
    response = add_to_cart(client, product, quantity)
    assert response.status_code == 400
    assert "Quantity must be a whole number between 1 and 50." in text(response)
    assert cart_of(client) == {}


def test_adding_more_than_in_stock_is_explained(client):
    product = ProductFactory(stock=2, name="Kiln Teapot")
    response = add_to_cart(client, product, 3)
    assert response.status_code == 409
    assert "Only 2 of “Kiln Teapot” left in stock" in text(response)
    assert cart_of(client) == {}


def test_cart_page_updates_and_removes_lines_and_shows_totals(client):
    lamp = ProductFactory(name="Desk Lamp", price=Decimal("40.00"))
    mug = ProductFactory(name="Mug", price=Decimal("9.50"))
    add_to_cart(client, lamp)
    add_to_cart(client, mug)

    client.post(reverse("shop:cart_update", args=[lamp.pk]), {"quantity": 3})
    page = text(client.get(reverse("shop:cart")))
    assert "$120.00" in page and "$129.50" in page  # line total and cart total

    client.post(reverse("shop:cart_remove", args=[mug.pk]))
    assert cart_of(client) == {"Desk Lamp": 3}


@pytest.mark.parametrize(
    ("quantity", "status"), [("0", 400), ("abc", 400), ("99", 400), ("11", 409)]
)
def test_bad_cart_updates_are_explained_on_the_line(client, quantity, status):
    product = ProductFactory(stock=10)
    add_to_cart(client, product, 2)
    response = client.post(reverse("shop:cart_update", args=[product.pk]), {"quantity": quantity})
    assert response.status_code == status
    assert 'class="field-errors" role="alert"' in text(response)
    assert cart_of(client) == {product.name: 2}


def test_an_empty_cart_invites_to_shop(client):
    page = text(client.get(reverse("shop:cart")))
    assert "Your cart is empty." in page


def test_forms_without_a_csrf_token_are_refused(product):
    browser = Client(enforce_csrf_checks=True)
    response = add_to_cart(browser, product)
    assert response.status_code == 403
    assert not CartItem.objects.exists()


# ---------------------------------------------------------------------------
# Checkout and orders
# ---------------------------------------------------------------------------
def checkout_token(client: Client) -> str:
    return str(client.get(reverse("shop:checkout")).context["form"]["checkout_token"].value())


def test_guest_checkout_places_the_order_and_shows_the_confirmation(client):
    product = ProductFactory(name="Tern Weekender", price=Decimal("120.00"), stock=4)
    add_to_cart(client, product, 2)
    token = checkout_token(client)

    response = client.post(reverse("shop:checkout"), {**CONTACT, "checkout_token": token})

    order = Order.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("shop:order_confirmation", args=[order.pk])
    confirmation = text(client.get(response.url))
    assert (
        f"#{order.pk}" in confirmation
        and "Tern Weekender" in confirmation
        and "$240.00" in confirmation
    )
    product.refresh_from_db()
    assert product.stock == 2
    assert cart_of(client) == {}
    # Another browser cannot read the guest's confirmation.
    assert Client().get(response.url).status_code == 404


def test_submitting_checkout_twice_places_one_order(client, product):
    add_to_cart(client, product, 1)
    form = {**CONTACT, "checkout_token": checkout_token(client)}
    first = client.post(reverse("shop:checkout"), form)
    second = client.post(reverse("shop:checkout"), form)
    assert first.url == second.url
    assert Order.objects.count() == 1


def test_checkout_form_errors_are_shown(client, product):
    add_to_cart(client, product)
    response = client.post(
        reverse("shop:checkout"),
        {
            "email": "not-an-email",
            "name": "",
            "address": "",
            "checkout_token": checkout_token(client),
        },
    )
    assert response.status_code == 400
    assert "Enter a valid email address." in text(response)
    assert not Order.objects.exists()


def test_checkout_explains_stock_that_ran_out(client):
    product = ProductFactory(stock=2, name="Fjell Cardigan")
    add_to_cart(client, product, 2)
    token = checkout_token(client)
    Product.objects.filter(pk=product.pk).update(stock=1)  # someone else bought one meanwhile

    response = client.post(reverse("shop:checkout"), {**CONTACT, "checkout_token": token})

    assert response.status_code == 409
    assert "Only 1 of “Fjell Cardigan” left in stock" in text(response)
    assert not Order.objects.exists()


def test_checkout_with_an_empty_cart_goes_back_to_the_cart(client):
    response = client.get(reverse("shop:checkout"))
    assert response.status_code == 302 and response.url == reverse("shop:cart")


def test_signed_in_checkout_is_prefilled_and_lands_in_the_history(client, user, product):
    OrderFactory(user=user, address="7 Earlier Street")
    client.force_login(user)
    add_to_cart(client, product)
    form = client.get(reverse("shop:checkout")).context["form"]
    assert form.initial["email"] == user.email
    assert form.initial["name"] == user.get_full_name()
    assert form.initial["address"] == "7 Earlier Street"

    client.post(
        reverse("shop:checkout"), {**CONTACT, "checkout_token": form.initial["checkout_token"]}
    )

    order = Order.objects.filter(user=user).latest("created_at")
    history = text(client.get(reverse("shop:order_history")))
    assert f'href="/account/orders/{order.pk}/"' in history
    assert product.name in text(client.get(reverse("shop:order_detail", args=[order.pk])))


def test_order_history_requires_login(client):
    response = client.get(reverse("shop:order_history"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("shop:login"))


def test_nobody_sees_anyone_elses_order(client, user):
    other = OrderLineFactory(order=OrderFactory(user=UserFactory())).order
    client.force_login(user)
    assert client.get(reverse("shop:order_detail", args=[other.pk])).status_code == 404
    assert client.get(reverse("shop:order_confirmation", args=[other.pk])).status_code == 404


# ---------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------
def test_logging_in_keeps_the_guest_cart(client, user, product):
    add_to_cart(client, product, 2)
    existing = CartFactory(user=user, session_key=None)
    other = ProductFactory(name="Already in the account")
    CartItemFactory(cart=existing, product=other, quantity=1)

    response = client.post(reverse("shop:login"), {"username": user.username, "password": PASSWORD})

    assert response.status_code == 302
    assert cart_of(client) == {product.name: 2, "Already in the account": 1}
    assert Cart.objects.count() == 1


def test_signing_up_logs_in_and_keeps_the_guest_cart(client, product):
    add_to_cart(client, product, 1)
    response = client.post(
        reverse("shop:signup"),
        {
            "username": "grace",
            "email": "grace@example.com",
            "password1": "a-long-passphrase",
            "password2": "a-long-passphrase",
        },
    )
    assert response.status_code == 302
    assert response.wsgi_request.user.username == "grace"
    assert cart_of(client) == {product.name: 1}
    assert Cart.objects.get().user.username == "grace"


def test_signup_explains_a_weak_password(client):
    response = client.post(
        reverse("shop:signup"),
        {"username": "grace", "email": "grace@example.com", "password1": "123", "password2": "123"},
    )
    assert response.status_code == 400
    assert "This password is too short." in text(response)


def test_log_out_is_a_post(client, user):
    client.force_login(user)
    assert client.get(reverse("shop:logout")).status_code == 405
    response = client.post(reverse("shop:logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


# ---------------------------------------------------------------------------
# Error pages
# ---------------------------------------------------------------------------
def test_unknown_pages_are_a_friendly_404_with_the_store_around_it(client):
    CategoryFactory(name="Lighting", slug="lighting")
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    page = text(response)
    assert "We couldn’t find that page." in page
    assert 'href="/c/lighting/"' in page  # the menu: a way back into the store


def test_the_500_page_renders_without_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        response = server_error(RequestFactory().get("/checkout/"))
    assert response.status_code == 500
    assert "Something went wrong on our side." in response.content.decode()


def test_cart_and_checkout_show_the_delivery_fee_and_how_to_avoid_it(client, settings):
    settings.SHOP_DELIVERY_FEE = Decimal("4.95")
    settings.SHOP_FREE_DELIVERY_FROM = Decimal("75")
    add_to_cart(client, ProductFactory(price=Decimal("60.00"), stock=5))

    cart = text(client.get(reverse("shop:cart")))
    checkout = text(client.get(reverse("shop:checkout")))

    for page in (cart, checkout):
        assert re.search(r"<dt>Delivery</dt><dd[^>]*>\$4.95</dd>", page)
        assert "$64.95" in page  # the total the order will charge
        assert "Add $15.00 more for free delivery." in page
    assert "Place order · $64.95" in checkout
    # The footer says the rule the cart applies, from the same settings.
    assert "Free delivery on orders of $75.00 or more ($4.95 below)." in cart


def test_the_confirmation_says_a_receipt_was_sent_only_when_it_was(client, product, mailoutbox):
    add_to_cart(client, product)
    token = client.get(reverse("shop:checkout")).context["form"].initial["checkout_token"]
    response = client.post(reverse("shop:checkout"), {**CONTACT, "checkout_token": token})
    order = Order.objects.get()
    assert response.status_code == 302

    # The test transaction never commits, so the receipt was not sent.
    page = text(client.get(response.url))
    assert "We sent a receipt" not in page
    assert "We could not e-mail a receipt to ada@example.com just now" in page

    from shop.services import order_receipt_send

    assert order_receipt_send(order_id=order.pk)
    assert len(mailoutbox) == 1
    assert "We sent a receipt to ada@example.com." in text(client.get(response.url))


# ---------------------------------------------------------------------------
# Database work per page
# ---------------------------------------------------------------------------
# Queries of a steady-state request (session cookie, a cart of two lines, the
# category menu cached), without carousels; tests/recommender/test_carousels.py
# holds the budgets with them. A new query on these pages must raise a budget.
PAGE_QUERY_BUDGETS = {
    # session, best sellers, new arrivals, categories, header cart count
    "home": 5,
    # session, product, header cart count
    "product": 3,
    # session, cart (get or create: 3 with its transaction), its lines, header count
    "cart": 6,
}


@pytest.mark.parametrize("page", sorted(PAGE_QUERY_BUDGETS))
def test_pages_need_a_fixed_number_of_queries(client, page, django_assert_max_num_queries):
    products = [ProductFactory(stock=5) for _ in range(3)]
    for product in products[:2]:
        add_to_cart(client, product)
    path = {"home": "/", "product": products[2].get_absolute_url(), "cart": "/cart/"}[page]
    client.get(path)  # fills the category menu's cache

    with django_assert_max_num_queries(PAGE_QUERY_BUDGETS[page]):
        assert client.get(path).status_code == 200
