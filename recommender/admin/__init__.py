"""The recommender in the Django admin: the recommendation dashboard, and
list views of what was logged and learned.

Impressions, events, transitions, training runs and roll-up buckets are
history: the admin shows them read-only, since editing one would silently
change rewards, training data or the numbers on the dashboard. Checkpoints
change status only through the activate / roll back actions (the services
keep exactly one active), and their weights are never shown.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterable
from typing import Any

from celery import Task
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.db.models.functions import Length
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from recommender.dashboard import page as dashboard
from recommender.dashboard import selectors
from recommender.models import (
    Checkpoint,
    Dashboard,
    Event,
    Impression,
    ImpressionItem,
    ImpressionStats,
    LoggedDataset,
    SimulatedHistory,
    TrainingRun,
    Transition,
)
from recommender.serving import checkpoints

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
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "outcome",
    )
    readonly_fields = fields


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = (
        "version",
        "agent",
        "status",
        "created_at",
        "activated_at",
        "checks_passed",
        "evaluation_passed",
        "training_run",
        "note",
    )
    list_filter = ("status", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("=version", "note")
    list_select_related = ("training_run", "dataset")
    actions = ("activate_selected", "roll_back_active")
    fields = (
        "version",
        "agent",
        "status",
        "created_at",
        "activated_at",
        "training_run",
        "dataset",
        "weights_size",
        "checks_pretty",
        "evaluation_pretty",
        "config_pretty",
        "note",
    )
    readonly_fields = tuple(f for f in fields if f != "note")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Checkpoint]:
        # Weights are megabytes per row: never load them, only their size.
        return (
            super().get_queryset(request).defer("weights").annotate(weights_bytes=Length("weights"))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Checkpoints are published by training, with their checks.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Retired versions are what a rollback returns to.
        return False

    @admin.display(description="agent")
    def agent(self, obj: Checkpoint) -> str:
        return selectors.checkpoint_agent(obj) or "-"

    @admin.display(description="weights")
    def weights_size(self, obj: Checkpoint) -> str:
        return filesizeformat(getattr(obj, "weights_bytes", None) or 0)

    @admin.display(description="checks", boolean=True)
    def checks_passed(self, obj: Checkpoint) -> bool | None:
        return selectors.checkpoint_row(obj, has_rollback_target=False).checks_passed

    @admin.display(description="off-policy evaluation", boolean=True)
    def evaluation_passed(self, obj: Checkpoint) -> bool | None:
        return selectors.checkpoint_row(obj, has_rollback_target=False).evaluation_passed

    @admin.display(description="checks")
    def checks_pretty(self, obj: Checkpoint) -> str:
        return _pretty_json(obj.checks)

    @admin.display(description="evaluation")
    def evaluation_pretty(self, obj: Checkpoint) -> str:
        return _pretty_json(obj.evaluation)

    @admin.display(description="config")
    def config_pretty(self, obj: Checkpoint) -> str:
        return _pretty_json(obj.config)

    @admin.action(description="Activate the selected checkpoint", permissions=["change"])
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one checkpoint to activate.", messages.ERROR)
            return
        _activate(request, queryset.get())

    @admin.action(description="Roll back the active checkpoint", permissions=["change"])
    def roll_back_active(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        # An admin action needs a selection; asking for the active version
        # makes the intent explicit instead of acting on whatever is ticked.
        if not queryset.filter(status=Checkpoint.Status.ACTIVE).exists():
            self.message_user(
                request, "Select the active checkpoint to roll it back.", messages.ERROR
            )
            return
        _roll_back(request)


def _activate(request: HttpRequest, checkpoint: Checkpoint) -> None:
    previous = selectors.active_checkpoint()
    try:
        checkpoints.checkpoint_activate(checkpoint=checkpoint)
    except checkpoints.CheckpointLoadError as error:
        messages.error(
            request,
            f"Could not activate v{checkpoint.version}: it does not load as the web processes "
            f"would load it ({error.reason}). The active version is unchanged.",
        )
        return
    except checkpoints.CheckpointStateError as error:
        messages.error(request, f"Could not activate v{checkpoint.version}: {error}")
        return
    if previous is not None and previous.pk != checkpoint.pk:
        messages.success(
            request,
            f"v{checkpoint.version} is now active; v{previous.version} was retired. "
            "Web processes switch to it within seconds.",
        )
    else:
        messages.success(request, f"v{checkpoint.version} is active.")


def _roll_back(request: HttpRequest) -> None:
    previous = selectors.active_checkpoint()
    try:
        rollback = checkpoints.checkpoint_rollback()
    except checkpoints.CheckpointStateError as error:
        messages.error(request, f"Could not roll back: {error}")
        return
    rejected = f"; v{previous.version} was rejected" if previous is not None else ""
    messages.success(
        request, f"Rolled back: v{rollback.restored.version} is active again{rejected}."
    )
    for error in rollback.passed_over:
        messages.warning(
            request, f"Passed over v{error.version}: it does not load ({error.reason})."
        )


# ---------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    """Serves /admin/recommender/dashboard/ and its buttons. The proxy model
    only gives the dashboard its place in the admin index and URL space."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Every staff member may read the numbers; the buttons need
        # dashboard.OPERATE_PERMISSION (checked per action).
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self):
        def wrap(view, *, post_only: bool = False):
            return self.admin_site.admin_view(require_POST(view) if post_only else view)

        return [
            # Named like a changelist so the admin index links the entry here.
            path("", wrap(self.dashboard_view), name="recommender_dashboard_changelist"),
            path(
                "train/", wrap(self.train_view, post_only=True), name="recommender_dashboard_train"
            ),
            path(
                "sync-target/",
                wrap(self.sync_target_view, post_only=True),
                name="recommender_dashboard_sync",
            ),
            path(
                "checkpoints/<int:pk>/activate/",
                wrap(self.activate_view, post_only=True),
                name="recommender_dashboard_activate",
            ),
            path(
                "checkpoints/rollback/",
                wrap(self.rollback_view, post_only=True),
                name="recommender_dashboard_rollback",
            ),
        ]

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        today = timezone.localdate()
        form = dashboard.DashboardFilterForm(request.GET or None, today=today)
        filters = form.filters()
        context = {
            **self.admin_site.each_context(request),
            **dashboard.dashboard_context(filters, now=timezone.now()),
            "title": "Recommendation dashboard",
            "opts": self.model._meta,
            # The charts and tables need the full width more than the app list.
            "is_nav_sidebar_enabled": False,
            "form": form,
            "presets": dashboard.preset_links(today=today, slot=filters.slot),
            "query": dashboard.filter_query(request.GET),
            "can_operate": request.user.has_perm(dashboard.OPERATE_PERMISSION),
        }
        return TemplateResponse(request, "admin/recommender/dashboard.html", context)

    # The buttons: POST only (see get_urls), permission-checked, and back to
    # the dashboard with the filters the admin was looking at.

    def _back(self, request: HttpRequest) -> HttpResponseRedirect:
        url = reverse("admin:recommender_dashboard_changelist")
        query = dashboard.filter_query(QueryDict(request.POST.get("query", "")))
        return HttpResponseRedirect(f"{url}?{query}" if query else url)

    def _check_operate(self, request: HttpRequest) -> None:
        if not request.user.has_perm(dashboard.OPERATE_PERMISSION):
            raise PermissionDenied

    def _queue(self, request: HttpRequest, task: Task, what: str) -> HttpResponseRedirect:
        self._check_operate(request)
        try:
            dashboard.task_enqueue(task=task, triggered_by=f"admin:{request.user.get_username()}")
        except dashboard.TaskQueueUnavailable:
            messages.error(
                request,
                f"Could not queue {what}: the task queue (Celery broker) is not reachable. "
                "Check that Redis and the Celery worker are running, then try again.",
            )
        else:
            messages.success(
                request, f"{what.capitalize()} queued: a Celery worker will run it shortly."
            )
        return self._back(request)

    # The tasks module is imported per request, not with the admin: it pulls
    # in the training code (torch), which web processes should not load at
    # startup just to register admin pages.

    def train_view(self, request: HttpRequest) -> HttpResponse:
        from recommender.tasks import train_policy

        return self._queue(request, train_policy, "training")

    def sync_target_view(self, request: HttpRequest) -> HttpResponse:
        from recommender.tasks import sync_target_network

        return self._queue(request, sync_target_network, "target network sync")

    def activate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._check_operate(request)
        _activate(request, get_object_or_404(Checkpoint.objects.defer("weights"), pk=pk))
        return self._back(request)

    def rollback_view(self, request: HttpRequest) -> HttpResponse:
        self._check_operate(request)
        _roll_back(request)
        return self._back(request)
