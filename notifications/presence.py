"""Who is connected, counted across every process of the deployment.

Without Redis, a counter in this process (there is only one). With Redis,
each socket is a member ``<process id>:<channel>`` of the user's sorted set
``presence:{<user's group>}``, and a member counts while its process is alive
(notifications/processes.py: one key per process, set every ``HEARTBEAT``
seconds, gone ``TTL`` after the process). So an idle process writes one key
per heartbeat, not one per socket; the members of a process that died without
cleanup stop counting once its key has expired, and whoever counts their user
next removes them. A member's score is its expiry, ``MEMBER_TTL`` ahead, and
its key expires a minute after that: a process refreshes both for each of its
users once per ``REFRESH_ROUNDS`` heartbeats (a slice of its users each
heartbeat), so no key outlives its processes. docs/presence.md has the races.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from redis import asyncio as aioredis

from notifications import delivery, processes, redis_clients
from notifications.processes import HEARTBEAT, PROCESS_ID, TTL
from notifications.redis_clients import RedisSettings

__all__ = ["HEARTBEAT", "PROCESS_ID", "TTL", "MemoryPresence", "RedisPresence", "backend"]

logger = logging.getLogger(__name__)

REFRESH_ROUNDS = 60  # heartbeats per refresh of a user's members: 10 minutes
MEMBER_TTL = 1800.0  # three refresh periods: a missed refresh or two is harmless
KEY_TTL = int(MEMBER_TTL) + 60


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
        self.users: dict[str, set[str]] = {}  # user -> this process's members
        # The users whose members the heartbeat refreshes, one slice at a time.
        self.rounds: list[set[str]] = [set() for _ in range(REFRESH_ROUNDS)]
        self.round = 0
        self.liveness = processes.Liveness(prefix)
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._announced = False  # no member is written before the process key
        self._rewrite_all = 0  # heartbeats that write every member again
        # Writes that failed (Redis unreachable), tried again at the heartbeat.
        self._unwritten: dict[str, str] = {}
        self._unremoved: dict[str, str] = {}
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

    def _slice(self, user_id: str) -> set[str]:
        return self.rounds[hash(user_id) % REFRESH_ROUNDS]

    async def connected(self, user_id: str, channel: str) -> None:
        """Adds the socket; the sockets opening while one pipeline is in
        flight share the next (a reconnect storm of 10,000 sockets would
        otherwise queue for the 32 pooled connections, past their timeout)."""
        member = f"{PROCESS_ID}:{channel}"
        self.users.setdefault(user_id, set()).add(member)
        self._slice(user_id).add(user_id)
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
                if not self._announced:
                    # Before any member: a process that finds a member whose
                    # process has no key takes it for dead and removes it.
                    await self._announce()
                await self._write(members)
            except Exception:
                self._unwritten.update(members)
                logger.warning(
                    "presence update of %d sockets failed (Redis unreachable?); "
                    "tried again at the next heartbeat",
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
        mine = self.users.get(user_id)
        if mine is not None:
            mine.discard(member)
            if not mine:
                del self.users[user_id]
                self._slice(user_id).discard(user_id)
        self._unwritten.pop(member, None)
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
            await self._remove(members)
        except Exception:
            self._unremoved.update(members)
            logger.warning(
                "presence removal of %d sockets failed; tried again at the next heartbeat",
                len(members),
                exc_info=True,
            )
        finally:
            if done is not None:
                done.set_result(None)

    async def _remove(self, members: dict[str, str]) -> None:
        pipe = self._redis().pipeline(transaction=False)
        for member, user_id in members.items():
            pipe.zrem(self._key(user_id), member)
        await pipe.execute()

    async def count(self, user_id: str) -> int:
        """The user's members whose process is alive; those of a dead process
        are removed on the way."""
        key = self._key(user_id)
        client = self._redis()
        pipe = client.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", time.time())
        pipe.zrange(key, 0, -1)
        _expired, members = await pipe.execute()
        owners = {member: _owner(member) for member in members}
        alive = await self.liveness.alive(client, owners.values())
        gone = [member for member, owner in owners.items() if owner not in alive]
        if gone:
            await client.zrem(key, *gone)
        return len(owners) - len(gone)

    async def _write(self, members: dict[str, str]) -> None:
        """The members, with their expiry, and their keys' expiry: one ZADD
        and one EXPIRE per user."""
        expires = time.time() + MEMBER_TTL
        by_user: dict[str, dict[str, float]] = {}
        for member, user_id in members.items():
            by_user.setdefault(user_id, {})[member] = expires
        pipe = self._redis().pipeline(transaction=False)
        for user_id, scores in by_user.items():
            key = self._key(user_id)
            pipe.zadd(key, scores)
            pipe.expire(key, KEY_TTL)
        await pipe.execute()
        # A socket that closed while this write was in flight may have had its
        # removal land first: remove it again, now behind the write.
        closed = {m: u for m, u in members.items() if m not in self.users.get(u, ())}
        if closed:
            await self._remove(closed)

    async def _announce(self) -> None:
        existed = await processes.announce(self._redis(), self.prefix)
        if not existed and self._announced:
            # The key had expired (Redis unreachable or this process stalled
            # past TTL): others may have removed our members. Write them all,
            # now and once more (a removal decided just before this announce
            # may land after the first rewrite).
            self._rewrite_all = 2
        self._announced = True

    async def heartbeat(self) -> None:
        """The process key, then one slice of users (or all, after a lapse),
        and whatever failed since the last heartbeat."""
        await self._announce()
        self.round = (self.round + 1) % REFRESH_ROUNDS
        if self._rewrite_all:
            self._rewrite_all -= 1
            users = list(self.users)
        else:
            users = list(self.rounds[self.round])
        members = {m: u for u in users for m in self.users.get(u, ())}
        members.update(self._unwritten)
        self._unwritten = {}
        unremoved, self._unremoved = self._unremoved, {}
        try:
            if members:
                await self._write(members)
        except Exception:
            self._unwritten.update(members)
            raise
        finally:
            if unremoved:
                await self._remove_or_keep(unremoved)

    async def _remove_or_keep(self, members: dict[str, str]) -> None:
        try:
            await self._remove(members)
        except Exception:
            self._unremoved.update(members)
            raise

    async def heartbeat_forever(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except Exception:
                logger.warning("presence heartbeat failed", exc_info=True)
            await asyncio.sleep(HEARTBEAT)


def _owner(member: bytes | str) -> str:
    text = member.decode() if isinstance(member, bytes) else member
    return text.split(":", 1)[0]


_backend: Any = None


def backend() -> MemoryPresence | RedisPresence:
    global _backend
    if _backend is None:
        cfg = redis_clients.configured()
        _backend = RedisPresence(cfg, "notify") if cfg else MemoryPresence()
    return _backend  # type: ignore[no-any-return]
