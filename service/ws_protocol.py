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
  is taken without websockets' parser.

It also closes what uvicorn leaves open to a client that sends but never reads
(docs/security.md, "Ping floods"):

* protocol PING and PONG frames are charged to the socket's frame budget
  (``NOTIFY_WS_FRAME_RATE``, the same bucket the consumer charges for text
  frames, handed over in ``scope["notify_frame_budget"]``); over it, close 1008;
* a PING that arrives while writing is paused is not answered: the connection
  is cut (uvicorn would queue a PONG per PING without bound);
* every server-side close whose data cannot leave ends in
  ``transport.abort()``: a keepalive timeout, abuse or a parser error at once
  while writing is paused, else after ``CLOSE_BOUND_SECONDS``; the
  application's close (4008, 1008, 4401, 1012) is queued behind the unsent
  data and the connection cut after ``close_timeout`` + ``CLOSE_BOUND_SECONDS``
  (15 s) if the client has not taken it; the application is told at once;
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
from typing import Any

from django.conf import settings
from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.exceptions import InvalidState
from websockets.frames import Frame
from websockets.protocol import Protocol, State

from notifications.ratelimit import TokenBucket
from service.ws_keepalive import KeepaliveWheel, waits_for_frame, wheel_for
from service.ws_primitives import SlimEvent, SlimQueue
from service.ws_shared import install, per_server

# What uvicorn keeps from the handshake and never reads after it.
HANDSHAKE_ATTRIBUTES = ("request", "response", "scope")
# The scope key that hands the socket's frame budget to the application.
FRAME_BUDGET_KEY = "notify_frame_budget"
CLOSE_ABUSE = 1008
# How long a closing connection may take to hand its last bytes (the close
# frame behind unsent data) to the kernel before it is cut.
CLOSE_BOUND_SECONDS = 5.0
# Where the websockets state machine logs (its errors and, at INFO, a line per
# open and per close that only repeats uvicorn's "[accepted]").
CONNECTION_LOGGER = logging.getLogger("websockets.server")


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
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
        self.frame_budget = TokenBucket(*settings.NOTIFY_WS_FRAME_RATE)
        self.abort_timer: asyncio.TimerHandle | None = None
        # The server ended the socket on its own (abuse, keepalive): the
        # application's later sends find a disconnected client.
        self.cut = False
        # The keepalive (service/ws_keepalive.py) replaces uvicorn's timers.
        self.keepalive_wheel: KeepaliveWheel | None = None
        self.keepalive_tick = 0
        self.keepalive_pinged = 0
        self.keepalive_pending = False

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

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = self.__dict__.get("scope")
        if scope is not None:
            scope[FRAME_BUDGET_KEY] = self.frame_budget

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

    # -- control frames ------------------------------------------------------

    def handle_ping(self) -> None:
        # websockets queued one PONG per PING of the whole read (a list entry
        # each); the first PING event answers and charges them all, the
        # others of that read find nothing left.
        pongs = self.conn.data_to_send()
        if not pongs or self.close_sent or self.transport.is_closing():
            return
        if not self.writable.is_set():
            # It sends but does not read: a PONG would only grow the buffer.
            self.cut_now(CLOSE_ABUSE)
            return
        granted, _retry = self.frame_budget.take_many(len(pongs))
        if granted:
            self.transport.write(b"".join(pongs[:granted]))
        if granted < len(pongs):
            self.refuse_frames()

    def handle_pong(self, event: Frame) -> None:
        if self.close_sent or not self.charge_frame():
            return
        wheel = self.keepalive_wheel
        if wheel is not None and bytes(event.data) == wheel.payload:
            self.keepalive_pending = False

    def between_frames(self, parser: Any) -> bool:
        return waits_for_frame(parser) and not self.conn.reader.buffer

    # -- keepalive (service/ws_keepalive.py) ----------------------------------

    def start_keepalive(self) -> None:
        interval = self.ping_interval
        if interval is not None and interval > 0:
            self.keepalive_wheel = wheel_for(self.loop, interval, self.ping_timeout)
            self.keepalive_wheel.add(self)

    def stop_keepalive(self) -> None:
        wheel, self.keepalive_wheel = self.keepalive_wheel, None
        self.keepalive_pending = False
        if wheel is not None:
            wheel.discard(self)

    def keepalive_due(self) -> bool:
        return not (self.close_sent or self.transport.is_closing())

    def keepalive_send(self, frame: bytes) -> None:
        self.transport.write(frame)

    def charge_frame(self) -> bool:
        """Take one frame from the socket's budget; over it, close 1008."""
        if self.frame_budget.take() == 0:
            return True
        self.refuse_frames()
        return False

    def refuse_frames(self) -> None:
        self.logger.warning("WebSocket closed 1008: control frames over NOTIFY_WS_FRAME_RATE")
        self.cut_now(CLOSE_ABUSE)

    # -- closing -------------------------------------------------------------

    def cut_now(self, code: int) -> None:
        """Close with ``code`` on the server's own account: the close frame if
        it can still be written, and the connection ends within the bound."""
        if self.close_sent:
            self.close_transport()
            return
        self.close_sent = self.cut = True
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": ""})
        self.conn.send_close(code)
        output = b"".join(self.conn.data_to_send())
        if self.writable.is_set():
            self.transport.write(output)
        self.close_transport()

    def close_behind_data(self, code: int) -> None:
        """The application's close while writing is paused: the close frame goes
        behind the unsent data, so a client that reads again soon still sees its
        code (4008: resume with since); the connection is cut if the data is
        not taken within ``close_timeout`` + CLOSE_BOUND_SECONDS."""
        self.close_sent = self.cut = True
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": ""})
        self.conn.send_close(code)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()
        if self.abort_timer is not None:
            self.abort_timer.cancel()
        self.abort_timer = self.loop.call_later(
            self.close_timeout + CLOSE_BOUND_SECONDS, self.transport.abort
        )

    def close_transport(self) -> None:
        """close(), and abort() if data is still unsent: at once while writing
        is paused, else after CLOSE_BOUND_SECONDS."""
        if not self.writable.is_set():
            self.transport.abort()
            return
        self.transport.close()
        if self.abort_timer is None and self.transport.get_write_buffer_size():
            self.abort_timer = self.loop.call_later(CLOSE_BOUND_SECONDS, self.transport.abort)

    def keepalive_timeout(self) -> None:
        already = self.close_sent or self.transport.is_closing()
        super().keepalive_timeout()
        if not already:
            self.cut = True
            self.close_transport()

    def handle_close(self, event: Frame) -> None:
        super().handle_close(event)
        if self.transport.is_closing():
            self.close_transport()

    def handle_parser_exception(self) -> None:
        super().handle_parser_exception()
        self.close_transport()

    def shutdown(self) -> None:
        super().shutdown()
        self.close_transport()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.abort_timer is not None:
            self.abort_timer.cancel()
            self.abort_timer = None
        super().connection_lost(exc)


install(LeanWebSocketProtocol)
