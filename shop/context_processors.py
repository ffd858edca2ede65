"""Template context for every page: the category menu, the cart badge and
the delivery rule in words (from settings, so the shop never promises more)."""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from shop.selectors import cart_units, category_menu, delivery_rule


def storefront(request: HttpRequest) -> dict[str, object]:
    # Lazy, so a page that shows neither (an error page) costs no query.
    return {
        "menu_categories": SimpleLazyObject(category_menu),
        "delivery_promise": delivery_rule().promise,
        "cart_count": SimpleLazyObject(lambda: cart_units(request)),
    }
