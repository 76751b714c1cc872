"""The WebSocket transport: a thin adapter over the stream engine.

The handshake (after ``ws_auth.SocketEntry`` checked Origin and token), frames
in and out, and the close; ordering, replay, ``ready``, read sync, the
outbox, expiry and the drain are the engine's (realtime/engine.py).

It is a plain ASGI callable rather than a channels consumer: the layer
delivers straight to the engine (``delivery.open_channel``), so nothing here
needs channels' per-socket queue, and a slotted object keeps an idle socket
small.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from django.conf import settings

from notifications import metrics
from notifications.ratelimit import TokenBucket
from notifications.scope import query_param
from realtime import frames
from realtime.engine import MAX_READ_IDS, StreamSession
from realtime.frames import CloseCode, ServerFrame

logger = logging.getLogger(__name__)

# Where the server's protocol hands itself over for its synchronous writer
# (service/ws_protocol.py SEND_NOW_KEY; a transport may not import service/).
SEND_NOW_KEY = "notify_send_now"


class SendsNow(Protocol):
    def send_text_now(self, payload: bytes) -> bool:
        """Write a text frame of ``payload`` without waiting, or answer False."""


Send = Any
Receive = Any


class NotificationConsumer:
    """One socket: uvicorn's messages to the engine, the engine's frames to uvicorn."""

    __slots__ = ("__weakref__", "_bucket", "_send", "_send_now", "session")

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self._send = send
        # The server's protocol, if it writes frames synchronously (service/ws_protocol.py).
        self._send_now: SendsNow | None = scope.pop(SEND_NOW_KEY, None)
        # One budget per socket for every frame the client sends: the server's
        # protocol (service/ws_guards.py) charges PINGs and PONGs to it.
        self._bucket = scope.get("notify_frame_budget") or TokenBucket(
            *settings.NOTIFY_WS_FRAME_RATE
        )
        self.session = StreamSession(self, scope["user_id"])
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.connect":
                    await self._connect(scope)
                elif kind == "websocket.receive":
                    await self._receive(message.get("text"), message.get("bytes"))
                elif kind == "websocket.disconnect":
                    await self.session.disconnected()
                    return
        finally:
            self.session.release()
            # The session and this consumer (its transport) hold each other:
            # let reference counting free both, and the protocol they hold,
            # when the socket's task ends, rather than the collector's next
            # full collection (docs/performance.md, "Handshakes, fourth round").
            del self.session

    async def _connect(self, scope: dict[str, Any]) -> None:
        subprotocol = scope.get("notify_subprotocol")
        if not await self.session.open():
            # Not a credential problem: accept and close with 1013 (try again
            # later) so the client knows to retry.
            metrics.HANDSHAKES_REFUSED.labels(reason="unavailable").inc()
            await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
            await self.end(CloseCode.TRY_AGAIN)
            return
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        # The scope lives as long as the socket (the frames that called this
        # hold it), and nothing reads the handshake's headers past here: about
        # 1.4 KiB per idle socket (docs/performance.md).
        scope["headers"] = []
        await self.session.start(
            since=query_param(scope, "since"), expires_at=float(scope["token_expires_at"])
        )

    async def _receive(self, text: str | None, data: bytes | None) -> None:
        session = self.session
        if session.closed:
            return
        if self._bucket.take() > 0:
            metrics.RATE_LIMITED.labels(scope="socket").inc()
            await session.close(CloseCode.ABUSE)
            return
        size = len(data) if data is not None else len((text or "").encode())
        if size > settings.NOTIFY_WS_MAX_FRAME_BYTES:
            await session.close(CloseCode.TOO_BIG)
            return
        if text is None:
            await session.client_frame(
                frames.error("binary_not_supported", "Send JSON text frames.")
            )
            return
        await session.client_frame(frames.decode_client(text, max_read_ids=MAX_READ_IDS))

    # -- the engine's transport ---------------------------------------------

    def write_now(self, frame: ServerFrame) -> bool:
        protocol = self._send_now
        return protocol is not None and protocol.send_text_now(frames.ws_bytes(frame))

    async def write(self, frame: ServerFrame) -> None:
        await self._send({"type": "websocket.send", "text": frames.ws_text(frame)})

    async def end(self, code: CloseCode) -> None:
        await self._send({"type": "websocket.close", "code": int(code)})
