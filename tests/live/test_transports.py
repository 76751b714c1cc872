"""The contract's stream behaviours, once for each transport: WebSocket and SSE.

Both transports are adapters over one stream engine (realtime/engine.py);
these tests hold them to the same contract on real uvicorn processes: replay
racing live publishes (no gap, no duplicate), two devices, expiry, drain, the
slow client, and delivery across processes over Redis. Read sync across a
socket and a stream is one test with one of each.

SSE has no client frames, so where the socket tests use a ping round trip to
be sure nothing more is on its way, these publish one last notification and
wait for it: anything sent twice or out of order would have come before it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.live.conftest import (
    Frame,
    Socket,
    eventually,
    make_token,
    new_user,
    presence,
    publish,
    server_env,
    start_server,
    stop_server,
    stored_notifications,
    user_headers,
    ws_connect,
)
from tests.support.live import ME_PATH, WS_PATH
from tests.support.net import tiny_buffer_socket
from tests.support.servers import LiveServer, RedisServer
from tests.support.sse import Stream, open_stream

pytestmark = pytest.mark.live

Pair = tuple[LiveServer, LiveServer]
TRANSPORTS = ["ws", "sse"]


class Connections:
    """Opens sockets or streams for a test and closes every one when it ends."""

    def __init__(self) -> None:
        self.opened: list[Socket] = []

    async def open(
        self,
        transport: str,
        server: LiveServer,
        user: str,
        *,
        since: str | None = None,
        exp_in: float = 3600,
        wait_ready: bool = True,
        last_event_id: bool = False,
    ) -> Socket:
        token = make_token(user, exp_in=exp_in)
        label = f"{transport}({user} on :{server.port} since={since})"
        conn: Socket
        if transport == "ws":
            ws = await ws_connect(server, token=token, query=f"since={since}" if since else "")
            conn = Socket(ws, label)
        else:
            headers = {"Last-Event-ID": since} if since and last_event_id else {}
            query = f"since={since}" if since and not last_event_id else ""
            conn = stream = await open_stream(
                server, token=token, query=query, headers=headers, label=label
            )
            assert await stream.answered() == 200, stream.body
        self.opened.append(conn)
        if wait_ready:
            await conn.ready()
        return conn

    async def close_all(self) -> None:
        await asyncio.gather(*(c.close() for c in self.opened))


@pytest.fixture
async def conns() -> AsyncIterator[Connections]:
    opened = Connections()
    yield opened
    await opened.close_all()


async def settle(http: httpx.AsyncClient, server: LiveServer, user: str, *conns: Socket) -> int:
    """Publish one last notification and wait until every connection has it:
    whatever a connection would have sent twice or late came before it."""
    title = f"last-{uuid.uuid4().hex}"
    await publish(http, server, [user], title=title)
    for conn in conns:
        await conn.wait_for(
            lambda c: any(n["title"] == title for n in c.notifications()),
            what="the last notification",
        )
    return max(c.ids()[-1] for c in conns)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_resume_while_another_process_publishes_has_no_gap_and_no_duplicate(
    transport: str, pair: Pair, conns: Connections, http: httpx.AsyncClient
) -> None:
    a, b = pair
    user = new_user()
    total = 120
    accepted = 0

    async def hammer() -> None:
        nonlocal accepted
        gate = asyncio.Semaphore(6)

        async def one(i: int) -> None:
            nonlocal accepted
            async with gate:
                await publish(http, b, [user], title=f"n{i}")
                accepted += 1

        await asyncio.gather(*(one(i) for i in range(total)))

    async def wait_accepted(count: int) -> None:
        while accepted < count:
            await asyncio.sleep(0.005)

    publisher = asyncio.create_task(hammer())
    resumed = []
    try:
        for k in range(6):
            await asyncio.wait_for(wait_accepted(5 + k * 20), 60)
            resumed.append(
                await conns.open(
                    transport,
                    a if k % 2 else b,
                    user,
                    since="0",
                    wait_ready=False,
                    last_event_id=k % 3 == 0,
                )
            )
    finally:
        await publisher
    last = await settle(http, a, user, *resumed)
    assert last == total + 1
    stored = await stored_notifications(http, a, user)
    for conn in resumed:
        ready = await conn.ready()
        assert ready["complete"] is True
        assert conn.ids() == list(range(1, total + 2)), conn.label
        assert conn.notifications() == stored, conn.label
        assert len(conn.of_type("ready")) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_two_devices_on_two_processes_get_everything_and_no_one_else_does(
    transport: str, pair: Pair, conns: Connections, http: httpx.AsyncClient
) -> None:
    a, b = pair
    user, other = new_user(), new_user()
    phone = await conns.open(transport, a, user)
    laptop = await conns.open(transport, b, user)
    bystander = await conns.open(transport, a, other)
    for i in range(5):
        await publish(http, a if i % 2 else b, [user], title=f"n{i}")
    await phone.wait_count(5)
    await laptop.wait_count(5)
    await settle(http, b, other, bystander)
    assert [n["title"][:5] for n in bystander.notifications()] == ["last-"]
    assert phone.notifications() == laptop.notifications()
    assert [n["title"] for n in phone.notifications()] == [f"n{i}" for i in range(5)]
    # Both count as connections, across the processes.
    answer = await presence(http, a, user)
    assert answer["connections"] == 2, answer


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_delivery_across_processes_over_redis(
    transport: str, pair: Pair, conns: Connections, http: httpx.AsyncClient
) -> None:
    a, b = pair
    user = new_user()
    conn = await conns.open(transport, a, user)
    answer = await publish(http, b, [user], title="from b", data={"k": 1})
    [n] = await conn.wait_count(1)
    assert (n["title"], n["data"]) == ("from b", {"k": 1})
    assert int(n["id"]) == 1 and answer


async def test_read_sync_between_a_socket_and_a_stream(
    pair: Pair, conns: Connections, http: httpx.AsyncClient
) -> None:
    a, b = pair
    user = new_user()
    socket = await conns.open("ws", a, user)
    stream = await conns.open("sse", b, user)
    for i in range(3):
        await publish(http, a, [user], title=f"n{i}")
    await socket.wait_count(3)
    await stream.wait_count(3)

    # Read over the socket: the stream (on the other process) is told.
    await socket.send_json({"type": "read", "ids": ["1"]})
    await stream.wait_for(lambda s: bool(s.of_type("read")), what="a read event")
    assert stream.of_type("read") == [{"type": "read", "ids": ["1"]}]
    assert socket.of_type("read") == []  # not told of its own read

    # Read over REST: both are told.
    response = await http.post(
        b.url + ME_PATH + "/read", json={"ids": ["2", "3"]}, headers=user_headers(user)
    )
    assert response.json() == {"updated": 2}
    for conn in (socket, stream):
        await conn.wait_for(lambda c: len(c.of_type("read")) == (2 if c is stream else 1))
        assert conn.of_type("read")[-1]["ids"] == ["2", "3"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_token_expiry_closes_with_4401(
    transport: str, single_server: LiveServer, conns: Connections
) -> None:
    conn = await conns.open(transport, single_server, new_user(), exp_in=2)
    assert await conn.wait_closed(timeout=20) == 4401


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sigterm_drains_with_1012(
    transport: str, tmp_path: Path, conns: Connections, http: httpx.AsyncClient
) -> None:
    db = tmp_path / "db.sqlite3"
    server = start_server(server_env(f"sqlite:///{db.resolve()}", NOTIFY_DRAIN_SECONDS="1"))
    try:
        user = new_user()
        opened = [await conns.open(transport, server, user) for _ in range(3)]
        answer = await presence(http, server, user)
        assert answer["connections"] == 3
        os.kill(server.pid, signal.SIGTERM)
        codes = [await conn.wait_closed(timeout=20) for conn in opened]
        assert codes == [1012] * 3
        if transport == "sse":
            for conn in opened:
                assert isinstance(conn, Stream)
                assert 250 <= conn.retries[-1] <= 2500  # EventSource's random delay
    finally:
        stop_server(server)


BLOB = base64.b64encode(os.urandom(6000)).decode()  # incompressible, 8000 characters


@pytest.fixture(scope="module")
def slow_server(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = tmp_path_factory.mktemp("slow") / "db.sqlite3"
    env = server_env(f"sqlite:///{db.resolve()}", redis_server.url, NOTIFY_WS_SEND_QUEUE="50")
    env["NOTIFY_REDIS_PREFIX"] = f"slow{os.getpid()}"
    server = start_server(env)
    yield server
    stop_server(server)


async def _open_slow(transport: str, server: LiveServer, user: str) -> tuple[Any, Any]:
    """A client that reads nothing after the handshake, with a tiny receive buffer."""
    token = make_token(user)
    if transport == "ws":
        ws = await connect(
            f"{server.ws_url}{WS_PATH}?since=0",
            sock=tiny_buffer_socket(server),
            additional_headers={"Authorization": f"Bearer {token}"},
            proxy=None,
            max_size=None,
            max_queue=1,
            compression=None,
            ping_interval=None,
            open_timeout=30,
        )
        return ws, None
    stream = await open_stream(
        server, token=token, query="since=0", sock=tiny_buffer_socket(server), paused=True
    )
    return None, stream


@pytest.mark.timeout(240)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_client_that_stops_reading_is_closed_4008_and_resumes_losing_nothing(
    transport: str, slow_server: LiveServer, conns: Connections, http: httpx.AsyncClient
) -> None:
    server = slow_server
    slow_user, fast_user = new_user("slow"), new_user("fast")
    fast = await conns.open(transport, server, fast_user, since="0")
    ws, stream = await _open_slow(transport, server, slow_user)
    await eventually(
        lambda: presence(http, server, slow_user),
        lambda answer: answer["connections"] == 1,
        what="the slow client to be connected",
    )
    dropped_before = await metric_value(http, server, "notify_notifications_dropped_total")
    published = 0
    while published < 1500:
        await asyncio.gather(
            *(publish(http, server, [slow_user, fast_user], data={"b": BLOB}) for _ in range(100))
        )
        published += 100
        if await metric_value(http, server, "notify_notifications_dropped_total") > dropped_before:
            break  # its outbox overflowed: it is cut off
    # Closed for good: it no longer counts as connected.
    await eventually(
        lambda: presence(http, server, slow_user),
        lambda answer: answer["connections"] == 0,
        what="the slow client to leave presence",
    )
    seen = await _read_what_arrived(ws, stream)
    assert seen == list(range(1, len(seen) + 1)), seen
    assert len(seen) < published
    # The other user on the same process got everything, in order.
    await fast.wait_count(published)
    assert fast.ids() == list(range(1, published + 1))
    # The slow client resumes and gets exactly the rest.
    resumed = await conns.open(transport, server, slow_user, since=str(seen[-1] if seen else 0))
    await resumed.wait_count(published - len(seen))
    assert seen + resumed.ids() == list(range(1, published + 1))


async def metric_value(http: httpx.AsyncClient, server: LiveServer, name: str) -> float:
    response = await http.get(server.url + "/metrics")
    for line in response.text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    return 0.0


async def _read_what_arrived(ws: Any, stream: Stream | None) -> list[int]:
    """Read what reached the slow client before it was cut off (4008 for a
    socket; a stream gets 4008 or, when even that cannot be written, is cut)."""
    if stream is not None:
        stream.resume()
        await stream.wait_closed(timeout=60)
        assert stream.close_code in (4008, None), stream.close_code
        await stream.close()
        return stream.ids()
    seen: list[int] = []
    try:
        while True:
            frame: Frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if frame["type"] == "notification":
                seen.append(int(frame["notification"]["id"]))
    except Exception:
        pass
    assert ws.close_code == 4008, ws.close_code
    await ws.close()
    return seen


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_hundreds_of_connections_then_one_batch_reaches_all(
    transport: str, pair: Pair, conns: Connections, http: httpx.AsyncClient
) -> None:
    a, b = pair
    users = [new_user(f"many{i}") for i in range(300)]
    opened = await asyncio.gather(
        *(conns.open(transport, a, user, wait_ready=False) for user in users)
    )
    readies = await asyncio.gather(*(c.ready(timeout=90) for c in opened))
    assert [r["user"] for r in readies] == users
    answer = await publish(http, b, users, title="to everyone")
    assert answer["recipients"] == 300
    await asyncio.gather(*(c.wait_count(1, timeout=90) for c in opened))
    assert all([n["id"] for n in c.notifications()] == ["1"] for c in opened)
