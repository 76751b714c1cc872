"""POST /api/v1/notifications: the hot path, as a native async view.

Why not a DRF view: under ASGI Django runs a sync view in a thread of its own
per request (a ``ThreadSensitiveContext``), and that thread opens its own
database connection, for every publish. Here the request is parsed and
validated on the event loop with the same pieces the DRF views use
(authentication, serializer, exception handler), and the database work runs
on a small pool of long-lived threads that keep their connections, where
concurrent publishes also share commits (notifications/group_commit.py).

The OpenAPI document still describes this endpoint through ``PublishView``
(api/views.py), attached below as the view's ``cls``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions
from rest_framework import serializers as drf_serializers

from api import serializers as s
from api.authentication import Publisher, bearer_credential, publisher_for_secret
from api.errors import PayloadTooLarge, exception_handler
from api.parsers import parse_json_body, require_json_content_type
from notifications import metrics, services
from notifications.db import off_loop
from notifications.ratelimit import publisher_limiter

IDEMPOTENCY_HEADER = "Idempotency-Key"
AUTH_HEADER = 'Bearer realm="publisher"'

# Writers block while a group leader commits for them, so the pool is wider
# than the database could use on its own.
_WRITERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="publish")


def _authenticate(request: HttpRequest) -> Publisher:
    header = request.META.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
    secret = bearer_credential(header)
    if secret is None:
        raise exceptions.NotAuthenticated()
    publisher = publisher_for_secret(secret)
    if publisher is None:
        raise exceptions.AuthenticationFailed("Invalid publisher key.")
    return publisher


def _parse(request: HttpRequest) -> Any:
    require_json_content_type(request.content_type)
    try:
        body = request.body
    except RequestDataTooBig as exc:  # in-process calls skip the ASGI BodyLimit
        limit: int = settings.NOTIFY_MAX_BODY_BYTES
        raise PayloadTooLarge(f"Request body is over the {limit} byte limit.") from exc
    return parse_json_body(body) if body else {}


def _idempotency_key(request: HttpRequest) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 1 <= len(key) <= 255:
        raise drf_serializers.ValidationError({IDEMPOTENCY_HEADER: ["Must be 1..255 characters."]})
    return key


def _store(publisher: Publisher, publication: services.Publication) -> services.PublishResult:
    """In a writer thread: the shared rate limit (it may call Redis), then the commit."""
    publisher_limiter.check(publisher.name)
    return services.notifications_publish(
        source=publication.source,
        recipients=publication.recipients,
        type=publication.type,
        title=publication.title,
        body=publication.body,
        data=publication.data,
        idempotency_key=publication.idempotency_key,
        request_hash=publication.request_hash,
    )


async def _store_async(
    publisher: Publisher, publication: services.Publication
) -> services.PublishResult:
    if settings.NOTIFY_PUBLISH_IN_REQUEST_THREAD:
        # In-process tests: the database work must run in the test's thread,
        # inside its transaction (the live tests cover the writer threads).
        # Plain sync_to_async: closing "old" connections there would close
        # the test's own connection inside its transaction.
        store = sync_to_async(_store, thread_sensitive=True)
    else:
        store = off_loop(_store, executor=_WRITERS)
    result: services.PublishResult = await store(publisher, publication)
    return result


async def _publish(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        raise exceptions.MethodNotAllowed(request.method or "")
    publisher = _authenticate(request)
    body = s.PublishRequest(data=_parse(request))
    body.is_valid(raise_exception=True)
    data = body.validated_data
    if not publisher.allows(data["type"]):
        raise exceptions.PermissionDenied(
            f"Publisher key {publisher.name!r} may not publish type {data['type']!r}; "
            f"allowed: {' | '.join(publisher.types)}."
        )
    key = _idempotency_key(request)
    request_hash = ""
    if key is not None:
        request_hash = services.request_hash(data)
    publication = services.Publication(
        source=publisher.name,
        recipients=data["recipients"],
        type=data["type"],
        title=data["title"],
        body=data["body"],
        data=data["data"],
        idempotency_key=key,
        request_hash=request_hash,
    )
    result = await _store_async(publisher, publication)
    response = HttpResponse(
        orjson.dumps({"event_id": str(result.event_id), "recipients": result.recipients}),
        status=202,
        content_type="application/json",
    )
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def _render_error(exc: Exception) -> HttpResponse | None:
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        exc.auth_header = AUTH_HEADER  # type: ignore[union-attr]
    answer = exception_handler(exc, {})
    if answer is None:
        return None
    response = HttpResponse(
        orjson.dumps(answer.data, option=orjson.OPT_NON_STR_KEYS),
        status=answer.status_code,
        content_type="application/json",
    )
    for name, value in answer.items():
        if name.lower() != "content-type":
            response[name] = value
    return response


async def publish(request: HttpRequest) -> HttpResponse:
    started = time.perf_counter()
    try:
        response = await _publish(request)
    except Exception as exc:
        rendered = _render_error(exc)
        if rendered is None:
            raise
        return rendered
    metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
    return response
