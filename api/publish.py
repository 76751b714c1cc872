"""POST /api/v1/notifications: the hot path, known to no transport.

``publish_call`` takes the parts of a request that matter (the Authorization
and Idempotency-Key headers, the Content-Type, the body) and returns an
``Answer`` (status, JSON body, extra headers). Two transports call it:

* ``api/publish_asgi.py``, the one a running service uses: a plain ASGI
  endpoint in front of Django, so a publish skips Django's request machinery
  (a ``ThreadSensitiveContext`` and three thread hops per request for the
  request_started/request_finished signals and ``response.close``).
* ``publish`` below, a native async Django view, which is what Django's and
  DRF's in-process test clients reach, and what the OpenAPI document
  describes (through ``PublishView`` in api/views.py, attached as ``cls``).

Parsing and validation run on the event loop; the rate limit and the commit
run on one writer thread, where concurrent publishes share commits
(``services.notifications_publish_async``, notifications/group_commit.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions
from rest_framework import serializers as drf_serializers

from api import serializers as s
from api.authentication import Publisher, presented_credential, publisher_for_secret
from api.errors import PayloadTooLarge, exception_handler
from api.parsers import parse_json_body, require_json_content_type
from notifications import metrics, services
from notifications.ratelimit import publisher_limiter

IDEMPOTENCY_HEADER = "Idempotency-Key"
AUTH_HEADER = 'Bearer realm="publisher"'


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _authenticate(authorization: bytes) -> Publisher:
    secret = presented_credential(authorization, "publisher key")
    if secret is None:
        raise exceptions.NotAuthenticated()
    publisher = publisher_for_secret(secret)
    if publisher is None:
        raise exceptions.AuthenticationFailed("Invalid publisher key.")
    return publisher


def _validate(raw: Any) -> dict[str, Any]:
    """The request body's fields: a quick check for well-formed bodies, and
    the serializer (for its exact error messages) for everything else."""
    valid = s.publish_body_if_valid(raw)
    if valid is not None:
        return valid
    body = s.PublishRequest(data=raw)
    body.is_valid(raise_exception=True)
    return dict(body.validated_data)


def _check_idempotency_key(key: str | None) -> None:
    if key is not None and not 1 <= len(key) <= 255:
        raise drf_serializers.ValidationError({IDEMPOTENCY_HEADER: ["Must be 1..255 characters."]})


def _store(publisher: Publisher, publication: services.Publication) -> services.PublishResult:
    """In the request's thread (in-process tests): the rate limit, then the commit."""
    publisher_limiter.check(publisher.name, len(set(publication.recipients)))
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
        # inside its transaction (the live tests cover the writer thread).
        # Plain sync_to_async: closing "old" connections there would close
        # the test's own connection inside its transaction.
        result: services.PublishResult = await sync_to_async(_store, thread_sensitive=True)(
            publisher, publication
        )
        return result
    return await services.notifications_publish_async(publication=publication)


async def _accept(
    *, authorization: bytes, content_type: str, idempotency_key: str | None, body: bytes
) -> Answer:
    publisher = _authenticate(authorization)
    require_json_content_type(content_type)
    data = _validate(parse_json_body(body) if body else {})
    if not publisher.allows(data["type"]):
        raise exceptions.PermissionDenied(
            f"Publisher key {publisher.name!r} may not publish type {data['type']!r}; "
            f"allowed: {' | '.join(publisher.types)}."
        )
    _check_idempotency_key(idempotency_key)
    publication = services.Publication(
        source=publisher.name,
        recipients=data["recipients"],
        type=data["type"],
        title=data["title"],
        body=data["body"],
        data=data["data"],
        idempotency_key=idempotency_key,
        request_hash="" if idempotency_key is None else services.request_hash(data),
    )
    result = await _store_async(publisher, publication)
    answer = orjson.dumps({"event_id": str(result.event_id), "recipients": result.recipients})
    return Answer(202, answer, {"Idempotent-Replayed": "true"} if result.replayed else {})


def error_answer(exc: Exception) -> Answer | None:
    """The contract's answer for ``exc`` (api/errors.py), or None if it is a bug."""
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        exc.auth_header = AUTH_HEADER  # type: ignore[union-attr]
    answer = exception_handler(exc, {})
    if answer is None:
        return None
    headers = {name: value for name, value in answer.items() if name.lower() != "content-type"}
    body = orjson.dumps(answer.data, option=orjson.OPT_NON_STR_KEYS)
    return Answer(answer.status_code, body, headers)


async def publish_call(
    *, authorization: bytes, content_type: str, idempotency_key: str | None, body: bytes
) -> Answer:
    """One publish request, from its parts to its answer (raises only on bugs)."""
    started = time.perf_counter()
    try:
        answer = await _accept(
            authorization=authorization,
            content_type=content_type,
            idempotency_key=idempotency_key,
            body=body,
        )
    except Exception as exc:
        rendered = error_answer(exc)
        if rendered is None:
            raise
        return rendered
    metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
    return answer


def _request_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig as exc:  # in-process calls skip the ASGI BodyLimit
        limit: int = settings.NOTIFY_MAX_BODY_BYTES
        raise PayloadTooLarge(f"Request body is over the {limit} byte limit.") from exc


async def publish(request: HttpRequest) -> HttpResponse:
    """The Django view over ``publish_call``."""
    if request.method != "POST":
        answer = error_answer(exceptions.MethodNotAllowed(request.method or ""))
        assert answer is not None
        answer.headers["Allow"] = "POST"
    else:
        try:
            body = _request_body(request)
        except PayloadTooLarge as exc:
            answer = error_answer(exc)
        else:
            answer = await publish_call(
                authorization=request.META.get("HTTP_AUTHORIZATION", "").encode(
                    "latin-1", "replace"
                ),
                content_type=request.META.get("CONTENT_TYPE", ""),
                idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
                body=body,
            )
    assert answer is not None
    response = HttpResponse(answer.body, status=answer.status, content_type="application/json")
    for name, value in answer.headers.items():
        response[name] = value
    return response
