"""OpenAPI extras: the two bearer schemes, the error answers of each operation,
examples that work as they are in Swagger's "Try it out" (the README's body),
and the operations no Django route serves: publish, and the event stream
(api/schema_stream.py).

Imported by ``api.apps`` so drf-spectacular finds the extensions.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import serializers as s
from api.authentication import PublisherKeyAuthentication
from api.parsers import LimitedJSONParser
from api.publish import IDEMPOTENCY_HEADER
from api.publish_asgi import PATH as PUBLISH_PATH
from api.schema_stream import PATH as STREAM_PATH
from api.schema_stream import StreamOperation


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
    404: "Not found: no such resource for this user (or Web Push is off)",
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


class PublishOperation(APIView):
    """Schema only, never routed: POST /api/v1/notifications is served by
    api/publish_asgi.py in front of Django. This view carries the operation's
    description into the document (``add_asgi_operations``)."""

    authentication_classes = [PublisherKeyAuthentication]
    parser_classes = [LimitedJSONParser]

    @extend_schema(
        request=s.PublishRequest,
        responses={202: s.PublishResponse, **errors(400, 401, 403, 413, 415, 422, 429, 503)},
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                description="Optional: a retry with the same key and body is not stored twice.",
            )
        ],
        examples=[OpenApiExample("An order shipped", value=PUBLISH_EXAMPLE, request_only=True)],
        summary="Publish a notification to one or many users",
        description="Stores one notification per recipient and pushes each, at once, to "
        "every open socket of that user. 202 once stored.",
    )
    def post(self, request: Request) -> Response:
        raise NotImplementedError("schema only: never routed")


Endpoint = tuple[str, str, str, Any]


def add_asgi_operations(endpoints: list[Endpoint]) -> list[Endpoint]:
    """drf-spectacular preprocessing hook (SPECTACULAR_SETTINGS): the
    operations of the URLconf, plus publish and the event stream, served
    outside it."""
    publish, stream = PublishOperation.as_view(), StreamOperation.as_view()
    return [
        *endpoints,
        (PUBLISH_PATH, PUBLISH_PATH.lstrip("/"), "POST", publish),
        (STREAM_PATH, STREAM_PATH.lstrip("/"), "GET", stream),
    ]
