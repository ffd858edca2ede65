"""Record add-to-cart and purchase events from the shop's own services, in
the same transaction as the cart or order change (never from clients), and
take an add-to-cart reward back when its cart line is removed."""

from __future__ import annotations

from django.dispatch import receiver

from recommender.feedback.events import add_to_cart_record, add_to_cart_reverse, event_record
from recommender.models import Event, EventType
from shop.signals import cart_item_added, cart_item_removed, order_placed


@receiver(cart_item_added, dispatch_uid="recommender.cart_item_added")
def record_add_to_cart(
    sender, *, cart_item, quantity: int, session_key: str | None, user_id, **kwargs
):
    if not session_key:
        return
    add_to_cart_record(
        product=cart_item.product,
        quantity=quantity,
        # The line holds exactly the units added now only when this add created it.
        new_line=cart_item.quantity == quantity,
        session_key=session_key,
        user_id=user_id,
    )


@receiver(cart_item_removed, dispatch_uid="recommender.cart_item_removed")
def reverse_add_to_cart(sender, *, cart_item, session_key: str | None, user_id, **kwargs):
    add_to_cart_reverse(
        product=cart_item.product,
        line_added_at=cart_item.added_at,
        session_key=session_key,
        user_id=user_id,
    )


@receiver(order_placed, dispatch_uid="recommender.order_placed")
def record_purchases(sender, *, order, session_key: str | None, **kwargs):
    if not session_key:
        return
    for line in order.lines.select_related("product"):
        event_record(
            type=EventType.PURCHASE,
            product=line.product,
            session_key=session_key,
            user_id=order.user_id,
            quantity=line.quantity,
            line_value=line.unit_price * line.quantity,
            source=Event.Source.SERVER,
        )
