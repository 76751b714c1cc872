"""POST /api/v1/notifications as a plain ASGI endpoint, in front of Django.

Django's ASGI handler costs more than the publish itself: per request it
enters a ``ThreadSensitiveContext`` and hops to a thread three times (the
request_started and request_finished signals, ``response.close``), and it
builds an ``HttpRequest`` and runs the middleware chain. This endpoint does
only what those steps do for this route, and ``api.publish.publish_call``
does the rest:

* the Host header is checked against ``ALLOWED_HOSTS`` (Django's rule);
* ``X-Request-ID`` is taken or made, set for the logs, and echoed;
* the answer carries the same security headers as every other response
  (service/middleware.py);
* another method is answered 405 with ``Allow: POST``, as DRF would;
* an unexpected error is logged and answered 500 with a JSON body.

service/asgi.py hands it this path first; every other path goes to the
other layers and Django. There is no Django view for this route: the
OpenAPI document describes it through a schema-only view (api/schema.py).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import MethodNotAllowed

from api.publish import IDEMPOTENCY_HEADER, Answer, error_answer, publish_call
from notifications import metrics
from notifications.runtime import state
from service.asgi_limits import BodyTooLarge, refused_as_declared, reply_413
from service.logs import request_id
from service.middleware import host_allowed, new_request_id, scope_headers, security_headers

logger = logging.getLogger(__name__)

PATH = "/api/v1/notifications"
_IDEMPOTENCY = IDEMPOTENCY_HEADER.lower().encode()
_WANTED = frozenset({b"host", b"authorization", b"content-type", b"x-request-id", _IDEMPOTENCY})
_SECURITY = [(k.encode(), v.encode()) for k, v in security_headers(PATH).items()]


class PublishEndpoint:
    """Serves POST /api/v1/notifications, and only that path: the ASGI
    application hands it this path before any other layer
    (service/asgi.py), so it does their work for it itself, once: the
    request id (``RequestIdScope``), the live-request count
    (``LiveRequests``) and the body limit (``BodyLimit``). Four layers of
    coroutine calls and a second request-id lookup per publish fewer
    (docs/performance.md, "Event loop per publish, fifth round")."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = scope_headers(scope, _WANTED)
        # Repeated X-Request-ID headers are joined with "," (then not sane:
        # a new id), as RequestIdScope does for every other route.
        rid = new_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        token = request_id.set(rid)
        state.live_requests += 1
        try:
            limit: int = settings.NOTIFY_MAX_BODY_BYTES
            if await refused_as_declared(scope, receive, send, limit):
                return
            try:
                answer = await _answer(scope, headers, receive, limit)
            except BodyTooLarge:
                # A streamed (chunked) body has no announced end to drain to.
                await reply_413(send, limit, PATH)
                return
            if answer is not None:
                await _send(send, answer, rid)
        finally:
            state.live_requests -= 1
            request_id.reset(token)


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole body; None if the client went away first. Raises
    BodyTooLarge past ``limit`` bytes (a body without a Content-Length)."""
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _server_host(scope: dict[str, Any]) -> bytes:
    """No Host header (HTTP/1.0): the server address, as Django's SERVER_NAME."""
    server = scope.get("server") or ("", None)
    return f"{server[0]}:{server[1]}".encode() if server[1] else str(server[0]).encode()


async def _answer(
    scope: dict[str, Any], headers: dict[bytes, bytes], receive: Any, limit: int
) -> Answer | None:
    if not host_allowed(headers.get(b"host") or _server_host(scope)):
        logger.warning("publish refused: Host header not in ALLOWED_HOSTS")
        return Answer(400, orjson.dumps({"detail": "Invalid Host header."}))
    if scope["method"] != "POST":
        return _method_not_allowed(scope["method"])
    body = await _read_body(receive, limit)
    if body is None:
        return None
    key = headers.get(_IDEMPOTENCY)
    try:
        return await publish_call(
            authorization=headers.get(b"authorization", b""),
            content_type=headers.get(b"content-type", b"").decode("latin-1"),
            idempotency_key=None if key is None else key.decode("latin-1"),
            body=body,
        )
    except Exception:
        logger.exception("publish failed")
        return Answer(500, orjson.dumps({"detail": "Internal server error."}))


def _method_not_allowed(method: str) -> Answer:
    answer = error_answer(MethodNotAllowed(method))
    assert answer is not None  # an APIException always has its answer
    answer.headers["Allow"] = "POST"
    return answer


async def _send(send: Any, answer: Answer, rid: str) -> None:
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(answer.body)).encode()),
        (b"x-request-id", rid.encode()),
        *_SECURITY,
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()),
    ]
    start = {"type": "http.response.start", "status": answer.status, "headers": response_headers}
    metrics.count_publish_response(answer.status)
    await send(start)
    await send({"type": "http.response.body", "body": answer.body})
