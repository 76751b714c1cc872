"""HTTP/1.1 POSTs to one push service: h11 for the protocol, the event
loop's own streams for the sockets, a small pool of kept-alive connections.

Why not httpcore (httpx's connection layer, used before): a push is one POST
with fixed headers to a URL already checked (notifications/push/endpoints.py),
and httpcore's general machinery around h11 (URL parsing and header
normalisation per request, anyio cancel shields and locks, a pool that scans
its connections) was about a quarter of a sending process's CPU
(docs/performance.md). What is left is h11 (framing and parsing, so a
hostile answer meets a well-kept parser), one write per request (request
line, headers and body as one TLS record), and under uvloop TLS and socket
work in C.

Limits, as before: a connection takes 5 s at most (TCP and TLS), a whole
request 20 s however slowly the service trickles bytes, an answer's headers
16 KiB and its body is read up to 16 KiB (the status is what matters; the
connection is closed rather than reused when there is more). Redirects are
never followed: a 3xx is just a status (classified in sender.py).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from urllib.parse import urlsplit

import h11

MAX_ANSWER_BYTES = 16 * 1024
CONNECT_TIMEOUT = 5.0
DEADLINE = 20.0
READ_CHUNK = 2**16


class PushHTTPError(Exception):
    """The exchange failed (connection, TLS, protocol or timeout)."""


class Connection:
    __slots__ = ("_h11", "_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_ANSWER_BYTES)

    def reusable(self) -> bool:
        """Idle and not closed by the service meanwhile (the transport has
        seen its FIN or close_notify: a flag, no system call)."""
        return (
            self._h11.our_state is h11.IDLE
            and not self._writer.is_closing()
            and not self._reader.at_eof()
        )

    def close(self) -> None:
        # Not awaited: a TLS close waits for the peer's close_notify; the
        # transport finishes (or after its timeout aborts) on its own.
        self._writer.close()

    async def post(
        self, target: str, host: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str | None]:
        conn = self._h11
        fields = [("Host", host), ("Content-Length", str(len(body))), *headers]
        events = (h11.Request(method="POST", target=target, headers=fields), h11.Data(data=body))
        data = b"".join(filter(None, (conn.send(e) for e in (*events, h11.EndOfMessage()))))
        if self._writer.is_closing():
            raise PushHTTPError("connection closed")
        self._writer.write(data)  # one write: one TLS record, one system call
        if self._writer.transport.get_write_buffer_size():
            await self._writer.drain()  # the service reads slowly; DEADLINE bounds it
        response = await self._next()
        if not isinstance(response, h11.Response):
            raise PushHTTPError(f"unexpected {type(response).__name__}")
        retry_after = next((v for k, v in response.headers if k == b"retry-after"), None)
        read = 0
        while True:  # the body, bounded
            event = await self._next()
            if isinstance(event, h11.EndOfMessage):
                break
            if not isinstance(event, h11.Data):
                raise PushHTTPError(f"unexpected {type(event).__name__}")
            read += len(event.data)
            if read > MAX_ANSWER_BYTES:
                self.close()
                break
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        return response.status_code, retry_after.decode("latin-1") if retry_after else None

    async def _next(self) -> h11.Event:
        """The next event of the answer, reading as needed (1xx skipped)."""
        conn = self._h11
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                # b"" (the end of the stream) makes h11 raise or close.
                conn.receive_data(await self._reader.read(READ_CHUNK))
            elif event is h11.PAUSED:  # not expected before the answer ends
                raise PushHTTPError("connection paused")
            elif isinstance(event, h11.Event) and not isinstance(event, h11.InformationalResponse):
                return event


class Origin:
    """Kept-alive connections to one push service (``https://host[:port]``),
    at most ``limit`` requests in flight."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, limit: int) -> None:
        self.host, self.port, self.context = host, port, context
        self.slots = asyncio.Semaphore(limit)
        self.idle: list[Connection] = []

    async def post(
        self, endpoint: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str | None]:
        parts = urlsplit(endpoint)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        async with self.slots:  # waiting here does not count against DEADLINE
            conn = await self._connection()
            try:
                async with asyncio.timeout(DEADLINE):
                    answer = await conn.post(target, host, headers, body)
            except BaseException:
                conn.close()
                raise
            if conn.reusable():
                self.idle.append(conn)
            else:
                conn.close()
            return answer

    async def _connection(self) -> Connection:
        while self.idle:
            conn = self.idle.pop()
            if conn.reusable():
                return conn
            conn.close()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.context,
                server_hostname=self.host,
                ssl_handshake_timeout=CONNECT_TIMEOUT,
                limit=READ_CHUNK,
            )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Connection(reader, writer)

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()
