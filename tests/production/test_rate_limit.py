"""Rate limits: the publisher bucket shared across processes, and per-socket abuse.

Contract: ``NOTIFY_PUBLISH_RATE`` is "per publisher key, e.g. 1000/s (burst twice
that)"; over it: "429 {"detail": ...} plus Retry-After"; "A failure is
all-or-nothing: no recipient gets a notification from a rejected request".
Sockets: "1008 for abuse (frames too large or too fast; 1009 is also fine for a
frame over the size limit, default 64 KiB)"; docs/configuration.md:
``NOTIFY_WS_FRAME_RATE`` default 20/s, burst 40.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.production.conftest import (
    ServerPool,
    Sockets,
    new_user,
    post_notification,
    prod_env,
    publish,
    stored_notifications,
)
from tests.support.servers import LiveServer, RedisServer

pytestmark = pytest.mark.live

RATE = 5.0  # per second
POSTS = 30
# The bucket test's own publisher, at 5/m: a burst of 10 (twice the count) and
# one token per 12 s, so however slowly the 30 POSTs go on a loaded machine,
# the refill stays far below the 20 refusals the test needs.
SLOW_RATE = "5/m"
SLOW_PER_S = 5 / 60
SLOW_BURST = 10
BURST_SECRET = "prod-burst-" + secrets.token_hex(24)


@pytest.fixture(scope="module")
def pair(module_pool: ServerPool, module_redis: RedisServer, module_db: str) -> list[LiveServer]:
    env = prod_env(module_db, module_redis.url, NOTIFY_PUBLISH_RATE=f"{int(RATE)}/s")
    return module_pool.start_many(2, env)


@pytest.fixture(scope="module")
def slow_pair(
    module_pool: ServerPool, module_redis: RedisServer, module_db: str
) -> list[LiveServer]:
    """Two processes whose only publisher (``burst``, unused elsewhere) starts full."""
    env = prod_env(
        module_db,
        module_redis.url,
        NOTIFY_PUBLISH_RATE=SLOW_RATE,
        NOTIFY_API_KEYS=f"burst:{BURST_SECRET}",
    )
    return module_pool.start_many(2, env)


async def test_publisher_bucket_is_shared_by_both_processes(
    slow_pair: list[LiveServer], http: httpx.AsyncClient
) -> None:
    pair = slow_pair
    user = new_user("limited")
    started = time.monotonic()
    responses = await asyncio.gather(
        *(
            post_notification(
                http, pair[i % 2], [user], secret=BURST_SECRET, title=f"burst-{i}", data={"i": i}
            )
            for i in range(POSTS)
        )
    )
    elapsed = time.monotonic() - started

    accepted = [r for r in responses if r.status_code == 202]
    limited = [r for r in responses if r.status_code == 429]
    assert len(accepted) + len(limited) == POSTS, [(r.status_code, r.text) for r in responses]
    # One bucket for the publisher in Redis: the whole burst was granted, plus
    # at most what refilled meanwhile; two buckets would have granted twice it.
    ceiling = SLOW_BURST + math.ceil(SLOW_PER_S * elapsed) + 1
    assert SLOW_BURST <= len(accepted) <= ceiling, (len(accepted), f"{elapsed:.2f}s")
    # Both processes refused some: neither had a bucket of its own.
    assert {str(r.url).split("/api")[0] for r in limited} == {pair[0].url, pair[1].url}
    for response in limited:
        assert int(response.headers["Retry-After"]) >= 1, response.headers
        body = response.json()
        assert isinstance(body["detail"], str) and body["detail"], body

    # A 429 stored nothing: the user has exactly the accepted ones.
    stored = await stored_notifications(http, pair[0], user)
    assert len(stored) == len(accepted)
    accepted_titles = {f"burst-{i}" for i, r in enumerate(responses) if r.status_code == 202}
    assert {n["title"] for n in stored} == accepted_titles
    print(f"{len(accepted)} of {POSTS} accepted in {elapsed:.2f}s")


async def test_a_socket_sending_too_fast_is_closed_with_1008_others_keep_working(
    pair: list[LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    server = pair[0]
    bystander_user = new_user("calm")
    bystander = await sockets.open(server, bystander_user)
    flooder = await sockets.open(server, new_user("flood"))

    with contextlib.suppress(ConnectionClosed):
        for _ in range(200):
            await flooder.ws.send('{"type": "ping"}')
    assert await flooder.wait_closed(timeout=15) == 1008
    # It was answered for a while (the burst), then cut off.
    assert 1 <= len(flooder.of_type("pong")) <= 200

    await bystander.ping()
    await publish(http, pair[1], [bystander_user], title="still delivered")
    [note] = await bystander.wait_count(1)
    assert note["title"] == "still delivered"


async def test_an_oversized_frame_closes_that_socket_only(
    pair: list[LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    server = pair[1]
    bystander_user = new_user("calm")
    bystander = await sockets.open(server, bystander_user)
    big = await sockets.open(server, new_user("big"))

    frame = '{"type": "ping", "pad": "' + "x" * (70 * 1024) + '"}'
    with contextlib.suppress(ConnectionClosed):
        await big.ws.send(frame)
    assert await big.wait_closed(timeout=15) in (1008, 1009)

    await bystander.ping()
    await publish(http, pair[0], [bystander_user], title="unaffected")
    [note] = await bystander.wait_count(1)
    assert note["title"] == "unaffected"
