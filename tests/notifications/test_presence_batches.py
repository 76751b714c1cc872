"""Presence on a real Redis: sockets that open together share pipelines.

In a reconnect storm every socket adds itself to presence; one pipeline per
socket queued them on the bounded pool (32 connections, 5 s wait) and the
late ones timed out (a warning with a traceback each). Batched, they all go
over the connection in use, and every one is counted.
"""

from __future__ import annotations

import asyncio

from redis import asyncio as aioredis

from notifications import presence
from notifications.redis_clients import RedisSettings
from tests.support.servers import RedisServer

SOCKETS = 400


async def test_sockets_opening_together_share_one_connection(
    fresh_redis_server: RedisServer,
) -> None:
    backend = presence.RedisPresence(RedisSettings(urls=(fresh_redis_server.url,)), "batch")
    observer = aioredis.Redis.from_url(fresh_redis_server.url)
    try:
        before = (await observer.info("stats"))["total_connections_received"]
        await asyncio.gather(*(backend.connected(f"u{i}", f"c{i}") for i in range(SOCKETS)))
        opened = (await observer.info("stats"))["total_connections_received"] - before
        counts = await asyncio.gather(*(backend.count(f"u{i}") for i in range(SOCKETS)))
    finally:
        await observer.aclose()
        for client in backend._clients.values():
            await client.aclose(close_connection_pool=True)
    assert counts == [1] * SOCKETS
    # One batch in flight at a time: the first connection serves them all
    # (one per socket would have taken the pool's 32).
    assert opened == 1
