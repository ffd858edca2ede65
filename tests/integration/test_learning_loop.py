"""The whole loop on the real services: simulated shoppers browse the store
over HTTP, a real Celery worker builds transitions and trains, the new
version is served without a restart, and shoppers click more."""

from __future__ import annotations

import io
import json
import random
import urllib.request

import pytest
from django.core.management import call_command
from django.db.models import Count, Q

from recommender.models import Impression, TrainingRun
from recommender.tasks import sync_target_network
from tests.factories import CategoryFactory, ProductFactory
from tests.integration.conftest import train_and_publish, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BRANDS = ["Northwind", "Fjord", "Alder", "Kestrel", "Marlow", "Sable"]
COLOURS = ["black", "navy", "olive", "sand", "red", "white"]
MATERIALS = ["cotton", "wool", "leather", "steel", "oak"]
# Enough sessions for a few hundred impressions per policy: the learned
# policy's lead over the fallback is then several standard errors.
SESSIONS = 80


def _catalog() -> None:
    categories = [CategoryFactory(name=f"Department {c}", slug=f"department-{c}") for c in range(8)]
    # Products are created in a shuffled order: primary keys (the fallback's
    # tie-break before anything has sold) must not line up with price or category.
    specs = [(c, i) for c in range(8) for i in range(12)]
    random.Random(7).shuffle(specs)
    for c, i in specs:
        ProductFactory(
            category=categories[c],
            name=f"Item {c}-{i}",
            brand=BRANDS[(c + i) % len(BRANDS)],
            colour=COLOURS[(c * 3 + i) % len(COLOURS)],
            material=MATERIALS[i % len(MATERIALS)],
            price=f"{(10 + c * 15 + i * 3)}.00",
            stock=10_000,
        )


def _ctr(policy_name: str) -> tuple[float, int]:
    stats = Impression.objects.filter(policy_name=policy_name).aggregate(
        n=Count("id"), clicked=Count("id", filter=Q(clicks__gt=0))
    )
    return stats["clicked"] / max(stats["n"], 1), stats["n"]


def test_store_learns_from_simulated_shoppers(celery_worker, live_server, settings, throttle_rates):
    settings.RECOMMENDER_RELOAD_SECONDS = 0
    # Every simulated shopper comes from 127.0.0.1, as in the demo's settings.
    throttle_rates(
        events_address="60000/min", recommendations_address="60000/min", cart_address="60000/min"
    )
    _catalog()

    # 1. Shoppers meet the fallback: no policy has been trained yet.
    call_command(
        "simulate_traffic",
        base_url=live_server.url,
        sessions=SESSIONS,
        seed=1,
        stdout=io.StringIO(),
    )
    fallback_ctr, fallback_n = _ctr("popularity")
    assert fallback_n > 300

    # 2. The worker turns sessions into transitions, trains and publishes.
    run, active = train_and_publish(celery_worker, transitions=8 * fallback_n * 0.9, steps=800)
    assert run.steps == 800 and run.replay_size >= 8 * fallback_n * 0.9
    assert run.loss is not None and run.mean_q is not None
    assert active.checks["passed"] is True
    assert set(active.evaluation) >= {"ips", "snips", "dr", "active"}

    sync_target_network.apply_async(
        kwargs={"triggered_by": "integration-test"}, queue=celery_worker
    )
    wait_for(
        lambda: TrainingRun.objects.filter(
            kind=TrainingRun.Kind.SYNC_TARGET, status=TrainingRun.Status.SUCCEEDED
        ).exists(),
        timeout=60,
        what="the target network sync",
    )

    # 3. The web process serves the new version without a restart.
    with urllib.request.urlopen(f"{live_server.url}/api/v1/recommendations/?slot=home") as response:
        served = json.load(response)
    assert served["policy"] == {"name": "dqn", "version": active.version}

    # 4. The same shoppers (same seeds) click more on the learned policy.
    call_command(
        "simulate_traffic",
        base_url=live_server.url,
        sessions=SESSIONS,
        seed=1,
        stdout=io.StringIO(),
    )
    learned_ctr, learned_n = _ctr("dqn")
    assert learned_n > 300
    print(
        f"CTR on the fallback {fallback_ctr:.3f} ({fallback_n}), on v{active.version} {learned_ctr:.3f} ({learned_n})"
    )
    assert learned_ctr > fallback_ctr, (learned_ctr, fallback_ctr)
