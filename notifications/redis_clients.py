"""Redis clients for shared state other than the channel layer (presence,
rate limits): the first REDIS_URL, the Sentinel-managed master, or the
cluster (REDIS_CLUSTER_URL, notifications/redis_cluster.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from redis import asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from notifications import redis_cluster


@dataclass(frozen=True)
class RedisSettings:
    """Where shared state lives: plain URLs (the first also holds presence and
    rate limits), a Sentinel-managed master, or a Redis Cluster (any node)."""

    urls: tuple[str, ...]
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    sentinel_kwargs: dict[str, Any] | None = None
    cluster_url: str | None = None


_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 3}


def configured() -> RedisSettings | None:
    value: RedisSettings | None = settings.NOTIFY_REDIS
    return value


def sync_client(cfg: RedisSettings) -> Any:
    """A redis.Redis, or a redis.cluster.RedisCluster (the same commands)."""
    if cfg.cluster_url:
        return redis_cluster.sync_client(cfg.cluster_url)
    if cfg.sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(cfg.sentinels), sentinel_kwargs=cfg.sentinel_kwargs, **_TIMEOUTS
        )
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            cfg.sentinel_master or "", **_TIMEOUTS
        )
        return master
    return redis.Redis.from_url(cfg.urls[0], **_TIMEOUTS)


def async_single_client(cfg: RedisSettings) -> Any:
    """``async_client`` for a caller with one command in flight at a time (a
    loop's publish groups): one connection, no pool to check it out of per
    command. Sentinel and cluster: ``async_client``."""
    if cfg.cluster_url or cfg.sentinels:
        return async_client(cfg)
    return aioredis.Redis.from_url(cfg.urls[0], single_connection_client=True, **_TIMEOUTS)


def async_client(cfg: RedisSettings) -> Any:
    """A redis.asyncio.Redis, or a cluster client (the same commands)."""
    if cfg.cluster_url:
        return redis_cluster.async_client(cfg.cluster_url)
    if cfg.sentinels:
        sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]
            list(cfg.sentinels), sentinel_kwargs=cfg.sentinel_kwargs, **_TIMEOUTS
        )
        client: aioredis.Redis = sentinel.master_for(
            cfg.sentinel_master or "", health_check_interval=10, **_TIMEOUTS
        )
        return client
    # Bounded: a reconnect storm of N sockets must not open N connections
    # (callers wait up to 5 s for a free one instead).
    pool = aioredis.BlockingConnectionPool.from_url(
        cfg.urls[0], max_connections=32, timeout=5, health_check_interval=10, **_TIMEOUTS
    )
    return aioredis.Redis(connection_pool=pool)
