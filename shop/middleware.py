"""Shop middleware."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from shop.sessions import ensure_session_key


class ShopperSessionMiddleware:
    """Give every visitor a session on their first request (API contract:
    the cart, and the recommender's per-session state, are keyed by it).

    Goes after SessionMiddleware. A visitor without cookies (a crawler) gets
    a new session per request; `manage.py clearsessions` removes them.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    # Probes and files need no shopper session (and must not create one per hit).
    exempt_prefixes = ("/healthz", "/media/", "/static/", "/favicon.ico")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(self.exempt_prefixes):
            ensure_session_key(request.session)
        return self.get_response(request)
