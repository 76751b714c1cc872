"""Server-Sent Events: ``GET /api/v1/me/stream``, a thin adapter over the stream engine.

Served at the ASGI layer, in front of Django (like the publish endpoint):
an open stream holds no thread and no Django request cycle, only uvicorn's
connection, the task uvicorn runs the request in (waiting in ``receive`` for
the client to go) and the engine's session. Everything the stream is
(replay, order, ``ready``, read sync, the outbox bound, expiry, drain) is the
engine's; this module checks the request, encodes events and ends the
response.

Keep-alives come from one task for the whole process, not a timer per
stream: every ``KEEPALIVE_SECONDS`` each idle stream gets a ``: ping``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import orjson

from notifications.credentials import bearer_credential
from notifications.ids import parse_id
from notifications.runtime import state
from notifications.scope import query_param
from notifications.tokens import InvalidToken, verify_user_token_async
from realtime import cors, frames
from realtime.engine import StreamSession
from realtime.frames import CloseCode, ServerFrame
from service.logs import request_id
from service.middleware import host_allowed, scope_headers, scope_request_id, security_headers

logger = logging.getLogger(__name__)

PATH = "/api/v1/me/stream"
KEEPALIVE_SECONDS = 10.0  # the contract: a comment at least every 15 s
RETRY_MS = 1000  # EventSource's reconnect delay after a dropped stream
END_TIMEOUT = 1.0  # how long the close event may wait for a client to take it
# The API's ``Cache-Control: no-store`` gives way to the contract's ``no-cache``.
_SECURITY = [
    (k.lower().encode(), v.encode())
    for k, v in security_headers(PATH).items()
    if k.lower() != "cache-control"
]
_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"x-accel-buffering", b"no"),
]
Headers = list[tuple[bytes, bytes]]


_WANTED = frozenset({b"host", b"authorization", b"origin", b"last-event-id", b"x-request-id"})


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: Headers | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or []


class StreamEndpoint:
    """Serves the stream path; passes everything else to ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        headers = scope_headers(scope, _WANTED)
        rid = scope_request_id(headers)
        token = request_id.set(rid)
        base = [(b"x-request-id", rid.encode()), (b"cache-control", b"no-cache"), *_SECURITY]
        try:
            await _serve(scope, headers, receive, send, base)
        except Refused as refused:
            await _answer(send, refused.status, {"detail": refused.detail}, base + refused.headers)
        finally:
            request_id.reset(token)


async def _serve(
    scope: dict[str, Any], headers: dict[bytes, bytes], receive: Any, send: Any, base: Headers
) -> None:
    if not host_allowed(headers.get(b"host", b"")):
        raise Refused(400, "Invalid Host header.")
    raw_origin = headers.get(b"origin")
    origin = None if raw_origin is None else raw_origin.decode("latin-1")
    if origin is not None:
        if not cors.allowed(PATH, origin):
            raise Refused(403, "Origin not allowed.")
        if scope["method"] == "OPTIONS":
            await _answer(send, 204, None, base + cors.preflight(origin))
            return
        # In place: the refusals below (answered by the caller with ``base``)
        # carry CORS too, so that the page can read them.
        base.extend(cors.response_headers(origin))
    if scope["method"] != "GET":
        raise Refused(405, f'Method "{scope["method"]}" not allowed.', [(b"allow", b"GET")])
    if state.shutting_down:
        raise Refused(503, "The server is shutting down.", [(b"retry-after", b"1")])
    user_id, expires_at = await _authenticate(scope, headers)
    since = _since(scope, headers)
    transport = SseTransport(send)
    session = StreamSession(transport, user_id)
    try:
        if not await session.open():
            raise Refused(503, "Channel layer unavailable.", [(b"retry-after", b"1")])
        start = {"type": "http.response.start", "status": 200, "headers": _STREAM_HEADERS + base}
        await send(start)
        await send(
            {"type": "http.response.body", "body": b"retry: %d\n\n" % RETRY_MS, "more_body": True}
        )
        _streams.add(session)
        _start_keepalive()
        await session.start(since=since, expires_at=expires_at)
        while (await receive())["type"] != "http.disconnect":
            pass
        await session.disconnected()
    finally:
        _streams.discard(session)
        session.release()


async def _authenticate(scope: dict[str, Any], headers: dict[bytes, bytes]) -> tuple[str, float]:
    """(user id, token expiry) from ``Authorization: Bearer`` or ``?token=``."""
    authorization = headers.get(b"authorization")
    if authorization is not None:
        token = bearer_credential(authorization)
    else:
        token = query_param(scope, "token")
    try:
        if not token:
            raise InvalidToken("no token")
        claims = await verify_user_token_async(token)
    except InvalidToken:
        raise Refused(
            401, "Invalid or expired user token.", [(b"www-authenticate", b"Bearer")]
        ) from None
    return claims.user_id, claims.expires_at


def _since(scope: dict[str, Any], headers: dict[bytes, bytes]) -> str | None:
    """``Last-Event-ID`` (what EventSource resends) wins over ``?since``."""
    raw = headers.get(b"last-event-id")
    since = raw.decode("latin-1").strip() if raw is not None else query_param(scope, "since")
    if since is not None and parse_id(since) is None:
        raise Refused(400, "Last-Event-ID and since must be a notification id (digits).")
    return since


async def _answer(send: Any, status: int, body: Any, headers: Headers) -> None:
    data = b"" if body is None else orjson.dumps(body)
    kind = [(b"content-type", b"application/json")] if body is not None else []
    length = [(b"content-length", str(len(data)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": kind + length + headers}
    )
    await send({"type": "http.response.body", "body": data})


class SseTransport:
    """The engine's frames as events on one HTTP response."""

    __slots__ = ("send",)

    def __init__(self, send: Any) -> None:
        self.send = send

    def write_now(self, frame: ServerFrame) -> bool:
        """Never: an HTTP response's body goes through uvicorn's ``send``."""
        return False

    async def write(self, frame: ServerFrame) -> None:
        body = frames.sse_event(frame)
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def end(self, code: CloseCode) -> None:
        """The ``close`` event, then the end of the response; a client that
        does not take them (the slow client of 4008) is cut off instead, so
        it cannot pin the unsent data."""
        # 1012: EventSource's own reconnect spreads over a random delay.
        retry = random.randint(250, 2500) if code == CloseCode.RESTART else None  # noqa: S311
        try:
            async with asyncio.timeout(END_TIMEOUT):
                body = frames.sse_close(code, retry_ms=retry)
                await self.send({"type": "http.response.body", "body": body, "more_body": False})
        except TimeoutError:
            _abort(self.send)


def _abort(send: Any) -> None:
    """Drop the connection at once. ASGI has no abort: uvicorn's ``send`` is
    a method of its request cycle, which holds the asyncio transport."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
    else:
        logger.warning("cannot abort a stream that does not read (not uvicorn?)")


# -- keep-alives: one task for every stream of the process ---------------------

_streams: set[StreamSession] = set()
_keepalive: asyncio.Task[None] | None = None


def _start_keepalive() -> None:
    global _keepalive
    if _keepalive is None:
        _keepalive = asyncio.get_running_loop().create_task(_keepalive_forever())
        state.background.add(_keepalive)
        _keepalive.add_done_callback(state.background.discard)


async def _keepalive_forever() -> None:
    global _keepalive
    try:
        while _streams:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            for session in list(_streams):
                session.keepalive()
    finally:
        _keepalive = None
