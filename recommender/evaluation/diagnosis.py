"""How much a stored policy personalises: the numbers behind
``manage.py diagnose_policy``.

Two views of one checkpoint, both read-only:

- over the states the store logged with its recent impressions,
  ``recommender.rl.diagnostics.personalisation_report`` per slot: how much the
  top-k changes across states and against the same request with no context,
  how often it holds the category of the newest session item (beside the share
  of candidates in that category), and which of Q's additive parts (the item
  bias b(i), the interaction <f(s), g(i)>) explain its variance across items,
  with the state as logged and with it zeroed;
- the category probe: one new shopper per category views three of its
  products, then gets the home carousel, and the product-page carousel of the
  third product, as the store would serve them greedily (in-stock candidates,
  near-duplicates apart). Reported: the mean Jaccard between the shoppers' home
  carousels, the share of carousel items in the category they viewed beside
  that category's share of the candidates, and the share of home items that
  name a viewed product as their reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from django.conf import settings

from recommender.models import Checkpoint, Impression
from recommender.rl.diagnostics import (
    PersonalisationReport,
    mean_pairwise_jaccard,
    personalisation_report,
)
from recommender.rl.explain import reasons, session_items
from recommender.rl.learner import Learner
from recommender.rl.types import EventType, ItemCatalog, Observation, Slot
from recommender.serving import features
from recommender.serving.server import reason_scorer
from shop.models import Product

SLOTS = (("home", Slot.HOME), ("product", Slot.PRODUCT), ("cart", Slot.CART))
VIEWS_PER_SHOPPER = 3
# Seconds between the probe shopper's page views.
VIEW_SPACING = 30.0


@dataclass(frozen=True)
class CategoryProbe:
    """What ``category_probe`` measured (see the module docstring)."""

    shoppers: int
    k: int
    home_jaccard: float
    home_related_share: float
    home_related_chance: float
    product_related_share: float
    product_related_chance: float
    home_explained_share: float  # home items whose reason is a product the shopper viewed


@dataclass(frozen=True)
class PolicyDiagnosis:
    version: int
    agent: str
    k: int
    logged: dict[str, PersonalisationReport]  # "all", then per slot with states
    with_context: dict[str, PersonalisationReport]  # the same over states with a session item
    # States with no session item: what changes their top-k is the page depth alone.
    without_context: PersonalisationReport | None
    probe: CategoryProbe | None

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "agent": self.agent,
            "k": self.k,
            "logged": {name: report.to_dict() for name, report in self.logged.items()},
            "with_context": {name: r.to_dict() for name, r in self.with_context.items()},
            "without_context": (
                self.without_context.to_dict() if self.without_context is not None else None
            ),
            "probe": asdict(self.probe) if self.probe is not None else None,
        }


def logged_observations(*, limit: int) -> list[Observation]:
    """The states of the store's ``limit`` most recent impressions."""
    states = Impression.objects.order_by("-created_at").values_list("state", flat=True)[:limit]
    return [Observation.from_dict(state) for state in states]


def _reports(agent: Learner, observations: Sequence[Observation], k: int) -> dict:
    found = {}
    if observations:
        found["all"] = personalisation_report(agent, observations, k)
    for name, slot in SLOTS:
        of_slot = [obs for obs in observations if obs.slot == slot]
        if of_slot:
            found[name] = personalisation_report(agent, of_slot, k)
    return found


# ---------------------------------------------------------------------------
# The category probe
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidates:
    ids: np.ndarray  # active, in stock
    categories: np.ndarray
    groups: np.ndarray  # near-duplicate groups, as serving forms them


def _in_stock() -> _Candidates:
    rows = list(
        Product.objects.filter(is_active=True, stock__gt=0)
        .order_by("pk")
        .values_list("pk", "category_id", "brand", "name", "colour")
    )
    return _Candidates(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        categories=np.array([r[1] for r in rows], dtype=np.int64),
        groups=features.near_duplicate_groups(
            features.near_duplicate_key(category_id=c, brand=b, name=n, colour=colour)
            for _, c, b, n, colour in rows
        ),
    )


