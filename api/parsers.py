"""JSON only, size-limited, parsed with orjson (strict: no NaN, no trailing data).

Two more refusals (400) before any validation (docs/security.md):

* nesting deeper than ``MAX_JSON_DEPTH`` (orjson parses up to 1,023 levels,
  which later recursive code, ``json.dumps`` included, cannot handle);
* integers outside -2**63 .. 2**64-1, which orjson turns into floats
  silently: they are refused rather than stored as a different number
  (integers inside that range are kept exact).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser
from rest_framework.request import Request

from api.errors import PayloadTooLarge

MAX_JSON_DEPTH = 64
_INT64 = 2**63
_UINT64 = 2**64


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
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"JSON parse error - {exc}") from exc
    # A huge integral float may be an integer literal over 64 bits, or a
    # float such as 1e19: only the exact parse (the depth is known to be
    # small now) can tell.
    if _walk(
        value, lambda v: isinstance(v, float) and v.is_integer() and abs(v) >= _INT64
    ) and _walk(json.loads(raw), lambda v: type(v) is int and not -_INT64 <= v < _UINT64):
        raise ParseError("Integers must fit in 64 bits (-2**63 .. 2**64-1).")
    return value


def _walk(value: Any, suspect: Any) -> bool:
    """Whether any scalar in ``value`` is ``suspect``; ParseError when nested
    deeper than MAX_JSON_DEPTH. Iterative: no recursion to overflow."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    found = False
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif suspect(item):
            found = True
    return found


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
