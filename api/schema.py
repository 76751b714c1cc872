"""OpenAPI extras: the two bearer schemes, the error answers of each operation, and
examples that work as they are in Swagger's "Try it out" (the README's body).

Imported by ``api.apps`` so drf-spectacular finds the extensions.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from api import serializers as s


class PublisherKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "api.authentication.PublisherKeyAuthentication"
    name = "publisherKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A publisher secret from NOTIFY_API_KEYS."
            + (" In dev mode (DEBUG on), `dev-publisher-key` works." if settings.DEBUG else ""),
        }


class UserTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "api.authentication.UserTokenAuthentication"
    name = "userToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A user JWT minted by the host application (sub, exp)."
            + (
                " In dev mode, mint one with `.venv/bin/python manage.py issue_token alice`."
                if settings.DEBUG
                else ""
            ),
        }


# The README's publish body: what "Try it out" sends unless edited.
PUBLISH_EXAMPLE: dict[str, Any] = {
    "recipients": ["alice"],
    "type": "order.shipped",
    "title": "Your order is on its way",
    "data": {"order_id": 1234},
}


def path_example(name: str, value: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, str, OpenApiParameter.PATH, examples=[OpenApiExample(value, value=value)]
    )


_DESCRIPTIONS = {
    400: 'Invalid input: DRF field errors, e.g. {"recipients": ["..."]}',
    401: "Missing or wrong credentials",
    403: "The publisher key may not publish this notification type",
    404: "No such notification for this user",
    413: "Request body over the limit",
    415: "Content-Type is not application/json",
    422: "Idempotency-Key reused with a different body",
    429: "Over the publisher's rate limit (see Retry-After)",
    503: "Storage unreachable; nothing stored (see Retry-After)",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Error answers: field errors for 400, ``{"detail": ...}`` for the others."""
    return {
        code: OpenApiResponse(
            OpenApiTypes.OBJECT if code == 400 else s.ErrorDetail,
            description=_DESCRIPTIONS[code],
        )
        for code in codes
    }
