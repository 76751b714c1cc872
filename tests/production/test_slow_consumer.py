"""A client that stops reading is cut off alone, and loses nothing.

Contract: "4008 when the client reads too slowly and its outgoing buffer overflows
(it reconnects with since and loses nothing)". Architecture: "a slow client:
publishing unaffected; that socket alone is closed with 4008". Here the outgoing
buffer is ``NOTIFY_WS_SEND_QUEUE=50`` frames; the slow client has a 4 KiB kernel
receive buffer and a one-frame client queue, and does not read while a few hundred
~8 KiB notifications are published to it and to another user on the same process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.production.conftest import (
    ServerPool,
    Sockets,
    eventually,
    make_token,
    metric_value,
    new_user,
    post_notification,
    presence,
    prod_env,
    stored_notifications,
    ws_url,
)
from tests.support.net import tiny_buffer_socket
from tests.support.servers import LiveServer, RedisServer

pytestmark = pytest.mark.live

SEND_QUEUE = 50
ROUND = 100
MAX_NOTIFICATIONS = 1500
# Incompressible, so that permessage-deflate (if negotiated) cannot shrink it.
BLOB = base64.b64encode(os.urandom(6000)).decode()  # 8000 characters
DRAIN_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def server(module_pool: ServerPool, module_redis: RedisServer, module_db: str) -> LiveServer:
    env = prod_env(module_db, module_redis.url, NOTIFY_WS_SEND_QUEUE=str(SEND_QUEUE))
    return module_pool.start(env)


@pytest.mark.timeout(180)
async def test_a_client_that_stops_reading_is_closed_4008_and_resumes_losing_nothing(
    server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    slow_user, fast_user = new_user("slow"), new_user("fast")
    fast = await sockets.open(server, fast_user, query="since=0")
    dropped_before = await metric_value(http, server, "notify_notifications_dropped_total")

    # The slow client: handshake, then it reads nothing (a one-frame client queue
    # stops reading from the tiny kernel buffer; the server's buffers fill up).
    slow = await connect(
        ws_url(server, "since=0"),
        sock=tiny_buffer_socket(server),
        additional_headers={"Authorization": f"Bearer {make_token(slow_user)}"},
        proxy=None,
        max_size=None,
        max_queue=1,
        compression=None,
        ping_interval=None,
        open_timeout=30,
    )
    try:
        gate = asyncio.Semaphore(8)

        async def post_one(i: int) -> None:
            async with gate:
                response = await post_notification(
                    http, server, [slow_user, fast_user], title=f"n-{i}", data={"blob": BLOB}
                )
            assert response.status_code == 202, response.text

        # Publish in rounds until the server gives up on the slow socket (the
        # kernel's loopback buffers alone can hold a few MiB, hence no fixed count).
        started = time.monotonic()
        published = 0
        while published < MAX_NOTIFICATIONS:
            await asyncio.gather(*(post_one(published + i) for i in range(ROUND)))
            published += ROUND
            dropped = await metric_value(http, server, "notify_notifications_dropped_total")
            if dropped > dropped_before:
                break
        publish_seconds = time.monotonic() - started
        assert dropped > dropped_before, (
            f"the slow socket's buffer never overflowed after {published} notifications"
        )

        # The other user's socket on the same process got everything, in order.
        await fast.wait_count(published, timeout=DRAIN_TIMEOUT)
        await fast.ping()
        assert fast.ids() == list(range(1, published + 1))
        assert not fast.closed

        # Now read what reached the slow client before it was cut off: a prefix of
        # the ids, then the close frame with 4008.
        seen: list[int] = []

        async def read_all() -> None:
            with pytest.raises(ConnectionClosed):
                while True:
                    frame = json.loads(await slow.recv())
                    if frame["type"] == "notification":
                        seen.append(int(frame["notification"]["id"]))

        await asyncio.wait_for(read_all(), DRAIN_TIMEOUT)
        assert slow.close_code == 4008, (slow.close_code, slow.close_reason)
        assert seen == list(range(1, len(seen) + 1)), seen
        assert len(seen) < published, "the slow client was not slow"
    finally:
        await slow.close()
    # Closed for good: it no longer counts as connected.
    await eventually(
        lambda: presence(http, server, slow_user),
        lambda answer: answer["connections"] == 0,
        what="the slow socket to leave presence",
    )

    # It reconnects with since and gets exactly the rest.
    resumed = await sockets.open(server, slow_user, query=f"since={len(seen)}")
    ready = resumed.of_type("ready")[0]
    assert ready["complete"] is True
    assert ready["replayed"] == published - len(seen)
    assert seen + resumed.ids() == list(range(1, published + 1))
    stored = await stored_notifications(http, server, slow_user)
    assert [n["id"] for n in stored[len(seen) :]] == [n["id"] for n in resumed.notifications()]
    assert resumed.notifications() == stored[len(seen) :]
    print(
        f"slow client saw {len(seen)} of {published} before 4008; "
        f"published in {publish_seconds:.1f}s"
    )
