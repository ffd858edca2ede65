"""From files to estimates without Django, as a notebook would go."""

import subprocess
import sys

import numpy as np
import pytest
from django.conf import settings

from recommender.datasets import arrays, formats
from recommender.rl import offline
from tests.recommender.datasets.conftest import BTS, RANDOM


def load(folder, reward="click"):
    files = formats.locate(folder, "obd")
    items = formats.read_items(files)
    rows = list(formats.read_rows(files, {i.item_id for i in items}))
    return arrays.feedback_from_records("obd", items, rows, reward=reward)


def test_the_open_bandit_sample_becomes_arrays_in_time_order():
    log = load(RANDOM)
    assert len(log) == 10_000 and log.n_positions == 3 and log.n_items == 80
    assert log.rewards.sum() == 38 and set(log.propensities) == {1 / 80}
    assert log.catalog.ids.tolist() == list(range(80))
    assert len({int(c) for c in log.catalog.categories}) == 7
    with_history = sum(bool(o.recent_items) for o in log.observations)
    assert with_history == 448


def test_estimates_need_no_store():
    bts = load(BTS)
    rows = np.arange(len(bts))
    logged = offline.evaluate(bts, rows, "logged", estimators=["ips"], n_bootstrap=100)
    assert logged.estimates["ips"].value == pytest.approx(42 / 10_000, abs=1e-15)
    uniform = offline.evaluate(bts, rows, "uniform", estimators=["ips"], n_bootstrap=100)
    by_hand = np.mean(bts.rewards * (1 / 80) / bts.propensities)
    assert uniform.estimates["ips"].value == pytest.approx(by_hand, rel=1e-12)


def test_the_files_to_arrays_path_imports_no_django():
    code = (
        "import sys\n"
        "import recommender.datasets.arrays, recommender.datasets.formats, recommender.rl.offline\n"
        "assert 'django' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_unknown_rewards_are_refused():
    with pytest.raises(ValueError, match="reward must be one of click, reward"):
        arrays.feedback_from_records("obd", [], [], reward="revenue")
