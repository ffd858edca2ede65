"""Importing a log as a named dataset (idempotent, all or nothing) and
exporting the store's impressions so that they round-trip."""

import csv

import pytest

from recommender.datasets import formats
from recommender.datasets.services import (
    DatasetImportError,
    dataset_import,
    feedback_export,
    session_digest,
)
from recommender.models import Event, EventType, Impression, Transition
from recommender.models.datasets import LoggedDataset, LoggedItem, LoggedRow
from tests.recommender.datasets.conftest import BTS, RANDOM
from tests.recommender.datasets.test_formats import rewrite

pytestmark = pytest.mark.django_db


def test_an_open_bandit_folder_becomes_a_named_dataset():
    progress = []
    result = dataset_import(
        path=RANDOM, format="obd", name="obd-random", on_progress=progress.append
    )
    dataset = result.dataset
    assert result.created and result.rows == 10_000 == sum(progress)
    assert (dataset.n_rows, dataset.n_items, dataset.n_positions, dataset.clicks) == (
        10_000,
        80,
        3,
        38,
    )
    assert dataset.meta["category_feature"] == "item_feature_3"
    row = dataset.rows.get(key="0")
    assert (row.item_id, row.position, row.propensity, row.click, row.reward) == (
        14,
        2,
        0.0125,
        False,
        0.0,
    )
    assert len(row.context["user_features"]) == 4
    assert dataset.items.count() == 80


def test_importing_the_same_files_again_changes_nothing():
    first = dataset_import(path=RANDOM, format="obd", name="obd-random").dataset
    again = dataset_import(path=RANDOM, format="obd", name="obd-random")
    assert not again.created and again.rows == 0 and again.dataset.pk == first.pk
    assert LoggedRow.objects.count() == 10_000 and LoggedItem.objects.count() == 80


def test_other_files_under_a_taken_name_need_replace():
    dataset_import(path=RANDOM, format="obd", name="zozo")
    with pytest.raises(DatasetImportError, match="already holds other data.*--replace"):
        dataset_import(path=BTS, format="obd", name="zozo")
    assert LoggedDataset.objects.get(name="zozo").clicks == 38
    replaced = dataset_import(path=BTS, format="obd", name="zozo", replace=True).dataset
    assert replaced.clicks == 42 and LoggedRow.objects.count() == 10_000


def test_a_malformed_row_imports_nothing(obd_copy):
    rewrite(obd_copy, 9_000, "propensity_score", "-0.2")  # after four batches were written
    with pytest.raises(formats.FormatError, match="all.csv line 9000: propensity_score"):
        dataset_import(path=obd_copy, format="obd", name="broken")
    assert not LoggedDataset.objects.exists() and not LoggedRow.objects.exists()


def test_a_failed_replace_keeps_the_dataset_as_it_was(obd_copy):
    dataset_import(path=RANDOM, format="obd", name="zozo")
    rewrite(obd_copy, 7_777, "click", "yes")
    with pytest.raises(formats.FormatError, match="line 7777: click 'yes' is not a whole number"):
        dataset_import(path=obd_copy, format="obd", name="zozo", replace=True)
    dataset = LoggedDataset.objects.get(name="zozo")
    assert dataset.rows.count() == 10_000 and dataset.clicks == 38


def test_a_row_key_twice_is_refused(obd_copy):
    rewrite(obd_copy, 5, "", "2")  # line 5 holds row 3; row 2 is on line 4
    with pytest.raises(formats.FormatError, match="all.csv line 5: row '2' appears twice"):
        dataset_import(path=obd_copy, format="obd", name="twice")


@pytest.mark.usefixtures("recommender_isolation", "store_history")
def test_the_stores_impressions_round_trip_through_the_export(tmp_path):
    written = feedback_export(folder=tmp_path / "a")
    shown = Transition.objects.count()
    assert written == shown > 0
    dataset = dataset_import(path=tmp_path / "a", format="store", name="store").dataset
    assert dataset.n_rows == shown
    # Every shown item comes back with its position, propensity, reward and state.
    for transition in Transition.objects.select_related("impression")[:40]:
        row = dataset.rows.get(key=f"{transition.impression_id}:{transition.position}")
        impression = transition.impression
        assert (row.item_id, row.propensity, row.reward, row.done) == (
            transition.product_id,
            transition.propensity,
            transition.reward,
            transition.done,
        )
        assert row.next_impression == str(transition.next_impression_id or "")
        assert row.timestamp == impression.created_at
        assert row.context["state"] == impression.state
        assert row.session == session_digest(impression.session_key)
    clicks = Event.objects.filter(type=EventType.CLICK, impression__isnull=False).count()
    assert dataset.clicks == clicks > 0
    # Exported again from the dataset, the files are byte for byte the same.
    feedback_export(folder=tmp_path / "b", dataset=dataset)
    for name in ("feedback.csv", "items.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # Session keys are credentials: only their digests leave the store.
    text = (tmp_path / "a" / "feedback.csv").read_text()
    assert not any(key in text for key in Impression.objects.values_list("session_key", flat=True))


@pytest.mark.usefixtures("recommender_isolation", "store_history")
def test_the_export_can_be_limited_to_the_latest_impressions(tmp_path):
    feedback_export(folder=tmp_path, limit=3)
    with (tmp_path / "feedback.csv").open(newline="") as handle:
        impressions = {row["impression_id"] for row in csv.DictReader(handle)}
    latest = Impression.objects.filter(transitions_built=True).order_by("-created_at", "-id")[:3]
    assert impressions == {str(i.pk) for i in latest}


def test_only_a_store_export_is_written_back_in_the_store_format(tmp_path):
    dataset = dataset_import(path=RANDOM, format="obd", name="obd-random").dataset
    with pytest.raises(DatasetImportError, match="imported from the obd format"):
        feedback_export(folder=tmp_path, dataset=dataset)


def test_an_over_long_value_is_a_clear_error(obd_copy):
    rewrite(obd_copy, 12, "", "k" * 81)
    with pytest.raises(formats.FormatError, match="all.csv line 12: key is longer than 80"):
        dataset_import(path=obd_copy, format="obd", name="long")


def test_a_dataset_name_is_a_slug():
    with pytest.raises(DatasetImportError, match="dataset name 'my log' must be"):
        dataset_import(path=RANDOM, format="obd", name="my log")
