"""Who is connected, counted across every process of the deployment.

Without Redis, a counter in this process (there is only one). With Redis,
each socket is a member of the sorted set ``presence:{<user's group>}``
scored by its expiry; this process refreshes its members every ``HEARTBEAT`` seconds, so
the sockets of a process that died without cleanup drop out after ``TTL``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from typing import Any

from redis import asyncio as aioredis

from notifications import delivery, redis_clients
from notifications.redis_clients import RedisSettings

logger = logging.getLogger(__name__)

HEARTBEAT = 10.0
TTL = 30.0
PROCESS_ID = uuid.uuid4().hex[:12]


def key_for(user_id: str, prefix: str = "notify") -> str:
    """The user's sorted set, hash-tagged with the user's group name as the
    user's sharded channel is: on a Redis Cluster one user's keys share a slot."""
    return f"{prefix}:presence:{{{delivery.group_name(user_id)}}}"


class MemoryPresence:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def connected(self, user_id: str, channel: str) -> None:
        self.counts[user_id] += 1

    async def disconnected(self, user_id: str, channel: str) -> None:
        self.counts[user_id] -= 1
        if self.counts[user_id] <= 0:
            del self.counts[user_id]

    async def count(self, user_id: str) -> int:
        return self.counts.get(user_id, 0)

    async def heartbeat_forever(self) -> None:
        return None


class RedisPresence:
    def __init__(self, cfg: RedisSettings, prefix: str) -> None:
        self.cfg = cfg
        self.prefix = prefix
        self.local: dict[str, str] = {}  # member -> user
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        # Removals waiting for the next pipelined batch, and its outcome.
        self._leaving: dict[str, str] | None = None
        self._left: asyncio.Future[None] | None = None
        self._remover: asyncio.Task[None] | None = None
        # Additions waiting for the next pipelined batch, and its outcome.
        self._joining: tuple[dict[str, str], asyncio.Future[None]] | None = None
        self._adder: asyncio.Task[None] | None = None

    def _redis(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis_clients.async_client(self.cfg)
            self._clients = {lp: c for lp, c in self._clients.items() if not lp.is_closed()}
            self._clients[loop] = client
        return client

    def _key(self, user_id: str) -> str:
        return key_for(user_id, self.prefix)

    async def connected(self, user_id: str, channel: str) -> None:
        """Adds the socket; the sockets opening while one pipeline is in
        flight share the next (a reconnect storm of 10,000 sockets would
        otherwise queue for the 32 pooled connections, past their timeout)."""
        member = f"{PROCESS_ID}:{channel}"
        self.local[member] = user_id
        loop = asyncio.get_running_loop()
        if self._adder is not None and self._adder.get_loop() is not loop:
            self._adder = self._joining = None  # a batch of a loop that has ended
        if self._joining is None:
            self._joining = ({}, loop.create_future())
            if self._adder is None or self._adder.done():
                self._adder = asyncio.ensure_future(self._add_joining())
        members, done = self._joining
        members[member] = user_id
        await asyncio.shield(done)

    async def _add_joining(self) -> None:
        await asyncio.sleep(0)  # let the sockets opening in this loop turn join
        while self._joining is not None:
            (members, done), self._joining = self._joining, None
            try:
                await self._touch(members)
            except Exception:
                logger.warning(
                    "presence update of %d sockets failed (Redis unreachable?)",
                    len(members),
                    exc_info=True,
                )
            finally:
                done.set_result(None)

    async def disconnected(self, user_id: str, channel: str) -> None:
        """Removes the socket; the removals of sockets closing together share
        one pipeline (10,000 sockets closing at once would otherwise wait in
        line for the 32 pooled connections, past their timeout)."""
        member = f"{PROCESS_ID}:{channel}"
        self.local.pop(member, None)
        if self._leaving is None or self._left is None:
            self._leaving = {}
            self._left = asyncio.get_running_loop().create_future()
            self._remover = asyncio.ensure_future(self._remove_leaving())
        self._leaving[member] = user_id
        await asyncio.shield(self._left)

    async def _remove_leaving(self) -> None:
        await asyncio.sleep(0)  # let the sockets closing in this loop turn join
        members, done = self._leaving or {}, self._left
        self._leaving = self._left = None
        try:
            pipe = self._redis().pipeline(transaction=False)
            for member, user_id in members.items():
                pipe.zrem(self._key(user_id), member)
            await pipe.execute()
        except Exception:
            logger.warning(
                "presence removal of %d sockets failed; they expire in %ss",
                len(members),
                TTL,
                exc_info=True,
            )
        finally:
            if done is not None:
                done.set_result(None)

    async def count(self, user_id: str) -> int:
        key = self._key(user_id)
        now = time.time()
        pipe = self._redis().pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zcard(key)
        _removed, count = await pipe.execute()
        return int(count)

    async def _touch(self, members: dict[str, str]) -> None:
        expires = time.time() + TTL
        pipe = self._redis().pipeline(transaction=False)
        for member, user_id in members.items():
            key = self._key(user_id)
            pipe.zadd(key, {member: expires})
            pipe.expire(key, int(TTL) + 5)
        await pipe.execute()

    async def heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                if self.local:
                    await self._touch(dict(self.local))
            except Exception:
                logger.warning("presence heartbeat failed", exc_info=True)


_backend: Any = None


def backend() -> MemoryPresence | RedisPresence:
    global _backend
    if _backend is None:
        cfg = redis_clients.configured()
        _backend = RedisPresence(cfg, "notify") if cfg else MemoryPresence()
    return _backend  # type: ignore[no-any-return]
