"""API authentication: Django's session, with CSRF enforced for everyone."""

from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request


class CsrfEnforcedSessionAuthentication(SessionAuthentication):
    """Session authentication that checks CSRF on every unsafe request.

    DRF's SessionAuthentication checks CSRF only once a user is signed in,
    but an anonymous shopper's cart lives in their session too: without the
    check, another site could fill or check out a guest's cart.
    Safe methods (GET, HEAD, OPTIONS) pass, as in Django's middleware.
    """

    def authenticate(self, request: Request):
        self.enforce_csrf(request)
        user = getattr(request._request, "user", None)
        if user is None or not user.is_active:
            return None
        return (user, None)
