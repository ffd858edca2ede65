"""Serving slates in web processes: the active checkpoint, hot-loaded.

Each process keeps the active policy in memory with its item vectors
precomputed, and asks the database at most every RECOMMENDER_RELOAD_SECONDS
whether another version became active. Nothing on this path needs Redis, so
a cache outage cannot slow or break a page. With no checkpoint, or when the
model cannot be loaded or scored, a popularity slate is served and named so.
Either way a slate holds at most one of a group of near-duplicate products
(``features.near_duplicate_key``), and each item a learned policy shows
carries its reason: the session item that raised its score most
(``recommender.rl.explain``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db.models import Count, Max

from recommender import features
from recommender.models import Checkpoint, SoldOutSet
from recommender.rl.slate import SlateBuilder
from recommender.rl.types import Observation, Slate
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
    # Per slate item, the session item that raised its score most (None: no reason).
    reasons: tuple[int | None, ...] = ()


class Eligibility(NamedTuple):
    """The products a slate may hold, as cached per process."""

    ids: np.ndarray  # active, in-stock product ids
    popularity: np.ndarray  # their units sold (the fallback's ranking)
    groups: np.ndarray  # their near-duplicate group numbers
    sold_out_id: int | None  # the SoldOutSet of the active products left out


@dataclass
class _Loaded:
    version: int
    agent: object  # a recommender.rl.agents.Agent, imported lazily (torch)
    catalog_signature: tuple


class PolicyServer:
    """Per-process cache of the active policy and of item eligibility."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._checked_at = float("-inf")
        self._failed_version: int | None = None
        self._eligible_at = float("-inf")
        # Replaced whole, so a concurrent request sees one consistent list.
        self._eligibility = Eligibility(
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.float32),
            np.empty(0, dtype=np.int64),
            None,
        )

    # -- eligibility ---------------------------------------------------------

    def eligibility(self) -> Eligibility:
        """Ids of active, in-stock products, their popularity (units sold),
        near-duplicate groups and the SoldOutSet id of the active products
        left out, refreshed every RECOMMENDER_ELIGIBILITY_TTL seconds
        (``recommend`` re-checks the items it is about to serve)."""
        now = time.monotonic()
        if now - self._eligible_at >= settings.RECOMMENDER_ELIGIBILITY_TTL:
            rows = list(
                Product.objects.filter(is_active=True)
                .order_by("pk")
                .values_list("pk", "units_sold", "stock", "category_id", "brand", "name", "colour")
            )
            in_stock = [r for r in rows if r[2] > 0]
            ids = np.fromiter((r[0] for r in in_stock), dtype=np.int64, count=len(in_stock))
            popularity = np.fromiter(
                (r[1] for r in in_stock), dtype=np.float32, count=len(in_stock)
            )
            groups = features.near_duplicate_groups(
                features.near_duplicate_key(category_id=c, brand=b, name=n, colour=colour)
                for _, _, _, c, b, n, colour in in_stock
            )
            # The active products left out: what the impressions served from
            # this list record as their sold-out set.
            sold_out_id = sold_out_set([r[0] for r in rows if r[2] <= 0])
            self._eligibility = Eligibility(ids, popularity, groups, sold_out_id)
            self._eligible_at = now
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
            return self._loaded

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
        from recommender.rl.agents import load_agent
        from recommender.rl.runtime import configure_torch_threads

        configure_torch_threads()
        weights = (
            Checkpoint.objects.filter(version=active).values_list("weights", flat=True).first()
        )
        try:
            agent = load_agent(bytes(weights), catalog=features.build_catalog())
        except Exception:
            self._failed_version = active
            logger.exception(
                "Checkpoint v%s could not be loaded; keeping the previous policy", active
            )
            return loaded
        logger.info("Serving recommender checkpoint v%s", active)
        return _Loaded(version=active, agent=agent, catalog_signature=signature)

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
        ids, popularity, groups, sold_out_id = self.eligibility()
        if exclude:
            keep = ~np.isin(ids, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
            ids, popularity, groups = ids[keep], popularity[keep], groups[keep]
        epsilon = settings.RECOMMENDER_EPSILON
        loaded = self.active_policy()
        if loaded is not None:
            try:
                slate = loaded.agent.act(observation, ids, k, rng, epsilon=epsilon, groups=groups)
            except Exception:
                logger.exception("Policy v%s failed to score; serving popularity", loaded.version)
            else:
                reasons = slate_reasons(loaded.agent, observation, slate.items, candidates=ids)
                return ServedSlate(slate, POLICY_DQN, loaded.version, epsilon, sold_out_id, reasons)
        slate = SlateBuilder(epsilon=epsilon).build(ids, popularity, k, rng, groups=groups)
        return ServedSlate(slate, POLICY_POPULARITY, None, epsilon, sold_out_id)


# Candidates whose mean Q is the yardstick of a reason (see ``reason_scorer``).
REASON_REFERENCE_ITEMS = 256


def item_scorer(agent):
    """The agent's Q of given items in given states (``explain.ItemScorer``): the
    per-item agent's own, SlateQ's value of a click on the item."""
    return getattr(agent, "value", agent).q_values_batch


def reason_scorer(agent, candidates: np.ndarray):
    """``item_scorer`` less each state's mean Q over (up to REASON_REFERENCE_ITEMS,
    evenly spread) ``candidates``: a session item that raises or lowers every
    candidate alike changes no ranking, so it explains none of them; only what
    it does to an item beyond the rest is its contribution."""
    score = item_scorer(agent)
    candidates = np.asarray(candidates, dtype=np.int64)
    n = min(len(candidates), REASON_REFERENCE_ITEMS)
    reference = candidates[np.linspace(0, len(candidates) - 1, n).astype(np.int64)]

    def relative(observations, item_ids):
        items = np.asarray(item_ids, dtype=np.int64)
        q = score(observations, np.concatenate([items, reference]))
        return q[:, : len(items)] - q[:, len(items) :].mean(axis=1, keepdims=True)

    return relative


def slate_reasons(
    agent, observation: Observation, items: np.ndarray, *, candidates: np.ndarray
) -> tuple[int | None, ...]:
    """Per slate item, the session item that raised its score, beyond the other
    ``candidates``', by more than RECOMMENDER_REASON_MIN_CONTRIBUTION (None: no
    such item, or a cold session). A failure here costs the reasons, never
    the slate."""
    from recommender.rl.explain import reasons

    if not len(items):
        return ()
    try:
        found = reasons(
            reason_scorer(agent, candidates if len(candidates) else items),
            observation,
            items,
            min_contribution=settings.RECOMMENDER_REASON_MIN_CONTRIBUTION,
        )
    except Exception:
        logger.exception("Could not explain a slate; serving it without reasons")
        return (None,) * len(items)
    # An item recommended again after a view is not its own reason.
    return tuple(
        None if reason.item == int(item) else reason.item
        for item, reason in zip(items, found, strict=True)
    )


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
