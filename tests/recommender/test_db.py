"""Reading a large binary value (a checkpoint's weights) in slices."""

from __future__ import annotations

import pytest

from recommender.db import read_binary
from recommender.models import Checkpoint

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("size", "slice_bytes"),
    # None, one short, one exact, one and a byte, several; and a value large
    # enough for PostgreSQL to store compressed, in many slices.
    [(0, 7), (1, 7), (6, 7), (7, 7), (8, 7), (26, 7), (300_000, 4096)],
)
def test_a_binary_value_reads_back_whole_whatever_the_slices(size, slice_bytes):
    value = bytes(i * 7 % 251 for i in range(size))
    checkpoint = Checkpoint.objects.create(version=1, weights=value)

    assert read_binary(Checkpoint, checkpoint.pk, "weights", slice_bytes=slice_bytes) == value
    assert read_binary(Checkpoint, checkpoint.pk, "weights") == value


def test_a_missing_row_reads_as_none():
    assert read_binary(Checkpoint, 12345, "weights") is None


def test_slices_must_hold_a_byte():
    with pytest.raises(ValueError, match="slice_bytes"):
        read_binary(Checkpoint, 1, "weights", slice_bytes=0)
