"""The shopper model: parameters, reward weights, the population over a catalog
(``ShopperSimulator``) and one shopper's session (``Shopper``).

The package docstring (``recommender/rl/simulator/__init__.py``) explains the
model as a whole; the comments here say why each step is computed as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import numpy as np

from recommender.rl.types import EventType, ItemCatalog, Observation, Slot


@dataclass(frozen=True)
class RewardWeights:
    """Reward of each funnel step, paid to the shown item that caused it.

    The purchase reward of an item is
    ``purchase + purchase_per_unit_price * price + purchase_per_mean_price * price / mean_price``.
    The defaults make it scale-free (an item at the catalog's mean price earns
    5 + 5 = 10); ``RewardWeights(purchase_per_unit_price=settings.RECOMMENDER_REWARD_PURCHASE_PER_UNIT_PRICE,
    purchase_per_mean_price=0.0)`` reproduces the store's own formula.
    """

    click: float = 1.0
    """a click on a carousel item"""
    add_to_cart: float = 3.0
    """the clicked item was added to the cart from its product page"""
    purchase: float = 5.0
    """flat part of the reward for each bought item"""
    purchase_per_unit_price: float = 0.0
    """extra purchase reward per unit of price (store currency)"""
    purchase_per_mean_price: float = 5.0
    """extra purchase reward per multiple of the catalog's mean price"""

    def purchase_reward(self, prices: np.ndarray | float, mean_price: float) -> np.ndarray:
        """Reward for buying items at ``prices`` in a catalog whose mean price is ``mean_price``."""
        prices = np.asarray(prices, dtype=np.float64)
        return (
            self.purchase
            + self.purchase_per_unit_price * prices
            + self.purchase_per_mean_price * prices / max(float(mean_price), 1e-9)
        )


