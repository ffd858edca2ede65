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
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper


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
