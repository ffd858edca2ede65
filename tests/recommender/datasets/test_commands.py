"""The four management commands of imported logs, as a user runs them."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from recommender.models import Checkpoint
from recommender.models.datasets import LoggedDataset
from tests.recommender.datasets.conftest import RANDOM
from tests.recommender.datasets.test_formats import rewrite

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def test_import_reports_the_dataset_and_a_repeat_does_nothing():
    out = run("import_logged_feedback", str(RANDOM), "--format", "obd", "--name", "obd-random")
    assert "Imported 'obd-random': 10,000 rows, 80 items, 3 positions, 38 clicks" in out
    out = run("import_logged_feedback", str(RANDOM), "--format", "obd", "--name", "obd-random")
    assert "already holds these files: nothing to do" in out


def test_import_of_a_malformed_file_says_where_and_keeps_nothing(obd_copy):
    rewrite(obd_copy, 4321, "item_id", "x")
    with pytest.raises(
        CommandError,
        match=r"all\.csv line 4321: item_id 'x' is not a whole number\. Nothing was imported\.",
    ):
        run("import_logged_feedback", str(obd_copy), "--format", "obd", "--name", "bad")
    assert not LoggedDataset.objects.exists()


def test_evaluate_prints_one_json_object(obd_random):
    out = run(
        "evaluate_offline",
        "--dataset",
        "obd-random",
        "--policy",
        "logged",
        "--estimators",
        "ips,snips,dr",
        "--bootstrap",
        "100",
        "--json",
    )
    result = json.loads(out)
    assert result["dataset"] == "obd-random" and result["policy"] == "logged"
    assert result["n_rows"] == 10_000
    assert set(result["estimates"]) == {"ips", "snips", "dr"}
    ips = result["estimates"]["ips"]
    assert ips["value"] == 0.0038 and len(ips["ci95"]) == 2 and ips["ess"] == 10_000


def test_evaluate_prints_a_table_with_intervals_and_notes(obd_random):
    out = run(
        "evaluate_offline",
        "--dataset",
        "obd-random",
        "--policy",
        "popularity",
        "--bootstrap",
        "100",
    )
    assert "Dataset 'obd-random' (obd): 10,000 rows, logged click-through rate 0.0038" in out
    for name in ("ips", "snips", "dm", "dr", "switch-dr"):
        assert f"\n{name} " in out
    assert "- switch-dr: " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope", "--policy", "uniform"], "no dataset called 'nope'"),
        (["--dataset", "obd-random", "--policy", "best"], "unknown policy 'best'"),
        (
            ["--dataset", "obd-random", "--policy", "uniform", "--estimators", "ips,ipw"],
            "unknown estimator.s. ipw",
        ),
        (["--dataset", "obd-random", "--policy", "uniform", "--max-weight", "0"], "--max-weight"),
    ],
)
def test_evaluate_refuses_bad_input_clearly(obd_random, args, message):
    with pytest.raises(CommandError, match=message):
        run("evaluate_offline", *args)


@pytest.mark.usefixtures("recommender_isolation")
def test_train_stores_a_candidate_and_compares_it_on_held_out_rows(obd_random):
    out = run("train_offline", "--dataset", "obd-random", "--steps", "20", "--bootstrap", "50")
    checkpoint = Checkpoint.objects.get()
    assert f"Stored as candidate checkpoint v{checkpoint.version}." in out
    assert "the store cannot serve it" in out
    assert "on the 3,000 held-out rows" in out
    for policy in (
        "uniform",
        "logged",
        "popularity",
        "same-category",
        "co-occurrence",
        "candidate",
    ):
        assert f"\n{policy} " in out
    assert "- candidate against logged: " in out
    assert checkpoint.status == Checkpoint.Status.CANDIDATE


@pytest.mark.usefixtures("recommender_isolation", "store_history")
def test_export_writes_the_store_format(tmp_path):
    out = run("export_logged_feedback", str(tmp_path))
    assert out.startswith("Wrote ") and (tmp_path / "feedback.csv").exists()
    out = run("import_logged_feedback", str(tmp_path), "--format", "store", "--name", "ours")
    assert "Imported 'ours'" in out
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        run("export_logged_feedback", str(tmp_path), "--limit", "0")
