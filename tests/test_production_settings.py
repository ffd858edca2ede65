"""config/settings/production.py, started as a deployment starts it: with the
environment .env.example documents, `check --deploy` passes at warning level;
HTTPS is on by default; a placeholder secret key stops the start."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _documented_environment() -> dict[str, str]:
    """.env.example's variables, as docker compose would pass them."""
    variables = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            variables[name] = value
    return variables


def _run(args: list[str], **variables: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        **variables,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _settings(*names: str, **variables: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}))"
    )
    result = _run(["-c", code], **variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _key() -> str:
    return secrets.token_urlsafe(50)


def test_check_deploy_passes_with_the_documented_environment():
    environment = {**_documented_environment(), "DJANGO_SECRET_KEY": _key()}

    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **environment)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_https_redirect_and_secure_cookies_are_on_by_default():
    values = _settings(
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        DJANGO_SECRET_KEY=_key(),
        DJANGO_ALLOWED_HOSTS="shop.example.com",
    )

    assert values == {
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 0,
    }


def test_hsts_is_configured_from_the_environment():
    values = _settings(
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        DJANGO_SECRET_KEY=_key(),
        DJANGO_ALLOWED_HOSTS="shop.example.com",
        DJANGO_SECURE_HSTS_SECONDS="3600",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="True",
        DJANGO_SECURE_HSTS_PRELOAD="False",
    )

    assert values == {
        "SECURE_HSTS_SECONDS": 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
    }


@pytest.mark.parametrize(
    "key",
    [
        "change-me",  # .env.example's placeholder
        "insecure-demo-key-change-me-in-production",  # the demo's default
        "django-insecure-" + "x1y2z3" * 10,
        "short-but-random-1f9c",
        "a" * 64,
    ],
)
def test_a_production_start_refuses_a_placeholder_secret_key(key):
    environment = {**_documented_environment(), "DJANGO_SECRET_KEY": key}

    result = _run(["manage.py", "check"], **environment)

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is a placeholder or too weak" in result.stderr
