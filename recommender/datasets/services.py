"""Writes of imported logs: importing a folder as a named dataset (validated,
all or nothing, idempotent) and exporting the store's impressions, or a
dataset exported from it, in the ``store`` format."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.db.models import Q

from recommender.datasets import formats
from recommender.models import Event, EventType, Impression
from recommender.models import Transition as TransitionRow
from recommender.models.datasets import LoggedDataset, LoggedItem, LoggedRow
from recommender.serving import features
from shop.models import Product

_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")
# Rows written per INSERT (and per progress update).
_BATCH = 2000
# Impressions read per query when exporting (SQLite's variable limit).
_EXPORT_CHUNK = 2000
# LoggedRow's text columns and their lengths: checked before writing, so an
# over-long value is a clear error with its line, not a database error.
_TEXT_LIMITS = {
    name: LoggedRow._meta.get_field(name).max_length
    for name in ("key", "impression", "session", "next_impression")
}


class DatasetImportError(ValueError):
    """A dataset that cannot be imported as asked (the name holds other data)."""


@dataclass(frozen=True)
class ImportResult:
    dataset: LoggedDataset
    created: bool  # False: the same files were already imported under this name
    rows: int  # rows written by this call


def dataset_import(
    *,
    path: str | Path,
    format: str,
    name: str,
    replace: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Read the folder at ``path`` in ``format`` into a dataset called ``name``.

    Every row is validated as it is read; a malformed one raises
    ``formats.FormatError`` with its file and line, and nothing of the import
    is kept (one transaction). Importing the same files under the same name
    again changes nothing; other files under an existing name need
    ``replace=True``, which swaps the dataset's items and rows in the same
    transaction. ``on_progress`` is called with the number of rows just read.
    """
    _check_name(name)
    files = formats.locate(path, format)
    digest = files.digest()
    existing = LoggedDataset.objects.filter(name=name).first()
    if existing is not None and existing.digest == digest and existing.format == format:
        return ImportResult(existing, created=False, rows=0)
    if existing is not None and not replace:
        raise DatasetImportError(
            f"dataset {name!r} already holds other data (imported from {existing.source}); "
            "pass --replace to import these files in its place"
        )
    items = formats.read_items(files)
    if format == LoggedDataset.Format.STORE:
        items = _with_store_attributes(items)
    item_ids = {item.item_id for item in items}
    with transaction.atomic():
        dataset = _emptied_or_new(existing, name=name)
        dataset.format = format
        dataset.source = str(Path(path).resolve())[:500]
        dataset.digest = digest
        dataset.meta = _meta(files, items)
        dataset.save()
        _write_items(dataset, items)
        totals = _write_rows(dataset, files, item_ids, on_progress)
        dataset.n_rows = totals.rows
        dataset.n_items = len(items)
        dataset.n_positions = totals.positions
        dataset.clicks = totals.clicks
        dataset.save(update_fields=["n_rows", "n_items", "n_positions", "clicks"])
    return ImportResult(dataset, created=True, rows=totals.rows)


def _check_name(name: str) -> None:
    if not _SLUG.fullmatch(name):
        raise DatasetImportError(
            f"dataset name {name!r} must be 1 to 64 letters, digits, hyphens or underscores"
        )


def _emptied_or_new(existing: LoggedDataset | None, *, name: str) -> LoggedDataset:
    """The dataset to import into: the existing one without its rows and
    items (a replacement, in the import's transaction), or a new one."""
    if existing is None:
        return LoggedDataset(name=name)
    existing.rows.all().delete()
    existing.items.all().delete()
    return existing


def _write_items(dataset: LoggedDataset, items: list[formats.ItemRecord]) -> None:
    LoggedItem.objects.bulk_create(
        [
            LoggedItem(
                dataset=dataset,
                item_id=item.item_id,
                category=item.category,
                price=item.price,
                attributes=list(item.attributes),
                features=item.features,
            )
            for item in items
        ],
        batch_size=_BATCH,
    )


@dataclass(frozen=True)
class _RowTotals:
    rows: int
    clicks: int
    positions: int  # one more than the deepest position logged


def _write_rows(
    dataset: LoggedDataset,
    files: formats.LogFiles,
    item_ids: set[int],
    on_progress: Callable[[int], None] | None,
) -> _RowTotals:
    """Validate and write the rows file in batches; FormatError (with its line)
    on an over-long text value, a repeated row key or no rows at all."""
    seen: set[str] = set()
    batch: list[LoggedRow] = []
    n_rows = clicks = positions = 0
    for record in formats.read_rows(files, item_ids):
        _check_row(record, files, seen)
        seen.add(record.key)
        batch.append(_row(dataset, record))
        clicks += record.click
        positions = max(positions, record.position + 1)
        if len(batch) == _BATCH:
            n_rows += _flush(batch, on_progress)
    n_rows += _flush(batch, on_progress)
    if not n_rows:
        raise formats.FormatError(files.rows_path, None, "no logged rows")
    return _RowTotals(rows=n_rows, clicks=clicks, positions=positions)


def _check_row(record: formats.RowRecord, files: formats.LogFiles, seen: set[str]) -> None:
    for field, limit in _TEXT_LIMITS.items():
        if len(getattr(record, field)) > limit:
            raise formats.FormatError(
                files.rows_path, record.line, f"{field} is longer than {limit} characters"
            )
    if record.key in seen:
        raise formats.FormatError(files.rows_path, record.line, f"row {record.key!r} appears twice")


