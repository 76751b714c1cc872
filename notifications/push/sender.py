"""POSTs encrypted messages to push services and classifies their answers.

One ``httpx.AsyncClient`` (a connection pool) per push service origin, no
redirects (a redirect could point anywhere: SSRF), bounded timeouts and a
bounded read of the answer. Endpoints carry capability tokens: logs name
the push service host and the subscription id, never the endpoint.
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

import httpx

from notifications.push.config import PushSettings
from notifications.push.endpoints import origin

logger = logging.getLogger(__name__)

Result = Literal["delivered", "gone", "dropped", "retry"]
MAX_ANSWER_BYTES = 16 * 1024
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEADLINE = 20.0  # a whole request, however slowly the service trickles bytes
# Per push service host: SHARDS clients x CONNECTIONS_PER_SHARD connections,
# the most requests in flight at once (see HostPool).
SHARDS = 16
CONNECTIONS_PER_SHARD = 2
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
    """Connections to one push service: ``SHARDS`` httpx clients of
    ``CONNECTIONS_PER_SHARD`` each, a request going to the least busy one.
    One client with all the connections costs more CPU per request as the
    connections grow (httpcore checks every pooled connection on each
    request), measured in docs/performance.md."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.clients = [
            httpx.AsyncClient(
                verify=context,
                timeout=TIMEOUT,
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment: push goes direct
                limits=httpx.Limits(
                    max_connections=CONNECTIONS_PER_SHARD,
                    max_keepalive_connections=CONNECTIONS_PER_SHARD,
                ),
            )
            for _ in range(SHARDS)
        ]
        self.busy = [0] * SHARDS
        # Waiting happens here, not in a client's pool, where it would count
        # against the request's deadline.
        self.slots = asyncio.Semaphore(SHARDS * CONNECTIONS_PER_SHARD)

    async def post(
        self, endpoint: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str | None]:
        async with self.slots:
            shard = min(range(SHARDS), key=self.busy.__getitem__)
            self.busy[shard] += 1
            try:
                async with asyncio.timeout(DEADLINE):
                    return await _post(self.clients[shard], endpoint, body, headers)
            finally:
                self.busy[shard] -= 1

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


async def _post(
    client: httpx.AsyncClient, endpoint: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str | None]:
    request = client.build_request("POST", endpoint, content=body, headers=headers)
    response = await client.send(request, stream=True)
    try:
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > MAX_ANSWER_BYTES:
                break  # the status is all that matters; close the rest
    finally:
        await response.aclose()
    return response.status_code, response.headers.get("retry-after")


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
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
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
