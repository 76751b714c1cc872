"""OpenAPI for ``GET /api/v1/me/stream`` (Server-Sent Events), which no Django
route serves: realtime/sse.py answers it at the ASGI layer. A schema-only view
carries the operation into the document (``api.schema.add_asgi_operations``);
docs/sse.md is the reference it summarises.
"""

from __future__ import annotations

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
from api.authentication import UserTokenAuthentication

# realtime.sse.PATH: api/ may not import a sibling transport (lint-imports);
# tests/api/test_ops.py checks that the two agree.
PATH = "/api/v1/me/stream"
EVENT_STREAM = "text/event-stream"

_EVENTS = """\
`retry: 1000` first, then events until the server ends the response:

* `notification` (its `id:` is the notification id, so `EventSource` resumes by
  itself): the replay after `Last-Event-ID` / `since`, then live notifications,
  in order, without gaps or duplicates. `data` is the notification as JSON.
* `ready`, once, after the replay: `{"user", "replayed", "complete", "unread", "last_id"}`.
* `read`: ids marked read elsewhere (another tab, a socket, or
  `POST /api/v1/me/notifications/read`): `{"ids": [...]}`.
* `close`, last: `{"code", "detail"}`; 4401 the token expired (reconnect with a
  fresh one), 1012 the server restarts (reconnect after the `retry:` it sends),
  4008 the client read too slowly, 1011 a server error (reconnect and resume).

`: ping` comments every 10 s while the stream is idle. docs/sse.md has the rest."""

_STREAM_EXAMPLE = (
    "retry: 1000\n\n"
    'id: 1187\nevent: notification\ndata: {"id":"1187","type":"order.shipped",'
    '"title":"Your order is on its way","body":"","data":{"order_id":1234},'
    '"source":"shop","created_at":"2026-11-23T20:01:02.123456Z","read_at":null}\n\n'
    'event: ready\ndata: {"user":"alice","replayed":1,"complete":true,"unread":1,'
    '"last_id":"1187"}\n\n'
)


def _refusal(description: str) -> OpenApiResponse:
    """Refusals come before the stream starts, as JSON ``{"detail": ...}``."""
    return OpenApiResponse(s.ErrorDetail, description=description)


class StreamOperation(APIView):
    """Schema only, never routed (see the module docstring)."""

    authentication_classes = [UserTokenAuthentication]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "token",
                str,
                OpenApiParameter.QUERY,
                description="The user JWT, for clients that cannot send headers "
                "(`EventSource`); `Authorization: Bearer` wins when both are sent.",
            ),
            OpenApiParameter(
                "since",
                str,
                OpenApiParameter.QUERY,
                pattern="^[0-9]+$",
                description="Replay the notifications after this id first.",
            ),
            OpenApiParameter(
                "Last-Event-ID",
                str,
                OpenApiParameter.HEADER,
                pattern="^[0-9]+$",
                description="What `EventSource` resends on reconnect; wins over `since`.",
            ),
        ],
        responses={
            (200, EVENT_STREAM): OpenApiResponse(
                OpenApiTypes.STR,
                description="The event stream (below)",
                examples=[OpenApiExample("A replay of one", value=_STREAM_EXAMPLE)],
            ),
            (400, "application/json"): _refusal(
                "`Last-Event-ID` / `since` is not a notification id, or a Host not allowed"
            ),
            (401, "application/json"): _refusal("No user token, or an invalid or expired one"),
            (403, "application/json"): _refusal("An Origin header that is not allowed"),
            (503, "application/json"): _refusal(
                "Shutting down, or the channel layer (Redis) is unreachable (see Retry-After)"
            ),
        },
        summary="Stream the user's notifications (Server-Sent Events)",
        description="The WebSocket's stream over plain HTTP: replay, `ready`, live "
        "notifications and read sync, as `text/event-stream`. The response does not "
        "end until the client goes or the server sends `close`.\n\n" + _EVENTS,
    )
    def get(self, request: Request) -> Response:
        raise NotImplementedError("schema only: never routed")
