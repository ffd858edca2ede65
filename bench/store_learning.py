"""How much the store's first training run improves its carousels, per agent.

For each agent kind (RECOMMENDER_AGENT) and traffic seed, on a throwaway
database (Django's test database for config.settings.test: SQLite by default,
or one beside DATABASE_URL, never your data): a fresh demo catalog of 96
products, simulated shoppers through the store's full request stack while
the popularity fallback serves, one training run that goes live, then the same
shoppers again. Prints the carousel CTR (impressions with a click) under the
fallback and under the learned version, and the gain, per agent and seed.
This is the measurement behind RECOMMENDER_AGENT's default.

    python -m bench.store_learning [--quick] [--json]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import timedelta
from unittest import mock

import numpy as np

from bench._common import parser, print_json, print_table

SESSIONS = 120
STEPS = 800
PRODUCTS = 96


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    from django.test.utils import setup_databases, teardown_databases

    from recommender.conf import AGENT_KINDS

    seeds = [1, 2] if args.quick else [1, 2, 3, 4, 5]
    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        results = {kind: [first_run(kind, seed) for seed in seeds] for kind in AGENT_KINDS}
    finally:
        teardown_databases(old_config, verbosity=0)

    rows = []
    for kind, runs in results.items():
        for seed, run in zip(seeds, runs, strict=True):
            rows.append(
                [
                    kind,
                    seed,
                    f"{run['fallback_ctr']:.3f}",
                    f"{run['learned_ctr']:.3f}",
                    f"{run['learned_ctr'] - run['fallback_ctr']:+.3f}",
                    f"{run['seconds']:.0f}",
                ]
            )
        gains = [run["learned_ctr"] - run["fallback_ctr"] for run in runs]
        rows.append([kind, "mean", "", "", f"{statistics.mean(gains):+.3f}", ""])
    print_table(
        f"Carousel CTR before and after the first training run ({SESSIONS} sessions each side, "
        f"{STEPS} steps, {PRODUCTS} products)",
        ["agent", "seed", "fallback CTR", "learned CTR", "gain", "seconds"],
        rows,
    )
    if args.json:
        print_json({"sessions": SESSIONS, "steps": STEPS, "seeds": seeds, "agents": results})


def first_run(kind: str, seed: int) -> dict:
    """One store from scratch: fallback traffic, one training run, learned traffic."""
    from django.core.cache import cache
    from django.core.management import call_command
    from django.test.utils import override_settings
    from django.utils import timezone

    from recommender.learning.training import policy_train, transitions_build
    from recommender.models import Checkpoint
    from recommender.serving.server import policy_server
    from shop.demo import catalog_seed

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    with (
        tempfile.TemporaryDirectory() as media,
        override_settings(
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            MEDIA_ROOT=media,
            SHOP_CAROUSEL_PROVIDER="recommender.serving.carousels.carousel_provider",
            RECOMMENDER_AGENT=kind,
            RECOMMENDER_MIN_TRANSITIONS=10,
            # Whatever the first run learns goes live: that is what is measured.
            RECOMMENDER_OPE_MARGIN=1e9,
            RECOMMENDER_AUTO_ACTIVATE=True,
            RECOMMENDER_RELOAD_SECONDS=0,
            RECOMMENDER_ELIGIBILITY_TTL=0,
        ),
        # The slates' exploration draws, seeded like the shoppers.
        mock.patch("recommender.serving.recommendations._rng", lambda: rng),
    ):
        call_command("flush", interactive=False, verbosity=0)
        cache.clear()
        policy_server.__init__()  # a new store: forget the previous run's policy
        catalog_seed(seed=seed, product_count=PRODUCTS)
        _traffic(seed)
        transitions_build(now=timezone.now() + timedelta(hours=1))
        run = policy_train(triggered_by="bench", steps=STEPS)
        if not Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).exists():
            raise RuntimeError(f"the first training run did not go live: {run.outcome}")
        _traffic(seed)
        return {
            "fallback_ctr": _ctr("popularity"),
            "learned_ctr": _ctr("dqn"),
            "seconds": time.perf_counter() - start,
        }


def _traffic(seed: int) -> None:
    from recommender.simulation.traffic import (
        InProcessShopClient,
        ShopperDriver,
        shopper_seeds,
        store_simulator,
    )

    simulator = store_simulator(seed=seed)
    for number, shopper_seed in enumerate(shopper_seeds(seed, SESSIONS)):
        ShopperDriver(InProcessShopClient()).run(
            simulator.new_shopper(int(shopper_seed)), session_number=number
        )


def _ctr(policy_name: str) -> float:
    from django.db.models import Count, Q

    from recommender.models import Impression

    stats = Impression.objects.filter(policy_name=policy_name).aggregate(
        n=Count("id"), clicked=Count("id", filter=Q(clicks__gt=0))
    )
    return stats["clicked"] / max(stats["n"], 1)


if __name__ == "__main__":
    main()
