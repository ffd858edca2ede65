"""Signals the shop sends inside its write transactions, so other apps (the
recommender) can record what happened atomically with it without the shop
depending on them. Receivers must not swallow errors they cannot handle:
raising rolls the cart or order change back with them.

cart_item_added(sender, cart_item, quantity, session_key, user_id)
    after a product was added to a cart (quantity = units added now).
cart_item_removed(sender, cart_item, session_key, user_id)
    after a shopper removed a line from their cart (cart_item: the deleted
    line, with its product and added_at); not sent when an order empties it.
order_placed(sender, order, session_key)
    after an order and its lines were created and stock was decremented.
"""

from django.dispatch import Signal

cart_item_added = Signal()
cart_item_removed = Signal()
order_placed = Signal()
