"""The health probe for load balancers and docker-compose: GET /healthz.

200 {"status": "ok"} when the database answers, 503 {"status": "unavailable"}
when it does not: a bare status, with no host, port or error text for a
stranger to read (the error goes to the log). Redis is not checked: the store
keeps serving (with degraded learning) while it is down.

The middleware answers it first in the stack, before the host check, the HTTPS
redirect and the session: a probe over plain HTTP on the container's own
address gets the real status, not a 400 or a redirect, and creates no session.
"""

import logging
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"


def healthz(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any database failure means "not ready"
        logger.exception("Health check: the database did not answer")
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)
