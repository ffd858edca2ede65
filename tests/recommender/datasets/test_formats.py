"""Reading the Open Bandit sample and the store's export, and refusing
malformed files with the line at fault (no database needed)."""

import csv
from datetime import UTC, datetime

import pytest

from recommender.datasets import formats
from tests.recommender.datasets.conftest import BTS, RANDOM


def read(folder, format="obd"):
    files = formats.locate(folder, format)
    items = formats.read_items(files)
    return items, list(formats.read_rows(files, {i.item_id for i in items}))


def test_the_open_bandit_sample_reads_as_its_readme_describes():
    items, rows = read(RANDOM)
    assert len(items) == 80 and len(rows) == 10_000
    assert sum(r.click for r in rows) == 38
    assert {r.position for r in rows} == {0, 1, 2}  # 1..3 in the file
    assert {r.propensity for r in rows} == {1 / 80}
    first = rows[0]
    assert (first.key, first.item_id, first.position) == ("0", 14, 2)
    assert first.timestamp == datetime(2019, 11, 24, 0, 0, 34, 762830, tzinfo=UTC)
    assert len(first.context["user_features"]) == 4
    with_history = [r for r in rows if r.context["affinity"]]
    assert len(with_history) == 448  # rows whose user clicked some item before
    # Category: item_feature_3 (7 values); item_feature_1 and _2 as one-hot attributes.
    assert len({i.category for i in items}) == 7
    assert {len(i.attributes) for i in items} == {12 + 21 + 1}


def test_both_folders_code_the_same_items_alike_though_their_hashes_differ():
    random_items, _ = read(RANDOM)
    bts_items, bts_rows = read(BTS)
    assert random_items[5].features["item_feature_1"] != bts_items[5].features["item_feature_1"]
    assert [(i.category, i.attributes) for i in random_items] == [
        (i.category, i.attributes) for i in bts_items
    ]
    assert sum(r.click for r in bts_rows) == 42
    assert min(r.propensity for r in bts_rows) == pytest.approx(4.5e-5)


def rewrite(folder, line: int, column: str, value: str) -> None:
    """Set ``column`` of the row on file line ``line`` (the header is line 1)."""
    path = folder / "all.csv"
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    rows[line - 1][rows[0].index(column)] = value
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("propensity_score", "0", r"propensity_score must be in \(0, 1\], not 0"),
        ("propensity_score", "1.5", r"propensity_score must be in \(0, 1\]"),
        ("propensity_score", "often", "propensity_score 'often' is not a number"),
        ("item_id", "80", "item_id 80 is not in item_context.csv"),
        ("position", "0", "position must be at least 1"),
        ("click", "2", "click must be 0 or 1"),
        ("timestamp", "yesterday", "timestamp 'yesterday' is not an ISO 8601 timestamp"),
        ("user-item_affinity_3", "-1.0", "user-item_affinity_3 must not be negative"),
        ("user-item_affinity_3", "nan", "user-item_affinity_3 must be finite"),
    ],
)
def test_a_malformed_row_names_its_file_line_and_field(obd_copy, column, value, message):
    rewrite(obd_copy, 58, column, value)
    with pytest.raises(formats.FormatError, match=rf"^all\.csv line 58: {message}") as error:
        read(obd_copy)
    assert error.value.line == 58


def test_a_short_row_and_a_missing_column_are_refused(obd_copy):
    path = obd_copy / "all.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = ",".join(lines[3].split(",")[:5]) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(formats.FormatError, match="all.csv line 4: 5 fields where the header has"):
        read(obd_copy)
    lines[0] = lines[0].replace("propensity_score", "pscore")
    path.write_text("".join(lines))
    with pytest.raises(
        formats.FormatError, match="all.csv line 1: missing column.*propensity_score"
    ):
        read(obd_copy)


def test_items_must_be_unique_and_complete(obd_copy):
    path = obd_copy / "item_context.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines, lines[3]]))
    with pytest.raises(
        formats.FormatError, match="item_context.csv line 82: item_id 2 appears twice"
    ):
        read(obd_copy)
    (obd_copy / "item_context.csv").unlink()
    with pytest.raises(formats.FormatError, match="item_context.csv: no such file"):
        formats.locate(obd_copy, "obd")


def test_the_store_format_reads_back_what_it_wrote(tmp_path):
    items = [
        formats.ItemRecord(
            7, 2, 19.99, (), {"brand": "Brume", "colour": "Ivory", "material": "silk"}
        ),
        formats.ItemRecord(9, 3, 5.0, (), {"brand": "", "colour": "", "material": ""}),
    ]
    state = {
        "slot": 2,
        "current_item": 9,
        "recent_items": [9],
        "recent_events": [0],
        "recent_ages": [1.5],
        "cart_items": [],
        "history_items": [],
        "page_depth": 1,
    }
    row = formats.RowRecord(
        line=0,
        key="imp-1:0",
        timestamp=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        item_id=7,
        position=0,
        propensity=0.9125,
        click=True,
        reward=1.0 / 3.0,
        context={
            "state": state,
            "unavailable": [3, 4],
            "slot": "product",
            "policy": {"name": "dqn", "version": 4, "epsilon": 0.1},
        },
        impression="imp-1",
        session="abc",
        next_impression="imp-2",
        done=False,
    )
    assert formats.write_store(tmp_path, items, [row]) == 1
    read_items, (read_row,) = read(tmp_path, "store")
    assert [(i.item_id, i.category, i.price, i.features) for i in read_items] == [
        (i.item_id, i.category, i.price, i.features) for i in items
    ]
    assert read_row == formats.RowRecord(**{**row.__dict__, "line": 2})


def test_a_store_row_with_a_state_that_is_no_observation_is_refused(tmp_path):
    formats.write_store(tmp_path, [formats.ItemRecord(1, 0, 1.0, (), {})], [])
    header = ",".join(formats.STORE_FEEDBACK_COLUMNS)
    bad_state = '"{""slot"": 5}"'
    (tmp_path / "feedback.csv").write_text(
        f"{header}\nimp,2026-01-01T00:00:00+00:00,s,home,dqn,,0.1,0,1,0.5,0,0.0,,1,{bad_state},[]\n"
    )
    with pytest.raises(
        formats.FormatError, match="feedback.csv line 2: state.slot must be 0, 1 or 2"
    ):
        read(tmp_path, "store")
