"""The learning loop's services, tasks and commands: transitions from logged
sessions, replay training, target sync, guarded publication, and the beat
schedules that run them."""

from __future__ import annotations

import io
import math
from datetime import timedelta

import numpy as np
import pytest
import torch

from recommender.learning import publishing, training
from recommender.learning.training import (
    TrainerBusy,
    policy_train,
    target_sync,
    transitions_build,
)
from recommender.models import (
    Checkpoint,
    Event,
    EventType,
    Impression,
    TrainerState,
    TrainingRun,
    Transition,
)
from recommender.rl import checkpoint as rl_checkpoint
from recommender.rl.agent import DQNAgent
from recommender.rl.agents import agent_kind, load_agent
from recommender.rl.config import DQNConfig
from recommender.rl.slateq import group_slates
from recommender.rl.types import Observation, Slot
from recommender.serving import features
from recommender.serving.server import policy_server, sold_out_set
from tests.factories import CategoryFactory, ProductFactory
from tests.recommender.factories import (
    EventFactory,
    ImpressionFactory,
    ImpressionItemFactory,
)
from tests.recommender.support import (
    LOOP_IDLE as IDLE,
)
from tests.recommender.support import (
    LOOP_WINDOW as WINDOW,
)
from tests.recommender.support import (
    Shopper,
    another_trainer,
    trainer_lock_is_free,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("recommender_isolation", "loop_settings"),
]


# ---------------------------------------------------------------------------
# transitions_build on a hand-made history
# ---------------------------------------------------------------------------


def _state(slot: Slot = Slot.HOME, **fields) -> dict:
    return Observation(slot=slot, **fields).to_dict()


def _impression(session: str, at, items: list[tuple], **fields) -> Impression:
    """An impression at ``at`` showing (product, propensity) pairs in order."""
    impression = ImpressionFactory(session_key=session, created_at=at, state=_state(), **fields)
    for position, (product, propensity) in enumerate(items):
        ImpressionItemFactory(
            impression=impression, product=product, position=position, propensity=propensity
        )
    return impression


def _event(session: str, at, product, type: str, impression=None, reward: float = 0.0) -> Event:
    return EventFactory(
        session_key=session,
        created_at=at,
        product=product,
        type=type,
        impression=impression,
        reward=reward,
    )


def _rows(**filters) -> dict:
    return {
        (t.impression_id, t.product_id): (
            t.position,
            t.propensity,
            t.reward,
            t.next_impression_id,
            t.done,
        )
        for t in Transition.objects.filter(**filters)
    }


def test_a_finished_session_becomes_exactly_its_transitions(now, products):
    p1, p2, p3, _ = products
    s = "finished-session"
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    imp1 = _impression(s, ago(3000), [(p1, 0.9), (p2, 0.05)])
    imp2 = _impression(s, ago(2000), [(p2, 0.8), (p3, 0.1)])
    imp3 = _impression(s, ago(1500), [(p1, 0.7)])
    _event(s, ago(2990), p1, EventType.CLICK, imp1, reward=1.0)
    _event(s, ago(2980), p1, EventType.ADD_TO_CART, imp1, reward=3.0)
    _event(s, ago(2970), p1, EventType.CLICK, None, reward=0.0)  # a repeat: no reward
    _event(s, ago(1990), p3, EventType.CLICK, imp2, reward=1.0)
    _event(s, ago(1400), p2, EventType.VIEW)  # the session's last activity

    result = transitions_build(now=now)

    assert (result.impressions, result.created) == (3, 5)
    assert _rows() == {
        (imp1.pk, p1.pk): (0, 0.9, 4.0, imp2.pk, False),
        (imp1.pk, p2.pk): (1, 0.05, 0.0, imp2.pk, False),
        (imp2.pk, p2.pk): (0, 0.8, 0.0, imp3.pk, False),
        (imp2.pk, p3.pk): (1, 0.1, 1.0, imp3.pk, False),
        (imp3.pk, p1.pk): (0, 0.7, 0.0, None, True),
    }
    assert set(Impression.objects.filter(transitions_built=True)) == {imp1, imp2, imp3}


