"""The keepalive's PONG shortcut (service/ws_protocol.py, ``data_received``) on
a real in-process uvicorn server over a real socket: a read that looks exactly
like the answer to our PING is taken as one only between two frames; in the
middle of a frame it is that frame's data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from service.ws_keepalive import PARSE_CODE
from service.ws_protocol import LeanWebSocketProtocol
from tests.support.inprocess_uvicorn import started

LEAN_WS = "service.ws_protocol:LeanWebSocketProtocol"
PING, PONG, BINARY, CLOSE = 0x9, 0xA, 0x2, 0x8


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "bytes": message["bytes"]})


@contextlib.asynccontextmanager
async def serving(
    interval: float = 0.2, timeout: float = 60
) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    # By default a PING every 0.2 s, and long enough to answer that none
    # times out.
    config = uvicorn.Config(
        echo,
        host="127.0.0.1",
        port=0,
        ws=LEAN_WS,
        lifespan="off",
        log_level="warning",
        ws_ping_interval=interval,
        ws_ping_timeout=timeout,
    )
    async with started(config) as running:
        yield running


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    return head[0] & 0x0F, await reader.readexactly(length)


async def until(condition: Any) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.005)


async def upgrade(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_no_second_ping_while_one_waits_and_a_timeout_longer_than_the_interval() -> None:
    """As uvicorn: a PING that waits for its PONG is not followed by another one
    when the interval passes; the peer is closed 1011 once the timeout has."""
    async with serving(interval=0.2, timeout=1.0) as (_server, port):
        reader, writer = await upgrade(port)
        try:
            async with asyncio.timeout(30):
                seen = [await read_frame(reader)]
                while seen[-1][0] != CLOSE:
                    seen.append(await read_frame(reader))
            assert [opcode for opcode, _ in seen] == [PING, CLOSE], seen
            code = struct.unpack("!H", seen[-1][1][:2])[0]
            assert (code, seen[-1][1][2:]) == (1011, b"keepalive ping timeout")
        finally:
            writer.close()


async def test_a_pong_lookalike_inside_a_frame_is_that_frames_data() -> None:
    async with serving() as (server, port):
        reader, writer = await upgrade(port)
        try:
            [protocol] = [
                p for p in server.server_state.connections if isinstance(p, LeanWebSocketProtocol)
            ]
            # Open: websockets' plain frame parser, not the handshake's.
            await until(lambda: protocol.conn.parser.gi_code is PARSE_CODE)  # type: ignore[attr-defined]
            async with asyncio.timeout(30):
                while (frame := await read_frame(reader))[0] != PING:
                    pass
            payload = frame[1]
            assert protocol.keepalive_pending

            # A binary frame of 6 bytes whose header comes alone ...
            writer.write(bytes((0x80 | BINARY, 0x80 | 6)))
            await writer.drain()
            await until(lambda: not protocol.between_frames(protocol.conn.parser))
            # ... and whose mask and data read exactly as a PONG of our payload.
            x = os.urandom(4)
            y = bytes(a ^ b for a, b in zip(x, payload, strict=True))
            rest = bytes((0x80 | PONG, 0x80 | 4)) + x + y
            assert protocol.keepalive_wheel is not None
            assert protocol.keepalive_wheel.is_answer(rest)
            writer.write(rest)
            mask, masked = rest[:4], rest[4:]
            sent = bytes(b ^ mask[i % 4] for i, b in enumerate(masked))
            async with asyncio.timeout(30):
                while (frame := await read_frame(reader))[0] != BINARY:
                    pass
            assert frame[1] == sent
            assert protocol.keepalive_pending, "the frame's data was taken for a PONG"

            # The real answer, alone in its read, is taken as one.
            mask = os.urandom(4)
            pong = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            writer.write(bytes((0x80 | PONG, 0x80 | 4)) + mask + pong)
            await until(lambda: not protocol.keepalive_pending)
        finally:
            writer.close()
