"""The impression log's one statement writes every column of an item row."""

from __future__ import annotations

from recommender.feedback.impressions import ITEM_FIELDS, _written_fields
from recommender.models import ImpressionItem


def test_the_logging_statement_sets_every_column_of_an_item():
    # A column added to ImpressionItem needs its value in impression_log: a
    # nullable one would otherwise be logged as NULL, not its default.
    assert sorted(ITEM_FIELDS) == sorted(f.name for f in _written_fields(ImpressionItem))
