"""Serving slates in web processes: the active checkpoint, hot-loaded.

Each process keeps the active policy in memory with its item vectors
precomputed, and asks the database at most every RECOMMENDER_RELOAD_SECONDS
whether another version became active. Nothing on this path needs Redis, so
a cache outage cannot slow or break a page. With no checkpoint, or when the
model cannot be loaded or scored, a popularity slate is served and named so.

A request costs the database nothing here: the candidates come from a
per-process snapshot (``Candidates``), refreshed every
RECOMMENDER_ELIGIBILITY_TTL seconds with two small queries (the catalog's
signature and the ids of the sold-out products) and re-reading the whole
catalog only when products were added or retired. The slate's own items are
re-checked as it is logged (``impression_log``).

Either way a slate holds at most one of a group of near-duplicate products
(``features.near_duplicate_key``), and each item a learned policy shows
carries its reason: the session item that raised its score most
(``recommender.rl.explain``).

torch is imported only when a checkpoint is loaded or a slate is built, so a
process that serves no carousel never pays for it.
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
from django.db.models import BooleanField, Q, Subquery, Value
from django.utils import timezone

from recommender.db import read_binary
from recommender.models import Checkpoint, SoldOutSet
from recommender.rl.explain import ExplainedSlate, reference_items, relative
from recommender.rl.learner import Learner
from recommender.rl.runtime import return_freed_memory
from recommender.rl.types import ItemCatalog, Observation, Slate, Slot
from recommender.serving import features
from shop.models import Product

logger = logging.getLogger(__name__)

POLICY_DQN = "dqn"
POLICY_POPULARITY = "popularity"

POPULARITY_TOP = 1000
"""The fallback ranks the most popular in-stock products by units sold (one
indexed read of this many rows per refresh); the rest of the catalog shares
score 0 and is reached by exploration. Exact propensities do not depend on it:
they are computed from the scores that were used."""


SOLD_OUT_SETS_REMEMBERED = 256
"""SoldOutSet ids a process keeps (by digest) so that a refresh finding a set
it has seen before needs no query."""


@dataclass(frozen=True)
class ServedSlate:
    slate: Slate
    policy_name: str
    policy_version: int | None
    epsilon: float
    sold_out_id: int | None = None  # the SoldOutSet left out of the candidates
    # Per slate item, the session item that raised its score most (None: no reason).
    reasons: tuple[int | None, ...] = ()


@dataclass(frozen=True)
class Candidates:
    """What a process may recommend, as of one refresh (replaced whole)."""

    ids: np.ndarray  # int64, ascending: active and in stock
    groups: np.ndarray  # int64, per id: its near-duplicate group
    sold_out_id: int | None  # the SoldOutSet of the active products left out
    catalog: ItemCatalog  # every active product's features (the model's universe)
    catalog_groups: np.ndarray  # int64, per catalog row: its near-duplicate group
    signature: tuple  # of the catalog: the highest product id, the retired ones' digest
    sold_out: str  # digest of the sold-out ids


@dataclass
class _Loaded:
    version: int
    # With the version, what names the checkpoint: a database that was reset or
    # restored can hold another checkpoint under a version this process served.
    created_at: datetime
    agent: Learner  # loaded by recommender.rl.agents, imported lazily (torch)
    catalog: ItemCatalog  # the catalog the agent scores
    loaded_at: datetime


def load_servable(weights: bytes, catalog: ItemCatalog | None = None) -> Learner:
    """A checkpoint's policy, loaded as every web process loads it (over
    ``catalog``, default the current one; only what acting uses) and asked
    for one greedy slate. Raises whatever would stop it serving; activation
    calls this first (recommender.serving.checkpoints)."""
    from recommender.rl.agents import load_agent
    from recommender.rl.runtime import configure_torch_threads

    configure_torch_threads()
    catalog = catalog if catalog is not None else features.build_catalog()
    agent = load_agent(weights, catalog=catalog, act_only=True)
    serve_once(agent, catalog)
    return agent


def serve_once(agent: Learner, catalog: ItemCatalog) -> None:
    """One greedy slate over ``catalog``, as a request is served
    (``PolicyServer._draw``), reasons included: it fails as a request
    would, and builds what the agent computes once per weights and catalog."""
    if len(catalog):
        agent.act_explained(
            Observation(slot=Slot.HOME),
            catalog.ids,
            min(settings.RECOMMENDER_DEFAULT_K, len(catalog)),
            np.random.default_rng(0),
            epsilon=0.0,
            reference_ids=reason_reference(catalog.ids),
        ).reasons()


def load_error_text(exc: BaseException) -> str:
    """Why a checkpoint did not load, in one line an admin can read."""
    return f"{type(exc).__name__}: {exc}"[:300]


class PolicyServer:
    """Per-process cache of the active policy and of item eligibility."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._checked_at = float("-inf")
        self._failed_key: tuple | None = None  # (version, created_at) that failed to load
        self._failed_error = ""
        # What the last heartbeat reported, and when (time.monotonic()).
        self._reported: tuple | None = None
        self._reported_at = float("-inf")
        self._eligible_at = float("-inf")
        self._candidates: Candidates | None = None
        self._popular_at = float("-inf")
        self._popular: tuple[np.ndarray, np.ndarray] = (
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.float32),
        )
        self._sold_out_sets: dict[str, int] = {}  # digest -> SoldOutSet id, seen by this process

    # -- eligibility ---------------------------------------------------------

    def candidates(self, *, reload_catalog: bool = False) -> Candidates:
        """The active, in-stock products, refreshed every
        RECOMMENDER_ELIGIBILITY_TTL seconds (the caller re-checks the items it
        is about to serve).

        A refresh is one query that reads what is unavailable (sold out or
        retired: a partial index holds just those) and the highest product id;
        the whole catalog is re-read only when products were added, retired or
        re-activated since, or when ``reload_catalog`` is set."""
        now = time.monotonic()
        current = self._candidates
        if (
            current is not None
            and not reload_catalog
            and now - self._eligible_at < settings.RECOMMENDER_ELIGIBILITY_TTL
        ):
            return current
        last_id, sold_out, retired = _unavailable()
        signature = (last_id, sold_out_digest(retired))
        if current is None or reload_catalog or current.signature != signature:
            catalog, catalog_groups = features.build_catalog_and_groups()
        else:
            catalog, catalog_groups = current.catalog, current.catalog_groups
        sold_out_key = sold_out_digest(sold_out)
        if current is not None and catalog is current.catalog and current.sold_out == sold_out_key:
            ids, groups = current.ids, current.groups  # nothing changed
        else:
            # Retired products are not in the catalog (it holds the active
            # ones); one retired since it was read is left out here too.
            unavailable = np.fromiter(sold_out + retired, dtype=np.int64)
            keep = ~np.isin(catalog.ids, unavailable)
            ids, groups = catalog.ids[keep], catalog_groups[keep]
        fresh = Candidates(
            ids=ids,
            groups=groups,
            sold_out_id=self._sold_out_set(sold_out, sold_out_key),
            catalog=catalog,
            catalog_groups=catalog_groups,
            signature=signature,
            sold_out=sold_out_key,
        )
        self._candidates, self._eligible_at = fresh, now
        if current is not None and catalog is not current.catalog:
            return_freed_memory()  # the previous catalog, and what reading this one took
        return fresh

    def _sold_out_set(self, product_ids: list[int], digest: str) -> int | None:
        """``sold_out_set`` remembered per process: a set seen before costs no query."""
        if not product_ids:
            return None
        known = self._sold_out_sets.get(digest)
        if known is None:
            if len(self._sold_out_sets) >= SOLD_OUT_SETS_REMEMBERED:
                self._sold_out_sets.clear()  # stock keeps changing: old sets rarely return
            known = self._sold_out_sets[digest] = sold_out_set(product_ids)
        return known

    def popularity(self, ids: np.ndarray) -> np.ndarray:
        """Units sold of each of ``ids`` among the POPULARITY_TOP best sellers
        in stock (0 for the rest), re-read at most every
        RECOMMENDER_ELIGIBILITY_TTL seconds and only while the fallback serves."""
        now = time.monotonic()
        if now - self._popular_at >= settings.RECOMMENDER_ELIGIBILITY_TTL:
            rows = list(
                Product.objects.filter(is_active=True, stock__gt=0)
                .order_by("-units_sold", "pk")
                .values_list("pk", "units_sold")[:POPULARITY_TOP]
            )
            top = np.array([r[0] for r in rows], dtype=np.int64)
            order = np.argsort(top)
            units = np.array([r[1] for r in rows], dtype=np.float32)
            self._popular, self._popular_at = (top[order], units[order]), now
        top, units = self._popular
        if not len(top):
            return np.zeros(len(ids), dtype=np.float32)
        pos = np.minimum(np.searchsorted(top, ids), len(top) - 1)
        return np.where(top[pos] == ids, units[pos], 0.0).astype(np.float32)

    def refresh(self) -> None:
        """Check the active version, the catalog and eligibility on the next request."""
        self._eligible_at = float("-inf")
        self._candidates = None  # the catalog is re-read too
        self._popular_at = float("-inf")
        self._checked_at = float("-inf")

    # -- the active checkpoint ----------------------------------------------

    def active_policy(self, catalog: ItemCatalog | None = None) -> _Loaded | None:
        """The loaded active version, reloading when another one was activated,
        and serving ``catalog`` (default: the current candidates' catalog).
        Returns None when there is none or it cannot load."""
        catalog = catalog if catalog is not None else self.candidates().catalog
        now = time.monotonic()
        loaded = self._loaded
        if now - self._checked_at >= settings.RECOMMENDER_RELOAD_SECONDS:
            with self._lock:
                if now - self._checked_at >= settings.RECOMMENDER_RELOAD_SECONDS:
                    before = (self._loaded, self._failed_key)
                    try:
                        self._loaded = self._refresh(self._loaded, catalog)
                    except Exception:
                        # Keep serving what we had; the next check tries again.
                        logger.exception("Could not refresh the active recommender policy")
                    if self._loaded is not before[0] or self._failed_key != before[1]:
                        # A version was loaded, or failed to: what that took,
                        # and the version it replaced, are garbage now.
                        return_freed_memory()
                    self._checked_at = time.monotonic()
                    self._heartbeat()
                loaded = self._loaded
        if loaded is not None and loaded.catalog is not catalog:
            # Products were added or retired since: score the new catalog
            # (new ids are scored from their features until trained).
            with self._lock:
                if loaded.catalog is not catalog:
                    try:
                        loaded.agent.set_catalog(catalog)
                    except Exception:
                        logger.exception("Policy v%s cannot score the catalog", loaded.version)
                        return None
                    loaded.catalog = catalog
                    try:
                        # Builds the new catalog's tables now, so that the
                        # previous ones and what building took are handed back.
                        serve_once(loaded.agent, catalog)
                    except Exception:
                        # Each request's own slate fails likewise and falls back.
                        logger.exception("Policy v%s cannot score the catalog", loaded.version)
                    return_freed_memory()
        return loaded

    def _heartbeat(self) -> None:
        """Report what this process serves: at once when that changed, else
        every RECOMMENDER_HEARTBEAT_SECONDS. Never fails a request."""
        loaded = self._loaded
        state = (
            loaded.version if loaded else None,
            self._failed_key[0] if self._failed_key else None,
            self._failed_error,
            loaded.loaded_at if loaded else None,
        )
        now = time.monotonic()
        if state == self._reported and now - self._reported_at < (
            settings.RECOMMENDER_HEARTBEAT_SECONDS
        ):
            return
        from recommender.serving.heartbeats import serving_heartbeat_record

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

    def _refresh(self, loaded: _Loaded | None, catalog: ItemCatalog) -> _Loaded | None:
        row = (
            Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE)
            .values_list("pk", "version", "created_at")
            .first()
        )
        if row is None:
            return None
        pk, active, created_at = row
        key = (active, created_at)
        if loaded is not None and (loaded.version, loaded.created_at) == key:
            return loaded
        if key == self._failed_key:
            return loaded
        # A database error here is retried at the next check (``active_policy``);
        # only what the weights themselves fail marks the version failed.
        weights = read_binary(Checkpoint, pk, "weights")
        if weights is None:
            return loaded  # deleted since: the next check finds what is active
        try:
            agent = load_servable(weights, catalog)
        except Exception as exc:
            self._failed_key, self._failed_error = key, load_error_text(exc)
            logger.exception(
                "Checkpoint v%s could not be loaded; keeping the previous policy", active
            )
            return loaded
        logger.info("Serving recommender checkpoint v%s", active)
        self._failed_key, self._failed_error = None, ""
        return _Loaded(
            version=active,
            created_at=created_at,
            agent=agent,
            catalog=catalog,
            loaded_at=timezone.now(),
        )

    # -- slates --------------------------------------------------------------

    def recommend(
        self,
        observation: Observation,
        *,
        k: int,
        exclude: set[int],
        rng: np.random.Generator,
        fresh: bool = False,
    ) -> ServedSlate:
        """A slate of up to k eligible items not in ``exclude``.

        The candidate list is cached (``candidates``): the caller checks the
        slate's own items as it logs it (``impression_log(available_only=True)``)
        and, when one sold out or was retired meanwhile, asks again with
        ``fresh`` (the list and the catalog re-read), which keeps the logged
        propensities exact.
        """
        return self._draw(self.candidates(reload_catalog=fresh), observation, k, exclude, rng)

    def _draw(
        self,
        candidates: Candidates,
        observation: Observation,
        k: int,
        exclude: set[int],
        rng: np.random.Generator,
    ) -> ServedSlate:
        ids, groups, sold_out_id = candidates.ids, candidates.groups, candidates.sold_out_id
        if exclude:
            # The candidates are ascending: find the few excluded ones by
            # bisection rather than testing every candidate against them.
            wanted = np.fromiter(exclude, dtype=np.int64, count=len(exclude))
            at = np.searchsorted(ids, wanted)
            found = at < len(ids)
            found[found] = ids[at[found]] == wanted[found]
            if found.any():
                ids, groups = np.delete(ids, at[found]), np.delete(groups, at[found])
        epsilon = settings.RECOMMENDER_EPSILON
        loaded = self.active_policy(candidates.catalog)
        if loaded is not None:
            try:
                # The slate and its reasons' states share one pass of the model.
                explained = loaded.agent.act_explained(
                    observation,
                    ids,
                    k,
                    rng,
                    epsilon,
                    groups=groups,
                    reference_ids=reason_reference(ids),
                )
            except Exception:
                logger.exception("Policy v%s failed to score; serving popularity", loaded.version)
            else:
                slate = explained.slate
                reasons = explained_reasons(explained)
                return ServedSlate(slate, POLICY_DQN, loaded.version, epsilon, sold_out_id, reasons)
        from recommender.rl.slate import SlateBuilder  # imports torch

        slate = SlateBuilder(epsilon=epsilon).build(
            ids, self.popularity(ids), k, rng, groups=groups
        )
        return ServedSlate(slate, POLICY_POPULARITY, None, epsilon, sold_out_id)


