"""Logging impressions: each slate shown, with the observation it was chosen
from, written in one statement where the database allows it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.db import connections, router, transaction
from django.db.models import CharField
from django.utils import timezone

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
    impression: Impression
    products: list[Product]  # the slate's products in slate order, as read when it was logged
    also: dict[int, Product]  # the ``also_read`` products, by id (whatever their stock)


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
    items = [
        ImpressionItem(
            impression=impression,
            product_id=int(item),
            position=position,
            propensity=float(propensity),
            score=float(score),
        )
        for position, (item, propensity, score) in enumerate(
            zip(slate.items, slate.propensities, slate.scores, strict=True)
        )
    ]
    alias = router.db_for_write(Impression)
    connection = connections[alias]
    if not items:
        impression.save(force_insert=True, using=alias)
        return LoggedImpression(impression, [], {})
    extra = sorted({int(i) for i in also_read})
    if connection.vendor == "postgresql":
        by_id, available = _log_in_one_statement(
            impression, items, extra, force=not available_only, connection=connection
        )
    else:
        by_id, available = _log_in_a_transaction(
            impression, items, extra, force=not available_only, alias=alias
        )
    if not available and available_only:
        return None
    for row in (impression, *items):
        row._state.adding, row._state.db = False, alias
    products = [by_id[item.product_id] for item in items if item.product_id in by_id]
    return LoggedImpression(impression, products, {pk: by_id[pk] for pk in extra if pk in by_id})


def _slate_available(by_id: dict[int, Product], item_ids: list[int]) -> bool:
    return all(pk in by_id and by_id[pk].is_active and by_id[pk].stock > 0 for pk in item_ids)


def _log_in_a_transaction(
    impression: Impression,
    items: list[ImpressionItem],
    extra: list[int],
    *,
    force: bool,
    alias: str,
) -> tuple[dict[int, Product], bool]:
    """``impression_log`` for databases other than PostgreSQL: a read, then a
    short transaction of two INSERTs."""
    ids = [item.product_id for item in items]
    by_id = Product.objects.using(alias).select_related("category").in_bulk([*ids, *extra])
    available = _slate_available(by_id, ids)
    if available or force:
        with transaction.atomic(using=alias):
            impression.save(force_insert=True, using=alias)
            ImpressionItem.objects.using(alias).bulk_create(items)
    return by_id, available


def _log_in_one_statement(
    impression: Impression,
    items: list[ImpressionItem],
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
    ids = [item.product_id for item in items]
    head_values = _row_values(impression, connection)
    # One array per item column.
    item_columns = [
        list(c) for c in zip(*(_row_values(item, connection) for item in items), strict=True)
    ]
    with connection.cursor() as cursor:
        asynchronous = not connection.in_atomic_block
        cursor.execute(
            _logging_sql(),
            (ids, asynchronous, *head_values, force, *item_columns, force, extra),
        )
        rows = cursor.fetchall()
    available = bool(rows) and rows[0][0]
    product_fields, category_fields = _read_fields()
    by_id = {}
    split = 1 + len(product_fields)
    for row in rows:
        product = Product.from_db(
            connection.alias, [f.attname for f in product_fields], row[1:split]
        )
        product.category = Category.from_db(
            connection.alias, [f.attname for f in category_fields], row[split:]
        )
        by_id[product.pk] = product
    return by_id, available


def _written_fields(model) -> list:
    """The columns an INSERT of ``model`` sets: every concrete field but
    generated ones and an auto-incremented primary key."""
    return [
        f
        for f in model._meta.concrete_fields
        if not f.generated and not (f.primary_key and f.db_returning)
    ]


def _row_values(row, connection) -> list:
    """What Django's INSERT would send for ``row``'s columns (defaults, auto
    fields, JSON adaptation)."""
    return [
        f.get_db_prep_save(f.pre_save(row, add=True), connection=connection)
        for f in _written_fields(type(row))
    ]


@cache
def _read_fields() -> tuple[list, list]:
    return list(Product._meta.concrete_fields), list(Category._meta.concrete_fields)


@cache
def _logging_sql() -> str:
    """The statement of ``_log_in_one_statement``. Its parameters: the item
    ids (an array), whether to commit asynchronously, the impression's values,
    the force flag, one array per item column, the force flag, the ids of other
    products to read (an array). The same text for every slate size, so that
    psycopg parses it once."""
    connection = connections[router.db_for_write(Impression)]
    qn = connection.ops.quote_name

    def columns(fields) -> str:
        return ", ".join(qn(f.column) for f in fields)

    def typed(fields, suffix: str = "") -> str:
        # Typed, so that a NULL or a string is read as its column's type; text
        # for strings, whose assignment to a too-short column fails loudly
        # (a cast to varchar(n) would truncate).
        return ", ".join(
            f"%s::{'text' if isinstance(f, CharField) else f.cast_db_type(connection)}{suffix}"
            for f in fields
        )

    head, item = _written_fields(Impression), _written_fields(ImpressionItem)
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
 SELECT u.* FROM unnest({typed(item, "[]")}) AS u, available WHERE ok OR %s)
SELECT available.ok, {", ".join(f"p.{qn(f.column)}" for f in product_fields)},
 {", ".join(f"c.{qn(f.column)}" for f in category_fields)}
FROM ids, available, {product} p JOIN {category} c ON c.id = p.category_id
WHERE p.id = ANY(ids.ids || %s::bigint[])"""