def _flush(batch: list[LoggedRow], on_progress: Callable[[int], None] | None) -> int:
    n = len(batch)
    if n:
        LoggedRow.objects.bulk_create(batch)
        batch.clear()
        if on_progress is not None:
            on_progress(n)
    return n


def _row(dataset: LoggedDataset, record: formats.RowRecord) -> LoggedRow:
    return LoggedRow(
        dataset=dataset,
        key=record.key,
        timestamp=record.timestamp,
        impression=record.impression,
        session=record.session,
        position=record.position,
        item_id=record.item_id,
        propensity=record.propensity,
        click=record.click,
        reward=record.reward,
        next_impression=record.next_impression,
        done=record.done,
        context=record.context,
    )


def _with_store_attributes(items: list[formats.ItemRecord]) -> list[formats.ItemRecord]:
    """The store's own item features (hashed brand / colour / material buckets),
    computed by the code the store's catalog uses, so the store's checkpoints
    read a dataset exported from it exactly as they read the live catalog."""
    catalog = features.catalog_from_rows(
        (
            i.item_id,
            i.category,
            i.price,
            i.features["brand"],
            i.features["colour"],
            i.features["material"],
        )
        for i in items
    )
    return [
        formats.ItemRecord(
            item.item_id,
            item.category,
            item.price,
            tuple(float(a) for a in catalog.attributes[row]),
            item.features,
        )
        for row, item in enumerate(items)
    ]


def _meta(files: formats.LogFiles, items: list[formats.ItemRecord]) -> dict:
    meta = {"files": [p.name for p in files.paths]}
    if files.format == LoggedDataset.Format.OBD:
        meta["category_feature"] = formats.OBD_CATEGORY_FEATURE
        meta["n_attributes"] = len(items[0].attributes) if items else 0
    return meta


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def feedback_export(
    *, folder: str | Path, dataset: LoggedDataset | None = None, limit: int | None = None
) -> int:
    """Write the store's impressions whose rewards are final (the ``limit`` most
    recent, all by default) in the ``store`` format into ``folder``, or the rows
    of ``dataset`` (which must itself come from a store export); returns the
    rows written."""
    if dataset is not None:
        if dataset.format != LoggedDataset.Format.STORE:
            raise DatasetImportError(
                f"dataset {dataset.name!r} was imported from the {dataset.format} format; "
                "only a store export can be written back in the store format"
            )
        items, rows = _dataset_records(dataset)
    else:
        items, rows = _store_records(limit)
    return formats.write_store(folder, items, rows)


def _dataset_records(dataset: LoggedDataset):
    from recommender.datasets.selectors import dataset_items, dataset_rows

    return dataset_items(dataset), dataset_rows(dataset)


def session_digest(session_key: str) -> str:
    """A session's key as exported: enough to tell sessions apart, useless as
    a cookie (the key itself would let anyone holding the file take the session over)."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:20]


def _store_records(limit: int | None):
    impressions = Impression.objects.filter(transitions_built=True).order_by("-created_at", "-id")
    if limit is not None:
        impressions = impressions[:limit]
    chosen = list(impressions.values_list("id", flat=True))
    chosen.reverse()
    referenced = set(
        TransitionRow.objects.filter(impression_id__in=chosen[:_EXPORT_CHUNK]).values_list(
            "product_id", flat=True
        )
    )
    for start in range(_EXPORT_CHUNK, len(chosen), _EXPORT_CHUNK):
        referenced |= set(
            TransitionRow.objects.filter(
                impression_id__in=chosen[start : start + _EXPORT_CHUNK]
            ).values_list("product_id", flat=True)
        )
    products = Product.objects.filter(Q(is_active=True) | Q(pk__in=referenced))
    items = [
        formats.ItemRecord(
            pk, category, float(price), (), {"brand": brand, "colour": colour, "material": material}
        )
        for pk, category, price, brand, colour, material in features.catalog_rows(products)
    ]

    def rows() -> Iterator[formats.RowRecord]:
        for start in range(0, len(chosen), _EXPORT_CHUNK):
            ids = chosen[start : start + _EXPORT_CHUNK]
            by_id = {
                i.pk: i for i in Impression.objects.filter(pk__in=ids).select_related("sold_out")
            }
            clicked = set(
                Event.objects.filter(impression_id__in=ids, type=EventType.CLICK).values_list(
                    "impression_id", "product_id"
                )
            )
            shown: dict = {}
            for t in TransitionRow.objects.filter(impression_id__in=ids).order_by("position"):
                shown.setdefault(t.impression_id, []).append(t)
            for pk in ids:
                impression = by_id[pk]
                context = {
                    "state": impression.state,
                    "unavailable": list(impression.sold_out.product_ids)
                    if impression.sold_out
                    else [],
                    "slot": impression.slot,
                    "policy": {
                        "name": impression.policy_name,
                        "version": impression.policy_version,
                        "epsilon": impression.epsilon,
                    },
                }
                for t in shown.get(pk, []):
                    yield formats.RowRecord(
                        line=0,
                        key=f"{pk}:{t.position}",
                        timestamp=impression.created_at,
                        item_id=t.product_id,
                        position=t.position,
                        propensity=t.propensity,
                        click=(pk, t.product_id) in clicked,
                        reward=t.reward,
                        context=context,
                        impression=str(pk),
                        session=session_digest(impression.session_key),
                        next_impression=str(t.next_impression_id or ""),
                        done=t.done,
                    )

    return items, rows()
