"""Simulated shoppers to train and judge carousel policies without a store.

The simulator runs on any ``ItemCatalog`` (the store passes its real catalog;
``make_catalog`` builds seeded synthetic ones) and is used two ways:

- **step by step**, by a driver that knows nothing of the policy (the store's
  ``simulate_traffic`` command talks to the store over HTTP)::

      simulator = ShopperSimulator(catalog, seed=0)
      shopper = simulator.new_shopper(seed=42)
      while not shopper.done:
          page = shopper.page              # Page(slot, current_item, arrival)
          # open the page: arrival CLICK -> follow the carousel link (the store logs
          # the click), BROWSE/ENTRY on a product -> a plain visit (the store logs a
          # view), HOME / CART -> those pages; then fetch the carousel for
          # (page.slot, page.current_item)
          reaction = shopper.react(shown_item_ids)   # ids in carousel order
          # reaction.clicked (id or None), .position, .added_to_cart (the clicked
          # item, from its product page), .checked_out (buys the whole cart),
          # .purchased (ids bought), .left (the session is over)

  ``shopper.candidates()`` lists what the store would consider eligible for
  the current page (every item except the product on the page and the cart).

- **as episodes**, for benchmarks and training: ``run_session`` /
  ``run_sessions`` let a ``Policy`` serve every carousel, building each
  ``Observation`` exactly as the store does (slot, product on the page, newest
  events with their ages on the session clock, cart, page depth) and returning
  a ``SessionLog`` with one ``Transition`` per shown item. An item's
  reward is what it caused: the click, the add-to-cart and, if the session
  ends in a checkout, the purchase (attributed back to the impression that
  showed it); ``next_state`` is the observation at the next request and the
  last carousel's transitions are ``done``.

The model (``model.py``, parameters in ``ShopperParams``)
---------------------------------------------------------
*The world* (``ShopperSimulator``, per catalog and seed). Categories get a
role by price level: the cheapest third are **gateways**, the priciest third
**premium**, the rest **regular**. Each category has a complement: regular
categories lead to one another around a seeded cycle, each gateway leads to
its own premium category, and the premium categories lead to one another (a
loop whose only doors in are the gateways). Every item has a hidden quality
shared by all shoppers.

*A shopper* (``Shopper``, drawn per session) has hidden tastes: a taste per
category (one favourite gets a bonus), weights on the attributes (brand and
colour buckets), a price sensitivity beta, and a patience of 2 to 4
disappointing carousels. Showing item i (category c) gives it the utility

    u_i = taste[c] + w . x_i + quality_i + offset[role(c)]
          - beta * log(price_i / mean price) + interest[c] - fatigue_i

Premium categories are cold (offset -3: nobody clicks an expensive item out of
the blue) and gateways slightly below regular (offset -1).

*Interest* follows the last product page the shopper opened (a carousel
click, its own browsing or its landing page): that category gains a little,
its complement gains more (more again if the item went into the cart), and a
premium complement also gains ``unlock_bonus``, which more than cancels its
coldness. So a gateway page unlocks its premium category, and a premium page
the next one.

*Item-level interest* (off by default; ``ShopperParams.attribute_interest``,
``price_band_weight``, ``novelty_bonus``): an item can also gain for sharing
brand and colour with the last page opened, lose for lying far from a price
band that follows the prices of the pages opened, or gain for belonging to a
category not opened yet in the session. Shopper families (``families.py``)
switch these on, one driver each; ``FAMILIES["funnel"]`` is the model
described here.

*Choice* is a multinomial logit over the carousel and "no click", each item's
weight scaled by the attention of its position (``position_decay ** k``:
position bias). *Fatigue*: every earlier impression of an item in the session
costs it utility (up to a cap), and so does having visited its page.

*Funnel*: a click opens the item's page; the shopper adds it to the cart with
a probability rising with taste and interest and falling with price; when the
shopper leaves with a non-empty cart it checks out (buys the whole cart) with
``checkout_probability``. *Session*: a carousel without a click uses up one
unit of patience (at zero the shopper leaves); any request ends the session
with a small probability, higher right after an add-to-cart. After a click
the shopper is on the product page (or, after an add, sometimes the cart);
after a disappointing carousel it browses to a product page of its own
choosing (drawn by appeal, which reveals its taste) or goes home. Page dwell
times drive the observation's event ages. *Rewards* (``RewardWeights``):
click 1, add-to-cart 3, purchase 5 + 5 x price / mean price, by default.

Why the myopic and the long-term optimum differ
-----------------------------------------------
The most valuable purchases are premium, and premium items only sell once a
gateway (or another premium) page primed them. A gateway item is worth less
than a regular one *now* (less clickable, cheap, so a small purchase reward),
so a policy that maximises each carousel's reward shows regular items and
only enters the premium loop when the shopper's own browsing happens to
open a gateway. A long-term policy shows gateways first and then harvests
the premium loop for the rest of the session. Everything that decides this
is in the observation: the product on the page (or the newest viewed and
clicked items), the cart, the slot and the page depth; the shopper's
favourite shows in its landing page and browsing.

The oracle (``oracle.py``)
--------------------------
``OraclePlanner`` reads the shopper's hidden tastes and state and plans with
the true dynamics: exact expected immediate rewards, a value function solved
per shopper by policy iteration over (interest state x remaining patience),
and the exact best carousel under the position-biased logit (Dinkelbach's
method). It ignores only future fatigue, future page exclusions and the
session-length safety cap when valuing the future. It is a strong reference
policy, not a bound; ``OraclePlanner(myopic=True)`` is the same planner
without a future, and the gap between the two is what long-term planning is
worth in the simulator.
"""

from recommender.rl.simulator.catalog import make_catalog
from recommender.rl.simulator.episodes import SessionLog, run_session, run_sessions, session_rngs
from recommender.rl.simulator.model import (
    Arrival,
    Page,
    Reaction,
    RewardWeights,
    SessionEvent,
    Shopper,
    ShopperParams,
    ShopperSimulator,
)
from recommender.rl.simulator.oracle import OraclePlanner

__all__ = [
    "Arrival",
    "OraclePlanner",
    "Page",
    "Reaction",
    "RewardWeights",
    "SessionEvent",
    "SessionLog",
    "Shopper",
    "ShopperParams",
    "ShopperSimulator",
    "make_catalog",
    "run_session",
    "run_sessions",
    "session_rngs",
]
