"""Redis and the channel layer from the environment: standalone URLs (sharded
client-side), Sentinel, or a Redis Cluster; the in-process layer without any.
Read by service/settings.py at start-up, like service/config.py."""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from notifications.redis_clients import RedisSettings


def redis_settings(env: environ.Env) -> RedisSettings | None:
    cluster = redis_cluster_settings(env)
    if cluster is not None:
        return cluster
    sentinels_raw: str = env.str("REDIS_SENTINELS", default="")
    if sentinels_raw:
        master: str = env.str("REDIS_SENTINEL_MASTER", default="")
        if not master:
            raise ImproperlyConfigured(
                "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: name the master "
                "set the sentinels monitor (e.g. mymaster)."
            )
        sentinels = []
        for item in sentinels_raw.split(","):
            host, sep, port = item.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ImproperlyConfigured(
                    f"REDIS_SENTINELS entry {item!r} must be host:port (comma-separated)."
                )
            sentinels.append((host.strip("[]"), int(port)))
        password: str = env.str("REDIS_SENTINEL_PASSWORD", default="")
        return RedisSettings(
            urls=(),
            sentinels=tuple(sentinels),
            sentinel_master=master,
            sentinel_kwargs={"password": password} if password else None,
        )
    url: str = env.str("REDIS_URL", default="")
    if not url:
        return None
    hosts = tuple(h.strip() for h in url.split(",") if h.strip())
    for host in hosts:
        if urlsplit(host).scheme not in ("redis", "rediss", "unix"):
            raise ImproperlyConfigured(
                f"REDIS_URL entry {host!r} must start with redis://, rediss:// or unix://"
            )
    return RedisSettings(urls=hosts)


def redis_cluster_settings(env: environ.Env) -> RedisSettings | None:
    """REDIS_CLUSTER_URL: any node of a cluster; refused beside another Redis setting."""
    url: str = env.str("REDIS_CLUSTER_URL", default="").strip()
    if not url:
        return None
    others = [name for name in ("REDIS_URL", "REDIS_SENTINELS") if env.str(name, default="")]
    if others:
        raise ImproperlyConfigured(
            f"REDIS_CLUSTER_URL and {' and '.join(others)} are both set: a deployment uses one "
            "Redis, so unset one of them."
        )
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or "," in url:
        raise ImproperlyConfigured(
            f"REDIS_CLUSTER_URL must be one redis:// or rediss:// URL of any cluster node "
            f"(the others are discovered), got {url!r}."
        )
    if parts.path not in ("", "/", "/0"):
        raise ImproperlyConfigured("REDIS_CLUSTER_URL names a database; a cluster has only 0.")
    return RedisSettings(urls=(), cluster_url=url)


def channel_layer(env: environ.Env, redis: RedisSettings | None) -> dict[str, Any]:
    if redis is None:
        return {
            "BACKEND": "notifications.channel_layer.InMemoryNotifyLayer",
            # The in-memory layer drops over capacity; a large bound keeps
            # bursts in, the database covers anything that still drops.
            "CONFIG": {"capacity": 10_000, "expiry": 60},
        }
    if redis.cluster_url:
        # Sharded pub/sub, one connection per master (notifications/cluster_layer.py).
        return {
            "BACKEND": "notifications.cluster_layer.ClusterNotifyLayer",
            "CONFIG": {
                "url": redis.cluster_url,
                "prefix": env.str("NOTIFY_REDIS_PREFIX", default="notify"),
            },
        }
    # One connection kwargs dict per shard; several comma-separated URLs
    # shard groups by consistent hash, as channels-redis does.
    common = {"socket_connect_timeout": 3, "socket_keepalive": True, "health_check_interval": 10}
    shard_hosts: list[dict[str, Any]] = [{"address": h, **common} for h in redis.urls]
    if redis.sentinels:
        shard_hosts = [
            {
                "sentinels": list(redis.sentinels),
                "master_name": redis.sentinel_master,
                "sentinel_kwargs": redis.sentinel_kwargs,
                **common,
            }
        ]
    return {
        "BACKEND": "notifications.channel_layer.RedisNotifyLayer",
        "CONFIG": {
            "hosts": shard_hosts,
            "prefix": env.str("NOTIFY_REDIS_PREFIX", default="notify"),
        },
    }


def check_single_process_layer(layer: dict[str, Any]) -> None:
    """Refuse the in-process layer when several workers would each have their own."""
    if "InMemory" not in layer["BACKEND"]:
        return
    workers = env_workers()
    if workers > 1:
        raise ImproperlyConfigured(
            f"The in-memory channel layer works in one process only, but {workers} workers "
            "are configured: set REDIS_URL so that processes share a channel layer, "
            "or run a single worker."
        )


def env_workers() -> int:
    """Workers asked of uvicorn/gunicorn: WEB_CONCURRENCY or the parent's --workers."""
    count = int(os.environ.get("WEB_CONCURRENCY", "1") or "1")
    argv = list(sys.argv)
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
            argv += fh.read().decode(errors="replace").split("\0")
    except OSError:
        pass
    for i, arg in enumerate(argv):
        if arg in ("--workers", "-w") and i + 1 < len(argv) and argv[i + 1].isdigit():
            count = max(count, int(argv[i + 1]))
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
            if value.isdigit():
                count = max(count, int(value))
    return count
