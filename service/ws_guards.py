"""What ``LeanWebSocketProtocol`` (service/ws_protocol.py) closes that uvicorn
leaves open to a client that sends but never reads (docs/security.md, "Ping
floods"), and the keepalive that replaces uvicorn's two timers per socket:

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
* the keepalive ping is one timer wheel per process (service/ws_keepalive.py).

A base class of its own so that each module stays readable; it is never served
alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import Frame

from notifications.ratelimit import TokenBucket
from service.ws_keepalive import KeepaliveWheel, waits_for_frame, wheel_for

CLOSE_ABUSE = 1008
# How long a closing connection may take to hand its last bytes (the close
# frame behind unsent data) to the kernel before it is cut.
CLOSE_BOUND_SECONDS = 5.0


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """``websockets-sansio`` with control frames charged, bounded closes and the
    process's keepalive wheel."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
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
