"""Simulated shoppers driving the store through its HTTP API.

The RL core's ShopperSimulator decides what each shopper does (shoppers of
one family, ``recommender.rl.simulator.families``: funnel by default); this module
turns those decisions into the requests a real client makes: fetch the
carousel for the page, report views and clicks, add to the cart, check out.
The store records impressions, events and rewards exactly as for people.

Two clients share one driver: ``HttpShopClient`` talks to a running store
over the network (``simulate_traffic``), ``InProcessShopClient`` goes through
Django's full request stack without a server (``seed_history``, which also
moves the clock to lay history out over past days).
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from recommender.rl.simulator import Arrival, Shopper, ShopperSimulator
from recommender.rl.simulator.families import DEFAULT_FAMILY
from recommender.rl.simulator.families import family as shopper_family
from recommender.rl.types import Slot

SLOT_NAMES = {Slot.HOME: "home", Slot.CART: "cart", Slot.PRODUCT: "product"}


class ShopClient(Protocol):
    """GET/POST JSON against the store's API; returns (status, parsed body)."""

    def get(self, path: str, params: dict) -> tuple[int, dict]: ...

    def post(self, path: str, payload: dict) -> tuple[int, dict]: ...


class HttpShopClient:
    """A browser-like API client over real HTTP (cookies, CSRF header)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def get(self, path: str, params: dict) -> tuple[int, dict]:
        response = self.session.get(self.base_url + path, params=params, timeout=self.timeout)
        return response.status_code, _json(response.content)

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        token = self.session.cookies.get("csrftoken", "")
        response = self.session.post(
            self.base_url + path,
            json=payload,
            headers={"X-CSRFToken": token, "Referer": self.base_url + "/"},
            timeout=self.timeout,
        )
        return response.status_code, _json(response.content)


def _simulated_addresses() -> Iterator[str]:
    """Client addresses for in-process shoppers, one per shopper (10.0.0.0/8)."""
    for n in itertools.count():
        yield f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


_addresses = _simulated_addresses()


class InProcessShopClient:
    """The same requests through Django's test client: the full middleware and
    view stack, no server and no network. Each client is a different shopper,
    with an address of its own (the store budgets requests per address too).
    It asks for a host the store accepts, over HTTPS when the store redirects
    to it, so it also drives a store running its production settings."""

    def __init__(self) -> None:
        from django.conf import settings
        from django.test import Client

        host = _an_allowed_host(settings.ALLOWED_HOSTS)
        self.secure = bool(settings.SECURE_SSL_REDIRECT)
        # HTTPS requests must name where they come from (CSRF's Referer check).
        self.origin = f"{'https' if self.secure else 'http'}://{host}"
        self.client = Client(enforce_csrf_checks=True, REMOTE_ADDR=next(_addresses), HTTP_HOST=host)

    def get(self, path: str, params: dict) -> tuple[int, dict]:
        response = self.client.get(path, params, secure=self.secure)
        return response.status_code, _json(response.content)

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        cookie = self.client.cookies.get("csrftoken")
        response = self.client.post(
            path,
            payload,
            content_type="application/json",
            secure=self.secure,
            headers={"X-CSRFToken": cookie.value if cookie else "", "Referer": self.origin + "/"},
        )
        return response.status_code, _json(response.content)


def _an_allowed_host(allowed: list[str]) -> str:
    """A host name ALLOWED_HOSTS accepts ("testserver" when it accepts any)."""
    for pattern in allowed:
        if pattern != "*":
            return pattern.lstrip(".")
    return "testserver"


def _json(content: bytes) -> dict:
    import json

    try:
        return json.loads(content or b"{}")
    except ValueError:
        return {}


@dataclass
class PolicyTally:
    carousels: int = 0
    clicks: int = 0

    @property
    def ctr(self) -> float:
        return self.clicks / self.carousels if self.carousels else 0.0


@dataclass
class TrafficStats:
    """What the simulated shoppers did, per serving policy ("dqn v3",
    "popularity"); CTR here is clicked carousels over served carousels."""

    sessions: int = 0
    requests: int = 0
    add_to_carts: int = 0
    orders: int = 0
    policies: dict[str, PolicyTally] = field(default_factory=lambda: defaultdict(PolicyTally))
    # Requests the store refused (any status but 2xx, a sold-out 409 and an
    # emptied cart's checkout), by status.
    refused: Counter[int] = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        return sum(self.refused.values())

    def merge(self, other: TrafficStats) -> None:
        self.sessions += other.sessions
        self.requests += other.requests
        self.refused.update(other.refused)
        self.add_to_carts += other.add_to_carts
        self.orders += other.orders
        for name, tally in other.policies.items():
            self.policies[name].carousels += tally.carousels
            self.policies[name].clicks += tally.clicks

    def refusal_summary(self) -> str | None:
        """What went wrong, for a command to fail with; None if nothing was refused."""
        if not self.refused:
            return None
        statuses = ", ".join(
            f"HTTP {status} x{count}" for status, count in sorted(self.refused.items())
        )
        hints = [hint for status, hint in REFUSAL_HINTS.items() if status in self.refused]
        return f"{self.errors} of {self.requests} requests were refused ({statuses})." + "".join(
            f" {hint}" for hint in hints
        )


REFUSAL_HINTS = {
    301: "301: the store redirects to HTTPS; use an https:// base URL.",
    400: "400: is the store's host in DJANGO_ALLOWED_HOSTS?",
    403: "403: CSRF refused; over HTTPS behind a proxy, set DJANGO_CSRF_TRUSTED_ORIGINS.",
    429: "429: over the store's request budgets (API_*_THROTTLE); fewer or slower sessions.",
}


def policy_label(policy: dict) -> str:
    version = policy.get("version")
    return f"{policy.get('name')} v{version}" if version is not None else str(policy.get("name"))


class ShopperDriver:
    """Plays one simulated shopper's session against the store."""

    def __init__(
        self,
        client: ShopClient,
        *,
        k: int = 8,
        on_clock: Callable[[float], None] | None = None,
    ) -> None:
        self.client = client
        self.k = k
        # Called with the session clock's advance (seconds) before each step, so a
        # caller can move time along (seed_history backdates whole sessions).
        self.on_clock = on_clock or (lambda seconds: None)

    def run(self, shopper: Shopper, *, session_number: int = 0) -> TrafficStats:
        stats = TrafficStats(sessions=1)
        clock = shopper.clock
        # The first request gives the shopper a session and the CSRF cookie.
        self._get(stats, "/api/v1/categories/", {})
        if shopper.page is not None and shopper.page.slot == Slot.PRODUCT:
            self._event(stats, "view", shopper.page.current_item)
        while not shopper.done:
            page = shopper.page
            self.on_clock(shopper.clock - clock)
            clock = shopper.clock
            params: dict = {"slot": SLOT_NAMES[page.slot], "k": self.k}
            if page.current_item is not None:
                params["product_id"] = page.current_item
            status, body = self._get(stats, "/api/v1/recommendations/", params)
            if status != 200:
                # The store could not serve this page: the shopper gives up.
                break
            shown = [item["product"]["id"] for item in body["items"]]
            tally = stats.policies[policy_label(body["policy"])]
            tally.carousels += 1
            reaction = shopper.react(shown)
            self.on_clock(shopper.clock - clock)
            clock = shopper.clock
            if reaction.clicked is not None:
                tally.clicks += 1
                self._event(stats, "click", reaction.clicked, impression=body["impression_id"])
                if reaction.added_to_cart:
                    status, _ = self._post(
                        stats,
                        "/api/v1/cart/items/",
                        {"product_id": reaction.clicked, "quantity": 1},
                    )
                    stats.add_to_carts += status == 201
            if shopper.page is not None and shopper.page.arrival == Arrival.BROWSE:
                self._event(stats, "view", shopper.page.current_item)
            if reaction.checked_out:
                status, _ = self._post(
                    stats,
                    "/api/v1/checkout/",
                    {
                        "email": f"shopper{session_number}@example.com",
                        "name": f"Simulated Shopper {session_number}",
                        "address": "1 Demo Street\nSampletown",
                    },
                )
                stats.orders += status in (200, 201)
        return stats

    def _get(self, stats: TrafficStats, path: str, params: dict) -> tuple[int, dict]:
        status, body = self.client.get(path, params)
        stats.requests += 1
        if status >= 300:
            stats.refused[status] += 1
        return status, body

    def _post(self, stats: TrafficStats, path: str, payload: dict) -> tuple[int, dict]:
        status, body = self.client.post(path, payload)
        stats.requests += 1
        # 409 (sold out meanwhile) and checking out a cart emptied by it are
        # the store doing its job, not refusals.
        expected = status == 409 or body.get("code") == "empty_cart"
        if status >= 300 and not expected:
            stats.refused[status] += 1
        return status, body

    def _event(
        self, stats: TrafficStats, type: str, product_id: int, impression: str | None = None
    ):
        payload = {"event_id": str(uuid.uuid4()), "type": type, "product_id": product_id}
        if impression:
            payload["impression_id"] = impression
        return self._post(stats, "/api/v1/events/", payload)


def store_simulator(*, seed: int = 0, family: str = DEFAULT_FAMILY) -> ShopperSimulator:
    """The simulated shopper population of ``family`` over the store's current
    catalog (a ValueError naming the known families for an unknown one)."""
    from recommender.serving.features import build_catalog

    shoppers = shopper_family(family)
    catalog = build_catalog()
    if len(catalog) == 0:
        raise RuntimeError("The catalog is empty: run `manage.py seed_demo` first.")
    return shoppers.simulator(catalog, seed=seed)


def shopper_seeds(seed: int, sessions: int) -> np.ndarray:
    return np.random.default_rng([seed, 0xD3]).integers(0, 2**31, size=sessions)
