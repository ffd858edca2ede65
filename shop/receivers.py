"""Receivers connecting Django's signals to shop services (no logic here)."""

from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from shop.models import Category
from shop.selectors import category_menu_invalidate
from shop.services import cart_merge
from shop.sessions import pop_anonymous_cart_key


@receiver(user_logged_in, dispatch_uid="shop.merge_anonymous_cart")
def merge_anonymous_cart(sender, request, user, **kwargs) -> None:
    # login() has already cycled the session key; the anonymous cart's key
    # was kept in the session data for this moment (see shop.sessions).
    if request is None:
        return
    session_key = pop_anonymous_cart_key(request)
    if session_key:
        cart_merge(session_key=session_key, user=user)


@receiver([post_save, post_delete], sender=Category, dispatch_uid="shop.category_menu_changed")
def category_menu_changed(sender, **kwargs) -> None:
    category_menu_invalidate()
