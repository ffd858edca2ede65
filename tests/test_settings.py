"""The settings as a newcomer meets them: `.env.example` copied to `.env` (as
the README says for docker compose) must leave the local commands on their
embedded defaults, not point them at compose's hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

READ_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "broker": settings.CELERY_BROKER_URL,
    "media": settings.MEDIA_ROOT,
    "static": settings.STATIC_ROOT,
}))
"""


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_env_example_sets_only_what_compose_and_local_commands_can_share():
    assert set(env_example()) == {
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "POSTGRES_PASSWORD",
        "WEB_PORT",
        # Read only by the production settings (check --deploy wants them).
        "DJANGO_SECURE_HSTS_SECONDS",
        "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "DJANGO_SECURE_HSTS_PRELOAD",
    }
    compose = (ROOT / "docker-compose.yml").read_text()
    # compose points at its own services when .env does not.
    assert (
        "DATABASE_URL: ${DATABASE_URL:-postgres://storefront:storefront@postgres:5432/storefront}"
        in compose
    )
    assert "REDIS_URL: ${REDIS_URL:-redis://redis:6379/0}" in compose


def test_local_commands_with_env_example_as_env_stay_embedded():
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL") and not key.startswith("CELERY_")
    }
    env |= env_example() | {"DJANGO_SETTINGS_MODULE": "config.settings.local"}
    # Blank values, as a .env with "DJANGO_MEDIA_ROOT=" would give, mean the defaults.
    env |= {"DJANGO_MEDIA_ROOT": "", "DJANGO_STATIC_ROOT": "", "CELERY_BROKER_URL": ""}

    result = subprocess.run(
        [sys.executable, "-c", READ_SETTINGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )

    settings = json.loads(result.stdout.strip().splitlines()[-1])
    assert settings["engine"] == "django.db.backends.sqlite3"
    assert settings["broker"] == "filesystem://"
    assert settings["media"] == str(ROOT / "media")
    assert settings["static"] == str(ROOT / "staticfiles")
