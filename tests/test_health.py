"""GET /healthz: the database's status, bare, for any probe."""

from unittest import mock

import pytest
from django.db.utils import OperationalError


@pytest.mark.django_db
def test_healthz_reports_ok_and_creates_no_session(client):
    from django.contrib.sessions.models import Session

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert Session.objects.count() == 0


@pytest.mark.django_db
def test_healthz_is_a_bare_503_when_the_database_is_down(client, caplog):
    failure = OperationalError(
        'connection to server at "db.internal" (10.0.3.7), port 5432 failed: password authentication failed'
    )
    with mock.patch("config.health.connection.cursor", side_effect=failure):
        response = client.get("/healthz")

    assert response.status_code == 503
    # No host, port or error text for a stranger: the log has them.
    assert response.content == b'{"status": "unavailable"}'
    assert "db.internal" in caplog.text


@pytest.mark.django_db
def test_a_plain_http_probe_on_any_host_is_answered_under_production_security(client, settings):
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    settings.SECURE_SSL_REDIRECT = True

    probe = client.get("/healthz", HTTP_HOST="10.0.0.5:8000")
    page = client.get("/", HTTP_HOST="10.0.0.5:8000")

    assert (probe.status_code, probe.json()) == (200, {"status": "ok"})
    assert page.status_code == 400  # everything else still checks the host


def test_the_favicon_is_found_where_browsers_look_for_it(client):
    response = client.get("/favicon.ico", follow=True)

    assert response.redirect_chain[0][1] == 301
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
