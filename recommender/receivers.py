"""Record add-to-cart and purchase events from the shop's own services, in
the same transaction as the cart or order change (never from clients)."""

from __future__ import annotations

from django.dispatch import receiver

from recommender.models import Event, EventType
from recommender.services import event_record
from shop.signals import cart_item_added, order_placed


@receiver(cart_item_added, dispatch_uid="recommender.cart_item_added")
def record_add_to_cart(
    sender, *, cart_item, quantity: int, session_key: str | None, user_id, **kwargs
):
    if not session_key:
        return
    event_record(
        type=EventType.ADD_TO_CART,
        product=cart_item.product,
        session_key=session_key,
        user_id=user_id,
        quantity=quantity,
        source=Event.Source.SERVER,
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