# Candidates whose mean Q is the yardstick of a reason (see ``reason_scorer``).
REASON_REFERENCE_ITEMS = 256


def item_scorer(agent: Learner):
    """The agent's Q of given items in given states (``explain.ItemScorer``): the
    per-item agent's own, SlateQ's value of a click on the item."""
    return agent.q_values_batch


def reason_reference(candidates: np.ndarray) -> np.ndarray:
    """The (up to REASON_REFERENCE_ITEMS, evenly spread) ``candidates`` whose
    mean Q a reason is measured against (``explain.relative``)."""
    return reference_items(candidates, REASON_REFERENCE_ITEMS)


def reason_scorer(agent: Learner, candidates: np.ndarray):
    """``item_scorer`` less each state's mean Q over ``reason_reference(candidates)``:
    a session item that raises or lowers every candidate alike changes no
    ranking, so it explains none of them; only what it does to an item beyond
    the rest is its contribution. Serving finds the same reasons from the
    slate's own pass of the model (``Learner.act_explained``)."""
    return relative(item_scorer(agent), reason_reference(candidates))


def explained_reasons(explained: ExplainedSlate) -> tuple[int | None, ...]:
    """The served reasons of an ``explain.ExplainedSlate``, at
    RECOMMENDER_REASON_MIN_CONTRIBUTION. A failure here costs the reasons,
    never the slate."""
    items = explained.slate.items
    if not len(items):
        return ()
    try:
        found = explained.reasons(settings.RECOMMENDER_REASON_MIN_CONTRIBUTION)
    except Exception:
        logger.exception("Could not explain a slate; serving it without reasons")
        return (None,) * len(items)
    # An item recommended again after a view is not its own reason.
    return tuple(
        None if reason.item == int(item) else reason.item
        for item, reason in zip(items, found, strict=True)
    )


