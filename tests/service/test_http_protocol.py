"""service/http_protocol.py on a real uvicorn server and real sockets: an
answer's writes leave together, nothing is lost at a close, and an upgraded
connection keeps nothing of it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from websockets.asyncio.client import connect

from service.http_protocol import CorkedTransport, LeanHttpToolsProtocol
from service.ws_protocol import LeanWebSocketProtocol
from tests.support.inprocess_uvicorn import started
from tests.support.servers import LEAN_HTTP, LEAN_WS

REQUESTS = 20
BODY = b'{"event_id": "x", "recipients": 1}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """HTTP: a start and a body, as the publish endpoint answers; WebSocket: accept, say hi."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hi"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[uvicorn.Server, int]]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=LEAN_HTTP,
        ws=LEAN_WS,
        lifespan="off",
        log_level="warning",
    )
    async with started(config) as (server, port):
        yield server, port


def http_protocols(server: uvicorn.Server) -> list[LeanHttpToolsProtocol]:
    return [p for p in server.server_state.connections if isinstance(p, LeanHttpToolsProtocol)]


def segments_sent(transport: Any) -> int:
    """The kernel's count of TCP segments sent on the server's socket
    (``tcpi_segs_out`` of Linux's ``struct tcp_info``, at byte 136)."""
    sock = transport.get_extra_info("socket")
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    count: int = struct.unpack_from("I", info, 136)[0]
    return count


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def request(*, close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    return (
        b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
        b"Connection: " + connection + b"\r\n\r\n{}"
    )


async def test_an_answers_start_and_body_leave_in_one_write() -> None:
    async with serving() as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request())
        head, body = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 202 ") and body == BODY
        [protocol] = http_protocols(server)
        assert isinstance(protocol.transport, CorkedTransport)
        before = segments_sent(protocol.transport)
        for _ in range(REQUESTS):
            writer.write(request())
            head, body = await read_answer(reader)
            assert head.startswith(b"HTTP/1.1 202 ") and body == BODY
        # One segment per answer (loopback, TCP_NODELAY) where uvicorn's two
        # writes send two; a delayed ACK of a request may take one of its own.
        assert segments_sent(protocol.transport) - before < REQUESTS * 3 // 2
        writer.close()
        await writer.wait_closed()


async def test_nothing_waiting_is_lost_when_the_connection_closes() -> None:
    async with serving() as (_server, port):
        # Keep-alive off: uvicorn closes right after the body it wrote.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(close=True))
        head, body = await read_answer(reader)
        assert head.startswith(b"HTTP/1.1 202 ") and body == BODY
        assert await reader.read() == b""  # then the close
        writer.close()
        # uvicorn's own 400 for a request it cannot parse: written, then closed.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert answer.endswith(b"Invalid HTTP request received.")
        writer.close()


async def test_an_upgraded_connection_holds_the_real_transport() -> None:
    async with serving() as (server, port), connect(f"ws://127.0.0.1:{port}/ws") as ws:
        assert await ws.recv() == "hi"
        [protocol] = [
            p for p in server.server_state.connections if isinstance(p, LeanWebSocketProtocol)
        ]
        assert not isinstance(protocol.transport, CorkedTransport)
        assert http_protocols(server) == []
