import numpy as np
import pytest

from recommender.rl.config import DQNConfig
from recommender.rl.encoding import (
    CART_POOL,
    FOCUS_POOL,
    HISTORY_POOL,
    N_POOLS,
    IdVocabulary,
    ItemIndex,
    ObservationEncoder,
)
from recommender.rl.types import EventType, Observation, Slot

CONFIG = DQNConfig(max_recent=4, max_cart=2, max_history=3, recency_half_life_s=100.0)


def bags(encoded, b):
    """{pool: (rows, weights)} of state b."""
    assert (np.diff(encoded.pools[b]) >= 0).all()  # positions run pool by pool
    return {
        pool: (
            encoded.rows[b, encoded.pools[b] == pool],
            encoded.weights[b, encoded.pools[b] == pool],
        )
        for pool in range(N_POOLS)
    }


def test_item_index_dense_and_sparse_ids_find_rows_and_miss_unknown():
    dense = ItemIndex(np.array([10, 3, 7]))
    assert dense.rows([7, 10, 3, 4, -1, 99]).tolist() == [2, 0, 1, -1, -1, -1]
    sparse = ItemIndex(np.array([10**12, 5, 10**15]))
    assert sparse.rows([5, 10**15, 6, 10**12]).tolist() == [1, 2, -1, 0]
    assert ItemIndex(np.array([], dtype=np.int64)).rows([1]).tolist() == [-1]
    # A negative sentinel id (SlateQ's "no click" row) beside store ids.
    with_sentinel = ItemIndex(np.array([10, 3, -1]))
    assert with_sentinel.rows([-1, 3, -2, 10, 11]).tolist() == [2, 1, -1, 0, -1]
    with pytest.raises(ValueError, match="unique"):
        ItemIndex(np.array([1, 1]))


def test_vocabulary_reserves_row_zero_for_unknown_ids_and_only_appends():
    vocabulary = IdVocabulary(np.array([5, 9]))
    assert vocabulary.rows(np.array([9, 5, 4])).tolist() == [2, 1, 0]
    assert vocabulary.extend(np.array([4, 9, 12, 4])) == 2
    assert vocabulary.rows(np.array([5, 9, 4, 12])).tolist() == [1, 2, 3, 4]


def test_encoding_groups_recent_items_by_event_and_weights_them_by_recency():
    index = ItemIndex(np.array([100, 101, 102, 103, 104, 105]))
    obs = Observation(
        slot=Slot.PRODUCT,
        current_item=105,
        recent_items=(100, 101, 102),
        recent_events=(EventType.VIEW, EventType.CLICK, EventType.VIEW),
        recent_ages=(100.0, 50.0, 0.0),
        cart_items=(103,),
        history_items=(104, 999),
        page_depth=4,
    )
    encoded = ObservationEncoder(CONFIG).encode([obs], index)
    pooled = bags(encoded, 0)

    views_rows, views_weights = pooled[EventType.VIEW]
    assert views_rows.tolist() == [0, 2]
    # Item 100 is one half-life old: it weighs half as much as item 102, and a bag sums to 1.
    np.testing.assert_allclose(views_weights, [1 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(encoded.masses[0, EventType.VIEW], 1.5, rtol=1e-6)
    assert pooled[EventType.CLICK][0].tolist() == [1]
    assert pooled[EventType.ADD_TO_CART][0].size == 0
    assert pooled[EventType.PURCHASE][1].sum() == 0  # only padding
    assert pooled[CART_POOL][0].tolist() == [3, -1]
    # The unknown history id 999 is kept out of the pool.
    assert pooled[HISTORY_POOL][0].tolist() == [4, -1, -1]
    np.testing.assert_allclose(pooled[HISTORY_POOL][1], [1, 0, 0])
    assert encoded.masses[0, HISTORY_POOL] == 1.0
    # The focus is the page's product.
    assert pooled[FOCUS_POOL][0].tolist() == [5]
    assert encoded.slots[0] == Slot.PRODUCT and encoded.page_depths[0] == 4


def test_encoding_keeps_the_newest_items_and_pads_empty_states():
    index = ItemIndex(np.arange(10))
    obs = Observation(
        slot=Slot.HOME,
        recent_items=tuple(range(6)),
        recent_events=(EventType.VIEW,) * 6,
        recent_ages=(0.0,) * 6,
        cart_items=(7, 8, 9),
    )
    encoder = ObservationEncoder(CONFIG)
    encoded = encoder.encode([obs, Observation(slot=Slot.CART)], index)
    assert bags(encoded, 0)[EventType.VIEW][0].tolist() == [2, 3, 4, 5]
    assert bags(encoded, 0)[CART_POOL][0].tolist() == [8, 9]
    assert (encoded.rows[1] == -1).all() and (encoded.weights[1] == 0).all()
    np.testing.assert_array_equal(encoded.pools[1], encoder.empty(1).pools[0])


def test_encoding_rejects_misaligned_recent_sequences():
    obs = Observation(
        slot=Slot.HOME, recent_items=(1, 2), recent_events=(0,), recent_ages=(0.0, 1.0)
    )
    with pytest.raises(ValueError, match="equal lengths"):
        ObservationEncoder(CONFIG).encode([obs], ItemIndex(np.arange(3)))


def test_without_a_page_product_the_focus_is_the_newest_interaction():
    index = ItemIndex(np.array([100, 101, 102]))
    obs = Observation(
        slot=Slot.HOME,
        recent_items=(100, 101, 102),
        recent_events=(EventType.ADD_TO_CART, EventType.VIEW, EventType.CLICK),
        recent_ages=(30.0, 20.0, 10.0),
    )
    encoded = ObservationEncoder(CONFIG).encode([obs, Observation(slot=Slot.HOME)], index)
    assert bags(encoded, 0)[FOCUS_POOL][0].tolist() == [2]  # item 102, whatever its type
    assert encoded.masses[1, FOCUS_POOL] == 0  # nothing in view in a cold session
