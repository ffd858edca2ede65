"""Fixtures for the imported-log tests: the Open Bandit sample the project
keeps in data/, and a store history exported from simulated shoppers."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.utils import timezone

from recommender.datasets.services import dataset_import
from recommender.learning.training import transitions_build
from recommender.models import Impression
from recommender.simulation.traffic import (
    InProcessShopClient,
    ShopperDriver,
    shopper_seeds,
    store_simulator,
)
from tests.recommender.support import make_catalog

OBD = Path(settings.BASE_DIR) / "data" / "open_bandit_dataset"
RANDOM = OBD / "random" / "all"
BTS = OBD / "bts" / "all"


@pytest.fixture
def obd_copy(tmp_path):
    """A writable copy of the uniform-random folder, to spoil."""
    folder = tmp_path / "random"
    shutil.copytree(RANDOM, folder)
    return folder


@pytest.fixture
def obd_random(db):
    return dataset_import(path=RANDOM, format="obd", name="obd-random").dataset


@pytest.fixture
def obd_bts(db):
    return dataset_import(path=BTS, format="obd", name="obd-bts").dataset


@pytest.fixture
def store_history(db, settings, monkeypatch):
    """Simulated shoppers through the store's full request stack, their
    sessions over and turned into transitions: what export_logged_feedback
    exports."""
    rng = np.random.default_rng(5)
    monkeypatch.setattr("recommender.serving.recommendations._rng", lambda: rng)
    make_catalog(products=30, categories=4, stock=2)  # little stock: some sell out
    simulator = store_simulator(seed=2)
    for number, seed in enumerate(shopper_seeds(2, 12)):
        ShopperDriver(InProcessShopClient()).run(
            simulator.new_shopper(int(seed)), session_number=number
        )
    transitions_build(now=timezone.now() + timedelta(hours=1))
    assert Impression.objects.filter(transitions_built=True).count() >= 10
