"""Cursors for the statements every carousel runs, and large binary values
read without swelling a web process's connection (``read_binary``).

A carousel costs two statements (``serving.features.session_observation``
and ``feedback.impressions.impression_log``), each with the same text on every
request. Django binds parameters in the client and never prepares, so
PostgreSQL parses and plans them again each time, which costs it about as
much as running them, or more. ``prepared_cursor`` binds on the server instead, and psycopg
prepares the statement once per connection when the database's OPTIONS set
``prepare_threshold`` (config/settings/base.py sets it on PostgreSQL unless
DJANGO_DB_PREPARED_STATEMENTS=false, which a connection pooler that cannot
keep prepared statements needs; see docs/scaling.md). Every other query keeps
Django's client-side binding, which psycopg never prepares.

Both statements write rows with raw SQL as well as read (the impression;
on a product page, its view): ``written_fields``, ``insert_values`` and
``typed_placeholders`` build those INSERTs from the models, as Django's own
would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import CharField, Field, Model


def prepared_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """``connection.cursor()``, prepared on PostgreSQL when the connection
    allows it (``prepares``); logged and wrapped like any Django cursor."""
    if not prepares(connection):
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor = ServerBindingCursor(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


def prepares(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``prepared_cursor`` prepares on this connection."""
    return (
        connection.vendor == "postgresql"
        and connection.settings_dict.get("OPTIONS", {}).get("prepare_threshold") is not None
    )


@cache
def written_fields(model: type[Model]) -> tuple[Field, ...]:
    """The columns an INSERT of ``model`` sets: every concrete field but
    generated ones and an auto-incremented primary key. Read once per model:
    every carousel's statements ask for them."""
    return tuple(
        f
        for f in model._meta.concrete_fields
        if not f.generated and not (f.primary_key and f.db_returning)
    )


def insert_values(row: Model, connection: BaseDatabaseWrapper) -> list:
    """What Django's INSERT would send for ``row``'s ``written_fields``
    (defaults, auto fields, JSON adaptation)."""
    return [
        f.get_db_prep_save(f.pre_save(row, add=True), connection=connection)
        for f in written_fields(type(row))
    ]


def typed_placeholders(
    fields: Sequence[Field], connection: BaseDatabaseWrapper, suffix: str = ""
) -> str:
    """One ``%s`` per field, cast to its column's type (``suffix`` "[]": an
    array of it), so that a NULL or a string is read as that type; text for
    strings, whose assignment to a too-short column fails loudly (a cast to
    varchar(n) would truncate)."""
    return ", ".join(
        f"%s::{'text' if isinstance(f, CharField) else f.cast_db_type(connection)}{suffix}"
        for f in fields
    )


BINARY_SLICE_BYTES = 1 << 20


def read_binary(
    model: type[Model], pk, field_name: str, *, slice_bytes: int = BINARY_SLICE_BYTES
) -> bytes | None:
    """The value of ``model``'s binary field ``field_name`` in the row ``pk``;
    None when there is no such row (or the value is NULL).

    libpq keeps, for as long as a connection lives, an input buffer as large
    as the most it ever received at once, and a bytea arrives hex-encoded:
    reading a checkpoint whole would leave a web process, whose connection
    persists, holding twice the checkpoint's size. On PostgreSQL the value is
    read instead in slices of ``slice_bytes`` through a server-side cursor
    (one statement, so one snapshot of the row), which bounds that buffer to
    a slice. With DISABLE_SERVER_SIDE_CURSORS (a transaction-pooling
    pgbouncer) the slices arrive together and the buffer is not bounded;
    other databases read the value whole."""
    if slice_bytes < 1:
        raise ValueError("slice_bytes must be positive")
    connection = connections[router.db_for_read(model)]
    if connection.vendor != "postgresql":
        value = (
            model._default_manager.using(connection.alias)
            .filter(pk=pk)
            .values_list(field_name, flat=True)
            .first()
        )
        return None if value is None else bytes(value)
    qn = connection.ops.quote_name
    column = qn(model._meta.get_field(field_name).column)
    # The value is decompressed once (``|| ''``: a slice of a compressed
    # value would decompress everything before it again), in a subquery that
    # OFFSET 0 keeps from being merged into the outer one. An existing row
    # gives at least one row, even for an empty value: that tells "no row"
    # from b"". No ORDER BY, which would sort every slice on the server first:
    # the slices are put in order here.
    sql = (
        f"SELECT octet_length(v), s, substring(v FROM s FOR %s) "
        f"FROM (SELECT {column} || ''::bytea AS v FROM {qn(model._meta.db_table)} "
        f"WHERE {qn(model._meta.pk.column)} = %s OFFSET 0) AS value "
        f"LEFT JOIN LATERAL generate_series(1, greatest(octet_length(v), 1), %s) AS s ON true"
    )
    size, parts = None, []
    # A server-side cursor lives in a transaction.
    with transaction.atomic(using=connection.alias), connection.chunked_cursor() as cursor:
        cursor.execute(sql, [slice_bytes, pk, slice_bytes])
        while (row := cursor.fetchone()) is not None:
            size = row[0]
            if row[2] is not None:
                parts.append((row[1], row[2]))
    if size is None:
        return None
    parts.sort(key=lambda part: part[0])
    value = b"".join(part for _, part in parts)
    if len(value) != size:
        raise RuntimeError(f"read {len(value)} of {size} bytes of {model.__name__} {pk}")
    return value
