"""The management commands of the learning loop and the simulators: the same
services, their refusals, and what they print."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from recommender.models import (
    Checkpoint,
    Event,
    Impression,
    SimulatedHistory,
    TrainingRun,
)
from tests.recommender.support import (
    another_trainer,
    make_catalog,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("recommender_isolation", "loop_settings"),
]


# ---------------------------------------------------------------------------
# Management commands: the same services
# ---------------------------------------------------------------------------


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_commands_with_nothing_to_learn_from(db, settings):
    settings.RECOMMENDER_MIN_TRANSITIONS = 500

    assert _call("build_transitions") == "0 transitions from 0 impressions.\n"
    assert "skipped: Not enough transitions yet: 0 of 500 needed." in _call(
        "train_policy", "--steps", "5"
    )
    assert _call("sync_target_network") == "skipped: No learner yet: nothing to sync.\n"
    assert list(TrainingRun.objects.values_list("kind", "triggered_by").order_by("started_at")) == [
        ("train", "command"),
        ("sync_target", "command"),
    ]


def test_commands_build_train_and_sync(history, monkeypatch):
    # The history fixture built its transitions already; fresh impressions remain none.
    assert _call("build_transitions") == "0 transitions from 0 impressions.\n"

    trained = _call("train_policy", "--steps", "5")
    synced = _call("sync_target_network")

    assert "succeeded: Published v1 (active)." in trained
    assert "steps=5 loss=" in trained
    assert synced == "succeeded: Target network synced at step 5.\n"
    assert Checkpoint.objects.get().status == Checkpoint.Status.ACTIVE


def test_commands_refuse_while_the_trainer_is_busy(db):
    with another_trainer():
        with pytest.raises(CommandError, match="in progress"):
            _call("train_policy")
        with pytest.raises(CommandError, match="in progress"):
            _call("sync_target_network")


@pytest.mark.slow
def test_simulate_traffic_drives_a_live_store(live_server, transactional_db):
    make_catalog(products=24, categories=4, stock=1000)

    output = _call(
        "simulate_traffic", "--base-url", live_server.url, "--sessions", "5", "--seed", "1"
    )

    lines = output.strip().splitlines()
    assert lines[0].startswith("5 sessions, ")
    assert "(0 refused)" in lines[0]
    assert lines[1].split() == ["policy", "carousels", "clicks", "CTR"]
    popularity = next(line for line in lines[2:] if line.startswith("popularity"))
    carousels = int(popularity.split()[1])
    assert carousels == Impression.objects.count() > 0
    assert popularity.rstrip().endswith("%")


def test_simulate_traffic_names_an_unreachable_store(db):
    make_catalog(products=4, categories=1)

    with pytest.raises(CommandError, match="Cannot reach the store"):
        _call("simulate_traffic", "--base-url", "http://127.0.0.1:1", "--sessions", "1")


@pytest.mark.slow
def test_seed_history_lays_out_a_trained_past_once(db, settings):
    settings.RECOMMENDER_MIN_TRANSITIONS = 50
    settings.RECOMMENDER_TRAIN_STEPS = 3
    # The guards have tests of their own: here any trained version may go live
    # (three steps on twenty sessions barely depend on the shopper).
    settings.RECOMMENDER_OPE_MARGIN = 1.0
    settings.RECOMMENDER_PERSONALISATION_MAX_JACCARD = 1.1
    make_catalog(products=40, categories=5, stock=1000)
    started = timezone.now()

    output = _call(
        "seed_history",
        "--sessions",
        "20",
        "--train-every",
        "10",
        "--days",
        "0.1",
        "--verbosity",
        "0",
    )

    assert output.startswith("20 sessions, ")
    impressions = Impression.objects.order_by("created_at")
    assert impressions.count() > 20
    span = impressions.last().created_at - impressions.first().created_at
    assert impressions.first().created_at < started - timedelta(hours=1.5)
    assert span > timedelta(hours=1.5)
    assert impressions.last().created_at <= timezone.now()
    runs = TrainingRun.objects.filter(kind=TrainingRun.Kind.TRAIN, triggered_by="seed_history")
    assert runs.filter(status=TrainingRun.Status.SUCCEEDED).exists()
    assert Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).exists()
    assert TrainingRun.objects.filter(kind=TrainingRun.Kind.SYNC_TARGET).exists()
    counts = (Impression.objects.count(), Event.objects.count(), Checkpoint.objects.count())

    again = _call("seed_history", "--sessions", "20", "--days", "0.1")

    assert "History already present" in again
    assert (Impression.objects.count(), Event.objects.count(), Checkpoint.objects.count()) == counts


def test_seed_history_drives_a_store_on_its_production_security_settings(db, settings):
    """Under production settings every request used to be refused (400: the test
    client's host; then 301 to HTTPS), and the command still exited 0."""
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.RECOMMENDER_MIN_TRANSITIONS = 10**6  # no training: not what this is about
    make_catalog(products=24, categories=4, stock=1000)

    output = _call("seed_history", "--sessions", "4", "--days", "0.1", "--verbosity", "0")

    assert output.startswith("4 sessions, ")
    assert "(0 refused)" in output
    assert Impression.objects.count() >= 4


def test_seed_history_sends_the_shopper_family_asked_for(db, settings, monkeypatch):
    from recommender.rl.simulator.families import family
    from recommender.simulation import traffic

    settings.RECOMMENDER_MIN_TRANSITIONS = 10**6  # no training: not what this is about
    make_catalog(products=24, categories=4, stock=1000)
    built = []
    real = traffic.store_simulator
    monkeypatch.setattr(
        traffic, "store_simulator", lambda **kw: built.append(real(**kw)) or built[-1]
    )

    output = _call(
        "seed_history", "--sessions", "3", "--days", "0.1", "--family", "brand", "--verbosity", "0"
    )

    assert output.startswith("3 sessions, ")
    assert SimulatedHistory.objects.get().family == "brand"
    assert [s.params for s in built] == [family("brand").params]
    assert Impression.objects.exists()


def test_simulate_traffic_sends_the_shopper_family_asked_for(db, monkeypatch):
    from recommender.management.commands import simulate_traffic
    from recommender.rl.simulator.families import family

    make_catalog(products=8, categories=2)
    built = []
    real = simulate_traffic.store_simulator
    monkeypatch.setattr(
        simulate_traffic, "store_simulator", lambda **kw: built.append(real(**kw)) or built[-1]
    )

    with pytest.raises(CommandError, match="Cannot reach the store"):
        _call(
            "simulate_traffic",
            "--base-url",
            "http://127.0.0.1:1",
            "--family",
            "price_band",
            "--sessions",
            "1",
            "--verbosity",
            "0",
        )

    assert [s.params for s in built] == [family("price_band").params]


@pytest.mark.parametrize("command", ["seed_history", "simulate_traffic"])
def test_an_unknown_shopper_family_is_refused_before_any_traffic(db, command):
    make_catalog(products=8, categories=2)

    with pytest.raises(
        CommandError, match="unknown shopper family 'tourist'; known families: funnel"
    ):
        _call(command, "--family", "tourist", "--sessions", "2", "--verbosity", "0")

    assert not SimulatedHistory.objects.exists()
    assert not Impression.objects.exists()


def test_seed_history_fails_when_the_store_refuses_its_requests(db, throttle_rates):
    throttle_rates(recommendations="1/min")  # each shopper's second carousel is refused
    make_catalog(products=24, categories=4, stock=1000)

    with pytest.raises(CommandError, match=r"requests were refused \(HTTP 429 x\d+\)\. 429:"):
        _call("seed_history", "--sessions", "4", "--days", "0.1", "--verbosity", "0")


@pytest.mark.slow
def test_simulate_traffic_fails_when_the_store_refuses_its_requests(
    live_server, transactional_db, settings
):
    settings.ALLOWED_HOSTS = ["shop.example.com"]  # not the live server's 127.0.0.1
    make_catalog(products=24, categories=4, stock=1000)

    with pytest.raises(CommandError, match=r"of (\d+) requests were refused \(HTTP 400 x\1\)"):
        _call("simulate_traffic", "--base-url", live_server.url, "--sessions", "3")
