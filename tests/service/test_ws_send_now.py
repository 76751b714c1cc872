"""LeanWebSocketProtocol.send_text_now (service/ws_protocol.py) on a real
uvicorn server, read by a real websockets client and a raw socket: the frames
it builds itself are the frames websockets would send, in order with
``send``'s, and it declines whenever ``send`` would have to wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from service.ws_protocol import SEND_NOW_KEY, text_frame_header
from tests.support.inprocess_uvicorn import small_buffer_socket, started

LEAN_WS = "service.ws_protocol:LeanWebSocketProtocol"
# Payload lengths around the header's three forms (7-bit, 16-bit, 64-bit).
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 300_000]
# What send_text_now answered, per test socket.
answers: list[bool] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "websocket.connect"
    send_now: Callable[[bytes], bool] = scope[SEND_NOW_KEY].send_text_now
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text", "")
        if text == "sizes":  # each size, then one frame through send: in order
            answers.extend(send_now(f"{size}:".encode() + b"x" * size) for size in SIZES)
            await send({"type": "websocket.send", "text": "through send"})
        elif text == "close":  # after the close, nothing more goes out this way
            await send({"type": "websocket.close", "code": 4000})
            answers.append(send_now(b"late"))
        elif text == "flood":  # until the client's buffer is full
            for _ in range(100_000):
                if not send_now(b"y" * 4096):
                    answers.append(False)
                    break
                await asyncio.sleep(0)  # the corked write leaves


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    answers.clear()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws=LEAN_WS, lifespan="off", log_level="warning"
    )
    async with started(config) as (_server, port):
        yield port


def test_the_header_has_the_three_length_forms() -> None:
    assert text_frame_header(125) == b"\x81\x7d"
    assert text_frame_header(126) == b"\x81\x7e\x00\x7e"
    assert text_frame_header(65535) == b"\x81\x7e\xff\xff"
    assert text_frame_header(65536) == b"\x81\x7f" + (65536).to_bytes(8, "big")


async def test_frames_written_now_are_read_whole_and_in_order_with_sent_ones() -> None:
    async with serving() as port, connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        await ws.send("sizes")
        got = [await ws.recv() for _ in SIZES]
        assert got == [f"{size}:" + "x" * size for size in SIZES]
        assert await ws.recv() == "through send"
        assert answers == [True] * len(SIZES)


async def test_nothing_is_written_now_after_the_close() -> None:
    async with serving() as port, connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send("close")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4000
        assert answers == [False]


async def test_a_client_that_does_not_read_gets_no_more_frames_written_now() -> None:
    async with serving() as port:
        sock = await small_buffer_socket(port)
        # asyncio's reader stops reading once its buffer holds 128 KiB.
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        # "flood", masked as a client must: the server writes until paused.
        mask = b"\x01\x02\x03\x04"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"flood"))
        writer.write(b"\x81\x85" + mask + payload)
        try:
            async with asyncio.timeout(30):
                while not answers:
                    await asyncio.sleep(0.01)
        finally:
            writer.close()
        assert answers == [False]
