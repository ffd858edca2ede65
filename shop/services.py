"""Writes of the shop domain: carts, checkout and accounts.

Every function is keyword-only, runs in one transaction and raises a
shop.exceptions.ShopError subclass for anything the shopper did wrong, so
the HTML views and the API report the same rule with the same message.

Locking: every cart write first locks the cart row (`_cart_lock`), so cart
edits and a checkout of the same cart never interleave. Checkout then locks
the products it sells in primary-key order, so two checkouts sharing
products always take their locks in the same order and cannot deadlock.
On SQLite `select_for_update` is a no-op, but the settings open every
transaction with BEGIN IMMEDIATE, which serialises writers just the same.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from decimal import Decimal
from functools import partial
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from shop.exceptions import (
    CheckoutExpired,
    EmptyCart,
    InvalidQuantity,
    ItemNotInCart,
    OutOfStock,
    ProductUnavailable,
    Shortage,
)
from shop.models import MAX_LINE_QUANTITY, Cart, CartItem, Order, OrderLine, Product
from shop.selectors import delivery_rule
from shop.signals import cart_item_added, cart_item_removed, order_placed

logger = logging.getLogger(__name__)


class PlacedOrder(NamedTuple):
    order: Order
    created: bool  # False when a retried checkout got the order placed before


# ---------------------------------------------------------------------------
# Carts
# ---------------------------------------------------------------------------
@transaction.atomic
def cart_get_or_create(
    *, user: AbstractBaseUser | None = None, session_key: str | None = None
) -> Cart:
    """The cart of a signed-in user, else of an anonymous session."""
    if user is not None and user.is_authenticated:
        cart, _ = Cart.objects.get_or_create(user=user)
        return cart
    if not session_key:
        raise ValueError("An anonymous cart needs a session key.")
    cart, _ = Cart.objects.get_or_create(session_key=session_key, user=None)
    return cart


@transaction.atomic
def cart_add_item(
    *, cart: Cart, product: Product, quantity: int, session_key: str | None = None
) -> CartItem:
    """Add `quantity` units of `product` to the cart, on top of any already there.

    `session_key` is the shopper's current session, reported with the
    `cart_item_added` signal; it defaults to the cart's own (anonymous carts).
    """
    _check_quantity(quantity)
    cart = _cart_lock(cart)
    if not product.is_active:
        raise ProductUnavailable(f"“{product.name}” is no longer available.")
    item, created = CartItem.objects.get_or_create(
        cart=cart, product=product, defaults={"quantity": quantity}
    )
    new_quantity = quantity if created else item.quantity + quantity
    if new_quantity > MAX_LINE_QUANTITY:
        raise InvalidQuantity(
            f"You can have at most {MAX_LINE_QUANTITY} of “{product.name}” in your cart "
            f"(you already have {item.quantity})."
        )
    _check_stock(product, new_quantity)
    if not created:
        item.quantity = new_quantity
        item.save(update_fields=["quantity"])
    # Inside the transaction on purpose: a receiver that fails undoes the add.
    cart_item_added.send(
        sender=CartItem,
        cart_item=item,
        quantity=quantity,
        session_key=session_key or cart.session_key,
        user_id=cart.user_id,
    )
    return item


@transaction.atomic
def cart_update_item(*, cart: Cart, product: Product, quantity: int) -> CartItem:
    """Set the quantity of a line already in the cart (use cart_remove_item to drop it)."""
    _check_quantity(quantity)
    cart = _cart_lock(cart)
    item = CartItem.objects.filter(cart=cart, product=product).first()
    if item is None:
        raise ItemNotInCart(f"“{product.name}” is not in your cart.")
    if not product.is_active:
        raise ProductUnavailable(f"“{product.name}” is no longer available: please remove it.")
    _check_stock(product, quantity)
    item.quantity = quantity
    item.save(update_fields=["quantity"])
    return item


@transaction.atomic
def cart_remove_item(*, cart: Cart, product: Product, session_key: str | None = None) -> Cart:
    """Drop a line from the cart. Removing a product that is not there is not an error.

    `session_key` is the shopper's current session, reported with the
    `cart_item_removed` signal; it defaults to the cart's own (anonymous carts).
    """
    cart = _cart_lock(cart)
    item = CartItem.objects.filter(cart=cart, product=product).select_related("product").first()
    if item is None:
        return cart
    item.delete()
    cart_item_removed.send(
        sender=CartItem,
        cart_item=item,
        session_key=session_key or cart.session_key,
        user_id=cart.user_id,
    )
    return cart


@transaction.atomic
def cart_merge(*, session_key: str, user: AbstractBaseUser) -> Cart | None:
    """Move the anonymous cart of `session_key` into `user`'s cart at sign-in.

    The shopper's choices are kept: a line already in both carts adds up,
    capped at what one line may hold and at what is in stock (but never below
    what the account cart already had). Inactive products are left behind.
    Returns the user's cart, or None when the session had no cart.
    """
    anonymous = Cart.objects.select_for_update().filter(session_key=session_key, user=None).first()
    if anonymous is None:
        return None
    target = Cart.objects.select_for_update().filter(user=user).first()
    if target is None:
        # Nothing to merge into: the anonymous cart simply becomes the account's.
        anonymous.user = user
        anonymous.session_key = None
        anonymous.save(update_fields=["user", "session_key", "updated_at"])
        return anonymous

    existing = {item.product_id: item for item in target.items.select_for_update()}
    for incoming in anonymous.items.select_related("product"):
        product = incoming.product
        if not product.is_active:
            continue
        line = existing.get(product.pk)
        had = line.quantity if line else 0
        ceiling = max(had, min(MAX_LINE_QUANTITY, product.stock))
        merged = min(had + incoming.quantity, ceiling)
        if merged <= 0:
            continue
        if line is None:
            CartItem.objects.create(cart=target, product=product, quantity=merged)
        elif merged != had:
            line.quantity = merged
            line.save(update_fields=["quantity"])
    anonymous.delete()
    target.save(update_fields=["updated_at"])
    return target


# ---------------------------------------------------------------------------
# Checkout
# ---------------------------------------------------------------------------
@transaction.atomic
def order_place(
    *,
    cart: Cart,
    email: str,
    name: str,
    address: str,
    checkout_token: uuid.UUID | None = None,
    session_key: str | None = None,
) -> PlacedOrder:
    """Turn the cart into an order, all or nothing.

    Idempotent: `checkout_token` names one checkout attempt (the cart's token
    when omitted). A retry with a token that already produced an order for
    this shopper returns that order with `created=False` and changes nothing.
    After a successful order the cart is emptied and gets a fresh token.

    Raises EmptyCart, OutOfStock (listing every short line), or
    CheckoutExpired for a token this cart never had.
    """
    # Holding the cart lock, a double submit waits for the first one to
    # commit and then finds its order below instead of placing a second one.
    cart = _cart_lock(cart)
    token = checkout_token or cart.checkout_token
    previous = _order_for_token(cart=cart, token=token)
    if previous is not None:
        return PlacedOrder(previous, created=False)
    if token != cart.checkout_token:
        raise CheckoutExpired()

    items = list(cart.items.all())
    if not items:
        raise EmptyCart()
    products = _products_in_stock(items)
    order = _order_create(
        cart=cart,
        token=token,
        subtotal=sum(
            (products[item.product_id].price * item.quantity for item in items), Decimal("0.00")
        ),
        email=email,
        name=name,
        address=address,
        session_key=session_key,
    )
    if not order.created:
        return order
    _order_lines_write(order.order, items, products)
    _cart_empty(cart)
    order_placed.send(sender=Order, order=order.order, session_key=order.order.session_key or None)
    # After commit: a receipt for an order that was rolled back would be a lie.
    transaction.on_commit(partial(order_receipt_send, order_id=order.order.pk))
    return order


def _products_in_stock(items: list[CartItem]) -> dict[int, Product]:
    """The cart's products, row-locked, by id; raises OutOfStock listing every
    line the stock cannot cover."""
    # Lock in primary-key order (see module docstring) and read stock from
    # the locked rows: another checkout may have sold units since the page loaded.
    products = (
        Product.objects.select_for_update()
        .filter(pk__in=[item.product_id for item in items])
        .order_by("pk")
    )
    by_id = {product.pk: product for product in products}
    shortages = [
        Shortage(
            product_id=product.pk,
            name=product.name,
            requested=item.quantity,
            available=product.stock if product.is_active else 0,
        )
        for item in items
        if (product := by_id[item.product_id]).stock < item.quantity or not product.is_active
    ]
    if shortages:
        raise OutOfStock(shortages)
    return by_id


def _order_create(
    *,
    cart: Cart,
    token: uuid.UUID,
    subtotal: Decimal,
    email: str,
    name: str,
    address: str,
    session_key: str | None,
) -> PlacedOrder:
    """The order row with its delivery fee; the order a concurrent checkout with
    the same token committed first (created=False) where row locks are not enforced."""
    delivery_fee = delivery_rule().fee_for(subtotal)
    try:
        # A savepoint, so a lost race on the unique key leaves this
        # transaction usable for reading the winner's order.
        with transaction.atomic():
            order = Order.objects.create(
                user_id=cart.user_id,
                session_key=session_key or cart.session_key or "",
                idempotency_key=token,
                email=email,
                name=name,
                address=address,
                total=subtotal + delivery_fee,
                delivery_fee=delivery_fee,
            )
    except IntegrityError:
        # Only reachable where row locks are not enforced: another transaction
        # committed an order with this very token after our lookup.
        previous = _order_for_token(cart=cart, token=token)
        if previous is None:
            raise
        return PlacedOrder(previous, created=False)
    return PlacedOrder(order, created=True)


def _order_lines_write(order: Order, items: list[CartItem], products: dict[int, Product]) -> None:
    """The order's lines at today's prices, and the units taken from stock."""
    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            product=products[item.product_id],
            product_name=products[item.product_id].name,
            unit_price=products[item.product_id].price,
            quantity=item.quantity,
        )
        for item in items
    )
    for item in items:
        product = products[item.product_id]
        product.stock -= item.quantity
        product.units_sold += item.quantity
    Product.objects.bulk_update(list(products.values()), ["stock", "units_sold"])


def _cart_empty(cart: Cart) -> None:
    """Empty the cart and give it a fresh checkout token for the next order."""
    cart.items.all().delete()
    cart.checkout_token = uuid.uuid4()
    cart.save(update_fields=["checkout_token", "updated_at"])


def order_receipt_send(*, order_id: int) -> bool:
    """E-mail the order's receipt and note when it went out; False when the
    mail server refused or did not answer (the order stands, the confirmation
    page then says no receipt was sent). Call after the order committed."""
    order = Order.objects.prefetch_related("lines").get(pk=order_id)
    context = {"order": order, "delivery": delivery_rule()}
    try:
        send_mail(
            subject=f"Your Larkhill order #{order.pk}",
            message=render_to_string("shop/email/receipt.txt", context),
            from_email=None,  # DEFAULT_FROM_EMAIL
            recipient_list=[order.email],
        )
    except (OSError, smtplib.SMTPException) as error:
        logger.warning("Could not send the receipt of order %s: %s", order.pk, error)
        return False
    Order.objects.filter(pk=order.pk).update(receipt_sent_at=timezone.now())
    return True


# ---------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------
@transaction.atomic
def user_create(*, username: str, email: str, password: str) -> AbstractBaseUser:
    """A shopper account (password validation is the form's job, before this)."""
    return get_user_model().objects.create_user(username=username, email=email, password=password)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def _check_quantity(quantity: object) -> None:
    # bool is an int subclass: True must not mean "1".
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidQuantity()
    if not 1 <= quantity <= MAX_LINE_QUANTITY:
        raise InvalidQuantity()


def _check_stock(product: Product, quantity: int) -> None:
    if quantity > product.stock:
        raise OutOfStock(
            [
                Shortage(
                    product_id=product.pk,
                    name=product.name,
                    requested=quantity,
                    available=product.stock,
                )
            ]
        )


def _cart_lock(cart: Cart) -> Cart:
    """Lock and re-read the cart row; call inside a transaction. Touches
    updated_at so abandoned carts can be told from active ones."""
    locked = Cart.objects.select_for_update().get(pk=cart.pk)
    Cart.objects.filter(pk=locked.pk).update(updated_at=timezone.now())
    return locked


def _order_for_token(*, cart: Cart, token: uuid.UUID) -> Order | None:
    """The order a checkout token produced, only if it belongs to this cart's
    shopper: a token from someone else's checkout must not reveal their order."""
    orders = Order.objects.filter(idempotency_key=token)
    if cart.user_id:
        orders = orders.filter(user_id=cart.user_id)
    else:
        orders = orders.filter(user__isnull=True, session_key=cart.session_key)
    return orders.first()