@dataclass(frozen=True)
class ShopperParams:
    """Behaviour of the simulated shoppers. Utilities are logits of a
    multinomial-logit choice; see the package docstring for the model."""

    # --- hidden tastes (drawn per shopper; item quality per catalog) ---
    taste_scale: float = 0.15
    """standard deviation of a shopper's taste for each category"""
    favourite_bonus: float = 0.6
    """extra taste for one favourite category per shopper (drawn uniformly)"""
    attribute_scale: float = 0.1
    """standard deviation of a shopper's weight on each attribute (brand / colour bucket)"""
    quality_scale: float = 0.2
    """standard deviation of an item's hidden quality, shared by all shoppers"""
    price_sensitivity: float = 0.8
    """mean weight of log(price / mean price) against clicking and buying"""
    price_sensitivity_spread: float = 0.1
    """log-normal sigma of the price sensitivity across shoppers"""

    # --- choice among a slate ---
    no_click_utility: float = 1.5
    """utility of clicking nothing; higher means fewer clicks overall"""
    position_decay: float = 0.75
    """attention at position k is ``position_decay ** k`` (position bias)"""

    # --- fatigue ---
    fatigue_per_impression: float = 0.1
    """utility lost by an item each time it was already shown in this session"""
    fatigue_cap: int = 5
    """impressions after which fatigue stops growing"""
    revisit_penalty: float = 1.0
    """utility lost by an item whose page the shopper already visited in this session"""

    # --- category roles (by price level, see ShopperSimulator) ---
    premium_offset: float = -3.0
    """click utility of premium categories (the priciest third) when nothing primed them:
    shoppers rarely click an expensive item out of the blue"""
    gateway_offset: float = -1.0
    """click utility of gateway categories (the cheapest third): less clickable than
    regular ones, but opening one's page primes its premium category"""

    # --- interest that moves along complementary categories ---
    complement_boost_click: float = 0.5
    """utility added to the complement of the category of the last product page opened
    (by a carousel click, by browsing or on landing)"""
    complement_boost_cart: float = 1.0
    """the same boost when that page's item went into the cart (replaces the one above)"""
    self_boost: float = 0.5
    """utility added to the last opened product's own category"""
    unlock_bonus: float = 5.0
    """extra utility when that complement is a premium category (a gateway or premium
    page was opened): it more than cancels the premium coldness"""

    # --- item-level interest (all off by default: 0 leaves the model above unchanged) ---
    attribute_interest: float = 0.0
    """utility added to an item per attribute (brand / colour bucket) it shares with the
    last product page opened: taste that follows the brand and colour just looked at"""
    price_band_weight: float = 0.0
    """utility lost per unit of |log(price / mean price) - price anchor|: a preferred price
    band; the anchor starts at the shopper's own hidden band and follows the prices of the
    product pages it opens"""
    price_band_spread: float = 0.0
    """standard deviation, across shoppers, of the hidden band's centre (log price / mean price)"""
    price_band_follow: float = 0.5
    """share of the way the anchor moves to the log price of each product page opened"""
    novelty_bonus: float = 0.0
    """utility added to the items of categories the shopper has opened no product page of
    in this session: a shopper looking for something it has not seen yet"""

    # --- funnel ---
    cart_bias: float = -1.0
    """add-to-cart logit of an average item after a click"""
    cart_affinity: float = 0.8
    """weight of the shopper's taste and interest for the item in the add-to-cart logit"""
    cart_price: float = 0.5
    """extra price sensitivity at the add-to-cart step, as a multiple of the shopper's own"""
    checkout_probability: float = 0.9
    """probability that a leaving shopper with a non-empty cart checks out (buys the cart)"""

    # --- session length ---
    patience_min: int = 2
    """fewest slates without a click a shopper tolerates before leaving"""
    patience_max: int = 4
    """most slates without a click a shopper tolerates before leaving"""
    leave_probability: float = 0.05
    """chance of leaving after any request, whatever was shown"""
    leave_after_add_probability: float = 0.08
    """chance of leaving right after an add-to-cart (the errand is done)"""
    max_requests: int = 100
    """hard cap on recommendation requests per session (a safety net; rarely reached)"""

    # --- navigation between pages ---
    entry_product_probability: float = 0.6
    """chance that a session starts on a product page (from search) instead of home"""
    entry_any_category_probability: float = 0.0
    """share of those product-page entries whose category is uniform (a search for anything);
    the others are drawn by the shopper's appeal like its own browsing"""
    browse_probability: float = 0.5
    """after a slate without a click, chance of browsing to a product page on one's own"""
    cart_page_probability: float = 0.5
    """after an add-to-cart, chance of going to the cart page instead of staying on the product"""
    dwell_seconds: float = 25.0
    """mean seconds spent on a page (gamma-distributed), which drives the observation ages"""

    def __post_init__(self) -> None:
        probabilities = (
            "checkout_probability",
            "leave_probability",
            "leave_after_add_probability",
            "entry_product_probability",
            "entry_any_category_probability",
            "browse_probability",
            "cart_page_probability",
        )
        for name in probabilities:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ShopperParams.{name} must be in [0, 1]")
        if not 0.0 < self.position_decay <= 1.0:
            raise ValueError("ShopperParams.position_decay must be in (0, 1]")
        if not 1 <= self.patience_min <= self.patience_max:
            raise ValueError("ShopperParams needs 1 <= patience_min <= patience_max")
        if self.max_requests < 1 or self.fatigue_cap < 0:
            raise ValueError("ShopperParams.max_requests must be >= 1 and fatigue_cap >= 0")
        if not 0.0 <= self.price_band_follow <= 1.0:
            raise ValueError("ShopperParams.price_band_follow must be in [0, 1]")
        if self.price_band_weight < 0 or self.price_band_spread < 0:
            raise ValueError("ShopperParams.price_band_weight and price_band_spread must be >= 0")


