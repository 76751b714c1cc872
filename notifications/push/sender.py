"""POSTs encrypted messages to push services and classifies their answers.

Connection pools per push service origin (httpcore, httpx's connection
layer: see ``HostPool``), no redirects (a redirect could point anywhere:
SSRF), bounded timeouts and a bounded read of the answer. Endpoints carry
capability tokens: logs name the push service host and the subscription
id, never the endpoint.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import ssl
import time
from dataclasses import dataclass
from typing import Literal

import httpcore

from notifications.push.config import PushSettings
from notifications.push.endpoints import origin
from notifications.push.streams import LoopBackend

logger = logging.getLogger(__name__)

Result = Literal["delivered", "gone", "dropped", "retry"]
MAX_ANSWER_BYTES = 16 * 1024
# httpcore's per-request timeouts, seconds.
EXTENSIONS = {"timeout": {"connect": 5.0, "read": 10.0, "write": 10.0, "pool": 10.0}}
DEADLINE = 20.0  # a whole request, however slowly the service trickles bytes
# Per push service host: SHARDS clients x CONNECTIONS_PER_SHARD connections,
# the most requests in flight at once (see HostPool).
SHARDS = 16
CONNECTIONS_PER_SHARD = 2
# What a failed exchange can raise (httpcore has no common base class).
HTTP_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)
BACKOFF_BASE = 1.0
BACKOFF_MAX = 3600.0


@dataclass(frozen=True)
class Outcome:
    result: Result
    status: int | None = None
    retry_after: float | None = None  # seconds, when the service said


def ssl_context(cfg: PushSettings) -> ssl.SSLContext:
    """The system store, plus ``NOTIFY_PUSH_CA_BUNDLE`` when set."""
    context = ssl.create_default_context()
    if cfg.ca_bundle:
        context.load_verify_locations(cafile=cfg.ca_bundle)
    return context


class HostPool:
    """Connections to one push service: ``SHARDS`` httpcore pools of
    ``CONNECTIONS_PER_SHARD`` each, a request going to the least busy one.
    One pool with all the connections costs more CPU per request as the
    connections grow (httpcore checks every pooled connection on each
    request), measured in docs/performance.md.

    httpcore is httpx's connection layer, used without httpx's client on
    top: a push is one POST with fixed headers, so the client's URL merging,
    cookie jar, auth and redirect machinery were per-push work for nothing
    (redirects are never followed anyway). Its sockets are the event loop's
    own streams (notifications/push/streams.py), not anyio's."""

    def __init__(self, context: ssl.SSLContext) -> None:
        backend = LoopBackend()
        self.pools = [
            httpcore.AsyncConnectionPool(
                ssl_context=context,
                max_connections=CONNECTIONS_PER_SHARD,
                max_keepalive_connections=CONNECTIONS_PER_SHARD,
                network_backend=backend,
            )
            for _ in range(SHARDS)
        ]
        self.busy = [0] * SHARDS
        # Waiting happens here, not in a pool, where it would count against
        # the request's deadline.
        self.slots = asyncio.Semaphore(SHARDS * CONNECTIONS_PER_SHARD)

    async def post(
        self, endpoint: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str | None]:
        async with self.slots:
            shard = min(range(SHARDS), key=self.busy.__getitem__)
            self.busy[shard] += 1
            try:
                async with asyncio.timeout(DEADLINE):
                    return await _post(self.pools[shard], endpoint, body, headers)
            finally:
                self.busy[shard] -= 1

    async def close(self) -> None:
        for pool in self.pools:
            await pool.aclose()


async def _post(
    pool: httpcore.AsyncConnectionPool, endpoint: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str | None]:
    async with pool.stream(
        "POST", endpoint, headers=list(headers.items()), content=body, extensions=EXTENSIONS
    ) as response:
        read = 0
        async for chunk in response.aiter_stream():
            read += len(chunk)
            if read > MAX_ANSWER_BYTES:
                break  # the status is all that matters; close the rest
        retry_after = next((v for k, v in response.headers if k.lower() == b"retry-after"), None)
    return response.status, retry_after.decode("latin-1") if retry_after else None


class Sender:
    def __init__(self, cfg: PushSettings) -> None:
        self._ssl = ssl_context(cfg)
        self._pools: dict[str, HostPool] = {}

    async def send(
        self, endpoint: str, body: bytes, headers: dict[str, str], *, subscription_id: int
    ) -> Outcome:
        host = origin(endpoint)
        pool = self._pools.get(host)
        if pool is None:
            pool = self._pools[host] = HostPool(self._ssl)
        try:
            status, retry_after = await pool.post(endpoint, body, headers)
        except (*HTTP_ERRORS, TimeoutError, OSError) as exc:
            logger.warning(
                "push to subscription %s on %s failed: %s",
                subscription_id,
                host,
                type(exc).__name__,
            )
            return Outcome("retry")
        return classify(status, retry_after, host=host, subscription_id=subscription_id)

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()


def classify(status: int, retry_after: str | None, *, host: str, subscription_id: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome("delivered", status)
    if status in (404, 410):
        return Outcome("gone", status)
    if status == 429 or 500 <= status < 600:
        return Outcome("retry", status, parse_retry_after(retry_after))
    logger.warning(
        "push to subscription %s on %s refused with %s: dropped", subscription_id, host, status
    )
    return Outcome("dropped", status)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from ``Retry-After`` (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_delay(attempts: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter (0.5x..1.5x), never sooner than the
    service's ``Retry-After``."""
    backoff: float = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** min(attempts, 20))
    delay = backoff * (0.5 + random.random())  # noqa: S311 - jitter, not a secret
    return max(delay, retry_after or 0.0)
