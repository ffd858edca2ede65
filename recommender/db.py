"""Cursors for the statements every carousel runs.

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
