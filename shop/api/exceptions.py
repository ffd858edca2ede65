"""Every API error is JSON: {"detail": "<message>", "code": "<code>", ...}.

Domain errors from shop services map to statuses here, in one table.
Anything unexpected is left to Django (logged, reported, then answered by
shop.views.server_error, which speaks JSON under /api/), so a bug is never
hidden behind a tidy response and never becomes an HTML page.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from shop.exceptions import (
    CheckoutExpired,
    EmptyCart,
    InvalidQuantity,
    ItemNotInCart,
    OutOfStock,
    ProductUnavailable,
    ShopError,
)

DOMAIN_ERRORS: dict[type[ShopError], tuple[int, str]] = {
    InvalidQuantity: (status.HTTP_400_BAD_REQUEST, "invalid_quantity"),
    EmptyCart: (status.HTTP_400_BAD_REQUEST, "empty_cart"),
    ItemNotInCart: (status.HTTP_404_NOT_FOUND, "not_in_cart"),
    OutOfStock: (status.HTTP_409_CONFLICT, "out_of_stock"),
    ProductUnavailable: (status.HTTP_409_CONFLICT, "product_unavailable"),
    CheckoutExpired: (status.HTTP_409_CONFLICT, "checkout_expired"),
}


def json_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ShopError):
        return _domain_error_response(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "detail": _first_message(response.data),
            "code": "invalid",
            "errors": response.data,
        }
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {
            "detail": str(response.data["detail"]),
            "code": _code(exc, response.status_code),
        }
    return response


def _code(exc: Exception, status_code: int) -> str:
    # Django's Http404 and PermissionDenied reach DRF as plain exceptions.
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    if isinstance(code, str):
        return code
    return {404: "not_found", 403: "permission_denied"}.get(status_code, "error")


def _domain_error_response(exc: ShopError) -> Response:
    status_code, code = next(
        (mapping for cls, mapping in DOMAIN_ERRORS.items() if isinstance(exc, cls)),
        (status.HTTP_400_BAD_REQUEST, "invalid"),
    )
    data: dict[str, Any] = {"detail": exc.message, "code": code}
    if isinstance(exc, OutOfStock):
        data["products"] = [
            {"id": s.product_id, "name": s.name, "requested": s.requested, "available": s.available}
            for s in exc.shortages
        ]
    return Response(data, status=status_code)


def _first_message(errors: Any, path: str = "") -> str:
    """A readable one-line summary of a validation error, e.g. "quantity: A valid integer is required."."""
    if isinstance(errors, dict):
        for field, value in errors.items():
            prefix = (
                path if field == "non_field_errors" else (f"{path}.{field}" if path else str(field))
            )
            return _first_message(value, prefix)
    if isinstance(errors, list) and errors:
        return _first_message(errors[0], path)
    return f"{path}: {errors}" if path else str(errors)
