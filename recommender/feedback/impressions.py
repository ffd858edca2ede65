"""Logging impressions: each slate shown, with the observation it was chosen
from, written in one statement where the database allows it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.db import connections, router, transaction
from django.utils import timezone

from recommender.db import insert_values, prepared_cursor, typed_placeholders, written_fields
from recommender.models import (
    Impression,
    ImpressionItem,
)
from recommender.rl.types import Observation, Slate
from shop.models import Category, Product

# ---------------------------------------------------------------------------
# Impressions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedImpression:
    """What ``impression_log`` wrote and read. Its products come with their
    categories and the fields a carousel, the recommendations API and a
    reason show (READ_FIELDS); other fields are deferred (read on access)."""

    impression: Impression
    products: list[Product]  # the slate's products in slate order, as read when it was logged
    also: dict[int, Product]  # the ``also_read`` products, by id (whatever their stock)


# What is read of each product shown (and of its category): what carousel
# cards (shop.carousels.CarouselItem), the API's ProductSerializer, reasons and
# the availability check use. Long text (descriptions) stays in the database.
READ_FIELDS = ("id", "category", "name", "slug", "brand", "price", "stock", "is_active", "image")
READ_CATEGORY_FIELDS = ("id", "name", "slug")

# An item row's columns, in the order of the logging statement's arrays (the
# impression id first, one value for every row); tests check that these are
# every column ImpressionItem has.
ITEM_FIELDS = ("impression", "product", "position", "propensity", "score")


def impression_log(
    *,
    session_key: str,
    user_id: int | None,
    slot: str,
    product_id: int | None,
    observation: Observation,
    slate: Slate,
    policy_name: str,
    policy_version: int | None,
    epsilon: float,
    sold_out_id: int | None = None,
    available_only: bool = False,
    also_read: Sequence[int] = (),
    now: datetime | None = None,
) -> LoggedImpression | None:
    """Record one served carousel with each item's position and propensity,
    and the sold-out products its candidates left out (a SoldOutSet id), and
    read the slate's products to render it.

    ``also_read`` names products to read with the slate's (a carousel's
    reasons), in the same query.

    With ``available_only``, nothing is written and None is returned unless
    every item is still active and in stock: the caller draws another slate.
    On PostgreSQL the check, the read and the writes are one statement
    (``_log_in_one_statement``), so what is logged is exactly what was found
    available and is shown. The impression is committed before the page that
    shows it is sent: a click can name it at once, and a worker that dies
    afterwards loses nothing.
    """
    impression = Impression(
        created_at=now or timezone.now(),
        session_key=session_key,
        user_id=user_id,
        slot=slot,
        product_id=product_id,
        state=observation.to_dict(),
        policy_name=policy_name,
        policy_version=policy_version,
        epsilon=epsilon,
        sold_out_id=sold_out_id,
    )
    columns = _item_columns(slate)
    product_ids = columns[0]
    alias = router.db_for_write(Impression)
    if not product_ids:
        impression.save(force_insert=True, using=alias)
        return LoggedImpression(impression, [], {})
    extra = sorted({int(i) for i in also_read})
    by_id, available = _log(
        impression, columns, extra, force=not available_only, connection=connections[alias]
    )
    if not available and available_only:
        return None
    impression._state.adding, impression._state.db = False, alias
    products = [by_id[pk] for pk in product_ids if pk in by_id]
    return LoggedImpression(impression, products, {pk: by_id[pk] for pk in extra if pk in by_id})


def _item_columns(slate: Slate) -> tuple[list, ...]:
    """The slate's item rows as plain columns (no model instance per item),
    in ITEM_FIELDS order after the impression: product, position,
    propensity, score."""
    product_ids = [int(item) for item in slate.items]
    columns = (
        product_ids,
        list(range(len(product_ids))),
        [float(p) for p in slate.propensities],
        [float(score) for score in slate.scores],
    )
    if not (len(product_ids) == len(columns[2]) == len(columns[3])):
        raise ValueError("a slate needs one propensity and one score per item")
    return columns


def _log(
    impression: Impression, columns: tuple[list, ...], extra: list[int], *, force: bool, connection
) -> tuple[dict[int, Product], bool]:
    """Write the impression and its items the fastest way the database allows;
    returns the products read by id and whether the slate was available."""
    if connection.vendor == "postgresql":
        return _log_in_one_statement(impression, columns, extra, force=force, connection=connection)
    return _log_in_a_transaction(impression, columns, extra, force=force, alias=connection.alias)


def _slate_available(by_id: dict[int, Product], item_ids: list[int]) -> bool:
    return all(pk in by_id and by_id[pk].is_active and by_id[pk].stock > 0 for pk in item_ids)


def _log_in_a_transaction(
    impression: Impression,
    columns: tuple[list, ...],
    extra: list[int],
    *,
    force: bool,
    alias: str,
) -> tuple[dict[int, Product], bool]:
    """``impression_log`` for databases other than PostgreSQL: a read, then a
    short transaction of two INSERTs."""
    ids = columns[0]
    by_id = (
        Product.objects.using(alias)
        .select_related("category")
        .only(*READ_FIELDS, *(f"category__{name}" for name in READ_CATEGORY_FIELDS))
        .in_bulk([*ids, *extra])
    )
    available = _slate_available(by_id, ids)
    if available or force:
        with transaction.atomic(using=alias):
            impression.save(force_insert=True, using=alias)
            ImpressionItem.objects.using(alias).bulk_create(
                ImpressionItem(
                    impression=impression,
                    product_id=product_id,
                    position=position,
                    propensity=propensity,
                    score=score,
                )
                for product_id, position, propensity, score in zip(*columns, strict=True)
            )
    return by_id, available


def _log_in_one_statement(
    impression: Impression,
    columns: tuple[list, ...],
    extra: list[int],
    *,
    force: bool,
    connection,
) -> tuple[dict[int, Product], bool]:
    """``impression_log`` on PostgreSQL: one round trip and one commit.

    A data-modifying CTE checks that every item is active and in stock, inserts
    the impression and its items when they are (or when forced), and reads the
    items' products with their categories; the items' foreign key to the
    impression is checked at commit (Django's foreign keys are deferred).

    Outside a surrounding transaction its commit is asynchronous
    (``synchronous_commit = off`` for this statement's transaction only): the
    page does not wait for the disk. A crashed web worker loses nothing (the
    row is in PostgreSQL); a crash of the database server itself may lose the
    last fraction of a second of impressions, never half of one, and later
    events naming a lost impression are refused as unknown. Orders, carts and
    rewards keep synchronous commits.
    """
    ids = columns[0]
    with prepared_cursor(connection) as cursor:
        asynchronous = not connection.in_atomic_block
        cursor.execute(
            _logging_sql(),
            (
                ids,
                asynchronous,
                *insert_values(impression, connection),
                force,
                impression.pk,
                *columns,
                force,
                extra,
            ),
        )
        rows = cursor.fetchall()
    available = bool(rows) and rows[0][0]
    alias = connection.alias
    split = 1 + len(READ_FIELDS)
    product_names, category_names = _read_attnames()
    category_field = Product._meta.get_field("category")
    categories: dict[int, Category] = {}
    by_id = {}
    for row in rows:
        product = Product.from_db(alias, product_names, row[1:split])
        category = categories.get(row[split])
        if category is None:
            category = categories[row[split]] = Category.from_db(alias, category_names, row[split:])
        category_field.set_cached_value(product, category)  # as select_related does
        by_id[product.pk] = product
    return by_id, available


def _read_fields() -> tuple[list, list]:
    """READ_FIELDS and READ_CATEGORY_FIELDS in their models' field order, the
    order in which ``Model.from_db`` takes a subset of the values."""

    def ordered(model, names) -> list:
        for name in names:
            model._meta.get_field(name)  # a misspelt name fails here
        return [f for f in model._meta.concrete_fields if f.name in names]

    return ordered(Product, READ_FIELDS), ordered(Category, READ_CATEGORY_FIELDS)


@cache
def _read_attnames() -> tuple[list[str], list[str]]:
    products, categories = _read_fields()
    return [f.attname for f in products], [f.attname for f in categories]


@cache
def _logging_sql() -> str:
    """The statement of ``_log_in_one_statement``. Its parameters: the item
    ids (an array), whether to commit asynchronously, the impression's values,
    the force flag, the impression's id, one array per other item column
    (ITEM_FIELDS), the force flag, the ids of other products to read (an
    array). The same text for every slate size."""
    connection = connections[router.db_for_write(Impression)]
    qn = connection.ops.quote_name

    def columns(fields) -> str:
        return ", ".join(qn(f.column) for f in fields)

    def typed(fields, suffix: str = "") -> str:
        return typed_placeholders(fields, connection, suffix)

    head = written_fields(Impression)
    item = [ImpressionItem._meta.get_field(name) for name in ITEM_FIELDS]
    product_fields, category_fields = _read_fields()
    product, category = qn(Product._meta.db_table), qn(Category._meta.db_table)
    # set_config(..., true) lasts to the end of the transaction: the statement's
    # own when the flag is true (see _log_in_one_statement); ``ids`` is read
    # below, so it runs.
    return f"""WITH ids AS (SELECT %s::bigint[] AS ids,
 set_config('synchronous_commit',
  CASE WHEN %s THEN 'off' ELSE current_setting('synchronous_commit') END, true) AS commit_mode),
available AS (
 SELECT cardinality(ids.ids) = (SELECT count(*) FROM {product} p
  WHERE p.id = ANY(ids.ids) AND p.is_active AND p.stock > 0) AS ok FROM ids),
impression AS (
 INSERT INTO {qn(Impression._meta.db_table)} ({columns(head)})
 SELECT {typed(head)} FROM available WHERE ok OR %s),
items AS (
 INSERT INTO {qn(ImpressionItem._meta.db_table)} ({columns(item)})
 SELECT {typed(item[:1])}, u.* FROM unnest({typed(item[1:], "[]")}) AS u, available
 WHERE ok OR %s)
SELECT available.ok, {", ".join(f"p.{qn(f.column)}" for f in product_fields)},
 {", ".join(f"c.{qn(f.column)}" for f in category_fields)}
FROM ids, available, {product} p JOIN {category} c ON c.id = p.category_id
WHERE p.id = ANY(ids.ids || %s::bigint[])"""