def probe_observations(viewed: Sequence[int]) -> tuple[Observation, Observation]:
    """The states the store logs for a new shopper who viewed ``viewed`` in
    turn, VIEW_SPACING seconds apart (as ``features.session_observation`` builds
    them): on the last product's page (that view already recorded, two
    carousels served before), then back on the home page a moment later."""
    n = len(viewed)
    on_page = Observation(
        slot=Slot.PRODUCT,
        current_item=int(viewed[-1]),
        recent_items=tuple(int(i) for i in viewed),
        recent_events=(int(EventType.VIEW),) * n,
        recent_ages=tuple(VIEW_SPACING * (n - 1 - j) for j in range(n)),
        page_depth=n - 1,
    )
    home = Observation(
        slot=Slot.HOME,
        recent_items=on_page.recent_items,
        recent_events=on_page.recent_events,
        recent_ages=tuple(age + VIEW_SPACING for age in on_page.recent_ages),
        page_depth=n,
    )
    return on_page, home


def _greedy(agent: Learner, obs: Observation, candidates: _Candidates, k: int) -> np.ndarray:
    exclude = [i for i in (obs.current_item, *obs.cart_items) if i is not None]
    keep = ~np.isin(candidates.ids, exclude)
    slate = agent.act(
        obs,
        candidates.ids[keep],
        k,
        np.random.default_rng(0),
        epsilon=0.0,
        groups=candidates.groups[keep],
    )
    return slate.items


def category_probe(agent: Learner, *, k: int, seed: int = 0) -> CategoryProbe | None:
    """The issue's probe (see the module docstring); None when no category has
    VIEWS_PER_SHOPPER products in stock."""
    candidates = _in_stock()
    rng = np.random.default_rng(seed)
    category_of = dict(zip(candidates.ids.tolist(), candidates.categories.tolist(), strict=True))
    homes, home_shares, home_chances, page_shares, page_chances, explained = [], [], [], [], [], []
    for category in np.unique(candidates.categories):
        members = candidates.ids[candidates.categories == category]
        if len(members) < VIEWS_PER_SHOPPER:
            continue
        viewed = rng.choice(members, VIEWS_PER_SHOPPER, replace=False).tolist()
        on_page, home = probe_observations(viewed)
        for obs, shares, chances in (
            (home, home_shares, home_chances),
            (on_page, page_shares, page_chances),
        ):
            items = _greedy(agent, obs, candidates, k)
            shares.append(np.mean([category_of[int(i)] == category for i in items]))
            others = candidates.ids[candidates.ids != obs.current_item]
            chances.append(np.mean([category_of[int(i)] == category for i in others]))
            if obs is home:
                homes.append(frozenset(int(i) for i in items))
                found = reasons(
                    reason_scorer(agent, candidates.ids),
                    home,
                    items,
                    min_contribution=settings.RECOMMENDER_REASON_MIN_CONTRIBUTION,
                )
                explained.append(np.mean([r.item in viewed for r in found]))
    if not homes:
        return None
    return CategoryProbe(
        shoppers=len(homes),
        k=k,
        home_jaccard=mean_pairwise_jaccard(homes),
        home_related_share=float(np.mean(home_shares)),
        home_related_chance=float(np.mean(home_chances)),
        product_related_share=float(np.mean(page_shares)),
        product_related_chance=float(np.mean(page_chances)),
        home_explained_share=float(np.mean(explained)),
    )


# ---------------------------------------------------------------------------
# The whole diagnosis
# ---------------------------------------------------------------------------


def diagnose(
    *,
    checkpoint: Checkpoint,
    states: int,
    k: int,
    seed: int = 0,
    catalog: ItemCatalog | None = None,
) -> PolicyDiagnosis:
    """Both views of ``checkpoint``'s policy over the current catalog."""
    from recommender.rl.agents import agent_kind, load_agent

    agent = load_agent(bytes(checkpoint.weights), catalog=catalog or features.build_catalog())
    observations = logged_observations(limit=states)
    without = [o for o in observations if not session_items(o)]
    return PolicyDiagnosis(
        version=checkpoint.version,
        agent=agent_kind(agent),
        k=k,
        logged=_reports(agent, observations, k),
        with_context=_reports(agent, [o for o in observations if session_items(o)], k),
        without_context=personalisation_report(agent, without, k) if without else None,
        probe=category_probe(agent, k=k, seed=seed),
    )
