"""uvicorn's websockets-sansio protocol with less state per open socket.

Serve with ``--ws service.ws_protocol:LeanWebSocketProtocol`` (the Dockerfile,
``make run``, the bench and the live tests do). It behaves as
``--ws websockets-sansio``; what an open connection holds and costs differs
(docs/performance.md, "Memory per idle socket" and "An idle process"):

* no permessage-deflate is negotiated (a browser's offer is declined; see
  docs/performance.md, "Compression");
* the receive queue and ``writable`` event allocate nothing while idle
  (service/ws_primitives.py); the server's constants are kept once per server
  (service/ws_shared.py);
* the handshake's request, response and scope, and websockets' handshake
  parser (which holds the request), are let go once the handshake is answered;
* the keepalive ping is one timer wheel per process (service/ws_keepalive.py)
  instead of two timers per socket; a read that is exactly the PONG it awaits
  is taken without websockets' parser;
* the application may write a text frame synchronously (``send_text_now``,
  the protocol handed over in the scope): a live notification becomes bytes in the
  loop iteration's corked write without an ASGI message or a task.

It also closes what uvicorn leaves open to a client that sends but never reads
(service/ws_guards.py, its base class: control frames charged to the frame
budget, bounded closes, the keepalive wheel), and:

* a handshake the parser refuses (a request or header line over 8 KiB) is
  answered 414/431 and closed (uvicorn wrote nothing and kept it open).

The websockets state machine logs on ``websockets.server``, which
service/config.py keeps at WARNING (its INFO lines repeat uvicorn's
``[accepted]`` line at a log line per socket).

uvicorn is pinned (pyproject.toml, requirements.lock);
tests/service/test_ws_protocol.py fails if a new version uses these objects in
a way this class does not cover.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.server import ServerState
from websockets.exceptions import InvalidState
from websockets.protocol import Protocol, State

from service.ws_guards import GuardedWebSocketProtocol
from service.ws_primitives import SlimEvent, SlimQueue
from service.ws_shared import install, per_server

# What uvicorn keeps from the handshake and never reads after it.
HANDSHAKE_ATTRIBUTES = ("request", "response", "scope")
# The scope key that hands the socket's frame budget to the application.
FRAME_BUDGET_KEY = "notify_frame_budget"
# The scope key that hands the application this protocol, for its
# synchronous text-frame writer (``send_text_now``): the object itself, not a
# bound method, which an open socket would keep (64 bytes).
SEND_NOW_KEY = "notify_send_now"
# Where the websockets state machine logs (its errors and, at INFO, a line per
# open and per close that only repeats uvicorn's "[accepted]").
CONNECTION_LOGGER = logging.getLogger("websockets.server")


class LeanWebSocketProtocol(GuardedWebSocketProtocol):
    """``websockets-sansio`` with a slim queue and event, and no handshake kept."""

    # Data frames waiting for this loop iteration's write (``cork``).
    corked: list[bytes] | None = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # Where the server's constants go (service/ws_shared.py): first, so
        # that uvicorn's __init__ can write them.
        self.per_server = per_server(server_state)
        super().__init__(config, server_state, app_state, _loop)
        # No permessage-deflate, whatever the client offers (docs/performance.md,
        # "Compression"): uvicorn's context takeover holds about 35 KiB of zlib
        # state per socket, and without it a notification frame shrinks by a
        # third (about 100 bytes) for about 14 us of CPU per frame.
        self.conn.available_extensions = []
        self.conn.logger = CONNECTION_LOGGER
        self.conn.debug = CONNECTION_LOGGER.isEnabledFor(logging.DEBUG)
        self.queue = SlimQueue()  # type: ignore[assignment]
        writable = SlimEvent()
        writable.set()
        self.writable = writable  # type: ignore[assignment]

    # -- corked writes ------------------------------------------------------

    @property
    def transport(self) -> Any:
        """The transport, once the frames corked so far are written: whatever
        else uses it (a close, a PING, a PONG) goes after them, in order."""
        if self.corked is not None:
            self.flush_cork()
        return self.__dict__["_transport"]

    @transport.setter
    def transport(self, transport: Any) -> None:
        self.__dict__["_transport"] = transport

    def cork(self, output: list[bytes]) -> None:
        """Data frames sent in one loop iteration leave in one write (a replay
        and its ``ready``: one syscall instead of one per frame)."""
        if self.corked is None:
            self.corked = output
            self.loop.call_soon(self.flush_cork)
        else:
            self.corked += output

    def flush_cork(self) -> None:
        # Popped, not set to None: an idle socket keeps no entry for it.
        corked = self.__dict__.pop("corked", None)
        transport = self.__dict__["_transport"]
        if corked and not transport.is_closing():
            transport.write(b"".join(corked))

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if self.cut and kind in ("websocket.send", "websocket.close"):
            raise ClientDisconnected()
        if kind == "websocket.send" and self.can_cork():
            text = message.get("text")
            try:
                if text is not None:
                    self.conn.send_text(text.encode())
                else:
                    self.conn.send_binary(message.get("bytes") or b"")
            except InvalidState:
                raise ClientDisconnected() from None
            self.cork(self.conn.data_to_send())
            return
        paused = not self.writable.is_set()
        if kind == "websocket.close" and self.handshake_complete and paused and not self.close_sent:
            # 4008/1008 to a client that does not read: waiting for the
            # buffer to drain could wait forever.
            self.close_behind_data(int(message.get("code", 1000)))
            return
        try:
            await super().send(message)
        finally:
            if self.handshake_complete:
                self.release_handshake()
        if kind == "websocket.close" and self.close_timer is not None:
            # uvicorn's timer only calls close(), which waits for the buffer.
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.close_transport)

    def send_text_now(self, payload: bytes) -> bool:
        """A text frame of ``payload`` (UTF-8), corked at once, when ``send``
        would write it without waiting; False otherwise (the caller then
        goes through ``send``). Skips the ASGI message, the coroutine and
        websockets' ``Frame``: an unmasked server frame without extensions
        is its header and the payload (RFC 6455, 5.2)."""
        if self.cut or not self.can_cork() or self.conn.state is not State.OPEN:
            return False
        self.cork([text_frame_header(len(payload)), payload])
        return True

    def can_cork(self) -> bool:
        """A data frame of an open connection whose writing is not paused (as
        uvicorn's own send would write it at once)."""
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.writable.is_set()
        )

    def release_handshake(self) -> None:
        state = self.__dict__
        if "response" not in state:
            return
        for name in HANDSHAKE_ATTRIBUTES:
            state.pop(name, None)
        conn = self.conn
        inner = getattr(conn.parser, "gi_yieldfrom", None)
        if conn.state is State.OPEN and self.between_frames(inner):
            # websockets' handshake parser holds the request (its headers,
            # about 3 KiB) in its frame for the socket's life, around the
            # frame parser it delegates to: that one alone takes over.
            conn.parser = Protocol.parse(conn)
            next(conn.parser)

    # -- handshake -----------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        # uvicorn's HTTP protocol hands the connection over from inside its
        # ``data_received`` and is still the transport's protocol here.
        release_http_protocol(transport.get_protocol())
        super().connection_made(transport)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = self.__dict__.get("scope")
        if scope is not None:
            scope[FRAME_BUDGET_KEY] = self.frame_budget
            scope[SEND_NOW_KEY] = self

    def data_received(self, data: bytes) -> None:
        wheel = self.keepalive_wheel
        if (
            self.keepalive_pending
            and wheel is not None
            and wheel.is_answer(data)
            and self.between_frames(self.conn.parser)
        ):
            # The answer to our PING, alone in its read: what websockets'
            # parser would make of it, for a fraction of its cost.
            if self.charge_frame():
                self.keepalive_pending = False
            return
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # The parser refused the request (414/431, or not HTTP) and
            # queued its answer; uvicorn writes only on a parsed request.
            self.handshake_initiated = self.handshake_complete = self.close_sent = True
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_transport()


def release_http_protocol(http: Any) -> None:
    """Let the HTTP protocol that upgraded a connection go when its upgrade
    returns. httptools' parser holds bound methods of the protocol that holds
    it, and only ``connection_lost`` (never called once the transport has a
    new protocol) breaks the cycle: each upgrade left the protocol, its
    parser, scope and headers (about 20 objects) to the collector, which a
    reconnect storm made run its full collections over every open socket
    (docs/performance.md, "Handshakes, fourth round"). Nothing reads the
    parser after the upgrade: uvicorn's ``data_received`` returns."""
    if isinstance(http, HttpToolsProtocol):
        http.parser = None  # type: ignore[assignment]  # as its connection_lost does


def text_frame_header(length: int) -> bytes:
    """FIN, opcode text, no mask, and the payload length (7, 16 or 64 bits)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 0x10000:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


install(LeanWebSocketProtocol)
