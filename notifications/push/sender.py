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

from notifications.push.endpoints import origin
from service.push_config import PushSettings

logger = logging.getLogger(__name__)

Result = Literal["delivered", "gone", "dropped", "retry"]
MAX_ANSWER_BYTES = 16 * 1024
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEADLINE = 20.0  # a whole request, however slowly the service trickles bytes
# Requests in flight per push service host (and pooled connections): more
# only queue inside the pool, where the time waiting would count against
# the request's deadline. Measured best at 8..16 (docs/performance.md).
IN_FLIGHT_PER_HOST = 16
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


class Sender:
    def __init__(self, cfg: PushSettings) -> None:
        self._ssl = ssl_context(cfg)
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}

    def _client(self, key: str) -> httpx.AsyncClient:
        client = self._clients.get(key)
        if client is None:
            client = httpx.AsyncClient(
                verify=self._ssl,
                timeout=TIMEOUT,
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment: push goes direct
                limits=httpx.Limits(
                    max_connections=IN_FLIGHT_PER_HOST,
                    max_keepalive_connections=IN_FLIGHT_PER_HOST,
                ),
            )
            self._clients[key] = client
            self._slots[key] = asyncio.Semaphore(IN_FLIGHT_PER_HOST)
        return client

    async def send(
        self, endpoint: str, body: bytes, headers: dict[str, str], *, subscription_id: int
    ) -> Outcome:
        host = origin(endpoint)
        self._client(host)
        try:
            async with self._slots[host], asyncio.timeout(DEADLINE):
                status, retry_after = await self._post(host, endpoint, body, headers)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            logger.warning(
                "push to subscription %s on %s failed: %s",
                subscription_id,
                host,
                type(exc).__name__,
            )
            return Outcome("retry")
        return classify(status, retry_after, host=host, subscription_id=subscription_id)

    async def _post(
        self, host: str, endpoint: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str | None]:
        request = self._client(host).build_request("POST", endpoint, content=body, headers=headers)
        response = await self._client(host).send(request, stream=True)
        try:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > MAX_ANSWER_BYTES:
                    break  # the status is all that matters; close the rest
        finally:
            await response.aclose()
        return response.status_code, response.headers.get("retry-after")

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


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
