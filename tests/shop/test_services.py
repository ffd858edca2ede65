"""Cart and checkout rules, tested through the services every interface uses."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from shop.exceptions import (
    CheckoutExpired,
    EmptyCart,
    InvalidQuantity,
    ItemNotInCart,
    OutOfStock,
    ProductUnavailable,
)
from shop.models import Cart, CartItem, Order, Product
from shop.services import (
    cart_add_item,
    cart_get_or_create,
    cart_merge,
    cart_remove_item,
    cart_update_item,
    order_place,
    user_create,
)
from shop.signals import cart_item_added, order_placed
from tests.factories import CartFactory, CartItemFactory, ProductFactory, UserFactory

pytestmark = pytest.mark.django_db

CONTACT = {
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "address": "12 St James's Square, London",
}


def quantities(cart: Cart) -> dict[int, int]:
    return dict(CartItem.objects.filter(cart=cart).values_list("product_id", "quantity"))


# ---------------------------------------------------------------------------
# cart_get_or_create
# ---------------------------------------------------------------------------
def test_a_session_keeps_one_cart():
    first = cart_get_or_create(session_key="s" * 32)
    assert cart_get_or_create(session_key="s" * 32) == first
    assert cart_get_or_create(session_key="t" * 32) != first


def test_a_signed_in_user_has_their_own_cart_whatever_the_session(user):
    cart = cart_get_or_create(user=user, session_key="s" * 32)
    assert cart.user == user and cart.session_key is None
    assert cart_get_or_create(user=user) == cart


# ---------------------------------------------------------------------------
# Adding, updating, removing
# ---------------------------------------------------------------------------
def test_adding_twice_adds_up(product):
    cart = CartFactory()
    cart_add_item(cart=cart, product=product, quantity=2)
    item = cart_add_item(cart=cart, product=product, quantity=3)
    assert item.quantity == 5
    assert quantities(cart) == {product.pk: 5}


@pytest.mark.parametrize("quantity", [0, 51, -1, "abc", "2", 2.5, None, True])
def test_bad_quantities_are_refused_and_change_nothing(product, quantity):
    cart = CartFactory()
    with pytest.raises(InvalidQuantity, match="between 1 and 50"):
        cart_add_item(cart=cart, product=product, quantity=quantity)
    assert quantities(cart) == {}


def test_a_line_never_holds_more_than_fifty(product):
    product.stock = 100
    product.save()
    cart = CartFactory()
    cart_add_item(cart=cart, product=product, quantity=40)
    with pytest.raises(InvalidQuantity, match="at most 50"):
        cart_add_item(cart=cart, product=product, quantity=11)
    assert quantities(cart) == {product.pk: 40}


def test_adding_more_than_in_stock_is_refused_with_the_available_count():
    product = ProductFactory(stock=3, name="Fjell Chunky Cardigan")
    cart = CartFactory()
    cart_add_item(cart=cart, product=product, quantity=2)
    with pytest.raises(OutOfStock) as raised:
        cart_add_item(cart=cart, product=product, quantity=2)
    assert raised.value.shortages[0].available == 3
    assert "Only 3 of “Fjell Chunky Cardigan” left" in raised.value.message
    assert quantities(cart) == {product.pk: 2}


def test_sold_out_products_cannot_be_added():
    product = ProductFactory(stock=0)
    with pytest.raises(OutOfStock, match="out of stock"):
        cart_add_item(cart=CartFactory(), product=product, quantity=1)


def test_inactive_products_cannot_be_added():
    product = ProductFactory(is_active=False)
    cart = CartFactory()
    with pytest.raises(ProductUnavailable):
        cart_add_item(cart=cart, product=product, quantity=1)
    assert quantities(cart) == {}


def test_update_sets_the_quantity(product):
    item = CartItemFactory(product=product, quantity=1)
    cart_update_item(cart=item.cart, product=product, quantity=4)
    assert quantities(item.cart) == {product.pk: 4}


@pytest.mark.parametrize("quantity", [0, 51, -3, "abc"])
def test_update_refuses_bad_quantities(product, quantity):
    item = CartItemFactory(product=product, quantity=2)
    with pytest.raises(InvalidQuantity):
        cart_update_item(cart=item.cart, product=product, quantity=quantity)
    assert quantities(item.cart) == {product.pk: 2}


def test_update_beyond_stock_is_refused():
    item = CartItemFactory(product=ProductFactory(stock=5), quantity=2)
    with pytest.raises(OutOfStock):
        cart_update_item(cart=item.cart, product=item.product, quantity=6)
    assert quantities(item.cart) == {item.product_id: 2}


def test_update_of_a_product_not_in_the_cart(product):
    with pytest.raises(ItemNotInCart):
        cart_update_item(cart=CartFactory(), product=product, quantity=1)


def test_remove_drops_the_line_and_tolerates_repeats(product):
    item = CartItemFactory(product=product)
    cart_remove_item(cart=item.cart, product=product)
    cart_remove_item(cart=item.cart, product=product)
    assert quantities(item.cart) == {}


def test_adding_announces_the_event_in_the_same_transaction(product):
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    cart_item_added.connect(receiver)
    try:
        cart = CartFactory()
        cart_add_item(cart=cart, product=product, quantity=2, session_key="current-session")
    finally:
        cart_item_added.disconnect(receiver)
    assert received[0]["quantity"] == 2
    assert received[0]["session_key"] == "current-session"
    assert received[0]["cart_item"].product == product
    assert received[0]["user_id"] is None


def test_a_failing_receiver_undoes_the_add(product):
    def receiver(sender, **kwargs):
        raise RuntimeError("event store down")

    cart_item_added.connect(receiver)
    cart = CartFactory()
    try:
        with pytest.raises(RuntimeError):
            cart_add_item(cart=cart, product=product, quantity=1)
    finally:
        cart_item_added.disconnect(receiver)
    assert quantities(cart) == {}


# ---------------------------------------------------------------------------
# cart_merge (sign-in)
# ---------------------------------------------------------------------------
def test_merge_into_an_account_without_a_cart_hands_the_cart_over(user, product):
    anonymous = CartItemFactory(product=product, quantity=2).cart
    merged = cart_merge(session_key=anonymous.session_key, user=user)
    assert merged.pk == anonymous.pk
    assert merged.user == user and merged.session_key is None
    assert quantities(merged) == {product.pk: 2}


def test_merge_adds_up_lines_capped_by_stock_and_keeps_account_lines(user):
    shared = ProductFactory(stock=6)
    only_guest = ProductFactory()
    only_account = ProductFactory()
    retired = ProductFactory(is_active=True)
    account = CartFactory(user=user, session_key=None)
    CartItemFactory(cart=account, product=shared, quantity=4)
    CartItemFactory(cart=account, product=only_account, quantity=1)
    guest = CartFactory()
    CartItemFactory(cart=guest, product=shared, quantity=5)
    CartItemFactory(cart=guest, product=only_guest, quantity=2)
    CartItemFactory(cart=guest, product=retired, quantity=1)
    Product.objects.filter(pk=retired.pk).update(is_active=False)

    merged = cart_merge(session_key=guest.session_key, user=user)

    assert merged == account
    assert quantities(account) == {shared.pk: 6, only_guest.pk: 2, only_account.pk: 1}
    assert not Cart.objects.filter(pk=guest.pk).exists()


def test_merge_without_an_anonymous_cart_does_nothing(user):
    assert cart_merge(session_key="never-used", user=user) is None


# ---------------------------------------------------------------------------
# order_place
# ---------------------------------------------------------------------------
def test_checkout_sells_the_cart():
    sweater = ProductFactory(name="Merino Sweater", price=Decimal("49.50"), stock=5, units_sold=7)
    mug = ProductFactory(name="Enamel Mug", price=Decimal("12.00"), stock=3)
    cart = CartFactory()
    CartItemFactory(cart=cart, product=sweater, quantity=2)
    CartItemFactory(cart=cart, product=mug, quantity=3)
    token = cart.checkout_token

    placed = order_place(cart=cart, **CONTACT)

    assert placed.created
    order = placed.order
    assert order.total == Decimal("135.00")
    assert order.delivery_fee == 0  # $135 of goods: over the free-delivery threshold
    assert order.idempotency_key == token
    assert order.session_key == cart.session_key and order.user is None
    assert sorted(
        (line.product_name, line.unit_price, line.quantity) for line in order.lines.all()
    ) == [
        ("Enamel Mug", Decimal("12.00"), 3),
        ("Merino Sweater", Decimal("49.50"), 2),
    ]
    sweater.refresh_from_db()
    mug.refresh_from_db()
    assert (sweater.stock, sweater.units_sold) == (3, 9)
    assert (mug.stock, mug.units_sold) == (0, 3)
    cart.refresh_from_db()
    assert quantities(cart) == {}
    assert cart.checkout_token != token


def test_a_retried_checkout_returns_the_same_order_and_sells_nothing_twice():
    product = ProductFactory(stock=5)
    cart = CartFactory()
    CartItemFactory(cart=cart, product=product, quantity=2)
    token = cart.checkout_token

    first = order_place(cart=cart, checkout_token=token, **CONTACT)
    retry = order_place(cart=cart, checkout_token=token, **CONTACT)

    assert retry.order == first.order
    assert not retry.created
    assert Order.objects.count() == 1
    product.refresh_from_db()
    assert product.stock == 3


def test_a_new_checkout_after_an_order_needs_new_items(product):
    cart = CartItemFactory(product=product).cart
    order_place(cart=cart, **CONTACT)
    with pytest.raises(EmptyCart):
        order_place(cart=cart, **CONTACT)


def test_checkout_of_an_empty_cart_is_refused():
    with pytest.raises(EmptyCart):
        order_place(cart=CartFactory(), **CONTACT)
    assert not Order.objects.exists()


def test_a_token_from_another_shopper_reveals_nothing(product):
    someone_else = CartItemFactory(product=product).cart
    their_token = someone_else.checkout_token
    order_place(cart=someone_else, **CONTACT)
    mine = CartItemFactory(product=ProductFactory()).cart

    with pytest.raises(CheckoutExpired):
        order_place(cart=mine, checkout_token=their_token, **CONTACT)
    assert Order.objects.count() == 1


def test_checkout_refuses_when_stock_ran_out_and_lists_every_short_line():
    short = ProductFactory(stock=1, name="Stormfront Parka")
    gone = ProductFactory(stock=0, name="Kiln Teapot")
    fine = ProductFactory(stock=9)
    retired = ProductFactory(stock=9, name="Old Lamp")
    cart = CartFactory()
    for product, quantity in [(short, 2), (gone, 1), (fine, 1), (retired, 1)]:
        CartItemFactory(cart=cart, product=product, quantity=quantity)
    Product.objects.filter(pk=retired.pk).update(is_active=False)

    with pytest.raises(OutOfStock) as raised:
        order_place(cart=cart, **CONTACT)

    assert {(s.name, s.available) for s in raised.value.shortages} == {
        ("Stormfront Parka", 1),
        ("Kiln Teapot", 0),
        ("Old Lamp", 0),
    }
    assert not Order.objects.exists()
    assert len(quantities(cart)) == 4
    fine.refresh_from_db()
    assert fine.stock == 9


def test_a_signed_in_shoppers_order_is_theirs(user, product):
    cart = cart_get_or_create(user=user)
    cart_add_item(cart=cart, product=product, quantity=1)
    placed = order_place(cart=cart, session_key="browser-session", **CONTACT)
    assert placed.order.user == user
    assert placed.order.session_key == "browser-session"


def test_placing_an_order_announces_it_with_its_lines(product):
    received = []

    def receiver(sender, *, order, session_key, **kwargs):
        received.append((order.lines.count(), session_key))

    order_placed.connect(receiver)
    try:
        cart = CartItemFactory(product=product, quantity=2).cart
        order_place(cart=cart, **CONTACT)
        order_place(cart=cart, checkout_token=Order.objects.get().idempotency_key, **CONTACT)
    finally:
        order_placed.disconnect(receiver)
    assert received == [(1, cart.session_key)]  # once: the retry placed nothing


def test_unknown_token_on_a_fresh_cart_is_refused(product):
    cart = CartItemFactory(product=product).cart
    with pytest.raises(CheckoutExpired):
        order_place(cart=cart, checkout_token=uuid.uuid4(), **CONTACT)


# ---------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------
def test_user_create_stores_a_usable_password():
    user = user_create(username="grace", email="grace@example.com", password="a-long-passphrase")
    assert user.check_password("a-long-passphrase")
    assert UserFactory._meta.model.objects.filter(
        username="grace", email="grace@example.com"
    ).exists()


# ---------------------------------------------------------------------------
# Delivery fee and receipt
# ---------------------------------------------------------------------------
def test_delivery_is_charged_below_the_threshold_and_free_from_it(settings):
    settings.SHOP_DELIVERY_FEE = Decimal("4.95")
    settings.SHOP_FREE_DELIVERY_FROM = Decimal("75")
    cheap, dear = CartFactory(), CartFactory()
    CartItemFactory(cart=cheap, product=ProductFactory(price=Decimal("74.99"), stock=5))
    CartItemFactory(cart=dear, product=ProductFactory(price=Decimal("75.00"), stock=5))

    below = order_place(cart=cheap, **CONTACT).order
    at = order_place(cart=dear, **CONTACT).order

    below.refresh_from_db()
    assert (below.subtotal, below.delivery_fee, below.total) == (
        Decimal("74.99"),
        Decimal("4.95"),
        Decimal("79.94"),
    )
    at.refresh_from_db()
    assert (at.subtotal, at.delivery_fee, at.total) == (Decimal("75"), 0, Decimal("75"))


def test_the_receipt_is_mailed_once_the_order_is_committed(
    product, mailoutbox, django_capture_on_commit_callbacks
):
    cart = CartFactory()
    CartItemFactory(cart=cart, product=product, quantity=2)

    with django_capture_on_commit_callbacks(execute=True):
        order = order_place(cart=cart, **CONTACT).order
        assert mailoutbox == []  # nothing before the commit

    assert len(mailoutbox) == 1
    receipt = mailoutbox[0]
    assert receipt.to == ["ada@example.com"]
    assert receipt.subject == f"Your Larkhill order #{order.pk}"
    assert f"2 × {product.name}" in receipt.body
    assert f"Total:    ${order.total:,.2f}" in receipt.body
    order.refresh_from_db()
    assert order.receipt_sent_at is not None


def test_a_mail_server_that_fails_leaves_the_order_without_a_receipt(
    product, settings, django_capture_on_commit_callbacks
):
    # Nothing listens on port 1: the SMTP connection is refused.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2
    cart = CartFactory()
    CartItemFactory(cart=cart, product=product)

    with django_capture_on_commit_callbacks(execute=True):
        order = order_place(cart=cart, **CONTACT).order

    order.refresh_from_db()
    assert order.receipt_sent_at is None
    assert Order.objects.filter(pk=order.pk).exists()
