"""Refuse oversized HTTP bodies before Django reads them (Django's ASGI
handler spools the whole body to memory/disk before any view runs)."""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings

from service.middleware import security_headers


class BodyTooLarge(Exception):
    pass


async def reply_413(send: Any, limit: int, path: str) -> None:
    body = orjson.dumps({"detail": f"Request body is over the {limit} byte limit."})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *((k.encode(), v.encode()) for k, v in security_headers(path).items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# How much of an oversized body is read and dropped before the 413: the
# server closes the connection after it, and closing on unread data resets
# the connection, so a client still uploading would see a reset instead of
# the 413. Bodies declared larger than this, and streamed bodies without a
# Content-Length, get the 413 at once.
DRAIN_BYTES = 16 * 1024 * 1024


async def _drain(receive: Any, budget: int) -> None:
    """Read and drop the rest of the body, up to ``budget`` bytes."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def refused_as_declared(scope: dict[str, Any], receive: Any, send: Any, limit: int) -> bool:
    """A Content-Length over ``limit`` (or not a number) is answered 413 here
    (after draining what a client may still be uploading); True if it was."""
    for name, value in scope.get("headers", []):
        if name == b"content-length" and (not value.isdigit() or int(value) > limit):
            if value.isdigit() and int(value) <= DRAIN_BYTES:
                await _drain(receive, DRAIN_BYTES)
            await reply_413(send, limit, scope.get("path", ""))
            return True
    return False


class BodyLimit:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        limit: int = settings.NOTIFY_MAX_BODY_BYTES
        if await refused_as_declared(scope, receive, send, limit):
            return
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            # A streamed (chunked) body has no announced end to drain to.
            await reply_413(send, limit, scope.get("path", ""))
