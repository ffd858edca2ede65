"""Shopper families: populations of simulated shoppers that differ in what
drives their taste, so a policy can be judged on shoppers it was not built for.

Each family is a named ``ShopperParams`` with a one-line description. In every
family what a shopper has looked at predicts what it clicks next, each in its
own way, so a personalising policy has something to gain everywhere, and a
policy that only learned one family's regularity does not carry over for free.

``funnel`` is today's default model (``ShopperParams()``, unchanged): the
premium loop behind gateway categories, interest moving to complementary
categories. The other families switch that machinery off (no premium
coldness, no unlocking) and put one driver in its place:

- ``category``: a strong favourite category, and interest in the category
  just looked at;
- ``price_band``: a preferred price band, which follows the prices of the
  product pages opened;
- ``position_insensitive``: today's model, but attention does not fall with
  the position in the carousel;
- ``brand`` (held out): taste for brand and colour, and interest in the
  brand and colour just looked at;
- ``bundle`` (held out): interest moves to the complementary category, away
  from the one just looked at;
- ``novelty`` (held out): drawn to categories not yet looked at, quickly tired
  of what was shown or visited.

The held-out families are the ones the recommender's defaults are not tuned
on; ``FAMILIES`` lists them last so a benchmark runs and reports them last.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from recommender.rl.simulator.model import RewardWeights, ShopperParams, ShopperSimulator
from recommender.rl.types import ItemCatalog


@dataclass(frozen=True)
class ShopperFamily:
    """A named population of simulated shoppers."""

    name: str
    description: str  # one line: what drives this family's taste
    held_out: bool  # the recommender's defaults are not tuned on it
    params: ShopperParams

    def simulator(
        self, catalog: ItemCatalog, seed: int = 0, rewards: RewardWeights | None = None
    ) -> ShopperSimulator:
        """This family's shoppers over ``catalog`` (seeded like ``ShopperSimulator``)."""
        return ShopperSimulator(catalog, params=self.params, rewards=rewards, seed=seed)


def _plain(**drivers) -> ShopperParams:
    """Today's shoppers without the premium loop (no cold premium or gateway
    categories, nothing unlocked, interest not moving to complements), plus
    the ``drivers`` that make a family what it is."""
    return replace(
        ShopperParams(),
        **{
            "premium_offset": 0.0,
            "gateway_offset": 0.0,
            "unlock_bonus": 0.0,
            "complement_boost_click": 0.0,
            "complement_boost_cart": 0.0,
            "self_boost": 0.0,
            **drivers,
        },
    )


DEFAULT_FAMILY = "funnel"
"""The family of ``ShopperParams()``: what the store's demo and the tests simulate."""

_ALL = (
    ShopperFamily(
        "funnel",
        "today's default: gateway categories unlock a premium loop, interest moves to complements",
        held_out=False,
        params=ShopperParams(),
    ),
    ShopperFamily(
        "category",
        "a strong favourite category, and interest in the category just looked at",
        held_out=False,
        params=_plain(taste_scale=0.3, favourite_bonus=1.5, self_boost=1.5),
    ),
    ShopperFamily(
        "price_band",
        "a preferred price band that follows the prices of the pages opened",
        held_out=False,
        params=_plain(
            favourite_bonus=0.0,
            price_sensitivity=0.2,
            price_band_weight=1.5,
            no_click_utility=0.5,
            price_band_spread=0.5,
            price_band_follow=0.5,
        ),
    ),
    ShopperFamily(
        "position_insensitive",
        "today's default, but every carousel position gets the same attention",
        held_out=False,
        params=replace(ShopperParams(), position_decay=1.0),
    ),
    ShopperFamily(
        "brand",
        "taste for brands and colours, and interest in the brand and colour just looked at",
        held_out=True,
        params=_plain(
            taste_scale=0.05, favourite_bonus=0.0, attribute_scale=0.5, attribute_interest=1.0
        ),
    ),
    ShopperFamily(
        "bundle",
        "interest moves to the complementary category, away from the one just looked at",
        held_out=True,
        params=_plain(
            favourite_bonus=0.3,
            complement_boost_click=1.5,
            complement_boost_cart=2.5,
            self_boost=-1.0,
        ),
    ),
    ShopperFamily(
        "novelty",
        "drawn to categories not looked at yet, quickly tired of what was shown or visited",
        held_out=True,
        params=_plain(
            favourite_bonus=0.3,
            novelty_bonus=1.5,
            self_boost=-0.5,
            fatigue_per_impression=0.4,
            revisit_penalty=3.0,
        ),
    ),
)

FAMILIES: dict[str, ShopperFamily] = {f.name: f for f in sorted(_ALL, key=lambda f: f.held_out)}
"""Every family by name: the tuned ones first, the held-out ones last."""


def family(name: str) -> ShopperFamily:
    """The family called ``name``; a ValueError naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown shopper family {name!r}; known families: {', '.join(FAMILIES)}"
        ) from None


def families(names: str | None) -> list[ShopperFamily]:
    """The families of a comma-separated list (``None`` or empty: all), in
    ``FAMILIES`` order (held-out last); a ValueError for an unknown name."""
    if not names or not names.strip():
        return list(FAMILIES.values())
    wanted = {family(n.strip()).name for n in names.split(",") if n.strip()}
    return [f for f in FAMILIES.values() if f.name in wanted]
