"""Which master owns each of the 16384 slots, read with ``CLUSTER SLOTS``.

The subscriber keeps its own map rather than refreshing the cluster
client's: redis-py 7.4's ``NodesManager.initialize`` marks every pooled
connection for reconnect and leaves node objects with open connections to
the garbage collector, which is fine after a ``MOVED`` but not every few
seconds.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from redis.asyncio.connection import Connection, parse_url
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisError
from redis.retry import Retry

logger = logging.getLogger(__name__)

SLOTS = 16384
Address = tuple[str, int]


def connection_kwargs(url: str) -> dict[str, Any]:
    """Credentials and connection class (TLS for rediss://) of the cluster URL."""
    kwargs: dict[str, Any] = dict(parse_url(url))
    kwargs.pop("db", None)
    return kwargs


def slot_of(channel: str) -> int:
    return int(key_slot(channel.encode()))


class SlotMap:
    def __init__(self, url: str, *, timeout: float) -> None:
        kwargs = connection_kwargs(url)
        self.seeds: list[Address] = [(kwargs.pop("host"), int(kwargs.pop("port", 6379)))]
        self.kwargs = kwargs
        self.timeout = timeout
        self.owners: list[Address | None] = [None] * SLOTS

    def owner(self, slot: int) -> Address | None:
        return self.owners[slot]

    def connection(self, address: Address) -> Connection:
        kwargs = dict(self.kwargs)
        connection_class: type[Connection] = kwargs.pop("connection_class", Connection)
        return connection_class(
            host=address[0],
            port=address[1],
            socket_connect_timeout=self.timeout,
            socket_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            **kwargs,
        )

    async def refresh(self) -> None:
        """Ask the known nodes in turn (the URL's node may be gone); raise if none answers."""
        error: BaseException | None = None
        for address in list(self.seeds):
            conn = self.connection(address)
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                await conn.send_command("CLUSTER", "SLOTS")
                reply = await conn.read_response()
            except (RedisError, OSError) as exc:
                error = exc
                continue
            finally:
                with contextlib.suppress(Exception):
                    await conn.disconnect()
            self._load(reply)
            return
        raise RedisError(f"no Redis Cluster node answered CLUSTER SLOTS: {error!r}")

    def _load(self, reply: list[Any]) -> None:
        owners: list[Address | None] = [None] * SLOTS
        seen: list[Address] = []
        for entry in reply:
            first, last = int(entry[0]), int(entry[1])
            for node in entry[2:]:
                address = (_text(node[0]), int(node[1]))
                if address[0] and address not in seen:
                    seen.append(address)
            master = (_text(entry[2][0]), int(entry[2][1]))
            owners[first : last + 1] = [master] * (last - first + 1)
        self.owners = owners
        # Every node seen is a seed next time, the URL's node last but kept.
        self.seeds = [*seen, *(a for a in self.seeds if a not in seen)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
