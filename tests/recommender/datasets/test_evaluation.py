"""Judging policies on imported logs and training the learner from one, on the
real Open Bandit sample and on a store export."""

import csv

import numpy as np
import pytest

from recommender.dashboard.selectors import checkpoints_table
from recommender.datasets.evaluation import (
    PolicyError,
    normalise_policy,
    policy_evaluate,
    policy_train_offline,
)
from recommender.datasets.services import dataset_import, feedback_export
from recommender.models import Checkpoint
from recommender.rl import ope
from recommender.rl.agents import load_agent
from recommender.serving import checkpoints
from tests.recommender.datasets.conftest import BTS
from tests.recommender.support import store_checkpoint, tiny_agent

pytestmark = pytest.mark.django_db

FAST = {"n_bootstrap": 200}


def test_the_logged_policy_reproduces_the_logs_click_rate_exactly(obd_random, obd_bts):
    for dataset, clicks in ((obd_random, 38), (obd_bts, 42)):
        report = policy_evaluate(dataset=dataset, policy="logged", **FAST)
        assert report.n_rows == 10_000
        for name in ("ips", "snips", "dr", "switch-dr"):
            assert report.evaluation.estimates[name].value == pytest.approx(
                clicks / 10_000, abs=1e-15
            )
        ips = report.evaluation.estimates["ips"]
        assert ips.ci_low < clicks / 10_000 < ips.ci_high and ips.ess == pytest.approx(10_000)


def test_uniform_on_the_thompson_sampling_log_is_a_plain_inverse_propensity_average(
    obd_bts, obd_random
):
    # By hand, from the CSV: each row's click weighted by (1/80) / its logged propensity.
    with (BTS / "all.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_hand = sum(int(r["click"]) * (1 / 80) / float(r["propensity_score"]) for r in rows) / len(
        rows
    )
    report = policy_evaluate(dataset=obd_bts, policy="uniform", estimators=["ips"], **FAST)
    assert report.evaluation.estimates["ips"].value == pytest.approx(by_hand, rel=1e-12)
    # On the uniform log the same policy is the logging policy itself.
    report = policy_evaluate(dataset=obd_random, policy="uniform", estimators=["ips"], **FAST)
    assert report.evaluation.estimates["ips"].value == pytest.approx(38 / 10_000, rel=1e-12)


def test_the_baselines_are_judged_with_intervals_and_say_when_the_log_is_thin(obd_bts):
    for policy in ("popularity", "same-category", "co-occurrence"):
        report = policy_evaluate(dataset=obd_bts, policy=policy, **FAST)
        assert set(report.evaluation.estimates) == set(ope.ESTIMATORS)
        for estimate in report.evaluation.estimates.values():
            assert estimate.ci_low <= estimate.value <= estimate.ci_high
            assert estimate.n == 10_000
        switch = report.evaluation.estimates["switch-dr"]
        assert switch.max_weight == ope.DEFAULT_MAX_WEIGHT
        assert any(note.startswith("switch-dr: ") for note in report.notes)
    # A deterministic top-3 policy meets few rows the Thompson sampler showed it.
    assert any("effective rows" in note for note in report.notes)


def test_clipping_says_on_how_many_rows_it_acted(obd_bts):
    report = policy_evaluate(
        dataset=obd_bts, policy="uniform", estimators=["ips", "switch-dr"], max_weight=5.0, **FAST
    )
    weights = (1 / 80) / np.array(obd_bts.rows.values_list("propensity", flat=True))
    over = int((weights > 5.0).sum())
    assert report.evaluation.estimates["ips"].clipped == over > 0
    assert f"ips: {over} of 10000 rows had an importance weight above 5 and were clipped" in (
        report.notes
    )
    assert report.to_dict()["estimates"]["ips"]["clipped"] == over


def test_the_held_out_rows_are_the_latest(obd_random):
    report = policy_evaluate(dataset=obd_random, policy="logged", rows="test", **FAST)
    held_out = list(obd_random.rows.order_by("timestamp", "key").values_list("click", flat=True))[
        7000:
    ]
    assert report.n_rows == 3000
    assert report.evaluation.estimates["ips"].value == pytest.approx(sum(held_out) / 3000)


def test_policy_names_and_their_spellings():
    assert normalise_policy("Same_Category") == "same-category"
    assert normalise_policy("cooccurrence") == "co-occurrence"
    assert normalise_policy("checkpoint:12") == "checkpoint:12"
    with pytest.raises(PolicyError, match="unknown policy 'best'.*checkpoint:<version>"):
        normalise_policy("best")


