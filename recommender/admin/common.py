"""What every recommender admin page shares: history is read-only, ids are
searched as UUIDs, JSON is shown pretty."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q
from django.http import (
    HttpRequest,
)
from django.utils.html import format_html

# ---------------------------------------------------------------------------
# Shared behaviour
# ---------------------------------------------------------------------------


class HistoryAdmin(admin.ModelAdmin):
    """Read-only: viewable by whoever has the view permission, never added,
    changed or deleted from the admin."""

    # Counting a million rows twice per page (filtered and total) is the
    # slowest part of a large changelist; one count is enough.
    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


class UUIDSearchMixin:
    """Searching for a pasted UUID matches it exactly on ``uuid_search_fields``
    (indexed equality), instead of a text scan that can't use the index."""

    uuid_search_fields: tuple[str, ...] = ()

    def get_search_results(self, request, queryset, search_term):
        as_uuid = _as_uuid(search_term) if search_term else None
        if as_uuid is not None and self.uuid_search_fields:
            condition = Q()
            for name in self.uuid_search_fields:
                condition |= Q(**{name: as_uuid})
            return queryset.filter(condition), False
        return super().get_search_results(request, queryset, search_term)


def _pretty_json(value: Any) -> str:
    return format_html(
        '<pre class="rec-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True)
    )


def _short(value: Any, length: int = 8) -> str:
    return str(value)[:length]
