"""POST /api/v1/notifications: the hot path, known to no transport.

``publish_call`` takes the parts of a request that matter (the Authorization
and Idempotency-Key headers, the Content-Type, the body) and returns an
``Answer`` (status, JSON body, extra headers). Its one transport is
``api/publish_asgi.py``, a plain ASGI endpoint in front of Django, so that a
publish skips Django's request machinery (a ``ThreadSensitiveContext`` and
three thread hops per request for the request_started/request_finished
signals and ``response.close``). The OpenAPI document describes it through a
schema-only view (api/schema.py).

Parsing and validation run on the event loop; the rate limit and the commit
run on one writer thread, where concurrent publishes share commits
(``services.notifications_publish_async``, notifications/group_commit.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from rest_framework import exceptions
from rest_framework import serializers as drf_serializers

from api import serializers as s
from api.authentication import presented_credential
from api.errors import exception_handler
from api.parsers import parse_json_body, require_json_content_type
from notifications import metrics, publishing, services
from notifications.credentials import Publisher, publisher_for_secret

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


def _hashed(data: dict[str, Any]) -> dict[str, Any]:
    """The fields that make two bodies "the same": ``push`` only when not the
    default, so that keys stored before the field existed still match."""
    if data.get("push") == "auto":
        return {k: v for k, v in data.items() if k != "push"}
    return data


def _check_idempotency_key(key: str | None) -> None:
    if key is not None and not 1 <= len(key) <= 255:
        raise drf_serializers.ValidationError({IDEMPOTENCY_HEADER: ["Must be 1..255 characters."]})


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
    publication = publishing.Publication(
        source=publisher.name,
        recipients=data["recipients"],
        type=data["type"],
        title=data["title"],
        body=data["body"],
        data=data["data"],
        idempotency_key=idempotency_key,
        request_hash="" if idempotency_key is None else publishing.request_hash(_hashed(data)),
        push=data["push"],
    )
    result = await services.notifications_publish_async(publication=publication)
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
