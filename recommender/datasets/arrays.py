"""Logged rows as the RL core's arrays: the one place where a log's records
become a ``recommender.rl.offline.LoggedFeedback``. No Django here, so a
notebook can go from files to estimates without the store::

    from recommender.datasets import arrays, formats
    from recommender.rl import offline

    files = formats.locate("data/open_bandit_dataset/bts/all", "obd")
    items = formats.read_items(files)
    rows = list(formats.read_rows(files, {i.item_id for i in items}))
    log = arrays.feedback_from_records("obd", items, rows)
    offline.evaluate(log, range(len(log)), "uniform")
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recommender.datasets.formats import ItemRecord, RowRecord
from recommender.rl.offline import LoggedFeedback, observation_from_clicks
from recommender.rl.types import ItemCatalog, Observation

REWARDS = ("click", "reward")


def catalog_from_records(items: Sequence[ItemRecord]) -> ItemCatalog:
    """The items as the model reads them, in item id order. A store export's
    items need their attributes from ``recommender.serving.features`` first (the
    import computes them)."""
    items = sorted(items, key=lambda item: item.item_id)
    width = len(items[0].attributes) if items else 0
    return ItemCatalog(
        ids=np.array([i.item_id for i in items], dtype=np.int64),
        categories=np.array([i.category for i in items], dtype=np.int64),
        prices=np.array([i.price for i in items], dtype=np.float32),
        attributes=np.array([i.attributes for i in items], dtype=np.float32).reshape(
            len(items), width
        ),
    )


def feedback_from_records(
    format: str,
    items: Sequence[ItemRecord],
    rows: Sequence[RowRecord],
    *,
    reward: str = "click",
    n_positions: int | None = None,
) -> LoggedFeedback:
    """The rows, sorted by time (then key), as arrays, with ``reward`` as the
    reward: "click" (0/1: estimates are click-through rates) or "reward" (the
    log's own: the store's weighted clicks, add-to-carts and purchases; the
    click again for an Open Bandit log).

    Contexts: a store export's rows carry the state its policy saw; an Open
    Bandit row's context is the user's past clicks (its user-item affinity),
    as recent clicks (``observation_from_clicks``); its hashed user features
    have no place in an ``Observation`` and are left out. A store row is
    chained to a row of its session's next impression when that impression is
    among the rows too; every other row is terminal.
    """
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {', '.join(REWARDS)}")
    store = format == "store"
    rows = sorted(rows, key=lambda row: (row.timestamp, row.key))
    catalog = catalog_from_records(items)
    observations: list[Observation] = []
    parsed: dict[str, Observation] = {}  # one impression's rows share its state
    for row in rows:
        if store:
            observation = parsed.get(row.impression)
            if observation is None:
                observation = Observation.from_dict(row.context["state"])
                parsed[row.impression] = observation
        else:
            past = row.context.get("affinity", {})
            observation = observation_from_clicks({int(i): float(c) for i, c in past.items()})
        observations.append(observation)
    next_rows = None
    if store:
        first_row: dict[str, int] = {}
        for index, row in enumerate(rows):
            first_row.setdefault(row.impression, index)
        next_rows = np.array(
            [
                first_row.get(row.next_impression, -1)
                if not row.done and row.next_impression
                else -1
                for row in rows
            ],
            dtype=np.int64,
        )
    positions = np.array([row.position for row in rows], dtype=np.int64)
    return LoggedFeedback(
        catalog=catalog,
        observations=observations,
        actions=catalog.index_of([row.item_id for row in rows]),
        positions=positions,
        propensities=np.array([row.propensity for row in rows], dtype=np.float64),
        rewards=np.array(
            [float(row.click) if reward == "click" else row.reward for row in rows],
            dtype=np.float64,
        ),
        n_positions=n_positions or int(positions.max(initial=0)) + 1,
        unavailable=[tuple(row.context.get("unavailable", ())) for row in rows] if store else None,
        sessions=[row.session for row in rows] if store else None,
        next_rows=next_rows,
    )
