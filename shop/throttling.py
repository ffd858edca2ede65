"""Request budgets: DRF throttles, shared by the API and the HTML pages.

Each budget has a scope in REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (rates from
the environment) and is counted twice: per visit (the session cookie) and per
client address, so a client that drops its cookie still meets the address
budget. The address is REMOTE_ADDR, or with NUM_PROXIES = n (DRF's setting) the
n-th address from the right of X-Forwarded-For: the one the nearest trusted
proxy saw. With NUM_PROXIES = 0 (the default) a client's X-Forwarded-For is
ignored, so it cannot buy itself a fresh budget.

    events            client events (POST /api/v1/events/) and carousel clicks
                      recorded from product-page links (?imp=)
    recommendations   every logged impression: GET /api/v1/recommendations/
                      and the HTML carousels
    cart              cart writes and checkout (what earns add-to-cart and
                      purchase rewards), API and HTML

An API view lists the classes in ``throttle_classes`` (429 with Retry-After);
HTML code asks ``allows(request, BUDGET)`` and degrades instead (a page without
its carousel, a click not recorded), or decorates a form view with
``@throttled(BUDGET)`` (a 429 page).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence

from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)

# After a cache failure, throttles let requests through without asking the
# cache for this long: an unreachable or paused Redis then costs one socket
# timeout per process every half minute, not one per request.
CACHE_RETRY_SECONDS = 30.0


class _BudgetThrottle(SimpleRateThrottle):
    """A counter per key for a window that the key's first request opens, rates
    read from settings at each request (DRF copies them at import), and
    fail-open: with the cache down, requests pass.

    DRF's own throttle keeps every request's timestamp in one cache value and
    rewrites the whole list on each request, so its cost grows with the rate
    (a busy address's list has a thousand entries). Here a request costs one
    atomic increment of a small counter. The price: a client may spend one
    window's budget at the end of a window and the next one's at the start.
    """

    _cache_down_until = 0.0  # process-wide, shared by every budget

    @property
    def THROTTLE_RATES(self) -> dict:  # noqa: N802 (DRF's name)
        return api_settings.DEFAULT_THROTTLE_RATES

    def allow_request(self, request, view) -> bool:
        if time.monotonic() < _BudgetThrottle._cache_down_until:
            return True
        try:
            return self._count(request, view)
        except Exception:
            logger.warning("Throttle cache unavailable; allowing requests", exc_info=True)
            _BudgetThrottle._cache_down_until = time.monotonic() + CACHE_RETRY_SECONDS
            return True

    def _count(self, request, view) -> bool:
        """Count the request in its key's window; False once the window's budget is spent."""
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        count, self.wait_seconds = self._increment(self.key)
        return count <= self.num_requests

    def _increment(self, key: str) -> tuple[int, float]:
        """Add one to the key's counter, which the first request of a window
        creates to expire with the window; the count and the seconds left."""
        ttl = int(self.duration)
        if isinstance(self.cache, RedisCache):
            # Django's incr() is an EXISTS then an INCR; this is one round trip.
            # (``_cache`` is Django's client wrapper, the one its own methods use.)
            client = self.cache._cache.get_client(write=True)
            full_key = self.cache.make_and_validate_key(key)
            pipeline = client.pipeline(transaction=False)
            pipeline.set(full_key, 0, ex=ttl, nx=True)
            pipeline.incr(full_key)
            pipeline.ttl(full_key)
            _, count, left = pipeline.execute()
            return count, float(max(left, 1))
        # Other caches (the demo's files, tests' memory): add() is atomic, and
        # the window's end is not known here, so the wait is a whole window.
        self.cache.add(key, 0, ttl)
        try:
            return self.cache.incr(key), float(ttl)
        except ValueError:  # expired between add() and incr(): a new window
            self.cache.add(key, 1, ttl)
            return 1, float(ttl)

    def wait(self) -> float:
        return self.wait_seconds


class _PerVisit(_BudgetThrottle):
    """What one visit (session) may send; a request without a session yet is
    counted only against its address."""

    def get_cache_key(self, request, view) -> str | None:
        key = request.session.session_key
        return self.cache_format % {"scope": self.scope, "ident": key} if key else None


class _PerAddress(_BudgetThrottle):
    """What one client address may send, however many cookies it drops."""

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class EventsVisitThrottle(_PerVisit):
    scope = "events"


class EventsAddressThrottle(_PerAddress):
    scope = "events_address"


class RecommendationsVisitThrottle(_PerVisit):
    scope = "recommendations"


class RecommendationsAddressThrottle(_PerAddress):
    scope = "recommendations_address"


class CartVisitThrottle(_PerVisit):
    scope = "cart"


class CartAddressThrottle(_PerAddress):
    scope = "cart_address"


EVENTS = (EventsVisitThrottle, EventsAddressThrottle)
RECOMMENDATIONS = (RecommendationsVisitThrottle, RecommendationsAddressThrottle)
CART = (CartVisitThrottle, CartAddressThrottle)

Budget = Sequence[type[_BudgetThrottle]]


def _check(request: HttpRequest, budget: Budget) -> float | None:
    """None when the request fits every throttle of the budget (and is counted),
    else the seconds to wait."""
    waits = []
    for throttle_class in budget:
        throttle = throttle_class()
        if not throttle.allow_request(request, None):
            waits.append(throttle.wait() or 1.0)
    return max(waits) if waits else None


def allows(request: HttpRequest, budget: Budget) -> bool:
    """Count this request against the budget; False when it is spent."""
    return _check(request, budget) is None


def throttled(budget: Budget) -> Callable:
    """Decorate an HTML view: its unsafe requests (form posts) count against the
    budget, and one over it gets a 429 page with Retry-After."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                wait = _check(request, budget)
                if wait is not None:
                    response = render(request, "429.html", {"wait": math.ceil(wait)}, status=429)
                    response["Retry-After"] = str(math.ceil(wait))
                    return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
