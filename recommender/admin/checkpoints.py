"""Checkpoints in the admin: their status changes only through the activate
and roll back actions (the services keep exactly one active), and their
weights are never shown."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.functions import Length
from django.http import (
    HttpRequest,
)
from django.template.defaultfilters import filesizeformat

from recommender.admin.common import (
    _pretty_json,
)
from recommender.dashboard import selectors
from recommender.models import (
    Checkpoint,
)
from recommender.serving import checkpoints

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
