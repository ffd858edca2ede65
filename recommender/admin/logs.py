"""List views of what was logged and learned: impressions (with their CSV
export), events, transitions, training runs, imported datasets, roll-up
buckets and simulated histories. All read-only: editing one would silently
change rewards, training data or the numbers on the dashboard."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from recommender.admin.common import (
    HistoryAdmin,
    ReadOnlyInline,
    UUIDSearchMixin,
    _pretty_json,
    _short,
)
from recommender.dashboard import selectors
from recommender.models import (
    Checkpoint,
    Event,
    Impression,
    ImpressionItem,
    ImpressionStats,
    LoggedDataset,
    SimulatedHistory,
    TrainingRun,
    Transition,
)

# ---------------------------------------------------------------------------
# Impressions and their CSV export
# ---------------------------------------------------------------------------


class PolicyNameFilter(admin.SimpleListFilter):
    """Policy names from the roll-up table (thousands of rows) rather than
    SELECT DISTINCT over every impression (a full scan at millions)."""

    title = "policy"
    parameter_name = "policy_name"

    def lookups(self, request, model_admin):
        names = (
            ImpressionStats.objects.order_by("policy_name")
            .values_list("policy_name", flat=True)
            .distinct()
        )
        return [(name, name) for name in names]

    def queryset(self, request, queryset):
        return queryset.filter(policy_name=self.value()) if self.value() else queryset


class PolicyVersionFilter(admin.SimpleListFilter):
    """Versions from the checkpoints table, plus the fallback (no version)."""

    title = "policy version"
    parameter_name = "policy_version"
    FALLBACK = "fallback"

    def lookups(self, request, model_admin):
        versions = Checkpoint.objects.order_by("-version").values_list("version", flat=True)
        return [(self.FALLBACK, "Fallback"), *((str(v), f"v{v}") for v in versions)]

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.FALLBACK:
            return queryset.filter(policy_version__isnull=True)
        if value and value.isdecimal():
            return queryset.filter(policy_version=int(value))
        return queryset


class ImpressionItemInline(ReadOnlyInline):
    model = ImpressionItem
    fields = ("position", "product", "propensity", "score")
    readonly_fields = fields
    ordering = ("position",)


class ImpressionEventInline(ReadOnlyInline):
    model = Event
    fk_name = "impression"
    fields = ("created_at", "type", "product", "quantity", "value", "reward", "source")
    readonly_fields = fields
    verbose_name_plural = "attributed events"


class _Echo:
    """A file-like object for csv.writer that hands each row back instead of
    buffering it, so the response streams row by row."""

    def write(self, value: str) -> str:
        return value


def stream_csv(rows: Iterable[list[Any]], *, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _export_filename() -> str:
    return f"impressions-{timezone.localtime():%Y%m%d-%H%M}.csv"


@admin.register(Impression)
class ImpressionAdmin(UUIDSearchMixin, HistoryAdmin):
    list_display = (
        "created_at",
        "slot",
        "policy",
        "session",
        "clicks",
        "add_to_carts",
        "purchases",
        "reward",
        "revenue",
    )
    list_filter = ("slot", PolicyNameFilter, PolicyVersionFilter, "created_at")
    date_hierarchy = "created_at"
    search_fields = ("=session_key",)
    search_help_text = "An impression id, or a session key (exact)."
    uuid_search_fields = ("pk",)
    inlines = (ImpressionItemInline, ImpressionEventInline)
    actions = ("export_csv",)
    fields = (
        "id",
        "created_at",
        "slot",
        "product",
        "policy_name",
        "policy_version",
        "epsilon",
        "sold_out_products",
        "session_key",
        "user",
        "clicks",
        "add_to_carts",
        "purchases",
        "reward",
        "revenue",
        "state_pretty",
    )
    readonly_fields = fields

    @admin.display(description="policy", ordering="policy_version")
    def policy(self, obj: Impression) -> str:
        return selectors.impression_policy_label(obj.policy_name, obj.policy_version)

    @admin.display(description="session", ordering="session_key")
    def session(self, obj: Impression) -> str:
        return _short(obj.session_key)

    @admin.display(description="sold out (not candidates)")
    def sold_out_products(self, obj: Impression) -> str:
        if obj.sold_out is None:
            return "none"
        return ", ".join(f"#{pk}" for pk in obj.sold_out.product_ids)

    @admin.display(description="state")
    def state_pretty(self, obj: Impression) -> str:
        return _pretty_json(obj.state)

    def get_urls(self):
        return [
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="recommender_impression_export",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = extra_context or {}
        extra_context["export_query"] = request.GET.urlencode()
        return super().changelist_view(request, extra_context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """Every impression the changelist shows for these filters, search
        and date drill-down, as CSV (all pages, streamed)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:recommender_impression_changelist"))
        queryset = changelist.get_queryset(request)
        return stream_csv(selectors.impression_export_rows(queryset), filename=_export_filename())

    @admin.action(description="Export selected impressions with rewards (CSV)")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Impression]):
        return stream_csv(selectors.impression_export_rows(queryset), filename=_export_filename())


