"""Which process is which, and which are alive.

Each process with Redis keeps ``notify:process:<process id>`` (its host name,
the pod's name in Kubernetes, its pid and start time, as JSON) alive: set
every ``HEARTBEAT`` seconds with an expiry of ``TTL``. The key is the
process's liveness for presence (notifications/presence.py: a member
``<process id>:<channel>`` counts while its process's key exists) and tells
support tools where a user's sockets are (``manage.py notify_inspect``).
One key per process, whatever its socket count: the only presence write an
idle process makes every heartbeat.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis

HEARTBEAT = 10.0  # seconds between two announcements
TTL = 30.0  # an announcement's expiry: a process is gone TTL after its last one
PROCESS_ID = uuid.uuid4().hex[:12]
PREFIX = "notify"  # the key prefix of presence.backend()
STARTED_AT = time.time()


def process_key(process_id: str, prefix: str = PREFIX) -> str:
    return f"{prefix}:process:{process_id}"


def this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started_at": STARTED_AT}


async def announce(client: Any, prefix: str = PREFIX) -> bool:
    """Sets this process's key for another ``TTL``; False when it had expired
    (or never existed): others may then have taken this process for dead and
    removed its presence members, which the caller writes again."""
    key = process_key(PROCESS_ID, prefix)
    pipe = client.pipeline(transaction=False)
    pipe.exists(key)
    pipe.set(key, json.dumps(this_process()), ex=int(TTL))
    existed, _ = await pipe.execute()
    return bool(existed)


class Liveness:
    """Which processes are alive, as this process last looked.

    A process found alive is taken for alive until its key's expiry as read
    then (``PTTL``, Redis's own clock: no skew between hosts), and looked up
    again after that: about once per ``TTL`` per process, however many
    sockets and users it has. An unknown process is looked up at once, so a
    process started since the last look counts from its first socket.
    """

    def __init__(self, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self._until: dict[str, float] = {}  # process id -> monotonic deadline

    async def alive(self, client: Any, process_ids: Iterable[str]) -> set[str]:
        ids = set(process_ids)
        now = time.monotonic()
        stale = sorted(p for p in ids if p != PROCESS_ID and self._until.get(p, 0.0) <= now)
        if stale:
            # One PTTL per key in a pipeline: on a Redis Cluster the process
            # keys live in different slots.
            pipe = client.pipeline(transaction=False)
            for process_id in stale:
                pipe.pttl(process_key(process_id, self.prefix))
            answers: list[int] = await pipe.execute()
            self._until = {p: t for p, t in self._until.items() if t > now}
            for process_id, ms in zip(stale, answers, strict=True):
                if ms == -1:  # no expiry (not written by this code): trust it a TTL
                    self._until[process_id] = now + TTL
                elif ms > 0:
                    self._until[process_id] = now + ms / 1000
        return {p for p in ids if p == PROCESS_ID or self._until.get(p, 0.0) > now}


def describe(client: redis.Redis, process_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Process id -> its announced entry ({} when it has none: it is gone)."""
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
