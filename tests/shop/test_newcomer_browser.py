"""A newcomer's first visit in a real headless Chromium: home → category →
product → add to cart → cart → checkout → confirmation, checking on the way
that what the shop says is true: the whole category menu is in view, the
carousel scrolls to the items it does not show at first, delivery costs what
the footer says, and the receipt the confirmation mentions was sent.
Screenshots of each step go to var/screenshots/ (ignored by git)."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from shop.models import Order
from shop.selectors import delivery_rule
from tests.browser import TEST_SCREENSHOTS, full_page_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = TEST_SCREENSHOTS / "newcomer"


@pytest.fixture
def demo_store(transactional_db, settings):
    # The whole store, as `make demo` runs it: the recommender fills the
    # carousels (the popularity fallback, with no trained version yet).
    settings.SHOP_CAROUSEL_PROVIDER = "recommender.serving.carousels.carousel_provider"
    settings.RECOMMENDER_ELIGIBILITY_TTL = 0
    call_command("seed_demo", "--products", "70", "--no-admin", verbosity=0, stdout=StringIO())


def money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def in_view(browser, element) -> bool:
    return browser.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.width > 0 && r.left >= 0 && r.right <= document.documentElement.clientWidth;",
        element,
    )


def test_a_newcomer_buys_something_and_every_promise_holds(
    live_server, browser, demo_store, mailoutbox
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    rule = delivery_rule()

    # Home: the whole category menu is in view, the promise is the store's rule.
    browser.get(live_server.url + "/")
    menu = browser.find_elements(By.CSS_SELECTOR, ".category-nav a")
    assert "Toys & Games" in [link.text for link in menu]
    assert all(in_view(browser, link) for link in menu)
    assert rule.promise in browser.find_element(By.CSS_SELECTOR, ".site-footer").text
    full_page_screenshot(browser, SHOTS / "1-home.png")

    # The carousel shows part of its row; "More products" brings the rest in view.
    carousel = browser.find_element(By.CSS_SELECTOR, '.carousel[data-slot="home"]')
    items = carousel.find_elements(By.CSS_SELECTOR, ".carousel-item")
    assert len(items) == 8
    assert not in_view(browser, items[-1])
    more = carousel.find_element(By.CSS_SELECTOR, 'button[aria-label="More products"]')
    assert more.is_displayed() and more.is_enabled()
    more.click()
    wait.until(lambda _: in_view(browser, items[-1]))
    assert (
        carousel.find_element(By.CSS_SELECTOR, ".carousel-track").get_attribute("tabindex") == "0"
    )

    # Category, then the cheapest product (so the delivery fee applies).
    next(link for link in menu if link.text == "Toys & Games").click()
    wait.until(EC.title_contains("Toys"))
    browser.get(browser.current_url + "?sort=price_asc")
    full_page_screenshot(browser, SHOTS / "2-category.png")
    browser.find_element(By.CSS_SELECTOR, ".product-grid a").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".product-detail")))
    price = Decimal(browser.find_element(By.CSS_SELECTOR, ".price-large").text.strip("$"))
    full_page_screenshot(browser, SHOTS / "3-product.png")
    browser.find_element(By.CSS_SELECTOR, ".add-to-cart button[type=submit]").click()

    # Cart: the fee the rule charges, and the total with it.
    wait.until(EC.title_contains("Your cart"))
    fee = rule.fee_for(price)
    assert fee > 0, "the cheapest toy should be below the free-delivery threshold"
    summary = browser.find_element(By.CSS_SELECTOR, ".cart-summary").text
    assert f"Delivery\n{money(fee)}" in summary
    assert f"Total\n{money(price + fee)}" in summary
    assert f"Add {money(rule.free_from - price)} more for free delivery." in summary
    assert "Complete your order" in browser.page_source  # a carousel for a cart with items
    full_page_screenshot(browser, SHOTS / "4-cart.png")

    # Checkout: nothing prefilled for a guest; the button says what is charged.
    browser.find_element(By.LINK_TEXT, "Checkout").click()
    wait.until(EC.title_contains("Checkout"))
    name = browser.find_element(By.ID, "id_name")
    assert name.get_attribute("value") == ""
    browser.find_element(By.ID, "id_email").send_keys("newcomer@example.com")
    name.send_keys("Nell Newcomer")
    browser.find_element(By.ID, "id_address").send_keys("3 First Street\nSampletown")
    button = browser.find_element(By.CSS_SELECTOR, ".stacked-form button[type=submit]")
    assert button.text == f"Place order · {money(price + fee)}"
    full_page_screenshot(browser, SHOTS / "5-checkout.png")
    button.click()

    # Confirmation: the receipt it mentions is in the outbox.
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".confirmation")))
    order = Order.objects.get()
    confirmation = browser.find_element(By.CSS_SELECTOR, ".confirmation").text
    assert "We sent a receipt to newcomer@example.com." in confirmation
    assert [mail.to for mail in mailoutbox] == [["newcomer@example.com"]]
    assert f"Total:    {money(order.total)}" in mailoutbox[0].body
    assert (order.delivery_fee, order.total) == (fee, price + fee)
    lines = browser.find_element(By.CSS_SELECTOR, ".order-table tfoot").text
    assert f"Delivery {money(fee)}" in lines
    full_page_screenshot(browser, SHOTS / "6-confirmation.png")