def test_replayed_transitions_come_back_as_whole_slates_in_position_order(now, products):
    """SlateQ regroups the replayed per-item transitions into the slates shown."""
    p1, p2, p3, p4 = products
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    # Two sessions' impressions interleaved in time, items not in id order.
    a1 = _impression("a", ago(5000), [(p3, 0.5), (p1, 0.5), (p4, 0.5)])
    b1 = _impression("b", ago(4900), [(p2, 0.5), (p4, 0.5)])
    a2 = _impression("a", ago(4800), [(p4, 0.5), (p2, 0.5), (p1, 0.5)])
    b2 = _impression("b", ago(4700), [(p1, 0.5), (p3, 0.5)])
    for impression, depth in ((a1, 0), (b1, 1), (a2, 2), (b2, 3)):
        impression.state = _state(page_depth=depth)  # tell the four states apart
        impression.save()
    transitions_build(now=now)

    slates = group_slates(training.replay_transitions(limit=100))

    shown = sorted([t.item for t in slate] for slate in slates)
    assert shown == sorted(
        [
            [p3.pk, p1.pk, p4.pk],
            [p2.pk, p4.pk],
            [p4.pk, p2.pk, p1.pk],
            [p1.pk, p3.pk],
        ]
    )


def test_the_replay_limit_never_cuts_a_slate(now, products):
    p1, p2, p3, p4 = products
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    _impression("a", ago(5000), [(p1, 0.5), (p2, 0.5), (p3, 0.5)])
    _impression("b", ago(4900), [(p4, 0.5), (p3, 0.5)])
    transitions_build(now=now)

    # 4 of the 5 transitions would hold one slate whole and the other's first 2 of 3.
    replayed = training.replay_transitions(limit=4)
    everything = training.replay_transitions(limit=5)

    assert sorted(len(slate) for slate in group_slates(everything)) == [2, 3]
    assert [len(slate) for slate in group_slates(replayed)] in ([3], [2])
    assert len(replayed) in (2, 3)


def test_replayed_transitions_leave_what_the_next_request_had_sold_out_out_of_its_candidates(
    now, products
):
    """The Double-DQN max runs over what the next request could really show."""
    p1, p2, p3, p4 = products
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    _impression("s", ago(5000), [(p1, 0.5)])
    _impression("s", ago(4000), [(p2, 0.5)], sold_out_id=sold_out_set([p4.pk, p3.pk]))
    transitions_build(now=now)

    by_item = {t.item: t for t in training.replay_transitions(limit=10)}

    assert by_item[p1.pk].next_unavailable == (p3.pk, p4.pk)
    assert by_item[p2.pk].done
    catalog = features.build_catalog()
    replay = DQNAgent(DQNConfig(), catalog).make_replay()
    replay.add_many([by_item[p1.pk]], catalog)
    batch = replay.batch(np.arange(1))
    left_out = batch.next_candidates[0][batch.next_candidates[0] >= 0]
    assert batch.next_exclude[0]  # stored as what the set leaves out: p3 and p4
    assert sorted(left_out.tolist()) == sorted(catalog.index_of([p3.pk, p4.pk]).tolist())


def test_off_policy_evaluation_ranks_over_each_requests_real_candidates(now, products):
    """Everything in the catalog but the cart's, the page's and the then sold-out products."""
    p1, p2, p3, p4 = products
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    impression = _impression("s", ago(5000), [(p2, 0.5)], sold_out_id=sold_out_set([p4.pk]))
    impression.state = _state(Slot.PRODUCT, current_item=p3.pk, cart_items=(p1.pk,))
    impression.save()
    transitions_build(now=now)
    catalog = features.build_catalog()

    logged = publishing.logged_slates(catalog=catalog, limit=10)

    assert len(logged) == 1
    candidates = set(catalog.ids[logged.candidate_mask[0]].tolist())
    assert candidates == {p2.pk}  # not p1 (cart), p3 (page) nor p4 (sold out)
    assert logged.shown[0].tolist() == catalog.index_of([p2.pk]).tolist()


def test_sessions_are_kept_apart(now, products):
    p1, p2, *_ = products
    a1 = _impression("session-a", now - timedelta(seconds=5000), [(p1, 0.5)])
    _impression("session-b", now - timedelta(seconds=4000), [(p2, 0.5)])  # between a's two
    a2 = _impression("session-a", now - timedelta(seconds=3000), [(p2, 0.5)])

    transitions_build(now=now)

    assert Transition.objects.get(impression=a1).next_impression == a2
    assert Transition.objects.get(impression=a2).done is True


