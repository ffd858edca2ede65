"""Template context for every page: the category menu and the cart badge."""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from shop.selectors import cart_item_count, category_menu


def storefront(request: HttpRequest) -> dict[str, object]:
    # Lazy, so a page that shows neither (an error page) costs no query.
    return {
        "menu_categories": SimpleLazyObject(category_menu),
        "cart_count": SimpleLazyObject(
            lambda: cart_item_count(user=request.user, session_key=request.session.session_key)
        ),
    }