def sold_out_digest(product_ids) -> str:
    """SoldOutSet.digest of a set of product ids."""
    ids = sorted(int(i) for i in product_ids)
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def sold_out_set(product_ids: list[int]) -> int | None:
    """The SoldOutSet row of these products (created on first sight), None
    for none: one indexed read while the set is unchanged."""
    if not len(product_ids):
        return None
    ids = sorted(int(i) for i in product_ids)
    row, _ = SoldOutSet.objects.get_or_create(
        digest=sold_out_digest(ids), defaults={"product_ids": ids}
    )
    return row.pk


def _unavailable() -> tuple[int | None, list[int], list[int]]:
    """The highest product id, and the ids of the active products out of
    stock and of the retired ones, in one query: the ``product_unavailable``
    partial index holds only those, so its cost follows how many are
    unavailable, not the size of the catalog."""
    rows = list(
        Product.objects.filter(Q(stock=0) | Q(is_active=False))
        .order_by()
        .values_list("pk", "is_active")
        .union(
            # The newest product (a filter, not a slice: SQLite allows no
            # LIMIT in a branch of a compound SELECT).
            Product.objects.filter(pk=Subquery(Product.objects.order_by("-pk").values("pk")[:1]))
            .order_by()
            .values_list("pk", Value(None, BooleanField())),
            all=True,
        )
    )
    last_id = max((pk for pk, active in rows if active is None), default=None)
    sold_out = sorted(pk for pk, active in rows if active is True)
    retired = sorted(pk for pk, active in rows if active is False)
    return last_id, sold_out, retired


policy_server = PolicyServer()
