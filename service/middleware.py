"""HTTP middleware: async-capable only (a sync one forces a thread hop)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from service.logs import request_id

_VALID_ID = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")

Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def request_id_middleware(get_response: Handler) -> Handler:
    """Take X-Request-ID when it is sane, else make one; echo it on the response."""
    if not iscoroutinefunction(get_response):
        raise TypeError("request_id_middleware needs an async handler chain")

    async def middleware(request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        try:
            response = await get_response(request)
        finally:
            request_id.reset(token)
        response["X-Request-ID"] = rid
        return response

    markcoroutinefunction(middleware)
    return middleware


request_id_middleware.async_capable = True  # type: ignore[attr-defined]
request_id_middleware.sync_capable = False  # type: ignore[attr-defined]
