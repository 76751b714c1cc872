"""service.ws_protocol.LeanWebSocketProtocol on a real uvicorn server (in-process,
real sockets, a websockets client): it serves like websockets-sansio and holds
neither the handshake nor asyncio's queue and event once a socket is open.

These fail when a new uvicorn uses the replaced objects differently.
"""

from __future__ import annotations

import ast
import asyncio
import collections
import contextlib
import inspect
import socket
import struct
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.websockets import websockets_sansio_impl
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from service.ws_protocol import (
    HANDSHAKE_ATTRIBUTES,
    LeanWebSocketProtocol,
    SlimEvent,
    SlimQueue,
)
from service.ws_shared import PER_SERVER_ATTRIBUTES, UNUSED_ATTRIBUTES
from tests.support.inprocess_uvicorn import started

LEAN_WS = "service.ws_protocol:LeanWebSocketProtocol"
BASE = websockets_sansio_impl.WebSocketsSansIOProtocol
# CPython 3.11 shares an instance dictionary's keys up to this many.
SHARED_KEYS_MAX = 30
BURST = 10


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept /ok and echo text frames; refuse anything else before accept."""
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] != "/ok":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept", "subprotocol": "notifications.v1"})
    await send({"type": "websocket.send", "text": "hello"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 4000})
            continue
        if message.get("text", "").startswith("burst"):  # BURST frames at once, as a replay
            for i in range(BURST):
                await send({"type": "websocket.send", "text": f"b{i}"})
            if message["text"] == "burst-close":
                await send({"type": "websocket.close", "code": 4000})
            continue
        await send({"type": "websocket.send", "text": "echo:" + message["text"]})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[uvicorn.Server, str]]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws=LEAN_WS, lifespan="off", log_level="warning"
    )
    async with started(config) as (server, port):
        yield server, f"ws://127.0.0.1:{port}"


def protocols(server: uvicorn.Server) -> list[LeanWebSocketProtocol]:
    return [p for p in server.server_state.connections if isinstance(p, LeanWebSocketProtocol)]


async def test_an_open_socket_holds_no_handshake_and_no_asyncio_queue_or_event() -> None:
    async with (
        serving() as (server, url),
        connect(url + "/ok?token=x", subprotocols=["notifications.v1"]) as ws,  # type: ignore[list-item]
    ):
        assert await ws.recv() == "hello"
        assert ws.subprotocol == "notifications.v1"
        [protocol] = protocols(server)
        state = vars(protocol)
        for name in HANDSHAKE_ATTRIBUTES:
            assert name not in state, f"{name} is still held after the handshake"
        heavy = (asyncio.Queue, asyncio.Event, collections.deque)
        held = {k: type(v).__name__ for k, v in state.items() if isinstance(v, heavy)}
        assert held == {}
        assert isinstance(protocol.queue, SlimQueue)
        assert isinstance(protocol.writable, SlimEvent)
        # The server's constants are kept once per server, and few enough
        # attributes remain (the handshake's three counted) for CPython to share
        # their names between connections (service/ws_shared.py).
        assert set(state).isdisjoint(PER_SERVER_ATTRIBUTES)
        assert set(state).isdisjoint(UNUSED_ATTRIBUTES)
        assert len(set(state) | set(HANDSHAKE_ATTRIBUTES)) <= SHARED_KEYS_MAX
        assert protocol.config is server.config
        assert protocol.connections is server.server_state.connections
        # It still works both ways, and closes like websockets-sansio.
        for i in range(50):
            await ws.send(f"m{i}")
        assert [await ws.recv() for _ in range(50)] == [f"echo:m{i}" for i in range(50)]
        await ws.send("close")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4000


def segments_sent(protocol: LeanWebSocketProtocol) -> int:
    """The kernel's count of TCP segments sent on the server's socket
    (``tcpi_segs_out`` of Linux's ``struct tcp_info``, at byte 136)."""
    sock = protocol.transport.get_extra_info("socket")
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    count: int = struct.unpack_from("I", info, 136)[0]
    return count


async def test_frames_sent_together_leave_in_one_write_and_before_a_close() -> None:
    async with (
        serving() as (server, url),
        connect(url + "/ok", subprotocols=["notifications.v1"]) as ws,  # type: ignore[list-item]
    ):
        assert await ws.recv() == "hello"
        [protocol] = protocols(server)
        before = segments_sent(protocol)
        await ws.send("burst")
        assert [await ws.recv() for _ in range(BURST)] == [f"b{i}" for i in range(BURST)]
        # One write (one segment on loopback, TCP_NODELAY), where uvicorn
        # writes each frame on its own; a delayed ACK of the client's frame
        # may take a segment of its own.
        assert segments_sent(protocol) - before <= 2
        assert "corked" not in vars(protocol)  # nothing held once written
        # The application's close right after them goes after them.
        await ws.send("burst-close")
        assert [await ws.recv() for _ in range(BURST)] == [f"b{i}" for i in range(BURST)]
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4000


async def test_a_deflate_offer_is_declined_and_the_socket_holds_no_zlib_state() -> None:
    # websockets-sansio would accept it with context takeover (about 35 KiB of
    # zlib state per socket); docs/performance.md, "Compression".
    async with (
        serving() as (server, url),
        connect(
            url + "/ok",
            subprotocols=["notifications.v1"],  # type: ignore[list-item]
            compression="deflate",
        ) as ws,
    ):
        assert await ws.recv() == "hello"
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        [protocol] = protocols(server)
        assert protocol.conn.extensions == []
        await ws.send("m")
        assert await ws.recv() == "echo:m"


async def test_a_refusal_before_accept_is_still_a_403() -> None:
    async with serving() as (server, url):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url + "/other"):
                pass
        assert refused.value.response.status_code == 403
        # The server forgets the connection once it has seen it close (a
        # callback or two after the client's): wait for that, generously.
        async with asyncio.timeout(30):
            while protocols(server):
                await asyncio.sleep(0.01)


