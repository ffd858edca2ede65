"""Whether a real service a test needs is here, and what a test does when it
or the browser is not: skip on a laptop running `make test` on SQLite, fail
in CI, where REQUIRE_SERVICES=1 / REQUIRE_BROWSER=1 say nothing may be
skipped for want of them."""

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


def skip_or_fail(reason: str, *, required_by: str = "REQUIRE_SERVICES") -> NoReturn:
    """Skip the test for want of something (``reason``), or fail it when the
    environment variable ``required_by`` is 1, as in CI."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{reason} but {required_by}=1")
    pytest.skip(reason)


def database_url() -> str:
    """DATABASE_URL of the database this test process uses (the test
    database), for a server or worker process a test starts."""
    from django.db import connection

    db = connection.settings_dict
    return (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
