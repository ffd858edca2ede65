"""The full-information planner: a strong reference policy that reads the
shopper's hidden state and plans with the simulator's true dynamics.

How it decides one carousel
---------------------------
For each candidate item i it computes, from the true model and the
shopper's hidden tastes, interest, fatigue, cart and remaining patience,

- ``R(i)``: the exact expected immediate reward if i is clicked
  (click weight + P(add | click) * (add weight + P(checkout) * purchase reward);
  a cart is bought with a fixed probability when the shopper leaves, so the
  purchase is known in expectation at the click);
- ``G(i) = R(i) + E[V(next state) | click on i]``: the interest moves to i's
  category, with or without the add-to-cart, and the session may end;
- ``G0 = E[V(next state) | no click]``: one less unit of patience, and the
  shopper either browses to a page of its own choosing (which moves its
  interest there) or goes home.

Under the shopper's position-biased multinomial logit, a carousel S with
attention a_k and click weights v_i = exp(utility_i) is worth

    G0 + sum_k a_k v_k (G_k - G0) / (v0 + sum_k a_k v_k)

and the planner picks the exact maximiser over ordered K-subsets of the
candidates with Dinkelbach's method, whose inner problem (top-K items by
v (G - lambda), the largest at position 0) is solved exactly by sorting
(rearrangement inequality).

The values V
------------
V is the optimal value of the simulator's own MDP over what carries into the
future: the interest state (category of the last product page opened, and
whether that product went into the cart) and the remaining patience. It is
solved per shopper, undiscounted (sessions end by the leave probabilities and
patience), by policy iteration over the (2C + 1) interest states at each
patience level, with the same exact carousel optimisation in every state
(over each category's most promising items). Four things are left out of V,
and only of V: the fatigue and revisit penalties future carousels will add,
the page's exclusions (product on the page, cart), the ``max_requests``
safety cap and the item-level interest some shopper families switch on
(attributes shared with the last page, the price band, novelty), whose state
is not a category. They make V only approximate the future for those
families; the carousel being chosen always uses the shopper's own exact
utilities, add-to-cart probabilities and browsing of the moment
(``Shopper.utilities``, ``cart_probabilities``, ``browse_scores``), so it
reads every mechanism correctly now.

``myopic=True`` drops the future (G = R, G0 = 0): the best carousel for the
immediate expected reward with full knowledge of the shopper. The gap between
the two is what planning for the long term is worth in the simulator.
"""

from __future__ import annotations

import numpy as np

from recommender.rl.simulator.model import Shopper, _sigmoid
from recommender.rl.slate import best_carousels


