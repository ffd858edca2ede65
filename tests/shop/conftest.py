"""Fixtures for the shop's tests."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from tests.browser import browser  # noqa: F401  (the selenium driver fixture)


@pytest.fixture(autouse=True)
def isolated_cache(settings):
    """A fresh in-memory cache per test: the shared file cache would carry a
    cached category menu from one test (or another checkout) into the next."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # Local-memory caches with the same location share storage: start empty.
    cache.clear()


@pytest.fixture(autouse=True)
def isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def no_recommender(settings):
    """The shop's tests run the store without a carousel provider (the
    recommender's tests cover its own); a test that needs one sets it."""
    settings.SHOP_CAROUSEL_PROVIDER = ""
