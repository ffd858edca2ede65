"""Whether a real service a test needs is here, and what a test does when it
is not: skip on a laptop running `make test` on SQLite, fail in CI, where
REQUIRE_SERVICES=1 says nothing may be skipped for want of a service."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def redis_reachable(url: str) -> bool:
    """True when ``url`` is set and a Redis there answers a ping within a second."""
    if not url:
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def service_missing(message: str) -> NoReturn:
    """Skip the test for want of a service ("needs ..."), or fail it in CI."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} but REQUIRE_SERVICES=1")
    pytest.skip(message)
