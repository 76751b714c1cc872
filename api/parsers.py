"""JSON only, size-limited, parsed with orjson (strict: no NaN, no trailing data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser
from rest_framework.request import Request

from api.errors import PayloadTooLarge


class LimitedJSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit: int = settings.NOTIFY_MAX_BODY_BYTES
        return parse_json_body(stream.read(limit + 1))


def parse_json_body(raw: bytes) -> Any:
    """413 over the body limit, 400 for anything that is not strict JSON."""
    limit: int = settings.NOTIFY_MAX_BODY_BYTES
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request body is over the {limit} byte limit.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"JSON parse error - {exc}") from exc


def require_json_content_type(content_type: str | None) -> None:
    """415 for anything but application/json, including no Content-Type at all."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        return
    if not media:
        raise UnsupportedMediaType(
            "(none)",
            detail='No Content-Type: send the body as JSON with "Content-Type: application/json".',
        )
    raise UnsupportedMediaType(
        media,
        detail=f'Unsupported media type "{media}": send the body as JSON with '
        '"Content-Type: application/json".',
    )


def require_json(request: Request) -> None:
    require_json_content_type(request.content_type)