def _attribute_uses(cls: type, attribute: str) -> dict[str, set[str]]:
    """Per method of ``cls``: which members of ``self.<attribute>`` it uses
    ("" when it reads ``self.<attribute>`` itself)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    uses: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Attribute)
                and isinstance(sub.value, ast.Name)
                and sub.value.id == "self"
                and sub.attr == attribute
            ):
                uses.setdefault(node.name, set())
        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Attribute)
                and isinstance(sub.value, ast.Attribute)
                and isinstance(sub.value.value, ast.Name)
                and sub.value.value.id == "self"
                and sub.value.attr == attribute
            ):
                uses.setdefault(node.name, set()).add(sub.attr)
    return uses


def test_uvicorn_uses_only_what_the_slim_queue_and_event_provide() -> None:
    for attribute, slim in (("queue", SlimQueue), ("writable", SlimEvent)):
        used = set().union(*_attribute_uses(BASE, attribute).values())
        assert used, f"uvicorn no longer uses self.{attribute}: revisit service/ws_protocol.py"
        missing = {name for name in used if not hasattr(slim, name)}
        assert missing == set(), f"uvicorn uses self.{attribute}.{missing}"


def test_uvicorn_reads_the_handshake_only_where_it_is_still_held() -> None:
    # request/response/scope are dropped after the handshake is answered; the
    # methods that read them must be the ones that run before that (or, for
    # send, only while the handshake is not complete: checked above live).
    allowed = {"handle_connect", "run_asgi", "send"}
    for attribute in HANDSHAKE_ATTRIBUTES:
        readers = set(_attribute_uses(BASE, attribute))
        assert readers, f"uvicorn no longer keeps self.{attribute}: revisit service/ws_protocol.py"
        assert readers <= allowed, f"self.{attribute} is read in {readers - allowed}"


async def test_slim_queue_and_event_behave_like_asyncio_ones() -> None:
    queue = SlimQueue()
    assert queue.empty()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    waiting.cancel()  # a cancelled reader loses nothing
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert await reader == 1
    assert not queue.empty() and queue.qsize() == 1
    assert await queue.get() == 2
    assert queue.empty() and vars_of(queue) == {"_items": None, "_getters": None}

    event = SlimEvent()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    event.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert event.is_set() and await event.wait()
    event.clear()
    assert not event.is_set() and vars_of(event) == {"_is_set": False, "_waiters": None}


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in type(obj).__slots__}


def test_uvicorn_reads_its_keepalive_state_only_where_it_is_replaced() -> None:
    # service/ws_shared.py stores none of it: the methods that use it must be
    # overridden, or be reached only from uvicorn's keepalive methods that are.
    # What the class and its own bases (service/ws_guards.py) define over uvicorn's.
    ours = LeanWebSocketProtocol.__mro__[: LeanWebSocketProtocol.__mro__.index(BASE)]
    replaced = set().union(*(vars(cls) for cls in ours)) | {"__init__"}
    keepalive_only = {"schedule_ping", "send_keepalive_ping"}
    for name in keepalive_only:
        callers = set(_attribute_uses(BASE, name))
        assert callers <= replaced | keepalive_only, f"{name} is called from {callers}"
    for attribute in UNUSED_ATTRIBUTES:
        users = set(_attribute_uses(BASE, attribute))
        assert users, f"uvicorn no longer uses self.{attribute}: revisit service/ws_shared.py"
        assert users <= replaced | keepalive_only, f"self.{attribute} is used in {users}"
