"""Regenerate the README's screenshots (docs/screenshots/*.png) from a real
demo store: ``make screenshots`` (``python -m tests.screenshots``).

In a throwaway folder (its own SQLite database, media, broker and mail; never
your data) it migrates, seeds the demo catalog, writes the simulated history
inline (simulated shoppers, training as it goes, so a trained policy is
active), starts the store, and photographs in headless Chromium the home page
of a shopper who searched for tents and viewed three, and the recommendation
dashboard. Tests never write these files.

The history's shoppers are of the ``category`` family (interest in the
category just looked at), for which "camping gear after tents" is what the
policy should learn; the demo's default ``funnel`` shoppers move on to a
complementary category instead.

    python -m tests.screenshots [--sessions 1000] [--family category] [--port 8182]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.browser import chromium_driver, full_page_screenshot

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"


def manage(env: dict[str, str], *args: str, **kwargs) -> subprocess.Popen | None:
    command = [sys.executable, "manage.py", *args]
    print("$", " ".join(command[1:]), flush=True)
    if kwargs.pop("background", False):
        return subprocess.Popen(command, cwd=ROOT, env=env, **kwargs)
    subprocess.run(command, cwd=ROOT, env=env, check=True, **kwargs)
    return None


def wait_for(url: str, timeout: float = 60.0) -> None:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def photograph(base: str, profile: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium_driver(profile) as browser:
        browser.get(base + "/search/?q=tent")
        tents = [
            link.get_attribute("href")
            for link in browser.find_elements(By.CSS_SELECTOR, "a.product-card-link")
            if link.text and "Tent" in link.text
        ]
        for url in tents[:3]:
            browser.get(url)
        browser.get(base + "/")
        carousel = WebDriverWait(browser, 15).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, '.carousel[data-slot="home"]'))
        )
        # The carousel in the middle of one window's height, not the whole long page.
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", carousel)
        browser.save_screenshot(str(OUT / "store.png"))
        print("wrote", OUT / "store.png")
        dashboard = "/admin/recommender/dashboard/"
        browser.get(f"{base}/admin/login/?next={dashboard}")
        browser.find_element(By.NAME, "username").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys("admin")
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        WebDriverWait(browser, 30).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, ".rec-kpi"))
        )
        print("wrote", full_page_screenshot(browser, OUT / "dashboard.png"))


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--sessions", type=int, default=1000)
    arguments.add_argument("--family", default="category")
    arguments.add_argument("--port", type=int, default=8182)
    args = arguments.parse_args()
    with tempfile.TemporaryDirectory(prefix="screenshots-") as folder:
        state = Path(folder)
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL") and not key.startswith("CELERY_")
        }
        env |= {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": f"sqlite:///{state / 'db.sqlite3'}",
            "DJANGO_MEDIA_ROOT": str(state / "media"),
            "CELERY_BROKER_DIR": str(state / "broker"),
            "EMAIL_URL": "dummymail://",
        }
        manage(env, "migrate", "--noinput", "--verbosity", "0")
        manage(env, "seed_demo")
        manage(env, "seed_history", "--sessions", str(args.sessions), "--family", args.family)
        server = manage(
            env,
            "runserver",
            f"127.0.0.1:{args.port}",
            "--noreload",
            background=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{args.port}"
        try:
            wait_for(base + "/healthz")
            photograph(base, state / "chromium-profile")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