def test_impressions_wait_for_their_window_and_their_session(now, products):
    p1, p2, *_ = products
    # Still inside its attribution window: a click may yet come.
    fresh = _impression("fresh", now - timedelta(seconds=WINDOW - 60), [(p1, 0.5)])
    # Window closed, but the shopper was active 100 s ago: a next request may come.
    active = _impression("active", now - timedelta(seconds=WINDOW + 100), [(p1, 0.5)])
    _event("active", now - timedelta(seconds=100), p2, EventType.VIEW)
    # Window closed and followed by a newer impression (itself still in its window).
    followed = _impression("followed", now - timedelta(seconds=WINDOW + 400), [(p2, 0.5)])
    follower = _impression("followed", now - timedelta(seconds=200), [(p1, 0.5)])

    result = transitions_build(now=now)

    assert (result.impressions, result.created) == (1, 1)
    assert _rows() == {(followed.pk, p2.pk): (0, 0.5, 0.0, follower.pk, False)}

    later = transitions_build(now=now + timedelta(seconds=IDLE + 60))

    assert (later.impressions, later.created) == (3, 3)
    for waited in (fresh, active, follower):
        assert Transition.objects.get(impression=waited).done is True


def test_building_twice_creates_nothing_twice(now, products):
    p1, p2, *_ = products
    for n in range(3):
        _impression(f"s{n}", now - timedelta(hours=2, seconds=n), [(p1, 0.5), (p2, 0.5)])

    first = transitions_build(now=now)
    second = transitions_build(now=now)
    # Even an impression whose flag was lost does not produce duplicates.
    Impression.objects.update(transitions_built=False)
    third = transitions_build(now=now)

    assert first.created == 6
    assert second == training.BuildResult(impressions=0, created=0)
    assert third.impressions == 3
    assert Transition.objects.count() == 6


def test_building_works_through_batches(now, products):
    p1, *_ = products
    for n in range(7):
        _impression(f"s{n}", now - timedelta(hours=2, seconds=n), [(p1, 0.5)])

    result = transitions_build(now=now, batch_size=2)

    assert result == training.BuildResult(impressions=7, created=7)


# ---------------------------------------------------------------------------
# Policy training
# ---------------------------------------------------------------------------


def test_training_with_too_few_transitions_is_skipped(now, products, settings):
    settings.RECOMMENDER_MIN_TRANSITIONS = 500
    _impression("s", now - timedelta(hours=2), [(products[0], 0.5), (products[1], 0.5)])
    transitions_build(now=now)

    run = policy_train(triggered_by="test")

    assert run.status == TrainingRun.Status.SKIPPED
    assert run.outcome == "Not enough transitions yet: 2 of 500 needed."
    assert run.replay_size == 2
    assert run.finished_at is not None
    assert not Checkpoint.objects.exists()
    assert not TrainerState.objects.exists()
    assert trainer_lock_is_free()


def _estimate_ok(estimate: dict) -> bool:
    low, high = estimate["ci95"]
    return all(isinstance(x, float) for x in (estimate["value"], low, high)) and (
        low <= estimate["value"] <= high
    )


