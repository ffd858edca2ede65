"""The recommendation dashboard's admin page and its buttons."""

from __future__ import annotations

from typing import Any

from celery import Task
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    QueryDict,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from recommender.admin.checkpoints import _activate, _roll_back
from recommender.dashboard import page as dashboard
from recommender.models import (
    Checkpoint,
    Dashboard,
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
