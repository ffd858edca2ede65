"""Production: secrets and hosts must come from the environment, and the site is
HTTPS-only behind one TLS-terminating proxy (docker-compose.yml, .env.example).
`python manage.py check --deploy --fail-level WARNING` passes with the
environment .env.example documents."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")

# Placeholders a copied example or an old default would carry; and Django's own
# bar for a key (security.W009): 50+ characters, 5+ distinct, not a throwaway.
PLACEHOLDER_SECRET_KEYS = {"change-me", "build-only", "insecure-demo-key-change-me-in-production"}
if (
    SECRET_KEY in PLACEHOLDER_SECRET_KEYS
    or SECRET_KEY.startswith("django-insecure-")
    or len(SECRET_KEY) < 50
    or len(set(SECRET_KEY)) < 5
):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is a placeholder or too weak (it needs 50+ random characters). "
        "Generate one: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )

# HTTPS: the proxy terminates TLS and says so in X-Forwarded-Proto (trusted:
# only the proxy can reach gunicorn). /healthz is answered before any of this
# (config.health), so plain-HTTP container health checks still work.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HSTS is a promise browsers keep for its whole duration: off unless set
# (.env.example sets a year, with subdomains and preload).
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
