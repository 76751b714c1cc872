"""service.ws_protocol.release_http_protocol on a real uvicorn server
(in-process, httptools, real sockets, a websockets client): the HTTP protocol
that upgraded a connection is freed when the upgrade returns, without the
garbage collector, and the socket serves as before.

uvicorn's HTTP protocol and httptools' parser hold each other (the parser's
callbacks are the protocol's bound methods); only ``connection_lost``, which
an upgraded connection never calls on it, broke the cycle, so every socket
opened left one to the collector (docs/performance.md, "Handshakes, fourth
round")."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.asyncio.client import connect

from tests.support.collector import collector_off
from tests.support.inprocess_uvicorn import started

LEAN_WS = "service.ws_protocol:LeanWebSocketProtocol"
SOCKETS = 20


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": "echo:" + message["text"]})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[str]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http="httptools",
        ws=LEAN_WS,
        lifespan="off",
        log_level="warning",
    )
    async with started(config) as (_server, port):
        yield f"ws://127.0.0.1:{port}/"


def http_protocols() -> list[HttpToolsProtocol]:
    return [o for o in gc.get_objects() if isinstance(o, HttpToolsProtocol)]


async def test_upgraded_connections_leave_no_http_protocol_behind() -> None:
    with collector_off():
        async with serving() as url, contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(connect(url)) for _ in range(SOCKETS)]
            for i, ws in enumerate(sockets):
                await ws.send(f"m{i}")
                assert await ws.recv() == f"echo:m{i}"
            assert http_protocols() == []
