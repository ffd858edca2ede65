"""Reads of imported logs, and the one place where their rows become the RL
core's arrays (``recommender.rl.offline.LoggedFeedback``)."""

from __future__ import annotations

import numpy as np
from django.db.models import QuerySet

from recommender.datasets.models import LoggedDataset
from recommender.rl.offline import LoggedFeedback, observation_from_clicks
from recommender.rl.types import ItemCatalog, Observation


class DatasetNotFound(LookupError):
    pass


def datasets() -> QuerySet[LoggedDataset]:
    return LoggedDataset.objects.order_by("name")


def dataset_get(*, name: str) -> LoggedDataset:
    dataset = LoggedDataset.objects.filter(name=name).first()
    if dataset is None:
        known = ", ".join(datasets().values_list("name", flat=True)) or "none yet"
        raise DatasetNotFound(
            f"no dataset called {name!r} (imported: {known}); "
            "import one with manage.py import_logged_feedback"
        )
    return dataset


def dataset_catalog(dataset: LoggedDataset) -> ItemCatalog:
    """The dataset's items as the model reads them, in item id order."""
    rows = list(
        dataset.items.order_by("item_id").values_list("item_id", "category", "price", "attributes")
    )
    width = len(rows[0][3]) if rows else 0
    return ItemCatalog(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        categories=np.array([r[1] for r in rows], dtype=np.int64),
        prices=np.array([r[2] for r in rows], dtype=np.float32),
        attributes=np.array([r[3] for r in rows], dtype=np.float32).reshape(len(rows), width),
    )


REWARDS = ("click", "reward")


def dataset_feedback(dataset: LoggedDataset, *, reward: str = "click") -> LoggedFeedback:
    """Every row of the dataset in time order, as arrays for the RL core, with
    ``reward`` as the reward: "click" (0/1: estimates are click-through rates)
    or "reward" (the log's own reward: the store's weighted clicks, add-to-carts
    and purchases; the click again for an Open Bandit log).

    Contexts: a store export's rows carry the state its policy saw; an Open
    Bandit row's context is the user's past clicks (its user-item affinity),
    as recent clicks (``observation_from_clicks``); its hashed user features
    have no place in an ``Observation`` and are kept in the dataset only. A
    store row is chained to a row of its session's next impression when that
    impression is in the dataset too; every other row is terminal.
    """
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {', '.join(REWARDS)}")
    catalog = dataset_catalog(dataset)
    store = dataset.format == LoggedDataset.Format.STORE
    values = list(
        dataset.rows.order_by("timestamp", "key").values_list(
            "item_id",
            "position",
            "propensity",
            reward,
            "context",
            "impression",
            "session",
            "next_impression",
            "done",
        )
    )
    observations: list[Observation] = []
    unavailable: list[tuple[int, ...]] = []
    parsed: dict[str, Observation] = {}  # one impression's rows share its state
    for row in values:
        context, impression = row[4], row[5]
        if store:
            observation = parsed.get(impression)
            if observation is None:
                observation = parsed[impression] = Observation.from_dict(context["state"])
            unavailable.append(tuple(context.get("unavailable", ())))
        else:
            observation = observation_from_clicks(
                {int(item): float(count) for item, count in context.get("affinity", {}).items()}
            )
        observations.append(observation)
    first_row: dict[str, int] = {}
    for index, row in enumerate(values):
        first_row.setdefault(row[5], index)
    next_rows = np.array(
        [first_row.get(row[7], -1) if store and not row[8] and row[7] else -1 for row in values],
        dtype=np.int64,
    )
    return LoggedFeedback(
        catalog=catalog,
        observations=observations,
        actions=catalog.index_of([row[0] for row in values]),
        positions=np.array([row[1] for row in values], dtype=np.int64),
        propensities=np.array([row[2] for row in values], dtype=np.float64),
        rewards=np.array([float(row[3]) for row in values], dtype=np.float64),
        n_positions=max(dataset.n_positions, 1),
        unavailable=unavailable if store else None,
        sessions=[row[6] for row in values] if store else None,
        next_rows=next_rows if store else None,
    )
