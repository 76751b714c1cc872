"""Which process is which: each process with Redis announces its host name
(the pod's name in Kubernetes) and pid under its presence id, so that support
tools can say where a user's sockets are (``manage.py notify_inspect``).

Presence members are ``<process id>:<channel>`` (notifications/presence.py);
``notify:process:<process id>`` holds that process's JSON, refreshed every
heartbeat and expiring with the presence TTL, so a dead process drops out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

import redis

from notifications import redis_clients
from notifications.presence import HEARTBEAT, PROCESS_ID, TTL

logger = logging.getLogger(__name__)

PREFIX = "notify"  # the key prefix of presence.backend()
STARTED_AT = time.time()


def process_key(process_id: str) -> str:
    return f"{PREFIX}:process:{process_id}"


def this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started_at": STARTED_AT}


async def announce_forever() -> None:
    """Keep this process's entry alive (only with Redis; no-op without)."""
    cfg = redis_clients.configured()
    if cfg is None:
        return
    client = redis_clients.async_client(cfg)
    payload = json.dumps(this_process())
    while True:
        try:
            await client.set(process_key(PROCESS_ID), payload, ex=int(TTL) + 5)
        except Exception:
            logger.warning("process announcement failed (Redis unreachable?)", exc_info=True)
        await asyncio.sleep(HEARTBEAT)


def describe(client: redis.Redis, process_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Process id -> its announced entry ({} when it has none, e.g. just gone)."""
    ids = sorted(set(process_ids))
    if not ids:
        return {}
    # One GET per key in a pipeline, not MGET: the keys may live in different
    # slots of a Redis Cluster.
    pipe = client.pipeline(transaction=False)
    for process_id in ids:
        pipe.get(process_key(process_id))
    values: list[bytes | None] = pipe.execute()
    found: dict[str, dict[str, Any]] = {}
    for process_id, value in zip(ids, values, strict=True):
        found[process_id] = json.loads(value) if value else {}
    return found
