"""The recommendation dashboard as a store admin uses it: the numbers it
shows, who may see it, and what its buttons do."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, strip_tags
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import OperationalError

from recommender.dashboard import charts, selectors
from recommender.dashboard.selectors import DateRange
from recommender.evaluation.reports import GuardReport
from recommender.evaluation.stats import stats_rollup
from recommender.learning.schedules import schedules_ensure
from recommender.learning.trainer_lock import ORPHANED_OUTCOME
from recommender.models import Checkpoint, ServingHeartbeat
from tests.recommender.factories import CheckpointFactory, ImpressionFactory, TrainingRunFactory
from tests.recommender.support import loadable_weights

pytestmark = pytest.mark.django_db

URL = "/admin/recommender/dashboard/"
MARCH = "?start=2024-03-01&end=2024-03-07"
MARCH_RANGE = DateRange(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 8, tzinfo=UTC))


def at(day: int, hour: int = 12, month: int = 3) -> datetime:
    return datetime(2024, month, day, hour, 30, tzinfo=UTC)


@pytest.fixture
def known_traffic():
    """Mar 1–7: 8 impressions, 2 clicks, 1 add-to-cart, 1 purchase of 50.00,
    reward 12. The previous week (Feb 23–29): 5 impressions, 1 click, reward 5.
    Impressions just outside both ranges must not count."""
    ImpressionFactory(
        created_at=at(2),
        clicks=1,
        add_to_carts=1,
        purchases=1,
        reward=10.0,
        revenue=Decimal("50.00"),
        policy_version=2,
    )
    ImpressionFactory(created_at=at(3, 9), clicks=1, reward=2.0, policy_version=2)
    for day in (4, 5, 6):
        ImpressionFactory(created_at=at(day), policy_version=2)
    ImpressionFactory(created_at=at(1, 0), slot="cart", policy_version=1)
    ImpressionFactory(created_at=at(7, 23), slot="cart", policy_version=1)
    ImpressionFactory(
        created_at=at(5, 8), slot="product", policy_name="popularity", policy_version=None
    )
    # The previous range.
    ImpressionFactory(created_at=at(23, month=2), clicks=1, reward=5.0, policy_version=1)
    for day in (24, 25, 28, 29):
        ImpressionFactory(created_at=at(day, month=2), policy_version=1)
    # Outside both.
    ImpressionFactory(created_at=at(8, 0), clicks=3, reward=30.0)
    ImpressionFactory(created_at=at(22, 23, month=2), clicks=3, reward=30.0)


def text_of(html: str) -> str:
    """What a reader sees: tags dropped, whitespace collapsed."""
    return " ".join(strip_tags(html).split())


def kpi_card(html: str, key: str) -> str:
    """The visible text of one KPI card."""
    match = re.search(
        rf'data-kpi="{key}"[^>]*>(.*?)(?=<div class="rec-kpi" |</section>)', html, re.S
    )
    assert match, f"no KPI card {key!r}"
    return " ".join(strip_tags(match.group(1)).split())


# ---------------------------------------------------------------------------
# The numbers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("rolled_up", ["nothing", "the first days", "everything"])
def test_kpis_are_exact_whether_read_from_the_rollup_or_live(known_traffic, rolled_up):
    if rolled_up == "the first days":
        stats_rollup(since=at(1, month=2), until=at(3, 0))
    elif rolled_up == "everything":
        stats_rollup(since=at(1, month=2), until=at(9))

    report = selectors.kpis(date_range=MARCH_RANGE)

    assert report.current.impressions == 8
    assert report.current.ctr == 0.25
    assert report.current.add_to_cart_rate == 0.125
    assert report.current.purchase_rate == 0.125
    assert report.current.reward_per_impression == 1.5
    assert report.current.revenue == Decimal("50.00")
    assert report.previous.impressions == 5
    assert report.previous.ctr == 0.2
    by_key = {kpi.key: kpi for kpi in report.kpis}
    assert by_key["impressions"].change == pytest.approx(0.6)
    assert by_key["ctr"].change == pytest.approx(0.25)
    assert by_key["reward_per_impression"].change == pytest.approx(0.5)
    # Nothing to compare with: no add-to-carts or revenue the week before.
    assert by_key["add_to_cart_rate"].change is None
    assert by_key["revenue"].change is None


def test_the_page_shows_the_kpis_and_their_change(superuser_client, known_traffic):
    stats_rollup(since=at(1, month=2), until=at(4, 0))

    html = superuser_client.get(URL + MARCH).content.decode()

    assert kpi_card(html, "impressions") == "Impressions 8 +60.0% vs 5"
    assert kpi_card(html, "ctr") == "Click-through rate 25.00% +25.0% vs 20.00%"
    # From zero there is no relative change to show: the card says so.
    assert kpi_card(html, "add_to_cart_rate") == "Add-to-cart rate 12.50% up from 0.00%"
    assert kpi_card(html, "purchase_rate") == "Purchase rate 12.50% up from 0.00%"
    assert kpi_card(html, "reward_per_impression") == "Reward per impression 1.500 +50.0% vs 1.000"
    assert kpi_card(html, "revenue") == "Attributed revenue 50.00 up from 0.00"
    assert "changes are against the previous 7 days (Feb 23, 00:00 – Mar 1, 00:00)" in text_of(html)


def test_a_first_week_says_there_is_nothing_to_compare_with(superuser_client):
    ImpressionFactory(created_at=at(2), clicks=1)

    html = superuser_client.get(URL + MARCH).content.decode()

    nothing = "nothing to compare with: no impressions in the previous range"
    assert kpi_card(html, "impressions") == f"Impressions 1 {nothing}"
    assert kpi_card(html, "ctr") == f"Click-through rate 100.00% {nothing}"
    assert "— vs" not in text_of(html)


def test_a_drop_is_shown_as_a_negative_change(superuser_client):
    ImpressionFactory(created_at=at(2), clicks=1)
    ImpressionFactory(created_at=at(2))
    ImpressionFactory(created_at=at(26, month=2), clicks=1)

    html = superuser_client.get(URL + MARCH).content.decode()

    assert kpi_card(html, "ctr") == "Click-through rate 50.00% \u221250.0% vs 100.00%"
    assert 'class="rec-kpi-change rec-down"' in html


def test_the_slot_filter_narrows_every_number(superuser_client, known_traffic):
    report = selectors.kpis(date_range=MARCH_RANGE, slot="cart")
    assert (report.current.impressions, report.current.clicks) == (2, 0)

    html = superuser_client.get(URL + MARCH + "&slot=home").content.decode()

    assert kpi_card(html, "impressions") == "Impressions 5 ±0.0% vs 5"
    assert kpi_card(html, "ctr") == "Click-through rate 40.00% +100.0% vs 20.00%"


def test_per_version_series_and_table(superuser_client, known_traffic):
    stats_rollup(since=at(1, month=2), until=at(4, 0))

    series = selectors.timeseries(date_range=MARCH_RANGE, bucket="day")

    assert [s.label for s in series.series] == ["v2", "v1", "Fallback"]
    assert len(series.buckets) == 7
    v2 = series.series[0]
    assert v2.points[datetime(2024, 3, 2, tzinfo=UTC)].ctr == 1.0
    assert v2.points[datetime(2024, 3, 4, tzinfo=UTC)].ctr == 0.0
    assert datetime(2024, 3, 1, tzinfo=UTC) not in v2.points  # a gap, not a zero
    assert (v2.totals.impressions, v2.totals.clicks, v2.totals.reward) == (5, 2, 12.0)

    html = superuser_client.get(URL + MARCH + "&bucket=day").content.decode()

    row = re.search(r'<tr data-version="2">(.*?)</tr>', html, re.S).group(1)
    # No personalisation figures for a version published before they were measured.
    assert " ".join(strip_tags(row).split()) == "v2 5 40.00% 20.00% 20.00% 2.400 50.00 — —"
    assert "Click-through rate per day" in html


def _personalisation(jaccard: float, share: float, *, passed: bool = True) -> dict:
    return {
        "personalised": passed,
        "passed": passed,
        "personalisation": {
            "n_states": 280,
            "k": 8,
            "mean_jaccard": 0.41,
            "jaccard_vs_cold": jaccard,
            "related_share": share,
            "related_chance": 0.07,
            "max_jaccard": 0.9,
            "passed": passed,
            "reason": "...",
        },
    }


def test_each_version_shows_how_personalised_it_is_next_to_its_ctr(superuser_client, known_traffic):
    CheckpointFactory(version=1, checks=_personalisation(0.97, 0.07, passed=False))
    CheckpointFactory(version=2, checks=_personalisation(0.32, 0.61))

    html = superuser_client.get(URL + MARCH + "&bucket=day").content.decode()

    def row(version: str) -> str:
        found = re.search(rf'<tr data-version="{version}">(.*?)</tr>', html, re.S).group(1)
        return text_of(found)

    table = html[html.index("By policy version") :]
    assert "Same as no context" in table and "Same category (chance)" in table
    assert row("2").startswith("v2 5 40.00%")
    assert row("2").endswith("0.32 0.61 (0.07)")
    assert row("1").endswith("0.97 0.07 (0.07)")
    # The fallback ranks by popularity whatever the shopper did.
    assert row("0").endswith("1.00 —")


def test_checkpoints_show_their_personalisation_and_the_baselines_beside_them(superuser_client):
    evaluation = {
        "snips": {"value": 0.5, "ci95": [0.45, 0.55]},
        "min_ess": 30.0,
        "baselines": {
            "n_impressions": 2400,
            "fit_sessions": 310,
            "fitted_before": "2024-03-01T00:00:00+00:00",
            "candidate": {"snips": {"value": 0.48, "ci95": [0.42, 0.53]}},
            "popularity": {"snips": {"value": 0.31, "ci95": [0.28, 0.35]}},
            "same_category": {"snips": {"value": 0.44, "ci95": [0.4, 0.47], "ess": 3.6}},
            "cooccurrence": {"snips": {"value": 0.52, "ci95": [0.49, 0.56]}},
        },
    }
    CheckpointFactory(
        version=5,
        status=Checkpoint.Status.REJECTED,
        checks={"finite_weights": True, **_personalisation(0.97, 0.07, passed=False)},
        evaluation=evaluation,
    )
    CheckpointFactory(
        version=6,
        checks={"personalisation": {"reason": "no logged states with context yet: not judged"}},
    )

    html = superuser_client.get(URL).content.decode()

    def row(version: int) -> str:
        return text_of(re.search(rf'<tr data-version="{version}">(.*?)</tr>', html, re.S).group(1))

    assert "✗ Personalised" in row(5)
    assert "Same as no context 0.97 (max 0.90) Same category 0.07 (chance 0.07)" in row(5)
    assert (
        "v5: 0.480 [0.420, 0.530] Popularity: 0.310 [0.280, 0.350] "
        "Same category: 0.440 [0.400, 0.470] (on 3.6 effective impressions) "
        "Co-occurrence: 0.520 [0.490, 0.560] "
        "2,400 impressions, 310 sessions before"
    ) in row(5)
    assert "no logged states with context yet: not judged" in row(6)
    assert "Personalised" not in row(6)


def test_hourly_buckets_for_short_ranges(known_traffic):
    day = DateRange(datetime(2024, 3, 2, tzinfo=UTC), datetime(2024, 3, 3, tzinfo=UTC))

    series = selectors.timeseries(date_range=day, bucket="hour")

    assert len(series.buckets) == 24
    assert list(series.series[0].points) == [datetime(2024, 3, 2, 12, tzinfo=UTC)]


def test_charts_are_inline_svg_with_one_line_per_version(superuser_client, known_traffic):
    html = superuser_client.get(URL + MARCH).content.decode()

    ctr_chart = html.split("Click-through rate per", 1)[1].split("</svg>", 1)[0]
    assert '<svg class="chart"' in ctr_chart
    assert re.findall(r'data-label="([^"]+)"', ctr_chart) == ["v2", "v1", "Fallback"]
    assert "<script" not in html.split('id="content-main"', 1)[1]
    # Nothing the page uses comes from another host.
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_training_chart_and_latest_runs(superuser_client):
    for i, loss in enumerate((0.8, 0.5, 0.3)):
        TrainingRunFactory(started_at=at(2 + i), loss=loss, mean_q=2.0 + i)
    TrainingRunFactory(
        started_at=at(6), status="failed", loss=None, mean_q=None, outcome="Not enough transitions."
    )

    runs = selectors.training_runs_for_chart(date_range=MARCH_RANGE)
    assert [run.loss for run in runs] == [0.8, 0.5, 0.3]

    html = superuser_client.get(URL + MARCH).content.decode()
    assert "Training loss per run (3 in range)" in html
    loss_chart = html.split("Training loss per run", 1)[1].split("</svg>", 1)[0]
    assert loss_chart.count("<circle") == 3
    assert "Failed" in html


def test_a_run_left_running_by_a_killed_worker_says_why_it_failed(superuser_client):
    TrainingRunFactory(
        started_at=at(6), status="failed", loss=None, mean_q=None, outcome=ORPHANED_OUTCOME
    )

    html = superuser_client.get(URL + MARCH).content.decode()

    badge = re.search(r'<span class="rec-badge rec-run-failed"([^>]*)>Failed</span>', html)
    assert badge, "no failed run in the latest runs"
    assert f'title="{escape(ORPHANED_OUTCOME)}"' in badge.group(1)


def test_checkpoints_table_shows_checks_and_estimates_against_the_active(superuser_client):
    CheckpointFactory(version=1, status=Checkpoint.Status.ACTIVE, config={"gamma": 0.9})
    CheckpointFactory(
        version=2,
        config={"agent": "slateq", "gamma": 0.9},
        checks=GuardReport(
            finite_weights=True,
            q_finite=True,
            q_within_bound=False,
            personalised=None,
            q_min=-1.0,
            q_max=250.0,
        ).to_dict(),
        evaluation={
            "ips": {"value": 0.412, "ci95": [0.38, 0.445]},
            "active": {"version": 1, "ips": {"value": 0.4, "ci95": [0.37, 0.43]}},
            "n_impressions": 5000,
            "passed": False,
        },
        status=Checkpoint.Status.REJECTED,
    )

    html = superuser_client.get(URL).content.decode()

    row = " ".join(
        strip_tags(re.search(r'<tr data-version="2">(.*?)</tr>', html, re.S).group(1)).split()
    )
    assert row.startswith("v2 SlateQ")
    assert "Rejected" in row
    assert "✓ Finite weights" in row and "✓ Finite Q values" in row
    assert "✗ Q within bound" in row and "Ok" not in row
    assert "Q in [-1.00, 250.00]" in row
    assert "0.412 [0.380, 0.445] v1: 0.400" in row
    assert "✗ failed" in row and "5,000 impressions" in row
    assert "Activate" in row
    # Trainers before SlateQ wrote no agent: theirs were per-item.
    first = re.search(r'<tr data-version="1">(.*?)</tr>', html, re.S).group(1)
    assert " ".join(strip_tags(first).split()).startswith("v1 per-item DQN")


def test_a_version_the_gate_could_not_judge_says_so(superuser_client):
    CheckpointFactory(
        version=3,
        status=Checkpoint.Status.ACTIVE,
        evaluation={
            "snips": {"value": 2.1, "ci95": [0.1, 5.0], "ess": 11.8},
            "n_impressions": 4392,
            "min_ess": 30.0,
            "passed": True,
        },
    )
    CheckpointFactory(
        version=4,
        evaluation={
            "snips": {"value": 0.4, "ci95": [0.35, 0.45], "ess": 900.0},
            "min_ess": 30.0,
            "passed": True,
        },
    )

    html = superuser_client.get(URL).content.decode()

    def row(version: int) -> str:
        found = re.search(rf'<tr data-version="{version}">(.*?)</tr>', html, re.S).group(1)
        return " ".join(strip_tags(found).split())

    assert "✓ passed" in row(3)
    assert "not judged: 11.8 effective impressions, fewer than 30" in row(3)
    assert "not judged" not in row(4)


def test_checkpoints_with_missing_or_malformed_results_still_render(superuser_client):
    CheckpointFactory(version=7, checks={}, evaluation={})
    CheckpointFactory(
        version=8,
        checks={"passed": "yes", "q_min": "NaN"},
        evaluation={
            "ips": "n/a",
            "snips": {"value": None},
            "dr": {"value": 1.0, "ci95": [0]},
            "active": 3,
        },
    )

    response = superuser_client.get(URL)

    assert response.status_code == 200
    row = " ".join(
        strip_tags(
            re.search(r'<tr data-version="8">(.*?)</tr>', response.content.decode(), re.S).group(1)
        ).split()
    )
    assert row.startswith("v8")
    assert "1.000" in row  # the DR point estimate without its malformed interval


def test_weights_are_never_loaded_for_the_table():
    CheckpointFactory(version=1)

    rows = selectors.checkpoints_table()

    assert "weights" in rows[0].checkpoint.get_deferred_fields()


def test_last_run_of_each_scheduled_task(superuser_client):
    schedules_ensure()
    PeriodicTask.objects.filter(task="recommender.tasks.train_policy").update(
        last_run_at=datetime(2024, 3, 6, 14, 5, 9, tzinfo=UTC), total_run_count=42
    )

    html = superuser_client.get(URL).content.decode()

    row = re.search(r'<tr data-task="recommender.tasks.train_policy">(.*?)</tr>', html, re.S).group(
        1
    )
    assert 'title="2024-03-06 14:05:09"' in row
    assert ">42<" in row
    for task in ("sync_target_network", "rollup_stats", "build_transitions"):
        assert f'data-task="recommender.tasks.{task}"' in html
    assert "never" in html


def test_an_invalid_range_says_so_and_shows_the_default(superuser_client):
    response = superuser_client.get(URL + "?start=2024-03-07&end=2024-03-01")

    assert response.status_code == 200
    assert "The end date is before the start date." in response.content.decode()
    today = timezone.localdate()
    filters = response.context["filters"]
    assert (filters.start_day, filters.end_day) == (today - timedelta(days=6), today)


def test_dashboard_renders_in_a_bounded_number_of_queries(
    superuser_client, known_traffic, django_assert_max_num_queries
):
    CheckpointFactory.create_batch(5)
    TrainingRunFactory.create_batch(5, started_at=at(3))
    stats_rollup(since=at(1, month=2), until=at(4, 0))

    with django_assert_max_num_queries(20):
        assert superuser_client.get(URL + MARCH).status_code == 200


# ---------------------------------------------------------------------------
# Who may see it
# ---------------------------------------------------------------------------


def test_the_url_and_the_link_from_the_admin_index(superuser_client):
    assert reverse("admin:recommender_dashboard_changelist") == URL

    html = superuser_client.get("/admin/").content.decode()

    assert f'href="{URL}"' in html
    assert "Recommendation dashboard" in html


def test_anonymous_visitors_are_sent_to_the_admin_login(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={URL}"


def test_shoppers_who_are_not_staff_are_sent_to_the_admin_login(shopper_client):
    response = shopper_client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_see_the_dashboard_without_the_buttons(staff_client):
    CheckpointFactory(version=1)

    response = staff_client.get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Train now" not in html and ">Activate<" not in html
    assert "need the “Can change checkpoint” permission" in html
    # Their admin index lists the dashboard too.
    assert f'href="{URL}"' in staff_client.get("/admin/").content.decode()


def test_staff_without_the_permission_cannot_press_the_buttons(staff_client):
    checkpoint = CheckpointFactory(version=1)

    with mock.patch("recommender.tasks.train_policy.delay") as delay:
        assert staff_client.post(URL + "train/").status_code == 403
    assert staff_client.post(URL + f"checkpoints/{checkpoint.pk}/activate/").status_code == 403
    assert staff_client.post(URL + "checkpoints/rollback/").status_code == 403
    delay.assert_not_called()
    checkpoint.refresh_from_db()
    assert checkpoint.status == Checkpoint.Status.CANDIDATE


# ---------------------------------------------------------------------------
# The buttons
# ---------------------------------------------------------------------------


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_activate_makes_it_active_and_retires_the_previous(operator_client):
    v1 = CheckpointFactory(version=1, status=Checkpoint.Status.ACTIVE)
    v2 = CheckpointFactory(version=2, weights=loadable_weights())

    response = operator_client.post(
        URL + f"checkpoints/{v2.pk}/activate/",
        {"query": "start=2024-03-01&end=2024-03-07"},
        follow=True,
    )

    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == (Checkpoint.Status.RETIRED, Checkpoint.Status.ACTIVE)
    assert v2.activated_at is not None
    assert response.redirect_chain == [(URL + "?start=2024-03-01&end=2024-03-07", 302)]
    assert messages_of(response)[0].startswith("v2 is now active; v1 was retired.")


def test_roll_back_restores_the_previous_version(operator_client):
    v1 = CheckpointFactory(
        version=1, status=Checkpoint.Status.RETIRED, activated_at=at(1), weights=loadable_weights()
    )
    v2 = CheckpointFactory(version=2, status=Checkpoint.Status.ACTIVE, activated_at=at(2))

    html = operator_client.get(URL).content.decode()
    assert "Roll back" in re.search(r'<tr data-version="2">(.*?)</tr>', html, re.S).group(1)

    response = operator_client.post(URL + "checkpoints/rollback/", follow=True)

    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == (Checkpoint.Status.ACTIVE, Checkpoint.Status.REJECTED)
    assert messages_of(response) == ["Rolled back: v1 is active again; v2 was rejected."]


def test_activating_a_version_that_does_not_load_is_refused_with_the_reason(operator_client):
    v1 = CheckpointFactory(version=1, status=Checkpoint.Status.ACTIVE)
    v2 = CheckpointFactory(version=2)  # placeholder bytes: not a checkpoint

    response = operator_client.post(URL + f"checkpoints/{v2.pk}/activate/", follow=True)

    [message] = messages_of(response)
    assert message.startswith(
        "Could not activate v2: it does not load as the web processes would load it "
        "(CheckpointError:"
    )
    assert message.endswith("The active version is unchanged.")
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == (Checkpoint.Status.ACTIVE, Checkpoint.Status.CANDIDATE)


def test_roll_back_says_which_versions_it_passed_over(operator_client):
    CheckpointFactory(
        version=1, status=Checkpoint.Status.RETIRED, activated_at=at(1), weights=loadable_weights()
    )
    CheckpointFactory(version=2, status=Checkpoint.Status.RETIRED, activated_at=at(2))
    CheckpointFactory(version=3, status=Checkpoint.Status.ACTIVE, activated_at=at(3))

    response = operator_client.post(URL + "checkpoints/rollback/", follow=True)

    success, passed_over = messages_of(response)
    assert success == "Rolled back: v1 is active again; v3 was rejected."
    assert passed_over.startswith("Passed over v2: it does not load (CheckpointError:")
    html = response.content.decode()
    row = re.search(r'<tr data-version="2">(.*?)</tr>', html, re.S).group(1)
    assert "Rejected" in row and "Passed over by a rollback" in row


# ---------------------------------------------------------------------------
# Which version each web process serves
# ---------------------------------------------------------------------------


def _process_row(html: str, process: str) -> str:
    match = re.search(rf'<tr data-process="{re.escape(process)}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row for {process}"
    return text_of(match.group(1))


def test_the_dashboard_shows_what_each_web_process_serves(superuser_client):
    now = timezone.now()
    CheckpointFactory(
        version=4, status=Checkpoint.Status.ACTIVE, activated_at=now - timedelta(minutes=5)
    )
    beat = {"loaded_at": now - timedelta(minutes=4), "seen_at": now - timedelta(seconds=5)}
    ServingHeartbeat.objects.create(process="web-1:101", policy_version=4, **beat)
    ServingHeartbeat.objects.create(
        process="web-2:102",
        policy_version=3,
        failed_version=4,
        error="CheckpointError: not a checkpoint",
        **beat,
    )
    ServingHeartbeat.objects.create(
        process="web-3:103",
        policy_version=3,
        loaded_at=now - timedelta(hours=1),
        seen_at=now - timedelta(minutes=6),
    )
    ServingHeartbeat.objects.create(  # gone: stopped reporting long ago
        process="web-old:99", policy_version=2, seen_at=now - timedelta(hours=2)
    )

    html = superuser_client.get(URL).content.decode()

    assert _process_row(html, "web-1:101").startswith("web-1:101 v4 ")
    assert _process_row(html, "web-1:101").endswith("serves the active version")
    assert _process_row(html, "web-2:102").startswith("web-2:102 v3 ")
    assert _process_row(html, "web-2:102").endswith(
        "cannot load v4: CheckpointError: not a checkpoint"
    )
    assert 'data-state="failed"' in html
    assert "Serving v4 since" in text_of(html)
    assert "except in 1 of 2 web processes" in text_of(html)
    assert "has not checked since v4 was activated" not in html  # web-3 is gone too
    assert "web-old:99" not in html


def test_a_process_still_on_an_older_version_is_flagged(superuser_client, settings):
    settings.RECOMMENDER_HEARTBEAT_SECONDS = 600  # web-1 reported 5 minutes ago: still alive
    now = timezone.now()
    CheckpointFactory(
        version=5, status=Checkpoint.Status.ACTIVE, activated_at=now - timedelta(minutes=10)
    )
    CheckpointFactory(version=6, status=Checkpoint.Status.CANDIDATE)
    ServingHeartbeat.objects.create(
        process="web-1:101", policy_version=4, seen_at=now - timedelta(minutes=5)
    )
    ServingHeartbeat.objects.create(
        process="web-2:102", policy_version=4, seen_at=now - timedelta(minutes=12)
    )

    html = superuser_client.get(URL).content.decode()

    assert "serves v4, not v5" in _process_row(html, "web-1:101")
    assert "has not checked since v5 was activated" in _process_row(html, "web-2:102")


def test_no_process_reporting_is_said_plainly(superuser_client):
    html = superuser_client.get(URL).content.decode()

    assert "No web process has reported in the last few minutes" in html


def test_roll_back_with_nothing_to_return_to_explains_why(operator_client):
    CheckpointFactory(version=1, status=Checkpoint.Status.ACTIVE, activated_at=at(1))

    response = operator_client.post(URL + "checkpoints/rollback/", follow=True)

    assert response.status_code == 200
    assert messages_of(response) == [
        "Could not roll back: There is no earlier active version to roll back to."
    ]
    assert Checkpoint.objects.get().status == Checkpoint.Status.ACTIVE


@pytest.mark.parametrize(
    ("button", "task", "message"),
    [
        ("train/", "recommender.tasks.train_policy", "Training queued"),
        ("sync-target/", "recommender.tasks.sync_target_network", "Target network sync queued"),
    ],
)
def test_buttons_queue_the_celery_task(operator_client, button, task, message):
    with mock.patch(f"{task}.delay") as delay:
        response = operator_client.post(URL + button, {"query": "slot=cart"}, follow=True)

    delay.assert_called_once_with(triggered_by="admin:operator")
    assert response.redirect_chain == [(URL + "?slot=cart", 302)]
    assert messages_of(response) == [f"{message}: a Celery worker will run it shortly."]
    assert "queued" in response.content.decode()


def test_a_broker_that_is_down_gives_a_clear_message_not_an_error_page(operator_client):
    refused = OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    with mock.patch("recommender.tasks.train_policy.delay", side_effect=refused):
        response = operator_client.post(URL + "train/", follow=True)

    assert response.status_code == 200
    assert messages_of(response) == [
        "Could not queue training: the task queue (Celery broker) is not reachable. "
        "Check that Redis and the Celery worker are running, then try again."
    ]


def test_buttons_only_accept_post(operator_client):
    with mock.patch("recommender.tasks.train_policy.delay") as delay:
        assert operator_client.get(URL + "train/").status_code == 405
    delay.assert_not_called()


# ---------------------------------------------------------------------------
# The chart module
# ---------------------------------------------------------------------------


def test_nice_ticks_are_round_and_cover_the_data():
    assert charts.nice_ticks(0, 0.137) == [0.0, 0.05, 0.1, 0.15]
    assert charts.nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = charts.nice_ticks(2.13, 2.61)
    assert ticks[0] <= 2.13 and ticks[-1] >= 2.61


def test_an_empty_chart_says_there_is_no_data():
    svg = charts.line_chart(title="CTR", lines=[], x_start=MARCH_RANGE.start, x_end=MARCH_RANGE.end)
    assert "No data in this range." in svg


def test_chart_lines_break_across_gaps():
    start = MARCH_RANGE.start
    line = charts.Line("v1", [(start + timedelta(hours=h), 0.1) for h in (0, 1, 2, 10, 11)])

    svg = charts.line_chart(
        title="CTR",
        lines=[line],
        x_start=start,
        x_end=start + timedelta(hours=12),
        max_gap=timedelta(hours=1.5),
    )

    assert svg.count("<polyline") == 2


def test_a_range_ending_today_is_compared_to_date(superuser_client):
    now = timezone.now()
    midnight = timezone.make_aware(datetime.combine(timezone.localdate(now), datetime.min.time()))
    so_far = now - midnight
    ImpressionFactory(created_at=midnight + so_far / 2, clicks=1)
    # Yesterday up to the same time of day counts; the rest of yesterday not.
    ImpressionFactory(created_at=midnight - timedelta(days=1) + so_far / 2)
    ImpressionFactory(created_at=midnight - (timedelta(days=1) - so_far) / 2)

    response = superuser_client.get(URL + f"?start={midnight:%Y-%m-%d}&end={midnight:%Y-%m-%d}")

    report = response.context["report"]
    assert report.date_range.end <= timezone.now()
    assert (report.current.impressions, report.previous.impressions) == (1, 1)
    assert "changes compare the range so far with the same stretch of the previous 1 day (" in (
        text_of(response.content.decode())
    )


# ---------------------------------------------------------------------------
# Many versions, the learning trend, the simulated history
# ---------------------------------------------------------------------------


def test_older_versions_share_one_line_so_no_two_lines_share_a_colour(superuser_client):
    for version in range(1, 12):
        ImpressionFactory(created_at=at(1 + version % 7, version), policy_version=version)
    ImpressionFactory(created_at=at(2), policy_name="popularity", policy_version=None)

    html = superuser_client.get(URL + MARCH).content.decode()

    ctr_chart = html.split("Click-through rate per", 1)[1].split("</svg>", 1)[0]
    labels = re.findall(r'class="chart-series" data-label="([^"]+)"', ctr_chart)
    assert labels == ["v11", "v10", "v9", "v8", "v7", "v6", "v5", "Earlier (v1–v4)", "Fallback"]
    colours = re.findall(r'<polyline points="[^"]*" fill="none" stroke="(#[0-9a-f]{6})"', ctr_chart)
    legend = re.findall(r'class="chart-legend"><line [^>]*stroke="(#[0-9a-f]{6})"', ctr_chart)
    assert len(set(legend)) == len(legend) == 9
    assert set(colours) <= set(legend)
    # The table still lists every version.
    assert len(re.findall(r'<tr data-version="\d+">', html.split("By policy version", 1)[1])) >= 12


def test_the_learning_trend_is_one_learned_line_against_the_fallback(superuser_client):
    ImpressionFactory(created_at=at(1), policy_name="popularity", policy_version=None)
    ImpressionFactory(created_at=at(2), policy_name="popularity", policy_version=None, clicks=0)
    ImpressionFactory(created_at=at(3), policy_version=1, clicks=1)
    ImpressionFactory(created_at=at(5), policy_version=2, clicks=1)
    ImpressionFactory(created_at=at(5), policy_version=2, clicks=0)

    html = superuser_client.get(URL + MARCH + "&bucket=day").content.decode()

    trend = html.split("Learning: click-through rate per day", 1)[1].split("</svg>", 1)[0]
    assert re.findall(r'class="chart-series" data-label="([^"]+)"', trend) == [
        "Learned policy (all versions)",
        "Fallback (range average)",
    ]
    fallback = trend.split('data-label="Fallback (range average)"', 1)[1].split("</g>", 1)[0]
    # 0 clicks in 2 fallback impressions, drawn flat across the whole range.
    assert re.findall(r": ([\d.]+%)</title>", fallback) == ["0.0%"] * 7
    assert re.findall(r'class="chart-marker" data-label="([^"]+)"', trend) == ["v1", "v2"]
    learned = trend.split('data-label="Learned policy (all versions)"', 1)[1].split("</g>", 1)[0]
    # v1 on Mar 3 (1 of 1 clicked), both versions' impressions merged on Mar 5 (1 of 2).
    assert re.findall(r": ([\d.]+%)</title>", learned) == ["100.0%", "50.0%"]
    assert "Learning: reward per impression per day" in html


def test_the_epsilon_header_is_not_upper_cased(superuser_client):
    html = superuser_client.get(URL).content.decode()
    assert (
        '<th class="num rec-symbol" title="The training schedule\'s exploration rate '
        '(shoppers are served RECOMMENDER_EPSILON)">Training ε</th>'
    ) in html
    css = (settings_static() / "recommender" / "dashboard.css").read_text()
    assert ".rec-table th.rec-symbol { text-transform: none; }" in css


def settings_static():
    from pathlib import Path

    from django.conf import settings

    return Path(settings.BASE_DIR) / "static"


def test_a_history_being_written_is_shown_as_simulated_and_in_progress(superuser_client):
    from recommender.models import SimulatedHistory
    from recommender.simulation.history import history_plan

    history = history_plan(sessions=1000, days=3, first_train=60, train_every=250)
    SimulatedHistory.objects.filter(pk=history.pk).update(
        status="running", sessions_done=250, heartbeat_at=timezone.now()
    )

    page = text_of(superuser_client.get(URL).content.decode())

    assert "Simulated history in progress: 250 of 1,000 sessions (25%)." in page
    assert "simulated shoppers (not people)" in page
    assert "The store already serves the popularity fallback." in page

    SimulatedHistory.objects.filter(pk=history.pk).update(status="finished", sessions_done=1000)
    page = text_of(superuser_client.get(URL).content.decode())

    assert "is 1,000 sessions of simulated shoppers, not people" in page
    assert "in progress" not in page
    assert "shoppers of the" not in page  # the default family goes without saying

    SimulatedHistory.objects.filter(pk=history.pk).update(family="novelty")
    page = text_of(superuser_client.get(URL).content.decode())

    assert "They were shoppers of the novelty family." in page