class Arrival(Enum):
    """How the shopper reached the page it is on; tells an HTTP driver which
    event the store should record when it loads the page."""

    ENTRY = "entry"  # first page of the session (a product page from search is a VIEW)
    CLICK = "click"  # followed a carousel link: the store records the CLICK
    BROWSE = "browse"  # opened a product page on its own: the store records a VIEW
    HOME = "home"  # went back to the home page
    CART = "cart"  # opened the cart page after adding an item


class Page(NamedTuple):
    """The page a shopper is on, i.e. the next recommendation request."""

    slot: Slot
    current_item: int | None  # product id on a product page, else None
    arrival: Arrival


class Reaction(NamedTuple):
    """What a shopper did with one carousel."""

    clicked: int | None  # item id clicked, or None
    position: int | None  # its position in the carousel
    added_to_cart: bool  # the clicked item was added to the cart from its product page
    checked_out: bool  # the shopper bought the whole cart (happens only when leaving)
    left: bool  # the session is over
    purchased: tuple[int, ...]  # item ids bought at checkout (the cart), else ()


class SessionEvent(NamedTuple):
    """One logged interaction, as the store's events table would hold it."""

    item: int
    type: EventType
    time: float  # seconds since the session started


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


REGULAR, GATEWAY, PREMIUM = 0, 1, 2
"""Category roles."""

BROWSE_REVISIT = 10.0
"""Log-weight removed from pages already visited when a shopper browses on its own."""


def category_roles(categories: np.ndarray, prices: np.ndarray, n: int) -> np.ndarray:
    """Role of each category by its mean price: the cheapest third are
    gateways, the priciest third premium, the rest regular (categories without
    items are regular)."""
    roles = np.full(n, REGULAR, dtype=np.int64)
    present = np.unique(categories)
    third = len(present) // 3
    if third:
        level = np.array([np.log(prices[categories == c]).mean() for c in present])
        by_price = present[np.argsort(level, kind="stable")]
        roles[by_price[:third]] = GATEWAY
        roles[by_price[-third:]] = PREMIUM
    return roles


