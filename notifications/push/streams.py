# httpcore's interface passes timeouts as parameters (ASYNC109 asks otherwise).
# ruff: noqa: ASYNC109
"""httpcore's network layer on the running event loop's own streams.

httpcore (httpx's connection layer) talks to sockets through a network
backend; its default goes through anyio, whose TLS is a pure-Python pump
between ``ssl.SSLObject`` memory buffers, plus a cancel scope per read and
write and a ``select()`` on the socket whenever the pool checks a connection.
In a profile of a sending process (docs/performance.md) that was about a
quarter of its CPU samples. This backend uses ``asyncio`` streams
instead: under uvloop (which uvicorn runs) TLS and socket I/O happen in C,
and whether an idle connection was closed by the server is a flag the
transport already holds. Timeouts and httpcore's exception types are kept,
so the pool behaves as with its default backend. Nothing here touches the
cryptography of TLS: the ``ssl.SSLContext`` given (system store plus
``NOTIFY_PUSH_CA_BUNDLE``) verifies the server as before.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

# Read at most this much per call (httpcore asks for 64 KiB).
_READ_LIMIT = 2**16


class LoopStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._writer.is_closing():
            raise httpcore.WriteError("connection closed")
        self._writer.write(buffer)
        # The transport sends at once when the socket takes it; wait only
        # when it had to buffer (the peer is slow to read).
        if not self._writer.transport.get_write_buffer_size():
            return
        try:
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        # Not waiting for the close to finish: httpcore closes connections
        # on the request path (an expired one before a request, one whose
        # answer was not read to the end after it), and a TLS close waits
        # for the peer's close_notify. The transport completes (or, after
        # its shutdown timeout, aborts) the close on its own.
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            await self._writer.start_tls(
                ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=timeout
            )
        except TimeoutError as exc:
            self._writer.transport.abort()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            self._writer.transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of an idle pooled connection: has the server closed it?
            return self._writer.is_closing() or self._reader.at_eof()
        name = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        return self._writer.get_extra_info(name)


class LoopBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=local, limit=_READ_LIMIT
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return LoopStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("push services are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
