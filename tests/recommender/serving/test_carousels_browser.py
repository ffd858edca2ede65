"""The home carousel follows the shopper, in a real headless Chromium: on a
demo store whose policy was trained by the store's own trainer on simulated
history, a shopper searches for tents and views three; back on the home page,
"Recommended for you" is mostly camping gear, each item saying which viewed
product it is there for.

The history's shoppers are of the ``category`` family: interest in the
category just looked at is what drives their clicks, so "camping gear after
tents" is what the policy should have learned from them. (The demo's default
``funnel`` shoppers move on to a complementary category instead.)"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from recommender.models import Checkpoint
from shop.demo import catalog_seed
from shop.models import Product
from tests.browser import full_page_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# 20 products per category, five of them tents (seed 1).
PRODUCTS = 280
SESSIONS = 400


@pytest.fixture
def trained_store(transactional_db, settings):
    """The demo catalog and an active policy from the store's trainer on
    simulated shoppers (as ``make demo`` builds it, smaller)."""
    settings.RECOMMENDER_TRAIN_STEPS = 800
    # Seeded, so that the same history trains the same policy on every run.
    settings.RECOMMENDER_TRAIN_SEED = 1
    catalog_seed(seed=1, product_count=PRODUCTS)
    call_command(
        "seed_history",
        sessions=SESSIONS,
        days=1,
        train_every=SESSIONS // 2,
        seed=0,
        family="category",
        verbosity=0,
        stdout=io.StringIO(),
    )
    active = Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).first()
    newest = Checkpoint.objects.order_by("-version").first()
    assert active is not None and active == newest, newest and (
        newest.version,
        newest.status,
        newest.note,
        newest.checks,
    )
    # The shopper below sees the policy's own choice, not its exploration.
    settings.RECOMMENDER_EPSILON = 0.0
    return active


@pytest.mark.xfail(
    reason="issue 14: on this 400-session history the carousel after three tents is not "
    "reliably mostly camping: cheap items of other categories, which the policy ranks high "
    "for every shopper, can outrank it (serving's exploration is unseeded, so each run's "
    "history differs)",
    strict=False,
)
def test_a_shopper_who_viewed_three_tents_is_recommended_camping_gear_with_reasons(
    live_server, browser, trained_store, tmp_path: Path
):
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/search/?q=tent")
    results = [
        link.get_attribute("href")
        for link in browser.find_elements(By.CSS_SELECTOR, "a.product-card-link")
        if link.text and "Tent" in link.text
    ]
    assert len(results) >= 3, results
    viewed = []
    for url in results[:3]:
        browser.get(url)
        viewed.append(browser.find_element(By.TAG_NAME, "h1").text)
    assert all(name.endswith("Tent") for name in viewed), viewed

    browser.find_element(By.CSS_SELECTOR, "header a.logo").click()
    carousel = browser.find_element(By.CSS_SELECTOR, 'section.carousel[data-slot="home"]')
    assert carousel.find_element(By.TAG_NAME, "h2").text == "Recommended for you"
    items = carousel.find_elements(By.CSS_SELECTOR, "li.carousel-item")
    assert len(items) == 8
    shown = []
    for item in items:
        slug = item.find_element(By.TAG_NAME, "a").get_attribute("href").split("?")[0]
        product = Product.objects.select_related("category").get(
            slug=slug.rstrip("/").split("/")[-1]
        )
        reasons = item.find_elements(By.CSS_SELECTOR, ".carousel-reason")
        shown.append((product, reasons[0].text if reasons else ""))
    full_page_screenshot(browser, tmp_path / "recommended-for-you.png")

    camping = [(p, reason) for p, reason in shown if p.category.name == "Camping"]
    assert len(camping) >= len(shown) / 2, [(p.name, p.category.name) for p, _ in shown]
    because = {f"Because you viewed {name}" for name in viewed}
    assert any(reason in because for _, reason in camping), shown
    # Every reason names a product this shopper viewed.
    assert {reason for _, reason in shown if reason} <= because
    # Near-duplicates stay apart: no two items of one brand and product noun.
    kinds = [(p.category_id, p.brand, p.name.split()[-1]) for p, _ in shown]
    assert len(set(kinds)) == len(kinds)
