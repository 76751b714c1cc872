"""Redis Cluster clients (REDIS_CLUSTER_URL), with their pools and timeouts stated.

redis-py's asyncio cluster client does not wait for a free connection: past
``max_connections`` per node it raises at once, and without a cap a burst of
sockets opens one connection per concurrent call. Both hurt a ramp of
hundreds of handshakes (a capped pool made most of them fail once). Here
concurrent commands and pipelines each wait on a semaphore instead, so a
node sees at most ``2 * CONCURRENCY`` connections from a process. The
client's own cap stays unset (redis-py 7.4 counts a connection whose send
failed as taken for good, so a cap would close a node off after enough
failures).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.cluster
from redis.asyncio.cluster import ClusterPipeline, NodesManager
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
        # The same object, with the refresh below (NodesManager has __slots__
        # and is built inside RedisCluster.__init__, so it cannot be wrapped).
        self.nodes_manager.__class__ = AdoptingNodesManager

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.command_slots:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        return BoundedPipeline(self, transaction)  # type: ignore[abstract]


class AdoptingNodesManager(NodesManager):
    __slots__ = ()

    async def initialize(self) -> None:
        """The client's slot-map refresh (after MOVED or a lost node), then
        one node object per address.

        redis-py 7.4 keeps the old node objects in ``nodes_cache`` but routes
        through new ones in ``slots_cache``; the next refresh drops those with
        their connections open ("Unclosed ClusterNode object" errors, sockets
        left to the garbage collector). Here the slot map routes through the
        cached objects, and objects no longer referenced are disconnected.
        """
        before = _node_objects(self)
        await super().initialize()
        adopted: dict[int, list[Any]] = {}
        for slot, nodes in self.slots_cache.items():
            if id(nodes) not in adopted:  # slots of one range share their list
                adopted[id(nodes)] = [self.nodes_cache.get(node.name, node) for node in nodes]
            self.slots_cache[slot] = adopted[id(nodes)]
        current = _node_objects(self)
        for key, node in before.items():
            if key not in current:
                with contextlib.suppress(Exception):
                    await node.disconnect()


class BoundedPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = self.cluster_client
        assert isinstance(client, BoundedCluster)
        async with client.pipeline_slots:
            return await super().execute(raise_on_error, allow_redirections)


def async_client(url: str) -> BoundedCluster:
    client = BoundedCluster.from_url(
        url,
        # redis-py's default retries (3, with backoff) follow a failover: a
        # refreshed slot map and another try.
        **TIMEOUTS,
    )
    assert isinstance(client, BoundedCluster)  # from_url is cls(...)
    return client


def sync_client(url: str) -> redis.cluster.RedisCluster:
    """For the writer threads (few, so the per-node pools stay small)."""
    return redis.cluster.RedisCluster.from_url(url, **TIMEOUTS)


def _node_objects(manager: Any) -> dict[int, Any]:
    found: dict[int, Any] = {}
    for nodes in manager.slots_cache.values():
        for node in nodes:
            found[id(node)] = node
    for table in (manager.nodes_cache, manager.startup_nodes):
        for node in table.values():
            found[id(node)] = node
    return found


async def ping_primaries(client: AsyncRedisCluster) -> None:
    await client.execute_command("PING", target_nodes=AsyncRedisCluster.PRIMARIES)