# ---------------------------------------------------------------------------
# Events, transitions, training runs, roll-up buckets
# ---------------------------------------------------------------------------


@admin.register(Event)
class EventAdmin(UUIDSearchMixin, HistoryAdmin):
    list_display = (
        "created_at",
        "type",
        "product",
        "session",
        "attributed_to",
        "reward",
        "value",
        "source",
    )
    list_filter = ("type", "source", ("impression", admin.EmptyFieldListFilter), "created_at")
    date_hierarchy = "created_at"
    search_fields = ("=session_key", "product__name")
    search_help_text = "An event or impression id, a session key (exact) or a product name."
    uuid_search_fields = ("event_id", "impression_id")
    list_select_related = ("product",)
    fields = (
        "event_id",
        "created_at",
        "type",
        "product",
        "quantity",
        "value",
        "source",
        "session_key",
        "user",
        "impression",
        "reward",
    )
    readonly_fields = fields

    @admin.display(description="session", ordering="session_key")
    def session(self, obj: Event) -> str:
        return _short(obj.session_key)

    @admin.display(description="impression", ordering="impression_id")
    def attributed_to(self, obj: Event) -> str:
        if obj.impression_id is None:
            return "—"
        url = reverse("admin:recommender_impression_change", args=[obj.impression_id])
        return format_html('<a href="{}">{}</a>', url, _short(obj.impression_id))


@admin.register(Transition)
class TransitionAdmin(UUIDSearchMixin, HistoryAdmin):
    list_display = (
        "created_at",
        "impression_link",
        "product",
        "position",
        "propensity",
        "reward",
        "done",
    )
    list_filter = ("done", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("=impression__session_key",)
    search_help_text = "An impression id, or the impression's session key (exact)."
    uuid_search_fields = ("impression_id", "next_impression_id")
    list_select_related = ("product",)
    fields = (
        "impression",
        "product",
        "position",
        "propensity",
        "reward",
        "next_impression",
        "done",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="impression", ordering="impression_id")
    def impression_link(self, obj: Transition) -> str:
        url = reverse("admin:recommender_impression_change", args=[obj.impression_id])
        return format_html('<a href="{}">{}</a>', url, _short(obj.impression_id))


@admin.register(TrainingRun)
class TrainingRunAdmin(HistoryAdmin):
    list_display = (
        "started_at",
        "kind",
        "status",
        "triggered_by",
        "steps",
        "loss",
        "mean_q",
        "epsilon",
        "replay_size",
        "duration_s",
    )
    list_filter = ("kind", "status", "triggered_by", "started_at")
    date_hierarchy = "started_at"
    search_fields = ("triggered_by", "outcome")
    fields = (
        "kind",
        "status",
        "triggered_by",
        "started_at",
        "finished_at",
        "duration_s",
        "steps",
        "loss",
        "mean_q",
        "epsilon",
        "seed",
        "replay_size",
        "outcome",
    )
    readonly_fields = fields


@admin.register(LoggedDataset)
class LoggedDatasetAdmin(HistoryAdmin):
    """Imported logs (import_logged_feedback), read-only: re-import to change one."""

    list_display = ("name", "format", "n_rows", "n_items", "n_positions", "clicks", "imported_at")
    list_filter = ("format",)
    search_fields = ("name", "source")
    fields = (
        "name",
        "format",
        "source",
        "digest",
        "imported_at",
        "n_rows",
        "n_items",
        "n_positions",
        "clicks",
        "meta",
    )
    readonly_fields = fields


@admin.register(ImpressionStats)
class ImpressionStatsAdmin(HistoryAdmin):
    list_display = (
        "hour",
        "slot",
        "policy_name",
        "policy_version",
        "impressions",
        "clicks",
        "add_to_carts",
        "purchases",
        "reward",
        "revenue",
    )
    list_filter = ("slot", "policy_name", "policy_version")
    date_hierarchy = "hour"
    readonly_fields = list_display


@admin.register(SimulatedHistory)
class SimulatedHistoryAdmin(HistoryAdmin):
    """The demo's simulated shoppers (seed_history): which period of the
    store's traffic they made, and how far a history being written has got."""

    list_display = (
        "created_at",
        "status",
        "sessions_done",
        "sessions_total",
        "family",
        "period_start",
        "period_end",
        "heartbeat_at",
    )
    list_filter = ("status",)
    fields = (
        "status",
        "sessions_done",
        "sessions_total",
        "period_start",
        "period_end",
        "first_train",
        "train_every",
        "seed",
        "family",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "outcome",
    )
    readonly_fields = fields
