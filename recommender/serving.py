"""Serving slates in web processes: the active checkpoint, hot-loaded.

Each process keeps the active policy in memory with its item vectors
precomputed, and asks the database at most every RECOMMENDER_RELOAD_SECONDS
whether another version became active. Nothing on this path needs Redis, so
a cache outage cannot slow or break a page. With no checkpoint, or when the
model cannot be loaded or scored, a popularity slate is served and named so.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db.models import Count, Max
from django.utils import timezone

from recommender import features
from recommender.models import Checkpoint, SoldOutSet
from recommender.rl.slate import SlateBuilder
from recommender.rl.types import Observation, Slate, Slot
from shop.models import Product

logger = logging.getLogger(__name__)

POLICY_DQN = "dqn"
POLICY_POPULARITY = "popularity"


@dataclass(frozen=True)
class ServedSlate:
    slate: Slate
    policy_name: str
    policy_version: int | None
    epsilon: float
    sold_out_id: int | None = None  # the SoldOutSet left out of the candidates


@dataclass
class _Loaded:
    version: int
    agent: object  # a recommender.rl.agents.Agent, imported lazily (torch)
    catalog_signature: tuple
    loaded_at: datetime


def load_servable(weights: bytes | memoryview) -> object:
    """A checkpoint's policy, loaded as every web process loads it (over the
    current catalog) and asked for one greedy slate. Raises whatever would stop
    it serving; activation calls this first (recommender.services)."""
    from recommender.rl.agents import load_agent
    from recommender.rl.runtime import configure_torch_threads

    configure_torch_threads()
    catalog = features.build_catalog()
    agent = load_agent(bytes(weights), catalog=catalog)
    if len(catalog):
        agent.act(
            Observation(slot=Slot.HOME),
            catalog.ids,
            min(settings.RECOMMENDER_DEFAULT_K, len(catalog)),
            np.random.default_rng(0),
            epsilon=0.0,
        )
    return agent


def load_error_text(exc: BaseException) -> str:
    """Why a checkpoint did not load, in one line an admin can read."""
    return f"{type(exc).__name__}: {exc}"[:300]


class PolicyServer:
    """Per-process cache of the active policy and of item eligibility."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._checked_at = float("-inf")
        self._failed_version: int | None = None
        self._failed_error = ""
        # What the last heartbeat reported, and when (time.monotonic()).
        self._reported: tuple | None = None
        self._reported_at = float("-inf")
        self._eligible_at = float("-inf")
        # (in-stock ids, their popularity, the SoldOutSet id of the rest), replaced whole.
        self._eligibility: tuple[np.ndarray, np.ndarray, int | None] = (
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.float32),
            None,
        )

    # -- eligibility ---------------------------------------------------------

    def eligibility(self) -> tuple[np.ndarray, np.ndarray, int | None]:
        """Ids of active, in-stock products, their popularity (units sold) and
        the SoldOutSet id of the active products left out, refreshed every
        RECOMMENDER_ELIGIBILITY_TTL seconds (``recommend`` re-checks the items
        it is about to serve)."""
        now = time.monotonic()
        if now - self._eligible_at >= settings.RECOMMENDER_ELIGIBILITY_TTL:
            rows = list(
                Product.objects.filter(is_active=True)
                .order_by("pk")
                .values_list("pk", "units_sold", "stock")
            )
            in_stock = [r for r in rows if r[2] > 0]
            ids = np.fromiter((r[0] for r in in_stock), dtype=np.int64, count=len(in_stock))
            popularity = np.fromiter(
                (r[1] for r in in_stock), dtype=np.float32, count=len(in_stock)
            )
            # The active products left out: what the impressions served from
            # this list record as their sold-out set.
            sold_out_id = sold_out_set([r[0] for r in rows if r[2] <= 0])
            self._eligibility, self._eligible_at = (ids, popularity, sold_out_id), now
        return self._eligibility

    def refresh(self) -> None:
        """Check the active version and eligibility on the next request."""
        self._eligible_at = float("-inf")
        self._checked_at = float("-inf")

    # -- the active checkpoint ----------------------------------------------

    def active_policy(self) -> _Loaded | None:
        """The loaded active version, reloading when another one was activated
        or the catalog grew. Returns None when there is none or it cannot load."""
        now = time.monotonic()
        if now - self._checked_at < settings.RECOMMENDER_RELOAD_SECONDS:
            return self._loaded
        with self._lock:
            if now - self._checked_at < settings.RECOMMENDER_RELOAD_SECONDS:
                return self._loaded
            try:
                self._loaded = self._refresh(self._loaded)
            except Exception:
                # Keep serving what we had; the next check tries again.
                logger.exception("Could not refresh the active recommender policy")
            self._checked_at = time.monotonic()
            self._heartbeat()
            return self._loaded

    def _heartbeat(self) -> None:
        """Report what this process serves: at once when that changed, else
        every RECOMMENDER_HEARTBEAT_SECONDS. Never fails a request."""
        loaded = self._loaded
        state = (
            loaded.version if loaded else None,
            self._failed_version,
            self._failed_error,
            loaded.loaded_at if loaded else None,
        )
        now = time.monotonic()
        if state == self._reported and now - self._reported_at < (
            settings.RECOMMENDER_HEARTBEAT_SECONDS
        ):
            return
        from recommender.services import serving_heartbeat_record

        try:
            serving_heartbeat_record(
                process=f"{socket.gethostname()[:60]}:{os.getpid()}",
                policy_version=state[0],
                failed_version=state[1],
                error=state[2],
                loaded_at=state[3],
            )
        except Exception:
            logger.warning("Could not record the serving heartbeat", exc_info=True)
            return
        self._reported, self._reported_at = state, now

    def _refresh(self, loaded: _Loaded | None) -> _Loaded | None:
        active = (
            Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE)
            .values_list("version", flat=True)
            .first()
        )
        if active is None:
            return None
        signature = _catalog_signature()
        if loaded is not None and loaded.version == active:
            if loaded.catalog_signature != signature:
                loaded.agent.set_catalog(features.build_catalog())
                loaded.catalog_signature = signature
            return loaded
        if active == self._failed_version:
            return loaded
        weights = (
            Checkpoint.objects.filter(version=active).values_list("weights", flat=True).first()
        )
        try:
            agent = load_servable(weights)
        except Exception as exc:
            self._failed_version, self._failed_error = active, load_error_text(exc)
            logger.exception(
                "Checkpoint v%s could not be loaded; keeping the previous policy", active
            )
            return loaded
        logger.info("Serving recommender checkpoint v%s", active)
        self._failed_version, self._failed_error = None, ""
        return _Loaded(
            version=active, agent=agent, catalog_signature=signature, loaded_at=timezone.now()
        )

    # -- slates --------------------------------------------------------------

    def recommend(
        self,
        observation: Observation,
        *,
        k: int,
        exclude: set[int],
        rng: np.random.Generator,
    ) -> ServedSlate:
        """A slate of up to k eligible items not in ``exclude``.

        The candidate list is cached (``eligibility``), so the slate's own items
        are checked against the database before it is served: when one sold
        out or was retired meanwhile, the list is reloaded and the slate drawn
        again from it, which keeps the logged propensities exact.
        """
        served = self._draw(observation, k, exclude, rng)
        if _any_ineligible(served.slate.items):
            self._eligible_at = float("-inf")
            served = self._draw(observation, k, exclude, rng)
        return served

    def _draw(self, observation: Observation, k: int, exclude: set[int], rng) -> ServedSlate:
        ids, popularity, sold_out_id = self.eligibility()
        if exclude:
            keep = ~np.isin(ids, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
            ids, popularity = ids[keep], popularity[keep]
        epsilon = settings.RECOMMENDER_EPSILON
        loaded = self.active_policy()
        if loaded is not None:
            try:
                slate = loaded.agent.act(observation, ids, k, rng, epsilon=epsilon)
                return ServedSlate(slate, POLICY_DQN, loaded.version, epsilon, sold_out_id)
            except Exception:
                logger.exception("Policy v%s failed to score; serving popularity", loaded.version)
        slate = SlateBuilder(epsilon=epsilon).build(ids, popularity, k, rng)
        return ServedSlate(slate, POLICY_POPULARITY, None, epsilon, sold_out_id)


def sold_out_set(product_ids: list[int]) -> int | None:
    """The SoldOutSet row of these products (created on first sight), None
    for none: one indexed read while the set is unchanged."""
    if not product_ids:
        return None
    ids = sorted(int(i) for i in product_ids)
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()
    row, _ = SoldOutSet.objects.get_or_create(digest=digest, defaults={"product_ids": ids})
    return row.pk


def _any_ineligible(item_ids: np.ndarray) -> bool:
    """Whether any of ``item_ids`` is no longer active and in stock (one indexed query)."""
    if not len(item_ids):
        return False
    pks = [int(i) for i in item_ids]
    return Product.objects.filter(pk__in=pks, is_active=True, stock__gt=0).count() != len(pks)


def _catalog_signature() -> tuple:
    """Changes when products are added or removed (not on stock changes)."""
    agg = Product.objects.filter(is_active=True).aggregate(n=Count("pk"), last=Max("pk"))
    return (agg["n"], agg["last"])


policy_server = PolicyServer()