@pytest.mark.parametrize("kind", ["slateq", "per_item"])
def test_training_publishes_checked_evaluated_versions_and_activates_them(history, settings, kind):
    settings.RECOMMENDER_AGENT = kind
    run = policy_train(triggered_by="test")

    assert run.status == TrainingRun.Status.SUCCEEDED, run.outcome
    assert run.outcome == "Published v1 (active)."
    assert run.triggered_by == "test"
    assert run.steps == 5
    assert math.isfinite(run.loss) and run.loss >= 0
    assert math.isfinite(run.mean_q)
    assert 0.0 <= run.epsilon <= 1.0
    assert run.replay_size == Transition.objects.count() == history.created
    assert run.duration_s > 0 and run.finished_at >= run.started_at
    checkpoint = Checkpoint.objects.get()
    assert (checkpoint.version, checkpoint.status) == (1, Checkpoint.Status.ACTIVE)
    assert checkpoint.activated_at is not None
    assert checkpoint.training_run == run
    assert checkpoint.checks["passed"] is True
    assert checkpoint.checks["finite_weights"] is True
    assert checkpoint.checks["q_within_bound"] is True
    evaluation = checkpoint.evaluation
    for name in ("ips", "snips", "dr"):
        assert _estimate_ok(evaluation[name]), evaluation[name]
        assert _estimate_ok(evaluation["active"][name]), evaluation["active"][name]
    assert evaluation["active"]["policy"] == "logged policy"
    assert evaluation["n_impressions"] == Impression.objects.filter(transitions_built=True).count()
    assert evaluation["passed"] is True
    assert checkpoint.config["agent"] == kind
    assert agent_kind(load_agent(bytes(checkpoint.weights))) == kind
    assert load_agent(bytes(checkpoint.weights)).step == 5
    assert TrainerState.objects.get().step == 5
    assert trainer_lock_is_free()
    # The store serves it.
    assert Shopper().recommend()["policy"] == {"name": "dqn", "version": 1}

    # A second run continues the same learner and publishes v2 against v1.
    second = policy_train()

    assert second.status == TrainingRun.Status.SUCCEEDED, second.outcome
    assert second.outcome == "Published v2 (active)."
    v1, v2 = Checkpoint.objects.order_by("version")
    assert (v1.status, v2.status) == (Checkpoint.Status.RETIRED, Checkpoint.Status.ACTIVE)
    assert v2.evaluation["active"]["version"] == 1
    assert v2.evaluation["active"]["policy"] == "v1"
    assert TrainerState.objects.get().step == 10
    assert load_agent(bytes(v2.weights)).step == 10
    policy_server.refresh()
    assert Shopper().recommend()["policy"] == {"name": "dqn", "version": 2}


def test_changing_the_agent_setting_starts_a_new_learner_and_serving_follows_the_checkpoint(
    history, settings
):
    settings.RECOMMENDER_AGENT = "per_item"
    policy_train()  # v1: a per-item learner, active
    settings.RECOMMENDER_AGENT = "slateq"

    assert Shopper().recommend()["policy"] == {"name": "dqn", "version": 1}  # still served
    run = policy_train()

    assert run.outcome == "Published v2 (active)."
    v2 = Checkpoint.objects.get(version=2)
    assert v2.config["agent"] == "slateq"
    assert v2.evaluation["active"]["policy"] == "v1"  # compared with the per-item version
    assert load_agent(bytes(v2.weights)).step == 5  # a new learner, not v1's continued
    assert agent_kind(load_agent(bytes(TrainerState.objects.get().weights))) == "slateq"
    policy_server.refresh()
    assert Shopper().recommend()["policy"] == {"name": "dqn", "version": 2}


def test_a_learner_saved_by_an_older_model_is_replaced_not_fatal(history):
    policy_train()  # v1 and a stored learner
    state = TrainerState.objects.get()
    state.weights = _as_older_format(bytes(state.weights))
    state.save()

    sync = target_sync()
    assert sync.status == TrainingRun.Status.SKIPPED
    assert "cannot be loaded" in sync.outcome
    run = policy_train()

    assert run.status == TrainingRun.Status.SUCCEEDED, run.outcome
    assert run.outcome == "Published v2 (active)."
    # A new learner trained on the same log, which loads again.
    assert load_agent(bytes(TrainerState.objects.get().weights)).step == 5


def _as_older_format(weights: bytes) -> bytes:
    """The same checkpoint stamped with the format version before the current one."""
    payload = torch.load(io.BytesIO(weights), weights_only=True)
    payload["version"] = rl_checkpoint.VERSION - 1
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _rig_snips(monkeypatch, *, candidate_ess: float) -> None:
    """Make the next trained candidate's SNIPS estimate 0.1 [0.05, 0.15] on
    ``candidate_ess`` effective impressions, and the active version's 1.0 [0.9, 1.1]."""
    candidates = []
    real_served = publishing.served_agent

    def served_agent(agent):
        candidates.append(real_served(agent))
        return candidates[-1]

    real_value = publishing.policy_value

    def rigged_value(agent, logged, **kwargs):
        estimates = real_value(agent, logged, **kwargs)
        if agent is candidates[-1]:
            estimates["snips"].update(value=0.1, ci95=[0.05, 0.15], ess=candidate_ess)
        else:
            estimates["snips"].update(value=1.0, ci95=[0.9, 1.1], ess=500.0)
        return estimates

    monkeypatch.setattr(publishing, "served_agent", served_agent)
    monkeypatch.setattr(publishing, "policy_value", rigged_value)


