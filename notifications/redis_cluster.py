"""Redis Cluster clients (REDIS_CLUSTER_URL), with their pools and timeouts stated.

redis-py's asyncio cluster client does not wait for a free connection: past
``max_connections`` per node it raises at once, and without a cap a burst of
sockets opens one connection per concurrent call. Both hurt a ramp of
hundreds of handshakes (a capped pool made most of them fail once). Here
concurrent commands and pipelines each wait on a semaphore instead, so a
node sees at most ``2 * CONCURRENCY`` connections from a process, and the cap
is set above that so it is never what refuses a call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.cluster
from redis.asyncio.cluster import ClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

# Calls in flight per process (each holds at most one connection per node).
CONCURRENCY = 32
TIMEOUTS: dict[str, Any] = {
    "socket_connect_timeout": 2,
    "socket_timeout": 3,
    "socket_keepalive": True,
}


class BoundedCluster(AsyncRedisCluster):
    """An asyncio cluster client whose callers queue rather than fail in a burst."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Separate bounds: a pipeline may issue commands for its redirections.
        self.command_slots = asyncio.Semaphore(CONCURRENCY)
        self.pipeline_slots = asyncio.Semaphore(CONCURRENCY)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.command_slots:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        return BoundedPipeline(self, transaction)  # type: ignore[abstract]


class BoundedPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = self.cluster_client
        assert isinstance(client, BoundedCluster)
        async with client.pipeline_slots:
            return await super().execute(raise_on_error, allow_redirections)


def async_client(url: str) -> BoundedCluster:
    client = BoundedCluster.from_url(
        url,
        max_connections=2 * CONCURRENCY + 8,
        # Retries that follow a failover: a refreshed slot map and another try.
        cluster_error_retry_attempts=3,
        **TIMEOUTS,
    )
    assert isinstance(client, BoundedCluster)  # from_url is cls(...)
    return client


def sync_client(url: str) -> redis.cluster.RedisCluster:
    """For the writer threads (few, so the per-node pools stay small)."""
    return redis.cluster.RedisCluster.from_url(url, cluster_error_retry_attempts=3, **TIMEOUTS)


async def ping_primaries(client: AsyncRedisCluster) -> None:
    await client.execute_command("PING", target_nodes=AsyncRedisCluster.PRIMARIES)
