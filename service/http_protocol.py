"""uvicorn's httptools protocol with a response's writes in one syscall.

uvicorn writes an answer's status line and headers as soon as the app sends
``http.response.start``, and its body in a second write: two syscalls per
response, each of which wakes the client. On this service's hot path (the
publish endpoint's 202, every POST) a write to a local peer is where the
event loop gave up its core most often (docs/performance.md, "Cost per
notification, third round"). Here the writes made in one loop iteration go
out together at the end of it (``loop.call_soon``), as the WebSocket
protocol's data frames do (service/ws_protocol.py ``cork``): the start and a
body sent right after it, as every endpoint here sends them, leave in one.

A close (keep-alive off, an error answer, the keep-alive timeout) writes what
is waiting first. An upgraded connection hands the WebSocket protocol the
real transport: an open socket keeps nothing of this.

Used as ``--http service.http_protocol:LeanHttpToolsProtocol`` (Dockerfile).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CorkedTransport:
    """A transport whose writes of one loop iteration leave in one write;
    everything else is the real transport's."""

    __slots__ = ("_loop", "_waiting", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._waiting: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._waiting is None:
            self._waiting = [data]
            self._loop.call_soon(self.flush)
        else:
            self._waiting.append(data)

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting and not self.transport.is_closing():
            self.transport.write(b"".join(waiting))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class LeanHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` on a ``CorkedTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Duck-typed: a Transport subclass would answer the rest itself.
        self.transport = CorkedTransport(transport, self.loop)  # type: ignore[assignment]

    def handle_websocket_upgrade(self) -> None:
        corked = self.transport
        if isinstance(corked, CorkedTransport):
            corked.flush()
            self.transport = corked.transport
        super().handle_websocket_upgrade()
