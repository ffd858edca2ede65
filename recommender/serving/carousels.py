"""The shop's carousel provider (settings.SHOP_CAROUSEL_PROVIDER): fills the
home, product and cart carousels with the recommender's slates."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest
from django.utils.http import urlencode
from django.utils.module_loading import import_string

from recommender.serving.recommendations import (
    IMPRESSION_PARAM,
    recommend,
    record_deferred_view,
    record_page_view,
)
from shop.carousels import Carousel, CarouselItem
from shop.models import Product
from shop.sessions import visit_key
from shop.throttling import RECOMMENDATIONS, allows

logger = logging.getLogger(__name__)


def carousel_provider(
    request: HttpRequest, *, slot: str, product: Product | None = None
) -> Carousel | None:
    """A logged slate for this page; None (no carousel) if even the fallback fails.

    On a product page the view (and the carousel click that led here) is
    recorded first, so it is part of the state this carousel is chosen for:
    a view alone is recorded by the statement that reads that state, which
    also counts the units of the page's cart badge.
    """
    view = None
    try:
        if product is not None and request.method == "GET":
            view = record_page_view(request, product=product, defer=True)
        if not allows(request, RECOMMENDATIONS):
            # Over the impression budget: the page is served without a carousel.
            return None
        rec = recommend(
            session_key=visit_key(request.session),
            user_id=request.user.pk if request.user.is_authenticated else None,
            slot=slot,
            k=settings.RECOMMENDER_DEFAULT_K,
            product_id=product.pk if product else None,
            view=view,
            # The page's cart badge comes with the state (read after visit_key
            # made sure the session has a key).
            badge_session_key=request.session.session_key,
        )
    except Exception:
        # The page matters more than its carousel.
        logger.exception("No carousel for slot %s", slot)
        return None
    finally:
        # The view counts whatever became of the carousel.
        try:
            record_deferred_view(view)
        except Exception:
            logger.exception("Could not record the view of product %s", product.pk)
    query = urlencode({IMPRESSION_PARAM: str(rec.impression.pk)})
    return Carousel(
        slot=slot,
        cart_units=rec.cart_units,
        items=[
            CarouselItem.from_product(p, query=query, reason=reason.name if reason else "")
            for p, reason in zip(rec.products, rec.reasons, strict=True)
        ],
    )


def preload() -> None:
    """Import what serving the first carousel imports (torch and the RL
    core), running no torch operation, when this provider fills the shop's
    carousels: for a parent process that forks web workers
    (config/gunicorn.py), whose children then share those modules' memory.
    With carousels off or another provider it imports nothing, so that a
    process serving no carousel never imports torch.

    Never raises: what fails here (a broken torch install, a misspelt
    provider) fails again in the workers, where a page is served without its
    carousel; it must not keep the server from starting."""
    try:
        configured = settings.SHOP_CAROUSEL_PROVIDER
        if not configured or import_string(configured) is not carousel_provider:
            return
        from recommender.rl import agents, slate  # noqa: F401
    except Exception:
        logger.exception("Could not preload the carousels' modules; each worker imports them")
