"""recommender.learning.publishing beyond the off-policy gate (tested with training in
test_training.py): the personalisation check, the baselines' estimates beside
each version, and off-policy slots that leave out near-duplicates."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from django.utils import timezone

from recommender.learning import publishing
from recommender.learning.training import policy_train, transitions_build
from recommender.models import Checkpoint, Event, Impression
from recommender.rl.agent import DQNAgent
from recommender.rl.baselines import CooccurrencePolicy, PopularityPolicy, SameCategoryPolicy
from recommender.rl.diagnostics import cold
from recommender.rl.types import EventType, ItemCatalog, Observation, Slot
from recommender.serving import features
from recommender.serving.checkpoints import checkpoint_activate
from recommender.simulation.traffic import (
    InProcessShopClient,
    ShopperDriver,
    shopper_seeds,
    store_simulator,
)
from tests.recommender.rl.factories import item_catalog
from tests.recommender.support import Shopper, make_catalog

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]

ESTIMATORS = {"ips", "snips", "dr"}


@pytest.fixture
def history(db, settings, monkeypatch):
    """Simulated shoppers through the full request stack over a 60-product
    catalog, turned into transitions; any trained policy may pass the
    off-policy gate."""
    settings.RECOMMENDER_MIN_TRANSITIONS = 80
    settings.RECOMMENDER_TRAIN_STEPS = 5
    settings.RECOMMENDER_OPE_MARGIN = 1.0
    rng = np.random.default_rng(11)
    monkeypatch.setattr("recommender.serving.recommendations._rng", lambda: rng)
    make_catalog(products=60, categories=6, stock=1000)
    simulator = store_simulator(seed=3)
    for number, seed in enumerate(shopper_seeds(3, 40)):
        ShopperDriver(InProcessShopClient()).run(
            simulator.new_shopper(int(seed)), session_number=number
        )
        if Impression.objects.count() * 8 >= 160:
            break
    assert transitions_build(now=timezone.now() + timedelta(hours=1)).created >= 80


def _state_blind_learner(monkeypatch) -> None:
    """Every per-item learner (the one trained next, and the weights it publishes)
    ranks every request as if the session were new."""
    real = DQNAgent.ranking_scores
    monkeypatch.setattr(
        DQNAgent,
        "ranking_scores",
        lambda agent, observations, mask, k: real(
            agent, [cold(obs) for obs in observations], mask, k
        ),
    )


# ---------------------------------------------------------------------------
# Personalisation
# ---------------------------------------------------------------------------


def test_a_candidate_that_ignores_the_shoppers_state_is_kept_but_not_activated(
    history, monkeypatch, settings
):
    settings.RECOMMENDER_AGENT = "per_item"
    settings.RECOMMENDER_PERSONALISATION_MAX_JACCARD = 0.9
    _state_blind_learner(monkeypatch)

    run = policy_train()

    assert run.outcome == "Published v1 (rejected)."
    checkpoint = Checkpoint.objects.get()
    assert checkpoint.status == Checkpoint.Status.REJECTED
    assert checkpoint.note.startswith("Rejected: ignores the shopper's state")
    assert checkpoint.checks["personalised"] is False
    assert checkpoint.checks["passed"] is False
    report = checkpoint.checks["personalisation"]
    assert report["jaccard_vs_cold"] == pytest.approx(1.0)
    assert report["max_jaccard"] == 0.9
    with_context = Impression.objects.exclude(state__recent_items=[]).count()
    assert 0 < report["n_states"] <= with_context
    assert Shopper().recommend()["policy"]["name"] == "popularity"
    # An admin can still put it live by hand.
    checkpoint_activate(checkpoint=checkpoint)
    assert Shopper().recommend()["policy"] == {"name": "dqn", "version": 1}


@pytest.mark.parametrize("kind", ["per_item", "slateq"])
def test_a_candidate_whose_ranking_follows_the_state_passes_with_its_figures(
    history, settings, kind
):
    settings.RECOMMENDER_AGENT = kind
    settings.RECOMMENDER_PERSONALISATION_MAX_JACCARD = 1.0  # only a state-blind ranking fails

    policy_train()

    checkpoint = Checkpoint.objects.get()
    report = checkpoint.checks["personalisation"]
    assert checkpoint.checks["personalised"] is True, report
    assert checkpoint.status == Checkpoint.Status.ACTIVE
    assert 0.0 <= report["jaccard_vs_cold"] < 1.0
    assert 0.0 <= report["mean_jaccard"] <= 1.0
    assert 0.0 <= report["related_chance"] <= 1.0
    assert report["reason"].startswith("top-8 Jaccard with the no-context top-8")


def test_without_states_with_context_the_check_judges_nothing():
    agent = object()  # never asked: there is nothing to measure
    result = publishing.personalisation_check(agent, [Observation(Slot.HOME)], k=8, max_jaccard=0.9)
    assert result["passed"] is True
    assert "not judged" in result["reason"]


# ---------------------------------------------------------------------------
# Baselines beside each version
# ---------------------------------------------------------------------------


def test_each_version_is_estimated_beside_the_baselines_fitted_on_earlier_events(history):
    policy_train()

    evaluation = Checkpoint.objects.get().evaluation
    baselines = evaluation["baselines"]
    for name in ("candidate", *publishing.BASELINES):
        assert set(baselines[name]) >= ESTIMATORS, name
        for estimator in ESTIMATORS:
            low, high = baselines[name][estimator]["ci95"]
            assert low <= baselines[name][estimator]["value"] <= high, (name, estimator)
    # A young store: every impression is in the window, so the baselines learn
    # from the events before its newer half and are judged on that half only.
    cutoff = datetime.fromisoformat(baselines["fitted_before"])
    judged = Impression.objects.filter(transitions_built=True, created_at__gte=cutoff)
    assert baselines["n_impressions"] == judged.count() < evaluation["n_impressions"]
    fitted = Event.objects.filter(created_at__lt=cutoff)
    assert baselines["fit_sessions"] == fitted.values("session_key").distinct().count() > 0
    assert not fitted.filter(created_at__gte=cutoff).exists()
    # The three rank differently, so at least two of their estimates differ.
    values = {baselines[name]["snips"]["value"] for name in publishing.BASELINES}
    assert len(values) > 1


def test_an_older_store_judges_the_baselines_on_the_whole_window(history, settings, monkeypatch):
    settings.RECOMMENDER_OPE_IMPRESSIONS = 10  # the rest of the history came before
    monkeypatch.setattr(publishing, "MIN_FIT_SESSIONS", 2)
    policy_train()

    evaluation = Checkpoint.objects.get().evaluation
    baselines = evaluation["baselines"]
    assert baselines["n_impressions"] == evaluation["n_impressions"] == 10
    oldest = Impression.objects.filter(transitions_built=True).order_by("-created_at")[9]
    assert datetime.fromisoformat(baselines["fitted_before"]) == oldest.created_at
    # The candidate's row is its gate estimate, on the same impressions.
    assert baselines["candidate"]["snips"] == evaluation["snips"]


def _catalog() -> ItemCatalog:
    """Items 1-4 in category 0, 5-8 in category 1."""
    return item_catalog(8, categories=np.arange(8) // 4, prices=np.full(8, 10.0))


@pytest.mark.parametrize("make", [PopularityPolicy, CooccurrencePolicy, SameCategoryPolicy])
def test_a_baseline_is_ranked_for_the_estimates_as_it_serves(make):
    catalog = _catalog()
    policy = make(catalog) if make is SameCategoryPolicy else make()
    view, click = int(EventType.VIEW), int(EventType.CLICK)
    sessions = [[(1, click), (2, click)], [(2, click), (7, view)], [(5, click), (6, click)]] * 3
    policy.fit(sessions + [[(3, click)]])
    states = [
        Observation(Slot.HOME),
        Observation(Slot.PRODUCT, current_item=5, recent_items=(5,), recent_events=(view,)),
        Observation(Slot.HOME, recent_items=(1, 6), recent_events=(click, view)),
    ]
    mask = np.ones((len(states), 8), dtype=bool)
    mask[1, 4] = False  # the page's product

    scores = publishing.BaselineRanker(policy, catalog).ranking_scores(states, mask, 4)

    for row, state in enumerate(states):
        candidates = catalog.ids[mask[row]]
        served = policy.slate(state, candidates, 4, np.random.default_rng(0))
        order = np.argsort(-np.where(mask[row], scores[row], -np.inf), kind="stable")[:4]
        assert catalog.ids[order].tolist() == served.items.tolist()


@pytest.mark.parametrize("make", [PopularityPolicy, CooccurrencePolicy, SameCategoryPolicy])
def test_a_baseline_is_ranked_as_it_serves_over_many_random_requests(make):
    rng = np.random.default_rng(5)
    ids = np.arange(1, 41)
    catalog = item_catalog(ids=ids, categories=ids % 4, prices=np.full(40, 10.0))
    policy = make(catalog) if make is SameCategoryPolicy else make()
    events = [int(e) for e in EventType]
    policy.fit(
        [[(int(i), int(rng.choice(events))) for i in rng.choice(ids, 4)] for _ in range(200)]
    )
    states, masks = [], []
    for _ in range(40):
        recent = tuple(int(i) for i in rng.choice(ids, int(rng.integers(0, 4))))
        states.append(
            Observation(
                Slot(int(rng.integers(3))),
                recent_items=recent,
                recent_events=tuple(int(rng.choice(events)) for _ in recent),
                recent_ages=tuple(float(a) for a in rng.uniform(0, 900, len(recent))),
                cart_items=tuple(int(i) for i in rng.choice(ids, int(rng.integers(0, 2)))),
            )
        )
        masks.append(rng.random(40) < 0.7)
    mask = np.array(masks)

    scores = publishing.BaselineRanker(policy, catalog).ranking_scores(states, mask, 6)

    for row, state in enumerate(states):
        served = policy.slate(state, ids[mask[row]], 6, np.random.default_rng(0))
        # Each served item is the best remaining by these scores (a tie may go
        # either way: the slate's top-k among equal scores is not specified).
        remaining = scores[row].copy()
        for item in served.items:
            assert remaining[item - 1] == remaining.max(), row
            remaining[item - 1] = -np.inf


# ---------------------------------------------------------------------------
# Near-duplicates in off-policy estimates
# ---------------------------------------------------------------------------


class _ById:
    """Prefers lower ids whatever the state."""

    def __init__(self, catalog):
        self.catalog = catalog

    def ranking_scores(self, observations, candidate_mask, k):
        return np.tile(-self.catalog.ids.astype(np.float32), (len(observations), 1))


def test_off_policy_slots_leave_out_the_near_duplicates_of_earlier_items():
    catalog = _catalog()
    # Items 1 and 2 are near-duplicates; the logged slate showed 1, then 3.
    groups = np.array([0, 0, 1, 2, 3, 4, 5, 6])
    logged = publishing.LoggedSlates(
        observations=[Observation(Slot.HOME)],
        candidate_mask=np.ones((1, 8), dtype=bool),
        shown=np.array([[0, 2]]),
        propensities=np.array([[1.0, 1.0]]),
        rewards=np.array([[0.0, 1.0]]),
    )
    plain = publishing.policy_value(_ById(catalog), logged, epsilon=0.0)
    grouped = publishing.policy_value(_ById(catalog), logged, epsilon=0.0, groups=groups)
    # Without groups the greedy second pick is item 2, not the logged 3: the
    # click earns nothing. With 2 left out as 1's near-duplicate, 3 is the pick.
    assert plain["ips"]["value"] == 0.0
    assert grouped["ips"]["value"] == pytest.approx(0.5)  # (0 + 1) / 2 slots


def test_catalog_groups_are_the_ones_serving_uses(db):
    products = make_catalog(products=6, categories=2)
    twin = products[0]
    twin.pk = None
    twin.slug, twin.sku, twin.colour = "twin", "TWIN-1", "Sand"
    twin.save()
    catalog = features.build_catalog()

    groups = publishing.catalog_groups(catalog)

    by_id = dict(zip(catalog.ids.tolist(), groups.tolist(), strict=True))
    assert by_id[twin.pk] == by_id[products[0].pk]
    assert len({by_id[p.pk] for p in products}) == 6