def complement_map(roles: np.ndarray, present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """complement[c], the category whose interest opening a product page in c raises.

    Two loops with one-way doors: the regular categories lead to each other
    around a cycle, the premium categories likewise, and each gateway leads to
    its own premium category (the pairings and cycle orders are seeded). Once in
    the premium loop a shopper's interest stays there while it keeps opening
    premium pages; the only way in is a gateway. A category without items maps
    to itself.
    """
    complement = np.arange(len(roles), dtype=np.int64)
    gateways = rng.permutation(present[roles[present] == GATEWAY])
    premiums = rng.permutation(present[roles[present] == PREMIUM])
    regulars = rng.permutation(present[roles[present] == REGULAR])
    complement[gateways] = premiums
    complement[premiums] = np.roll(premiums, -1)
    complement[regulars] = np.roll(regulars, -1)
    return complement


class ShopperSimulator:
    """A population of simulated shoppers over one catalog.

    Holds what all shoppers share: the catalog, each category's role (by price
    level) and complement, and each item's hidden quality. ``new_shopper``
    starts a session.
    """

    def __init__(
        self,
        catalog: ItemCatalog,
        params: ShopperParams | None = None,
        rewards: RewardWeights | None = None,
        seed: int = 0,
        *,
        complement: np.ndarray | None = None,
    ) -> None:
        """``complement`` overrides the seeded complement map (complement[c] is
        the category whose interest opening a product page in c raises)."""
        if len(catalog) == 0:
            raise ValueError("ShopperSimulator needs a non-empty catalog")
        self.catalog = catalog
        self.params = params or ShopperParams()
        self.rewards = rewards or RewardWeights()
        self.seed = seed
        rng = np.random.default_rng([seed, 0x5107])
        self.categories = np.asarray(catalog.categories, dtype=np.int64)
        if self.categories.min() < 0:
            raise ValueError("ItemCatalog.categories must be non-negative")
        self.n_categories = int(self.categories.max()) + 1
        self.ids = np.asarray(catalog.ids, dtype=np.int64)
        self.attributes = np.asarray(catalog.attributes, dtype=np.float64).reshape(len(catalog), -1)
        self.prices = np.asarray(catalog.prices, dtype=np.float64)
        self.mean_price = float(self.prices.mean())
        # Utilities use log(price / mean price): a shopper's price sensitivity means
        # the same thing whatever the store's currency or price range.
        self.log_price_ratio = np.log(np.maximum(self.prices, 1e-6) / max(self.mean_price, 1e-6))
        self.quality = rng.normal(0.0, self.params.quality_scale, size=len(catalog))
        self.roles = category_roles(self.categories, self.prices, self.n_categories)
        offsets = {
            REGULAR: 0.0,
            GATEWAY: self.params.gateway_offset,
            PREMIUM: self.params.premium_offset,
        }
        self.category_offset = np.array([offsets[int(r)] for r in self.roles])
        if complement is None:
            complement = complement_map(self.roles, np.unique(self.categories), rng)
        complement = np.asarray(complement, dtype=np.int64)
        if complement.shape != (self.n_categories,) or not np.all(
            (complement >= 0) & (complement < self.n_categories)
        ):
            raise ValueError("complement must map every category index to a category index")
        self.complement = complement
        self.purchase_rewards = self.rewards.purchase_reward(self.prices, self.mean_price)
        self.position_weights = self.params.position_decay ** np.arange(256, dtype=np.float64)
        # Sorted ids for vectorised id -> row lookups (ItemCatalog.index_of loops in Python).
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted_ids = self.ids[self._order]
        if np.any(self._sorted_ids[1:] == self._sorted_ids[:-1]):
            raise ValueError("ItemCatalog.ids must be unique")

    def rows_of(self, item_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Catalog rows of ``item_ids``, -1 for ids the catalog does not hold."""
        query = np.asarray(
            item_ids if isinstance(item_ids, np.ndarray) else list(item_ids), dtype=np.int64
        )
        pos = np.minimum(np.searchsorted(self._sorted_ids, query), len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[pos] == query, self._order[pos], -1).astype(np.int64)

    def new_shopper(self, seed: int | np.random.Generator | None = None) -> Shopper:
        """Start a session of a freshly drawn shopper (seeded: same seed, same shopper)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return Shopper(self, rng)

    def interest_boosts(self, category: int, carted: bool) -> np.ndarray:
        """(C,) utility each category gains once the shopper opened a product
        page in ``category`` (-1: none yet), ``carted`` if that product went
        into the cart: the complement gains the most (a premium complement is
        unlocked), the category itself a little."""
        p = self.params
        boosts = np.zeros(self.n_categories)
        if category >= 0:
            boosts[category] += p.self_boost
            target = self.complement[category]
            boosts[target] += p.complement_boost_cart if carted else p.complement_boost_click
            if self.roles[target] == PREMIUM:
                boosts[target] += p.unlock_bonus
        return boosts

    def candidates(self, page: Page, cart_items: Iterable[int] = ()) -> np.ndarray:
        """Eligible item ids for a page, as the store filters them: every
        catalog item except the product on the page and the cart's items."""
        excluded = set(int(i) for i in cart_items)
        if page.current_item is not None:
            excluded.add(int(page.current_item))
        if not excluded:
            return self.ids
        keep = np.ones(len(self.ids), dtype=bool)
        rows = self.rows_of(excluded)
        keep[rows[rows >= 0]] = False
        return self.ids[keep]


class Shopper:
    """One simulated shopping session, driven one carousel at a time.

    The shopper never sees a policy: a driver (the benchmark's episode runner,
    or the store's ``simulate_traffic`` command over HTTP) reads ``page``, shows
    a carousel for it and passes the shown item ids, in order, to ``react``.
    """

    def __init__(self, simulator: ShopperSimulator, rng: np.random.Generator) -> None:
        self.simulator = sim = simulator
        self.rng = rng
        p = sim.params
        # Hidden state drawn once per shopper (the oracle may read it; policies may not).
        self.taste = rng.normal(0.0, p.taste_scale, size=sim.n_categories)
        present = np.unique(sim.categories)
        self.favourite = int(rng.choice(present))
        self.taste[self.favourite] += p.favourite_bonus
        self.attribute_taste = rng.normal(0.0, p.attribute_scale, size=sim.attributes.shape[1])
        self.price_sensitivity = p.price_sensitivity * float(
            np.exp(rng.normal(0.0, p.price_sensitivity_spread))
        )
        self.patience = int(rng.integers(p.patience_min, p.patience_max + 1))
        # Affinity = taste for the item regardless of price; appeal subtracts price.
        self.affinity = (
            self.taste[sim.categories] + sim.attributes @ self.attribute_taste + sim.quality
        )
        self.appeal = (
            self.affinity
            + sim.category_offset[sim.categories]
            - self.price_sensitivity * sim.log_price_ratio
        )
        # A preferred price band (log price / mean price), drawn only when the band
        # matters, so that shoppers without one draw exactly what they always drew.
        self.price_anchor = 0.0
        if p.price_band_weight > 0 and p.price_band_spread > 0:
            self.price_anchor = float(rng.normal(0.0, p.price_band_spread))
        # Dynamic state.
        self.intent_category = -1  # category of the last product page opened, -1 before any
        self.intent_carted = False  # whether that product went into the cart
        self.intent_row = -1  # catalog row of the last product page opened, -1 before any
        self.opened_categories = np.zeros(sim.n_categories, dtype=np.int64)  # pages per category
        self.shown_counts = np.zeros(len(sim.ids), dtype=np.int64)
        self.visited = np.zeros(len(sim.ids), dtype=bool)
        self.cart: list[int] = []  # catalog rows, in order of adding
        self.events: list[SessionEvent] = []
        self.clock = 0.0
        self.requests = 0
        self.done = False
        self.checked_out = False
        # First page: a product found through search (a VIEW), or the home page.
        # Some searches are for any kind of product (a uniform category), the
        # others follow the shopper's taste; the product within the category does.
        if rng.random() < p.entry_product_probability:
            if rng.random() < p.entry_any_category_probability:
                members = np.flatnonzero(sim.categories == int(rng.choice(present)))
            else:
                members = np.arange(len(sim.ids))
            score = self.appeal[members] + self.item_interest(members)
            row = int(members[np.argmax(score + rng.gumbel(size=len(members)))])
            self.page: Page | None = Page(Slot.PRODUCT, int(sim.ids[row]), Arrival.ENTRY)
            self._view(row)
        else:
            self.page = Page(Slot.HOME, None, Arrival.ENTRY)

    # --- the model ---------------------------------------------------------

    def category_boosts(self) -> np.ndarray:
        """(C,) utility added to each category by the current interest."""
        return self.simulator.interest_boosts(self.intent_category, self.intent_carted)

    def item_interest(self, rows: np.ndarray) -> np.ndarray:
        """Utility the current interest adds to catalog ``rows``: the category
        boosts, plus the item-level mechanisms a ``ShopperParams`` switches on
        (attributes shared with the last page opened, the price band, novelty).
        Each is computed only when switched on, so the default shoppers'
        utilities are exactly the category boosts."""
        sim, p = self.simulator, self.simulator.params
        interest = self.category_boosts()[sim.categories[rows]]
        if p.attribute_interest and self.intent_row >= 0:
            shared = sim.attributes[rows] @ sim.attributes[self.intent_row]
            interest = interest + p.attribute_interest * shared
        if p.price_band_weight:
            distance = np.abs(sim.log_price_ratio[rows] - self.price_anchor)
            interest = interest - p.price_band_weight * distance
        if p.novelty_bonus:
            unseen = self.opened_categories[sim.categories[rows]] == 0
            interest = interest + p.novelty_bonus * unseen
        return interest

    def utilities(self, rows: np.ndarray) -> np.ndarray:
        """Click utility of catalog ``rows`` now: appeal + interest - fatigue."""
        p = self.simulator.params
        fatigue = p.fatigue_per_impression * np.minimum(self.shown_counts[rows], p.fatigue_cap)
        fatigue = fatigue + p.revisit_penalty * self.visited[rows]
        return self.appeal[rows] + self.item_interest(rows) - fatigue

    def cart_probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Probability of adding each of ``rows`` to the cart once its page is open."""
        sim, p = self.simulator, self.simulator.params
        logit = (
            p.cart_bias
            + p.cart_affinity * (self.affinity[rows] + self.item_interest(rows))
            - p.cart_price * self.price_sensitivity * sim.log_price_ratio[rows]
        )
        return _sigmoid(logit)

    def click_probabilities(self, shown_items: Sequence[int] | np.ndarray) -> np.ndarray:
        """Exact probability of clicking each shown item (in order); the rest to 1
        is the probability of no click. Unknown ids are never clicked."""
        rows = self.simulator.rows_of(shown_items)
        return self._click_probabilities(rows)

    def _click_probabilities(self, rows: np.ndarray) -> np.ndarray:
        sim, p = self.simulator, self.simulator.params
        weights = np.zeros(len(rows))
        known = rows >= 0
        if known.any():
            # Multinomial logit over the shown items and "no click", each item's
            # weight scaled by the attention its position gets.
            u = self.utilities(rows[known])
            shift = max(float(u.max()), p.no_click_utility)
            weights[known] = sim.position_weights[: len(rows)][known] * np.exp(u - shift)
            return weights / (np.exp(p.no_click_utility - shift) + weights.sum())
        return weights

    # --- the session ---------------------------------------------------------

    def react(self, shown_items: Sequence[int] | np.ndarray) -> Reaction:
        """The shopper looks at the carousel ``shown_items`` (ids, position 0
        first) on ``self.page`` and reacts; ``self.page`` becomes the next page."""
        if self.done:
            raise RuntimeError("this shopper has left; start a new one")
        sim, p, rng = self.simulator, self.simulator.params, self.rng
        shown = np.asarray(list(shown_items), dtype=np.int64)[: len(sim.position_weights)]
        rows = sim.rows_of(shown)
        probabilities = self._click_probabilities(rows)
        draw = rng.random()
        cumulative = np.cumsum(probabilities)
        position = int(np.searchsorted(cumulative, draw, side="right"))
        clicked = position < len(rows) and probabilities[position] > 0.0
        # Fatigue counts this impression only after the choice it influenced.
        seen = rows[rows >= 0]
        np.add.at(self.shown_counts, seen, 1)
        self.requests += 1
        self.clock += rng.gamma(2.0, p.dwell_seconds / 2.0)

        added = False
        leave_chance = p.leave_probability
        if clicked:
            row = int(rows[position])
            self._log(row, EventType.CLICK)
            self.visited[row] = True
            if row not in self.cart and rng.random() < self.cart_probabilities(np.array([row]))[0]:
                added = True
                self.clock += rng.gamma(2.0, p.dwell_seconds / 4.0)
                self._log(row, EventType.ADD_TO_CART)
                self.cart.append(row)
                leave_chance = p.leave_after_add_probability
            # Interest moves on: this click (and whether it was bought into the cart)
            # now sets which categories get a boost.
            self._open(row, carted=added)
            if added and rng.random() < p.cart_page_probability:
                next_page = Page(Slot.CART, None, Arrival.CART)
            else:
                next_page = Page(Slot.PRODUCT, int(sim.ids[row]), Arrival.CLICK)
            leaving = rng.random() < leave_chance
        else:
            # A disappointing carousel uses up patience; at zero the shopper leaves.
            self.patience -= 1
            leaving = self.patience <= 0 or rng.random() < leave_chance
            next_page = None
            if not leaving:
                if rng.random() < p.browse_probability:
                    target = self._browse_target()
                    next_page = Page(Slot.PRODUCT, int(sim.ids[target]), Arrival.BROWSE)
                    self._view(target)
                else:
                    next_page = Page(Slot.HOME, None, Arrival.HOME)
        leaving = leaving or self.requests >= p.max_requests

        purchased: tuple[int, ...] = ()
        if leaving:
            self.done = True
            self.page = None
            if self.cart and rng.random() < p.checkout_probability:
                self.checked_out = True
                self.clock += rng.gamma(2.0, p.dwell_seconds / 2.0)
                for cart_row in self.cart:
                    self._log(cart_row, EventType.PURCHASE)
                purchased = tuple(int(sim.ids[r]) for r in self.cart)
        else:
            self.page = next_page
        return Reaction(
            clicked=int(shown[position]) if clicked else None,
            position=position if clicked else None,
            added_to_cart=added,
            checked_out=bool(purchased),
            left=leaving,
            purchased=purchased,
        )

    def observation(self, recent_window: int = 20) -> Observation:
        """The state the store would build for ``self.page``'s recommendation
        request: the newest ``recent_window`` events with their ages on the
        session clock, the cart, the slot, the product on the page and how
        many requests came before."""
        if self.page is None:
            raise RuntimeError("this shopper has left; there is no next request")
        sim = self.simulator
        recent = self.events[-recent_window:] if recent_window > 0 else []
        return Observation(
            slot=self.page.slot,
            current_item=self.page.current_item,
            recent_items=tuple(e.item for e in recent),
            recent_events=tuple(int(e.type) for e in recent),
            recent_ages=tuple(max(self.clock - e.time, 0.0) for e in recent),
            cart_items=tuple(int(sim.ids[r]) for r in self.cart),
            page_depth=self.requests,
        )

    @property
    def cart_items(self) -> tuple[int, ...]:
        """Item ids in the cart, in order of adding."""
        return tuple(int(self.simulator.ids[r]) for r in self.cart)

    def candidates(self) -> np.ndarray:
        """Eligible item ids for the current page, filtered as the store does."""
        if self.page is None:
            raise RuntimeError("this shopper has left")
        return self.simulator.candidates(self.page, self.cart_items)

    def browse_scores(self) -> np.ndarray:
        """(N,) log-weights of the product pages the shopper may open on its own:
        appeal plus interest, pages already visited all but excluded."""
        rows = np.arange(len(self.simulator.ids))
        return self.appeal + self.item_interest(rows) - BROWSE_REVISIT * self.visited

    def _browse_target(self) -> int:
        """A product page the shopper opens on its own (search, category menus):
        drawn by its appeal plus interest, so it reveals the shopper's taste."""
        score = self.browse_scores()
        return int(np.argmax(score + self.rng.gumbel(size=len(score))))

    def _view(self, row: int) -> None:
        """The shopper opened a product page on its own: a VIEW, and its interest
        moves to that product's category as after a click."""
        self._log(row, EventType.VIEW)
        self._open(row, carted=False)

    def _open(self, row: int, *, carted: bool) -> None:
        """A product page was opened (a click or a view): the interest moves to
        it, and to whether it went into the cart."""
        sim, p = self.simulator, self.simulator.params
        self.intent_category = int(sim.categories[row])
        self.intent_carted = carted
        self.intent_row = row
        self.opened_categories[self.intent_category] += 1
        if p.price_band_weight:
            follow = p.price_band_follow
            self.price_anchor += follow * (float(sim.log_price_ratio[row]) - self.price_anchor)

    def _log(self, row: int, event_type: EventType) -> None:
        self.events.append(SessionEvent(int(self.simulator.ids[row]), event_type, self.clock))
        if event_type == EventType.VIEW:
            self.visited[row] = True
