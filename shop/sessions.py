"""Where the shop meets the HTTP session: which cart a request works on, and
which guest orders a browser may see. Shared by the HTML views and the API."""

from __future__ import annotations

from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest

from shop.models import Cart, Order
from shop.services import cart_get_or_create

# Session data survives the key change Django makes at sign-in
# (cycle_key), so the anonymous cart can still be found to merge it.
ANONYMOUS_CART_SESSION_KEY = "shop:anonymous_cart_session"
# Guests have no account to list their orders under: the browser that
# placed an order may see its confirmation page, nobody else.
PLACED_ORDERS_SESSION_KEY = "shop:placed_orders"
PLACED_ORDERS_REMEMBERED = 20
# The session key a visit started with, kept in the session data so that it
# survives the key change at sign-in (see ``visit_key``).
VISIT_SESSION_KEY = "shop:visit"


def ensure_session_key(session: SessionBase) -> str:
    """The session's key, creating and storing the session if it has none yet."""
    # Reading loads the session, and loading forgets a cookie's key the
    # store no longer has (expired or flushed), so it is recreated below.
    session.get(ANONYMOUS_CART_SESSION_KEY)
    if session.session_key is None:
        session.create()
    return session.session_key


def visit_key(session: SessionBase) -> str:
    """The key a browser visit's activity is logged under (events, carousels, the
    session key reported with cart and order signals): the session key the visit
    started with. Django gives the session a new key at sign-in but keeps its data,
    so carousels shown before signing in still earn the clicks and purchases made
    after it; signing out flushes the data and starts a new visit."""
    key = session.get(VISIT_SESSION_KEY)
    if key is None:
        key = ensure_session_key(session)
        session[VISIT_SESSION_KEY] = key
    return key


def cart_for_request(request: HttpRequest) -> Cart:
    """The cart this request works on, created on first use."""
    if request.user.is_authenticated:
        return cart_get_or_create(user=request.user)
    session_key = ensure_session_key(request.session)
    if request.session.get(ANONYMOUS_CART_SESSION_KEY) != session_key:
        request.session[ANONYMOUS_CART_SESSION_KEY] = session_key
    return cart_get_or_create(session_key=session_key)


def pop_anonymous_cart_key(request: HttpRequest) -> str | None:
    """The session key an anonymous cart was stored under, forgotten once read."""
    return request.session.pop(ANONYMOUS_CART_SESSION_KEY, None)


def remember_placed_order(request: HttpRequest, order: Order) -> None:
    placed = [pk for pk in request.session.get(PLACED_ORDERS_SESSION_KEY, []) if pk != order.pk]
    request.session[PLACED_ORDERS_SESSION_KEY] = [order.pk, *placed][:PLACED_ORDERS_REMEMBERED]


def may_view_order(request: HttpRequest, order: Order) -> bool:
    if request.user.is_authenticated and order.user_id == request.user.pk:
        return True
    return order.pk in request.session.get(PLACED_ORDERS_SESSION_KEY, [])