@pytest.mark.usefixtures("recommender_isolation")
def test_a_store_checkpoint_is_not_judged_on_another_shops_items(obd_random, catalog):
    store_checkpoint(tiny_agent(), version=3)
    with pytest.raises(PolicyError, match="v3 was trained on this store's catalog .product ids."):
        policy_evaluate(dataset=obd_random, policy="checkpoint:3", **FAST)
    with pytest.raises(PolicyError, match="there is no checkpoint 4"):
        policy_evaluate(dataset=obd_random, policy="checkpoint:4", **FAST)


@pytest.mark.usefixtures("recommender_isolation", "store_history")
def test_a_store_checkpoint_is_judged_on_a_log_exported_from_the_store(tmp_path):
    agent = tiny_agent()
    store_checkpoint(agent, version=5)
    feedback_export(folder=tmp_path)
    dataset = dataset_import(path=tmp_path, format="store", name="store").dataset
    report = policy_evaluate(dataset=dataset, policy="checkpoint:5", epsilon=0.1, **FAST)
    assert report.n_rows == dataset.n_rows
    for estimate in report.evaluation.estimates.values():
        assert np.isfinite(estimate.value) and estimate.ci_low <= estimate.value <= estimate.ci_high
    logged = policy_evaluate(dataset=dataset, policy="logged", **FAST)
    assert logged.evaluation.estimates["ips"].value == pytest.approx(
        dataset.clicks / dataset.n_rows
    )


@pytest.mark.usefixtures("recommender_isolation")
def test_training_on_a_log_stores_a_candidate_judged_against_the_baselines(obd_bts, obd_random):
    report = policy_train_offline(dataset=obd_bts, steps=60, n_bootstrap=100)
    checkpoint = report.checkpoint
    assert checkpoint.status == Checkpoint.Status.CANDIDATE and checkpoint.dataset == obd_bts
    assert (report.n_train, report.n_test) == (7000, 3000)
    assert report.training.transitions == report.training.terminal == 7000  # no sessions
    policies = checkpoint.evaluation["offline"]["policies"]
    assert set(policies) == {
        "uniform",
        "logged",
        "popularity",
        "same-category",
        "co-occurrence",
        "candidate",
    }
    for result in policies.values():
        assert result["n_rows"] == 3000
        for estimate in result["estimates"].values():
            low, high = estimate["ci95"]
            assert low <= estimate["value"] <= high
    held_out_rate = policies["logged"]["logged_value"]
    assert policies["logged"]["estimates"]["snips"]["value"] == pytest.approx(held_out_rate)
    assert checkpoint.evaluation["training"]["importance_weighted"] is True
    assert checkpoint.checks["passed"] is True
    # It loads, over the dataset's own items.
    assert load_agent(bytes(checkpoint.weights)).catalog.ids.tolist() == list(range(80))
    # The same items, hashed alike: it can be judged on the uniform log, all of it.
    other = policy_evaluate(dataset=obd_random, policy=f"checkpoint:{checkpoint.version}", **FAST)
    assert other.n_rows == 10_000 and other.rows == "all"
    # On its own dataset only on the rows it did not learn from.
    own = policy_evaluate(dataset=obd_bts, policy=f"checkpoint:{checkpoint.version}", **FAST)
    assert own.n_rows == 3000 and own.rows == "test"
    assert any("judged on the rest only" in note for note in own.notes)


@pytest.mark.usefixtures("recommender_isolation")
def test_a_checkpoint_trained_on_another_shops_log_cannot_be_served(obd_bts, superuser_client):
    checkpoint = policy_train_offline(dataset=obd_bts, steps=5, n_bootstrap=20).checkpoint
    assert not checkpoint.servable
    with pytest.raises(
        checkpoints.CheckpointStateError, match="trained offline on dataset 'obd-bts'"
    ):
        checkpoints.checkpoint_activate(checkpoint=checkpoint)
    assert not Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).exists()
    (row,) = [r for r in checkpoints_table() if r.checkpoint.pk == checkpoint.pk]
    assert not row.can_activate
    page = superuser_client.get("/admin/recommender/dashboard/").content.decode()
    assert "Trained offline on dataset &#x27;obd-bts&#x27;" in page
