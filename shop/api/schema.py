"""OpenAPI schema generation for the shop's API views (drf-spectacular)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework.serializers import BaseSerializer


class ApiAutoSchema(AutoSchema):
    """Names a serializer nested in a view after the view: the
    InputSerializer of CheckoutApi becomes the component "CheckoutInput", so
    the one-class-per-action style does not make every endpoint's "Input"
    collide in the schema."""

    def get_serializer_name(self, serializer: BaseSerializer, direction: str) -> str:
        cls = type(serializer)
        outer = cls.__qualname__.split(".")[0]
        if outer == cls.__name__ or "<locals>" in cls.__qualname__:
            return super().get_serializer_name(serializer, direction)
        return outer.removesuffix("Api") + cls.__name__


class CsrfEnforcedSessionScheme(OpenApiAuthenticationExtension):
    target_class = "shop.api.authentication.CsrfEnforcedSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "Django's session cookie; anonymous shoppers get one on their first request. "
            "Every POST, PATCH and DELETE must also send the csrftoken cookie's value in the "
            "X-CSRFToken header (any GET sets that cookie).",
        }