def test_a_version_far_below_the_active_one_off_policy_is_rejected(history, monkeypatch, settings):
    policy_train()  # v1, active
    settings.RECOMMENDER_OPE_MARGIN = 0.05
    # The candidate: clearly worse, CI and all, on plenty of effective impressions.
    _rig_snips(monkeypatch, candidate_ess=400.0)

    run = policy_train()

    assert run.status == TrainingRun.Status.SUCCEEDED
    assert run.outcome == "Published v2 (rejected)."
    v1, v2 = Checkpoint.objects.order_by("version")
    assert v1.status == Checkpoint.Status.ACTIVE
    assert v2.status == Checkpoint.Status.REJECTED
    assert v2.activated_at is None
    assert "off-policy estimate too low" in v2.note
    assert v2.evaluation["passed"] is False
    assert v2.checks["passed"] is True  # weights and Q were fine
    assert Shopper().recommend()["policy"] == {"name": "dqn", "version": 1}


def test_an_estimate_resting_on_too_few_impressions_rejects_nothing(history, monkeypatch, settings):
    """The same clearly lower estimate, but carried by a handful of logged rows
    (effective sample size 6): no evidence, so the version goes live, and its
    evaluation says why it was not judged."""
    policy_train()  # v1, active
    settings.RECOMMENDER_OPE_MARGIN = 0.05
    settings.RECOMMENDER_OPE_MIN_ESS = 30
    _rig_snips(monkeypatch, candidate_ess=6.0)

    run = policy_train()

    assert run.outcome == "Published v2 (active)."
    v2 = Checkpoint.objects.get(version=2)
    assert v2.evaluation["passed"] is True
    assert v2.evaluation["min_ess"] == 30
    assert (
        "rests on 6.0 effective impressions, fewer than 30: too few to judge"
        in (v2.evaluation["reason"])
    )

    settings.RECOMMENDER_OPE_MIN_ESS = 5  # six rows are enough for this store: rejected
    assert policy_train().outcome == "Published v3 (rejected)."


def test_the_off_policy_margin_is_a_setting(history, settings):
    """A negative margin demands a clear improvement over the baseline: the
    first version's estimate (up to its 95% CI) has to reach 11x the logged
    policy's."""
    settings.RECOMMENDER_OPE_MARGIN = -10.0
    settings.RECOMMENDER_OPE_MIN_ESS = 0  # judge on any estimate

    policy_train()

    checkpoint = Checkpoint.objects.get()
    baseline = checkpoint.evaluation["active"]["snips"]["value"]
    candidate_high = checkpoint.evaluation["snips"]["ci95"][1]
    assert checkpoint.evaluation["margin"] == -10.0
    expected = candidate_high >= baseline + 10.0 * abs(baseline)
    assert checkpoint.evaluation["passed"] is expected
    assert (checkpoint.status == Checkpoint.Status.ACTIVE) is expected


def test_a_learner_whose_weights_went_nan_is_rejected_and_not_kept(history, monkeypatch):
    real_train = DQNAgent.train_steps

    def diverging(self, *args, **kwargs):
        stats = real_train(self, *args, **kwargs)
        with torch.no_grad():
            # As a real divergence would, the moving average follows the online weights.
            for network in (self.online, self.core.averaged):
                for parameter in network.parameters():
                    parameter.fill_(float("nan"))
        self.core._item_tables.clear()
        return stats

    monkeypatch.setattr(DQNAgent, "train_steps", diverging)
    run = policy_train()

    assert run.status == TrainingRun.Status.SUCCEEDED, run.outcome
    assert run.outcome == (
        "Published v1 (rejected). The learner's weights went non-finite: it was not kept."
    )
    assert not TrainerState.objects.exists()
    checkpoint = Checkpoint.objects.get()
    assert checkpoint.status == Checkpoint.Status.REJECTED
    assert "non-finite weights" in checkpoint.note
    assert checkpoint.checks["finite_weights"] is False
    assert checkpoint.checks["passed"] is False
    assert Shopper().recommend()["policy"] == {"name": "popularity", "version": None}

    # The next run starts from a learner that can still learn.
    monkeypatch.setattr(DQNAgent, "train_steps", real_train)
    again = policy_train()

    assert again.status == TrainingRun.Status.SUCCEEDED, again.outcome
    assert Checkpoint.objects.get(version=2).status == Checkpoint.Status.ACTIVE


