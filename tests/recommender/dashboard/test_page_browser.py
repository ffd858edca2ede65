"""The dashboard in a real headless Chromium: on top of four weeks of logged
history, simulated shoppers browse the running store over HTTP; then a store
admin logs in and sees the KPI cards and the charts, live traffic included.
Saves var/screenshots/dashboard.png (`make screenshots` makes the README's,
from a real demo store)."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from recommender.evaluation.stats import stats_rollup
from recommender.learning.schedules import schedules_ensure
from recommender.models import Checkpoint, Impression
from tests.browser import TEST_SCREENSHOTS, full_page_screenshot
from tests.recommender.factories import SuperuserFactory, seed_dashboard_history
from tests.recommender.support import loadable_weights

SCREENSHOT = TEST_SCREENSHOTS / "dashboard.png"

# A fresh policy server: one left over from an earlier test would not report
# again (it already did, into that test's database) and the row would be missing.
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("recommender_isolation")]


@pytest.fixture
def store_history(transactional_db):
    history = seed_dashboard_history(days=28)
    # The active version is one the web process can load and serve.
    Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).update(weights=loadable_weights())
    # All but the last two hours rolled up, as the beat schedule leaves it:
    # the page must add the live tail to the roll-up.
    stats_rollup(since=history.start, until=history.end - timedelta(hours=2))
    schedules_ensure()
    now = timezone.now()
    for minutes_ago, task in ((1, "rollup_stats"), (3, "train_policy"), (7, "sync_target_network")):
        PeriodicTask.objects.filter(task=f"recommender.tasks.{task}").update(
            last_run_at=now - timedelta(minutes=minutes_ago), total_run_count=600 // minutes_ago
        )
    return history


def test_a_store_admin_sees_the_kpis_and_charts(live_server, browser, store_history):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    before = Impression.objects.count()
    call_command(
        "simulate_traffic", base_url=live_server.url, sessions=8, seed=3, stdout=io.StringIO()
    )
    live = Impression.objects.count() - before
    assert live > 8

    SuperuserFactory(username="admin", password="admin-pass")
    today = timezone.localdate()
    dashboard = (
        f"/admin/recommender/dashboard/?start={today - timedelta(days=13):%Y-%m-%d}"
        f"&end={today:%Y-%m-%d}"
    )

    browser.get(f"{live_server.url}/admin/login/?next={dashboard.replace('&', '%26')}")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin-pass")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".rec-kpi")))

    assert browser.find_element(By.TAG_NAME, "h1").text == "Recommendation dashboard"
    cards = browser.find_elements(By.CSS_SELECTOR, ".rec-kpi")
    assert [c.find_element(By.CSS_SELECTOR, ".rec-kpi-label").text for c in cards] == [
        "IMPRESSIONS",
        "CLICK-THROUGH RATE",
        "ADD-TO-CART RATE",
        "PURCHASE RATE",
        "REWARD PER IMPRESSION",
        "ATTRIBUTED REVENUE",
    ]
    assert all(card.is_displayed() for card in cards)
    impressions = cards[0].find_element(By.CSS_SELECTOR, ".rec-kpi-value").text
    assert int(impressions.replace(",", "")) > 1000
    # The simulated shoppers' carousels are on the page already (the live tail
    # past the last roll-up).
    assert Impression.objects.filter(created_at__gte=store_history.end).count() >= live
    # Against the weeks of fallback-only traffic before, the learned policy clicks more.
    assert cards[1].find_element(By.CSS_SELECTOR, ".rec-kpi-delta").text.startswith("+")

    svgs = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(svgs) == 6  # CTR, reward, the two learning trends, loss, mean Q
    for svg in svgs:
        assert svg.is_displayed()
        assert svg.size["width"] > 300 and svg.size["height"] > 100
    ctr_lines = svgs[0].find_elements(By.CSS_SELECTOR, "g.chart-series")
    assert [g.get_attribute("data-label") for g in ctr_lines] == ["v3", "v2", "v1", "Fallback"]
    assert svgs[4].find_elements(By.CSS_SELECTOR, "polyline")  # the loss curve
    # The checkpoints table fits a 1280px window.
    browser.set_window_size(1280, 1000)
    table = browser.find_element(By.CSS_SELECTOR, ".rec-checkpoints")
    assert browser.execute_script(
        "return arguments[0].getBoundingClientRect().right <= document.documentElement.clientWidth",
        table,
    )

    # The web process that served the simulated shoppers reports serving v3.
    served = browser.find_elements(By.CSS_SELECTOR, ".rec-served tbody tr[data-process]")
    assert [row.get_attribute("data-state") for row in served] == ["ok"]
    assert "serves the active version" in served[0].text
    # Each version's personalisation next to its CTR, and the baselines beside its estimate.
    v3 = browser.find_element(By.CSS_SELECTOR, '.rec-table tr[data-version="3"]')
    assert v3.text.split()[-3:] == ["0.34", "0.48", "(0.07)"]
    baselines = browser.find_element(
        By.CSS_SELECTOR, '.rec-checkpoints tr[data-version="3"] .rec-baselines'
    )
    assert "Co-occurrence: 0.270 [0.220, 0.320]" in baselines.text

    full_page_screenshot(browser, SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 20_000
