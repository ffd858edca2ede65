"""A real headless Chromium for browser tests: Debian's /usr/bin/chromium and
/usr/bin/chromedriver, nothing downloaded. Browser tests skip with the reason
when they are missing, unless REQUIRE_BROWSER=1 (CI), where that is a failure.

Use the ``browser`` fixture (import it into a conftest.py) with pytest-django's
``live_server``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.services import skip_or_fail

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
WINDOW = (1440, 1000)


def chromium_and_driver() -> tuple[str, str] | tuple[None, str]:
    """(chromium, chromedriver) paths, or (None, why not)."""
    chromium = next((p for name in CHROMIUM_NAMES if (p := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    missing = [
        name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path
    ]
    if missing:
        return None, (
            f"{' and '.join(missing)} not installed: run `make browser-deps` "
            "(apt-get install chromium chromium-driver)"
        )
    return chromium, driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    """A headless Chromium WebDriver with a throwaway profile."""
    chromium, driver_or_reason = chromium_and_driver()
    if chromium is None:
        skip_or_fail(driver_or_reason, required_by="REQUIRE_BROWSER")
    with chromium_driver(tmp_path / "chromium-profile") as driver:
        yield driver


@contextmanager
def chromium_driver(profile: Path) -> Iterator:
    """Headless Chromium with ``profile`` as its user data folder; quits on exit."""
    chromium, driver_or_reason = chromium_and_driver()
    if chromium is None:
        raise RuntimeError(driver_or_reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_or_reason))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


# Screenshots taken by tests: an ignored folder, so a test run leaves the
# work tree clean (docs/screenshots/ is written only by `make screenshots`).
TEST_SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"


def full_page_screenshot(driver, path: Path, *, width: int = WINDOW[0]) -> Path:
    """Resize the window to the page's height, then capture it all."""
    page, chrome = driver.execute_script(
        "return [Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),"
        " window.outerHeight - window.innerHeight]"
    )
    # The window's own frame (even headless) takes part of its height.
    driver.set_window_size(width, min(int(page) + int(chrome) + 16, 8000))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
