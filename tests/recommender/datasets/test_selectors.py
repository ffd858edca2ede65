"""An imported dataset as the RL core's arrays."""

import numpy as np
import pytest

from recommender.datasets.selectors import (
    DatasetNotFound,
    dataset_catalog,
    dataset_feedback,
    dataset_get,
)
from recommender.datasets.services import dataset_import, feedback_export
from recommender.models import Transition
from recommender.rl.types import EventType, Observation
from recommender.serving.features import build_catalog

pytestmark = pytest.mark.django_db


def test_an_open_bandit_row_sees_its_users_past_clicks(obd_random):
    feedback = dataset_feedback(obd_random)
    assert len(feedback) == 10_000 and feedback.n_positions == 3
    assert feedback.catalog.ids.tolist() == list(range(80))
    assert feedback.rewards.sum() == 38
    assert feedback.sessions is None and feedback.next_rows is None
    row = obd_random.rows.exclude(context__affinity={}).order_by("timestamp", "key").first()
    index = next(
        i for i, o in enumerate(feedback.observations) if o.recent_items
    )  # the first row in time order with a history
    past = {int(item): count for item, count in row.context["affinity"].items()}
    assert set(feedback.observations[index].recent_items) == set(past)
    assert set(feedback.observations[index].recent_events) == {int(EventType.CLICK)}
    # Rows come in time order.
    assert feedback.catalog.ids[feedback.actions[0]] == 14


@pytest.mark.usefixtures("recommender_isolation", "store_history")
def test_a_store_export_keeps_states_candidates_and_sessions(tmp_path):
    feedback_export(folder=tmp_path)
    dataset = dataset_import(path=tmp_path, format="store", name="store").dataset
    catalog = dataset_catalog(dataset)
    live = build_catalog()
    # The store's own features: its checkpoints read the dataset as the live catalog.
    np.testing.assert_array_equal(catalog.ids, live.ids)
    np.testing.assert_array_equal(catalog.attributes, live.attributes)
    np.testing.assert_array_equal(catalog.categories, live.categories)
    feedback = dataset_feedback(dataset)
    chained = [i for i in range(len(feedback)) if feedback.next_rows[i] >= 0]
    assert chained, "sessions with a next request are chained"
    transitions = {
        (str(t.impression_id), t.position): t for t in Transition.objects.filter(done=False)
    }
    keys = list(dataset.rows.order_by("timestamp", "key").values_list("impression", "position"))
    for i in chained[:20]:
        transition = transitions[keys[i]]
        following = keys[feedback.next_rows[i]][0]
        assert following == str(transition.next_impression_id)
        assert feedback.observations[feedback.next_rows[i]] == Observation.from_dict(
            transition.next_impression.state
        )
    assert len(feedback.sessions) == len(feedback) and all(feedback.sessions)
    rewards = dataset_feedback(dataset, reward="reward").rewards
    assert rewards.sum() >= feedback.rewards.sum()  # clicks count 1 in the store's reward too


def test_an_unknown_dataset_lists_the_known_ones(obd_random):
    with pytest.raises(DatasetNotFound, match="no dataset called 'zozo' .imported: obd-random."):
        dataset_get(name="zozo")
