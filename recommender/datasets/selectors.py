"""Reads of imported logs, as records or as the RL core's arrays (through
``recommender.datasets.arrays``, the one place where rows become arrays)."""

from __future__ import annotations

from django.db.models import QuerySet

from recommender.datasets import arrays
from recommender.datasets.formats import ItemRecord, RowRecord
from recommender.models.datasets import LoggedDataset
from recommender.rl.offline import LoggedFeedback
from recommender.rl.types import ItemCatalog

REWARDS = arrays.REWARDS


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


def dataset_items(dataset: LoggedDataset) -> list[ItemRecord]:
    return [
        ItemRecord(i.item_id, i.category, i.price, tuple(i.attributes), i.features)
        for i in dataset.items.order_by("item_id")
    ]


def dataset_rows(dataset: LoggedDataset) -> list[RowRecord]:
    """Every row, in time order (a carousel's rows together, by position)."""
    return [
        RowRecord(
            line=0,
            key=r.key,
            timestamp=r.timestamp,
            item_id=r.item_id,
            position=r.position,
            propensity=r.propensity,
            click=r.click,
            reward=r.reward,
            context=r.context,
            impression=r.impression,
            session=r.session,
            next_impression=r.next_impression,
            done=r.done,
        )
        for r in dataset.rows.order_by("timestamp", "impression", "position", "key").iterator(
            chunk_size=5000
        )
    ]


def dataset_catalog(dataset: LoggedDataset) -> ItemCatalog:
    """The dataset's items as the model reads them, in item id order."""
    return arrays.catalog_from_records(dataset_items(dataset))


def dataset_feedback(dataset: LoggedDataset, *, reward: str = "click") -> LoggedFeedback:
    """Every row of the dataset in time order, as arrays for the RL core
    (``arrays.feedback_from_records`` says what becomes of each format's
    context)."""
    return arrays.feedback_from_records(
        dataset.format,
        dataset_items(dataset),
        dataset_rows(dataset),
        reward=reward,
        n_positions=max(dataset.n_positions, 1),
    )