class OraclePlanner:
    """Plans carousels for simulated shoppers it can see inside of."""

    def __init__(self, myopic: bool = False, tolerance: float = 1e-6) -> None:
        self.myopic = myopic
        self.tolerance = tolerance
        # Value tables are solved once per shopper (its hidden tastes are fixed
        # for the session) and slate size; only the newest shopper is kept.
        self._cache_key: tuple[int, int] | None = None
        self._values: np.ndarray | None = None

    # --- one carousel --------------------------------------------------------

    def plan(
        self, shopper: Shopper, candidate_ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(item ids position 0 first, their G values) of the best carousel of
        ``k`` items among ``candidate_ids`` for ``shopper`` right now."""
        sim = shopper.simulator
        candidate_ids = np.asarray(candidate_ids, dtype=np.int64)
        rows = sim.rows_of(candidate_ids)
        known = rows >= 0
        k = min(int(k), len(candidate_ids))
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        if not known.any():
            return candidate_ids[:k], np.zeros(k)
        candidate_ids, rows = candidate_ids[known], rows[known]
        k = min(k, len(rows))
        p = sim.params
        utility = shopper.utilities(rows)
        cart = shopper.cart_probabilities(rows)
        reward = self._immediate_reward(shopper, rows, cart)
        # Adding an item already in the cart is impossible; its click earns only the click.
        in_cart = np.isin(rows, np.asarray(shopper.cart, dtype=np.int64))
        cart = np.where(in_cart, 0.0, cart)
        reward = np.where(in_cart, sim.rewards.click, reward)
        if self.myopic:
            g_click, g_none = reward, 0.0
        else:
            values = self._value_table(shopper, k)
            patience = max(shopper.patience, 1)
            g_click = reward + self._continuation(shopper, rows, cart, values[patience])
            g_none = self._after_no_click(
                shopper,
                self._browse_categories(shopper.browse_scores(), sim.categories, sim.n_categories),
                values[patience - 1],
                self._state(shopper),
            )
        shift = max(float(utility.max()), p.no_click_utility)
        v = np.exp(utility - shift)[None, :]
        _, chosen = best_carousels(
            v,
            (g_click - g_none)[None, :],
            sim.position_weights[:k],
            float(np.exp(p.no_click_utility - shift)),
        )
        picked = chosen[0]
        return candidate_ids[picked], np.broadcast_to(g_click, rows.shape)[picked]

    # --- the model's pieces ---------------------------------------------------

    @staticmethod
    def _immediate_reward(shopper: Shopper, rows: np.ndarray, cart: np.ndarray) -> np.ndarray:
        """Expected reward of a click on each of ``rows``: the click, the
        add-to-cart and, since a cart is bought with a fixed probability when
        the shopper leaves, the expected purchase."""
        sim = shopper.simulator
        w = sim.rewards
        purchase = sim.params.checkout_probability * sim.purchase_rewards[rows]
        return w.click + cart * (w.add_to_cart + purchase)

    @staticmethod
    def _state(shopper: Shopper) -> int:
        """Index of the shopper's interest state: 0 before any product page,
        then 1 + 2 * category + carted."""
        if shopper.intent_category < 0:
            return 0
        return 1 + 2 * shopper.intent_category + int(shopper.intent_carted)

    @staticmethod
    def _browse_categories(
        scores: np.ndarray, categories: np.ndarray, n_categories: int
    ) -> np.ndarray:
        """Probability of each category for a page the shopper opens on its own,
        from the per-item log-weights ``scores`` (N,) or (S, N)."""
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        per_category = np.zeros((*weights.shape[:-1], n_categories))
        np.add.at(per_category.T, categories, weights.T)
        return per_category / per_category.sum(axis=-1, keepdims=True)

    @staticmethod
    def _after_no_click(
        shopper: Shopper, browse: np.ndarray, values_below: np.ndarray, state: int | np.ndarray
    ) -> np.ndarray:
        """Expected value after a carousel without a click: one less patience
        (``values_below``), and the shopper either browses to a product page of
        its own choosing (``browse``: category probabilities), which moves its
        interest there, or goes back home with its interest unchanged."""
        p = shopper.simulator.params
        n_categories = browse.shape[-1]
        browsed = browse @ values_below[1 + 2 * np.arange(n_categories)]
        stay = 1.0 - p.leave_probability
        return stay * (
            p.browse_probability * browsed + (1.0 - p.browse_probability) * values_below[state]
        )

    @staticmethod
    def _continuation(
        shopper: Shopper, rows: np.ndarray, cart: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """Expected value after a click on each of ``rows``, given the value of
        each interest state at the current patience."""
        sim, p = shopper.simulator, shopper.simulator.params
        base = 1 + 2 * sim.categories[rows]
        stay_after_add = 1.0 - p.leave_after_add_probability
        stay = 1.0 - p.leave_probability
        return cart * stay_after_add * values[base + 1] + (1.0 - cart) * stay * values[base]

    def _value_table(self, shopper: Shopper, k: int) -> np.ndarray:
        """V[patience, interest state], solved for this shopper (cached)."""
        key = (id(shopper), k)
        if self._cache_key != key or self._values is None:
            self._values = self._solve(shopper, k)
            self._cache_key = key
        return self._values

    def _solve(self, shopper: Shopper, k: int) -> np.ndarray:
        """V[patience, interest state] by policy iteration, see the module docstring."""
        sim, p = shopper.simulator, shopper.simulator.params
        n_cat = sim.n_categories
        rows = self._planning_items(shopper, k)
        categories = sim.categories[rows]
        # Category boosts of every interest state: (S, C).
        n_states = 1 + 2 * n_cat
        boosts = np.zeros((n_states, n_cat))
        for c in range(n_cat):
            for carted in (0, 1):
                boosts[1 + 2 * c + carted] = sim.interest_boosts(c, bool(carted))
        item_boost = boosts[:, categories]  # (S, M)
        utility = shopper.appeal[rows][None, :] + item_boost
        cart = _sigmoid(
            p.cart_bias
            + p.cart_affinity * (shopper.affinity[rows][None, :] + item_boost)
            - p.cart_price * shopper.price_sensitivity * sim.log_price_ratio[rows][None, :]
        )
        w = sim.rewards
        reward = w.click + cart * (
            w.add_to_cart + p.checkout_probability * sim.purchase_rewards[rows][None, :]
        )
        shift = max(float(utility.max()), p.no_click_utility)
        v = np.exp(utility - shift)
        v0 = float(np.exp(p.no_click_utility - shift))
        attention = sim.position_weights[: min(k, len(rows))]
        after_click = 1 + 2 * categories
        # Where a shopper browses after a carousel without a click, per interest state
        # (over the whole catalog; pages already visited are ignored here).
        browse_scores = shopper.appeal[None, :] + boosts[:, sim.categories]
        browse = self._browse_categories(browse_scores, sim.categories, n_cat)
        stay = 1.0 - p.leave_probability
        stay_after_add = 1.0 - p.leave_after_add_probability

        values = np.zeros((p.patience_max + 1, n_states))
        states = np.arange(n_states)[:, None]
        for level in range(1, p.patience_max + 1):
            # No click at this patience leads to the level below, already solved.
            g_none = self._after_no_click(shopper, browse, values[level - 1], np.arange(n_states))
            current = values[level - 1].copy()
            chosen = None
            # Policy iteration: improve every state's carousel against the current
            # values, then evaluate the improved carousels exactly (a linear
            # system over the interest states); stop when no carousel changes.
            for _ in range(100):
                g_click = reward + (
                    cart * stay_after_add * current[after_click + 1]
                    + (1.0 - cart) * stay * current[after_click]
                )
                _, improved = best_carousels(v, g_click - g_none[:, None], attention, v0)
                if chosen is not None and np.array_equal(improved, chosen):
                    break
                chosen = improved
                # Click probability of each shown item under the chosen carousels.
                vs = v[states, chosen] * attention
                clicks = vs / (v0 + vs.sum(1, keepdims=True))  # (S, K)
                carted = cart[states, chosen]
                nxt = after_click[chosen]  # (S, K) interest state after the click, not carted
                transition = np.zeros((n_states, n_states))
                np.add.at(
                    transition,
                    (states.repeat(chosen.shape[1], 1), nxt + 1),
                    clicks * carted * stay_after_add,
                )
                np.add.at(
                    transition,
                    (states.repeat(chosen.shape[1], 1), nxt),
                    clicks * (1.0 - carted) * stay,
                )
                gain = (clicks * reward[states, chosen]).sum(1) + (1.0 - clicks.sum(1)) * g_none
                updated = np.linalg.solve(np.eye(n_states) - transition, gain)
                # Policy iteration never lowers values; guard against round-off cycles.
                if np.max(np.abs(updated - current)) < self.tolerance:
                    current = np.maximum(updated, current)
                    break
                current = updated
            values[level] = current
        return values

    @staticmethod
    def _planning_items(shopper: Shopper, k: int) -> np.ndarray:
        """Items the planning optimises over: per category, the k most
        clickable and the k with the best clickability x immediate reward.
        Every interest state shifts the utilities of a category's items
        equally, so (up to the add-to-cart curve) these are the items an
        optimal carousel draws from."""
        sim = shopper.simulator
        cart = shopper.cart_probabilities(np.arange(len(sim.ids)))
        reward = OraclePlanner._immediate_reward(shopper, np.arange(len(sim.ids)), cart)
        weight = np.exp(shopper.appeal - shopper.appeal.max())
        keep = np.zeros(len(sim.ids), dtype=bool)
        for c in np.unique(sim.categories):
            members = np.flatnonzero(sim.categories == c)
            for score in (weight[members], weight[members] * reward[members]):
                keep[members[np.argsort(-score, kind="stable")[:k]]] = True
        return np.flatnonzero(keep)
