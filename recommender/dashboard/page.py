"""The recommendation dashboard in the Django admin: its filter form, the
page's context (selectors in, charts out) and the queueing of learning-loop
tasks from its buttons. URLs and views are wired in recommender/admin/."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from celery import Task
from django import forms
from django.conf import settings
from django.http import QueryDict
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from recommender.dashboard import charts, selectors
from recommender.dashboard.selectors import (
    Bucket,
    DateRange,
    PolicySeries,
    ServedBy,
    Timeseries,
    Totals,
)
from recommender.models import Checkpoint, SlotName, TrainingRun
from recommender.simulation.history import history_in_progress, history_latest

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 7
MAX_DAYS = 366
# Ranges up to this long are charted per hour, longer ones per day.
HOURLY_UP_TO = timedelta(days=3)
PRESETS = (("Today", 1), ("7 days", 7), ("30 days", 30), ("90 days", 90))
# Who may press the dashboard's buttons (activate, roll back, train, sync):
# the same permission that allows checkpoint actions in the checkpoint admin.
OPERATE_PERMISSION = "recommender.change_checkpoint"


# ---------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardFilters:
    start_day: date
    end_day: date
    date_range: DateRange
    slot: str | None
    bucket: Bucket


class DashboardFilterForm(forms.Form):
    """The dashboard's GET filters. Missing dates default to the last
    DEFAULT_DAYS days up to today; days are whole days in the site's time zone."""

    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    slot = forms.ChoiceField(choices=[("", "All slots"), *SlotName.choices], required=False)
    bucket = forms.ChoiceField(
        choices=[("", "Auto"), ("hour", "Hourly"), ("day", "Daily")], required=False
    )

    def __init__(self, *args: Any, today: date, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.today = today

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start = data.get("start")
        end = data.get("end") or max(self.today, start or self.today)
        start = start or end - timedelta(days=DEFAULT_DAYS - 1)
        if end < start:
            raise forms.ValidationError("The end date is before the start date.")
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"Choose a range of at most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        return data

    def filters(self) -> DashboardFilters:
        """The chosen filters, or the defaults for an invalid form (the page
        shows the errors above the numbers for the default range)."""
        if self.is_bound and self.is_valid():
            data = self.cleaned_data
        else:
            data = {"end": self.today, "start": self.today - timedelta(days=DEFAULT_DAYS - 1)}
        tz = timezone.get_current_timezone()
        date_range = DateRange(
            datetime.combine(data["start"], datetime.min.time(), tzinfo=tz),
            datetime.combine(data["end"] + timedelta(days=1), datetime.min.time(), tzinfo=tz),
        )
        bucket: Bucket = data.get("bucket") or (
            "hour" if date_range.duration <= HOURLY_UP_TO else "day"
        )
        return DashboardFilters(
            data["start"], data["end"], date_range, data.get("slot") or None, bucket
        )


FILTER_KEYS = ("start", "end", "slot", "bucket")


def filter_query(params: QueryDict) -> str:
    """The dashboard's own filters from a query, re-encoded: what buttons
    carry through their POST and back to the page, and nothing else."""
    kept = QueryDict(mutable=True)
    for key in FILTER_KEYS:
        if params.get(key):
            kept[key] = params[key]
    return kept.urlencode()


def preset_links(*, today: date, slot: str | None) -> list[dict[str, str]]:
    links = []
    for label, days in PRESETS:
        query = f"?start={today - timedelta(days=days - 1):%Y-%m-%d}&end={today:%Y-%m-%d}"
        if slot:
            query += f"&slot={slot}"
        links.append({"label": label, "query": query, "days": str(days)})
    return links


# ---------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _decimal(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _bucket_label(bucket: Bucket) -> Callable[[datetime], str]:
    if bucket == "day":
        return lambda m: f"{timezone.localtime(m):%a %b %d}"
    return lambda m: f"{timezone.localtime(m):%b %d %H:00}"


# The per-version charts draw the newest versions one line each and the rest
# as one "earlier" line, so every line has its own colour (charts.PALETTE).
VERSION_LINES = len(charts.PALETTE) - 1


@dataclass(frozen=True)
class ChartSeries:
    """A line to draw: a label and its per-bucket totals."""

    label: str
    points: dict[datetime, Totals]
    is_fallback: bool = False


def _merged(series: list[PolicySeries]) -> dict[datetime, Totals]:
    """Several versions' totals added up per bucket (rates are then exact)."""
    merged: dict[datetime, Totals] = {}
    for policy in series:
        for when, totals in policy.points.items():
            merged[when] = merged.get(when, Totals()) + totals
    return dict(sorted(merged.items()))


def version_lines(series: Timeseries) -> list[ChartSeries]:
    """The newest VERSION_LINES learned versions, the older ones merged into
    one line, then the fallback."""
    learned = [p for p in series.series if not p.is_fallback]  # newest first
    fallback = [p for p in series.series if p.is_fallback]
    lines = [ChartSeries(p.label, p.points) for p in learned[:VERSION_LINES]]
    older = learned[VERSION_LINES:]
    if len(older) == 1:
        lines.append(ChartSeries(older[0].label, older[0].points))
    elif older:
        lines.append(ChartSeries(f"Earlier ({older[-1].label}–{older[0].label})", _merged(older)))
    lines += [ChartSeries(p.label, p.points, is_fallback=True) for p in fallback]
    return lines


def trend_lines(series: Timeseries) -> list[ChartSeries]:
    """Every learned version as one line (the policy the store served as it
    learned), beside the fallback's rate over the whole range as a flat
    reference line (it serves mostly before the first version, so its own
    buckets would be a few points at the start)."""
    learned = [p for p in series.series if not p.is_fallback]
    lines = [ChartSeries("Learned policy (all versions)", _merged(learned))] if learned else []
    fallback = [p for p in series.series if p.is_fallback]
    if fallback and series.buckets:
        average = sum((p.totals for p in fallback), Totals())
        # A point in every bucket, so no gap splits the line.
        everywhere = dict.fromkeys(series.buckets, average)
        lines.append(ChartSeries("Fallback (range average)", everywhere, is_fallback=True))
    return lines


def version_starts(series: Timeseries) -> list[tuple[datetime, str]]:
    """Where each learned version first served in the range, oldest first."""
    starts = [(min(p.points), p.label) for p in series.series if not p.is_fallback and p.points]
    return sorted(starts)


def policy_chart(
    series: Timeseries,
    *,
    date_range: DateRange,
    title: str,
    metric: str,
    y_format: Callable[[float], str],
    lines: list[ChartSeries] | None = None,
    markers: list[tuple[datetime, str]] = (),
) -> str:
    """A per-bucket rate (e.g. ``metric="ctr"``) of each line (by default one
    per policy version, see ``version_lines``); the fallback dashed grey."""
    step = timedelta(hours=1) if series.bucket == "hour" else timedelta(days=1)
    # Points sit at their bucket's start, so the axis runs from the first
    # bucket to the last (not to the range's end, a whole empty bucket later).
    x_start = series.buckets[0] if series.buckets else date_range.start
    x_end = series.buckets[-1] if len(series.buckets) > 1 else x_start + step
    drawn = []
    learned = 0
    for line in version_lines(series) if lines is None else lines:
        points = [
            (when, value)
            for when, totals in line.points.items()
            if (value := getattr(totals, metric)) is not None
        ]
        colour = charts.series_colour(learned, fallback=line.is_fallback)
        learned += not line.is_fallback
        drawn.append(charts.Line(line.label, points, colour=colour, dashed=line.is_fallback))
    return charts.line_chart(
        title=title,
        lines=drawn,
        x_start=x_start,
        x_end=x_end,
        y_format=y_format,
        # A day bucket may straddle a DST change (23 or 25 hours long).
        max_gap=step * 1.5,
        point_label=_bucket_label(series.bucket),
        markers=markers,
    )


def training_chart(
    runs: list[TrainingRun], *, title: str, field: str, label: str, colour: str
) -> str:
    points = [(run.started_at, value) for run in runs if (value := getattr(run, field)) is not None]
    start = runs[0].started_at if runs else timezone.now()
    end = runs[-1].started_at if runs else start
    if end - start < timedelta(hours=1):
        # A handful of runs close together still gets a readable time axis.
        start, end = start - timedelta(minutes=30), end + timedelta(minutes=30)
    return charts.line_chart(
        title=title,
        lines=[charts.Line(label, points, colour=colour)],
        x_start=start,
        x_end=end,
        y_format=_decimal,
        include_zero=field == "loss",
        empty_text="No finished training runs in this range.",
    )


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------


def dashboard_context(filters: DashboardFilters, *, now: datetime) -> dict[str, Any]:
    """Everything the dashboard template shows, for one set of filters."""
    date_range, slot = filters.date_range, filters.slot
    # A range that ends in the future is compared to date: today so far
    # against yesterday up to the same time, not against all of yesterday.
    so_far = date_range.so_far(now)
    report = selectors.kpis(
        date_range=so_far, slot=slot, compare_to=so_far.shifted(-date_range.duration)
    )
    series = selectors.timeseries(date_range=date_range, slot=slot, bucket=filters.bucket)
    runs = selectors.training_runs_for_chart(date_range=date_range)
    active = selectors.active_checkpoint()
    served_by = selectors.serving_processes(active=active, now=now)
    return {
        "filters": filters,
        "report": report,
        "series": series,
        "policies": _policy_rows(series, active),
        **_policy_charts(series, date_range),
        "history": history_latest(),
        "history_running": history_in_progress(now=now),
        **_training_context(runs),
        **_serving_context(active, served_by),
        "scheduled_tasks": selectors.scheduled_tasks(),
        "rolled_up_until": selectors.stats_rolled_up_until(),
    }


def _policy_rows(series: Timeseries, active: Checkpoint | None) -> list[dict[str, Any]]:
    """The policies table: one row per policy served in the range."""
    personalised = selectors.personalisation_by_version(
        policy.version for policy in series.series if not policy.is_fallback
    )
    return [
        {
            "label": policy.label,
            "version": policy.version,
            "is_fallback": policy.is_fallback,
            "is_active": active is not None and active.version == policy.version,
            "totals": policy.totals,
            "personalisation": personalised.get(policy.version),
        }
        for policy in series.series
    ]


def _policy_charts(series: Timeseries, date_range: DateRange) -> dict[str, Any]:
    """CTR and reward per impression by policy, and the same as trends of the
    learned policy against the fallback with its version starts marked."""
    return {
        "ctr_chart": policy_chart(
            series,
            date_range=date_range,
            title="Click-through rate",
            metric="ctr",
            y_format=_percent,
        ),
        "reward_chart": policy_chart(
            series,
            date_range=date_range,
            title="Reward per impression",
            metric="reward_per_impression",
            y_format=_decimal,
        ),
        "trend_ctr_chart": policy_chart(
            series,
            date_range=date_range,
            title="Click-through rate: learned policy against the fallback",
            metric="ctr",
            y_format=_percent,
            lines=trend_lines(series),
            markers=version_starts(series),
        ),
        "trend_reward_chart": policy_chart(
            series,
            date_range=date_range,
            title="Reward per impression: learned policy against the fallback",
            metric="reward_per_impression",
            y_format=_decimal,
            lines=trend_lines(series),
            markers=version_starts(series),
        ),
    }


def _training_context(runs: list[TrainingRun]) -> dict[str, Any]:
    """Loss and mean-Q charts of the range's training runs, and the latest runs."""
    return {
        "loss_chart": training_chart(
            runs, title="Training loss", field="loss", label="Huber loss", colour=charts.PALETTE[1]
        ),
        "q_chart": training_chart(
            runs, title="Mean Q", field="mean_q", label="Mean Q", colour=charts.PALETTE[2]
        ),
        "training_runs": selectors.training_runs_recent(),
        "training_run_count": len(runs),
    }


def _serving_context(active: Checkpoint | None, served_by: list[ServedBy]) -> dict[str, Any]:
    """The checkpoints, which one is active, which processes serve it and
    what shoppers are served."""
    return {
        "checkpoints": selectors.checkpoints_table(),
        "active_checkpoint": active,
        "serving_processes": served_by,
        "not_served_by": sum(row.state in ("failed", "differs") for row in served_by),
        "heartbeat_seconds": settings.RECOMMENDER_HEARTBEAT_SECONDS,
        # What shoppers are served, read where serving reads it (the training
        # runs' ε is the training schedule's, a different number).
        "served_epsilon": settings.RECOMMENDER_EPSILON,
        "carousel_size": settings.RECOMMENDER_DEFAULT_K,
    }


# ---------------------------------------------------------------------------
# Queueing tasks from the buttons
# ---------------------------------------------------------------------------


class TaskQueueUnavailable(RuntimeError):
    """The Celery broker did not accept the task (down, paused or unreachable)."""


def task_enqueue(*, task: Task, triggered_by: str) -> None:
    """Queue a learning-loop task now, or raise TaskQueueUnavailable.

    Queued directly rather than on commit: the admin must learn whether the
    broker took it, and there is no database write for it to wait for. The
    broker's connect/socket timeouts and publish retry policy (settings) bound
    how long this can block.
    """
    try:
        # TrainingRun.triggered_by holds 40 characters.
        task.delay(triggered_by=triggered_by[:40])
    except (BrokerError, OSError) as error:
        logger.warning("Could not queue %s: %s", task.name, error)
        raise TaskQueueUnavailable(str(error)) from error
