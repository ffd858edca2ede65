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
import weakref
from collections.abc import Callable, Sequence

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
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
    atomic increment of a small counter, and on Redis the throttles of a
    budget are counted together in one round trip (``count_all``). The price:
    a client may spend one window's budget at the end of a window and the next
    one's at the start.
    """

    _cache_down_until = 0.0  # process-wide, shared by every budget

    @property
    def cache(self) -> BaseCache:
        # The backend itself: DRF's default is Django's proxy object, which is
        # no RedisCache to isinstance() and would hide Redis's one-trip path.
        return caches[DEFAULT_CACHE_ALIAS]

    @property
    def THROTTLE_RATES(self) -> dict:  # noqa: N802 (DRF's name)
        return api_settings.DEFAULT_THROTTLE_RATES

    def allow_request(self, request, view) -> bool:
        return count_all([self], request, view)

    def wait(self) -> float:
        return self.wait_seconds


def count_all(throttles: Sequence[_BudgetThrottle], request, view) -> bool:
    """Count the request against every throttle (each remembers its wait);
    whether all of them allow it. One cache round trip on Redis; with the
    cache down, requests pass, and the cache is left alone for
    CACHE_RETRY_SECONDS."""
    if time.monotonic() < _BudgetThrottle._cache_down_until:
        return True
    try:
        counted = []
        for throttle in throttles:
            throttle.wait_seconds = 0.0
            if throttle.rate is None:
                continue
            throttle.key = throttle.get_cache_key(request, view)
            if throttle.key is not None:
                counted.append(throttle)
        if not counted:
            return True
        results = _increment(throttles[0].cache, [(t.key, int(t.duration)) for t in counted])
    except Exception:
        logger.warning("Throttle cache unavailable; allowing requests", exc_info=True)
        _BudgetThrottle._cache_down_until = time.monotonic() + CACHE_RETRY_SECONDS
        return True
    allowed = True
    for throttle, (count, wait) in zip(counted, results, strict=True):
        if count > throttle.num_requests:
            throttle.wait_seconds, allowed = wait, False
    return allowed


def _increment(cache: BaseCache, keys: list[tuple[str, int]]) -> list[tuple[int, float]]:
    """Add one to each key's counter, which the first request of a window
    creates to expire with the window (``ttl`` seconds); per key the count and
    the seconds left."""
    if isinstance(cache, RedisCache):
        # Django's incr() is an EXISTS then an INCR, each on a client built
        # for the call; this is one round trip on a client kept per process.
        pipeline = _redis_client(cache).pipeline(transaction=False)
        for key, ttl in keys:
            full_key = cache.make_and_validate_key(key)
            pipeline.set(full_key, 0, ex=ttl, nx=True)
            pipeline.incr(full_key)
            pipeline.ttl(full_key)
        replies = pipeline.execute()
        return [(replies[3 * i + 1], float(max(replies[3 * i + 2], 1))) for i in range(len(keys))]
    # Other caches (the demo's files, tests' memory): add() is atomic, and
    # the window's end is not known here, so the wait is a whole window.
    results = []
    for key, ttl in keys:
        cache.add(key, 0, ttl)
        try:
            results.append((cache.incr(key), float(ttl)))
        except ValueError:  # expired between add() and incr(): a new window
            cache.add(key, 1, ttl)
            results.append((1, float(ttl)))
    return results


_redis_clients: weakref.WeakKeyDictionary[RedisCacheClient, object] = weakref.WeakKeyDictionary()


def _redis_client(cache: RedisCache):
    """A redis-py client on the cache's connection pool, built once per cache
    (``get_client`` builds one per call, which costs more than the round trip).
    ``_cache`` is Django's client wrapper, the one its own methods use."""
    wrapper = cache._cache
    client = _redis_clients.get(wrapper)
    if client is None:
        client = _redis_clients[wrapper] = wrapper.get_client(write=True)
    return client


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
    throttles = [throttle_class() for throttle_class in budget]
    if count_all(throttles, request, None):
        return None
    # Throttles that allowed the request wait 0.
    return max(throttle.wait() for throttle in throttles) or 1.0


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
