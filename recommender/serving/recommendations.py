"""One recommendation request, end to end: observe the session, choose a
slate with the active policy (or the fallback) and log it as an impression.
Used by the HTML carousels and by GET /api/v1/recommendations/."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from recommender.feedback.events import EventRejected, event_record
from recommender.feedback.impressions import LoggedImpression, impression_log
from recommender.models import Event, EventType, Impression
from recommender.serving import features
from recommender.serving.server import ServedSlate, policy_server
from shop.models import Product
from shop.sessions import visit_key
from shop.throttling import EVENTS, allows

logger = logging.getLogger(__name__)

IMPRESSION_PARAM = "imp"


@dataclass(frozen=True)
class Recommendation:
    impression: Impression
    served: ServedSlate
    products: list[Product]  # in slate order
    # Per product, the session's product that raised its score most ("Because
    # you viewed ..."), or None.
    reasons: list[Product | None] = field(default_factory=list)
    # The units in the shop's cart badge, when asked for (``badge_session_key``).
    cart_units: int | None = None


# Set by ``replayable_serving``: one generator that every request in this
# process draws its exploration from, so that a simulation replays exactly.
_seeded: np.random.Generator | None = None
_seeded_lock = threading.Lock()


@contextmanager
def replayable_serving(seed: int) -> Iterator[None]:
    """While the block runs, serve this process's requests so that simulated
    traffic (a history, a test's shoppers) sent one request after another gets
    the same slates on every run: exploration is drawn from one generator
    seeded with ``seed``, and the policy server re-reads the active version,
    stock and popularity on every request instead of when its wall-clock
    timers expire (a simulation's pace differs from run to run).

    Real traffic never runs under it: exploration a visitor could predict
    would no longer be what its logged propensities say."""
    global _seeded
    # Only simulations get here: web processes need not import the test tools.
    from django.test.utils import override_settings

    with _seeded_lock:
        if _seeded is not None:
            raise RuntimeError("Serving is seeded already in this process.")
        _seeded = np.random.default_rng([seed, 0xE4910])
    try:
        with override_settings(RECOMMENDER_ELIGIBILITY_TTL=0, RECOMMENDER_RELOAD_SECONDS=0):
            yield
    finally:
        with _seeded_lock:
            _seeded = None


# Real traffic's exploration: one generator per thread of each process, made
# from fresh OS entropy the first time that thread serves in that process (a
# forked web worker makes its own rather than repeat its parent's draws).
# Seeding a new one per request cost more than drawing from it.
_unseeded = threading.local()


def _rng() -> np.random.Generator:
    seeded = _seeded
    if seeded is None:
        pid = os.getpid()
        if getattr(_unseeded, "pid", None) != pid:
            _unseeded.pid, _unseeded.rng = pid, np.random.default_rng()
        return _unseeded.rng
    with _seeded_lock:
        # One child per request: requests served in the same order draw the
        # same numbers, whatever each of them consumes.
        return np.random.default_rng(seeded.integers(2**63))


def recommend(
    *,
    session_key: str,
    user_id: int | None,
    slot: str,
    k: int,
    product_id: int | None = None,
    view: Event | None = None,
    badge_session_key: str | None = None,
) -> Recommendation:
    """Serve and log a slate of ``k`` products in ``slot`` for one shopper's
    visit (``session_key``, ``user_id`` when signed in); ``product_id`` is the
    product whose page shows it. Views, the API, the simulator and tasks call
    it alike: it needs no request.

    ``view`` (``record_page_view(defer=True)``) is recorded as the session's
    state is read, in the same statement where the database allows it; with
    ``badge_session_key`` that statement also counts the units the page's
    cart badge shows (``features.session_state``)."""
    state = features.session_state(
        session_key=session_key,
        user_id=user_id,
        slot=slot,
        product_id=product_id,
        view=view,
        badge_session_key=badge_session_key,
    )
    observation = state.observation
    # The observation already read the cart; cart_for_request would create an
    # empty Cart row for every visitor (and crawler) who merely sees a carousel.
    exclude = set(observation.cart_items)
    if product_id is not None:
        exclude.add(product_id)
    rng = _rng()

    def log(served: ServedSlate, *, check: bool) -> LoggedImpression | None:
        return impression_log(
            session_key=session_key,
            user_id=user_id,
            slot=slot,
            product_id=product_id,
            observation=observation,
            slate=served.slate,
            policy_name=served.policy_name,
            policy_version=served.policy_version,
            epsilon=served.epsilon,
            sold_out_id=served.sold_out_id,
            available_only=check,
            # The reasons' products come with the slate's, in the same query.
            also_read=[int(a) for a in served.reasons or () if a is not None],
        )

    served = policy_server.recommend(observation, k=k, exclude=exclude, rng=rng)
    logged = log(served, check=True)
    if logged is None:
        # An item sold out or was retired since the candidates were cached:
        # nothing was logged; draw again from a fresh list and serve that.
        served = policy_server.recommend(observation, k=k, exclude=exclude, rng=rng, fresh=True)
        logged = log(served, check=False)
    # Slates served without reasons (the fallback) have none for any item.
    reasons = served.reasons or (None,) * len(served.slate.items)
    by_id = {p.pk: p for p in logged.products}
    shown = [
        (by_id[int(item)], logged.also.get(int(anchor)) if anchor is not None else None)
        for item, anchor in zip(served.slate.items, reasons, strict=True)
        if int(item) in by_id
    ]
    return Recommendation(
        impression=logged.impression,
        served=served,
        products=[product for product, _ in shown],
        reasons=[reason for _, reason in shown],
        cart_units=state.cart_units,
    )


def record_page_view(
    request: HttpRequest, *, product: Product, defer: bool = False
) -> Event | None:
    """Log a product page view, and the carousel click that led to it when the
    link carried an impression id (so clicks need no JavaScript).

    With ``defer``, a view without a click is not written here but returned
    unsaved, for ``recommend(view=...)`` to record with the state it reads
    (one round trip instead of two); the caller records it with
    ``record_deferred_view`` if that did not happen. Otherwise None."""
    session_key = visit_key(request.session)
    user_id = request.user.pk if request.user.is_authenticated else None
    impression_id = _impression_id(request.GET.get(IMPRESSION_PARAM))
    if impression_id is None:
        if defer:
            return Event(
                created_at=timezone.now(),
                session_key=session_key,
                user_id=user_id,
                type=EventType.VIEW,
                product=product,
                source=Event.Source.SERVER,
            )
        # The common case costs one INSERT.
        event_record(
            type=EventType.VIEW,
            product=product,
            session_key=session_key,
            user_id=user_id,
            source=Event.Source.SERVER,
        )
        return None
    with transaction.atomic():
        event_record(
            type=EventType.VIEW,
            product=product,
            session_key=session_key,
            user_id=user_id,
            source=Event.Source.SERVER,
        )
        if not allows(request, EVENTS):
            # The same budget as clicks sent to the events API.
            logger.info("Click on impression %s not recorded: over the budget", impression_id)
            return None
        try:
            with transaction.atomic():
                event_record(
                    type=EventType.CLICK,
                    product=product,
                    session_key=session_key,
                    user_id=user_id,
                    impression_id=impression_id,
                    source=Event.Source.SERVER,
                )
        except EventRejected:
            # A shared or stale link: the view counts, the click earns nothing.
            logger.info("Ignored carousel click with foreign impression %s", impression_id)
    return None


def record_deferred_view(view: Event | None) -> None:
    """Write a view from ``record_page_view(defer=True)`` that no ``recommend``
    recorded (no carousel was served, or reading the state failed)."""
    if view is not None and view._state.adding:
        view.save(force_insert=True)


def _impression_id(raw: str | None) -> uuid.UUID | None:
    """The impression a carousel link names; None for none or garbage (the view still counts)."""
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None