def test_the_trainer_lock_makes_a_second_trainer_wait(db):
    with another_trainer():
        with pytest.raises(TrainerBusy):
            policy_train()
        with pytest.raises(TrainerBusy):
            target_sync()

        assert not TrainingRun.objects.exists()
        assert not trainer_lock_is_free()  # not taken from its owner


def test_the_lock_is_released_when_training_fails(now, products, settings, monkeypatch):
    settings.RECOMMENDER_MIN_TRANSITIONS = 1
    _impression("s", now - timedelta(hours=2), [(products[0], 0.5), (products[1], 0.5)])
    transitions_build(now=now)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(DQNAgent, "train_steps", broken)

    with pytest.raises(RuntimeError):
        policy_train()

    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.FAILED
    assert "out of memory" in run.outcome
    assert trainer_lock_is_free()


# ---------------------------------------------------------------------------
# Target network sync
# ---------------------------------------------------------------------------


def _networks() -> tuple[dict, dict]:
    networks = load_agent(bytes(TrainerState.objects.get().weights)).networks()
    return networks["online"].state_dict(), networks["target"].state_dict()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_target_sync_copies_the_online_weights_into_the_target(history):
    policy_train()
    online, target = _networks()
    assert not _same(online, target)  # training moved only the online network

    run = target_sync(triggered_by="test")

    assert (run.kind, run.status) == (TrainingRun.Kind.SYNC_TARGET, TrainingRun.Status.SUCCEEDED)
    assert run.outcome == "Target network synced at step 5."
    assert run.triggered_by == "test"
    synced_online, synced_target = _networks()
    assert _same(synced_online, online)
    assert _same(synced_target, online)
    state = TrainerState.objects.get()
    assert state.target_synced_at is not None
    assert state.step == 5
    assert trainer_lock_is_free()


def test_target_sync_without_a_learner_is_skipped(db):
    run = target_sync()

    assert run.status == TrainingRun.Status.SKIPPED
    assert run.outcome == "No learner yet: nothing to sync."


# ---------------------------------------------------------------------------
# Reproducible training: a run records its seed
# ---------------------------------------------------------------------------


def _train_from_scratch() -> tuple[TrainingRun, bytes]:
    """One run on the logged history from a new learner (as on first use)."""
    TrainerState.objects.all().delete()
    run = policy_train(triggered_by="test")
    assert run.status == TrainingRun.Status.SUCCEEDED, run.outcome
    return run, bytes(Checkpoint.objects.get(training_run=run).weights)


@pytest.mark.slow
def test_the_same_log_and_seed_give_the_same_checkpoint(shopper_history, settings):
    settings.RECOMMENDER_TRAIN_SEED = 1234
    first, first_weights = _train_from_scratch()
    second, second_weights = _train_from_scratch()
    settings.RECOMMENDER_TRAIN_SEED = 4321
    other, other_weights = _train_from_scratch()

    assert (first.seed, second.seed, other.seed) == (1234, 1234, 4321)
    assert first_weights == second_weights
    assert other_weights != first_weights


@pytest.mark.slow
def test_an_unseeded_run_records_the_seed_it_drew(shopper_history, settings):
    settings.RECOMMENDER_TRAIN_SEED = None
    first, _ = _train_from_scratch()
    second, _ = _train_from_scratch()

    assert first.seed is not None and second.seed is not None
    assert first.seed != second.seed


# ---------------------------------------------------------------------------
# The learner's category table
# ---------------------------------------------------------------------------


def test_a_new_learner_is_sized_by_the_categories_there_are_not_by_their_keys():
    # A store that has created and deleted many categories: high primary keys.
    categories = [CategoryFactory(pk=pk) for pk in (5001, 7002, 9003)]
    for i in range(9):
        ProductFactory(category=categories[i % 3])

    agent, catalog = training.learner_load()

    assert agent.core.n_categories == features.MIN_CATEGORY_TABLE
    rows = agent.core.categories.rows(catalog.categories)
    assert sorted(set(rows.tolist())) == [0, 1, 2]
