"""POSTs encrypted messages to push services and classifies their answers.

Kept-alive connections per push service origin (notifications/push/http11.py:
h11 on the event loop's streams), no redirects (a redirect could point
anywhere: SSRF), bounded timeouts and a bounded read of the answer. Endpoints carry
capability tokens: logs name the push service host and the subscription
id, never the endpoint.
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import h11

from notifications.push.config import PushSettings
from notifications.push.endpoints import origin
from notifications.push.http11 import Origin, PushHTTPError

logger = logging.getLogger(__name__)

Result = Literal["delivered", "gone", "dropped", "retry"]
# Requests in flight at once per push service host.
CONNECTIONS_PER_HOST = 32
# What a failed exchange can raise.
HTTP_ERRORS = (PushHTTPError, h11.ProtocolError, TimeoutError, OSError)
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
        self._pools: dict[str, Origin] = {}

    async def send(
        self, endpoint: str, body: bytes, headers: list[tuple[str, str]], *, subscription_id: int
    ) -> Outcome:
        host = origin(endpoint)
        pool = self._pools.get(host)
        if pool is None:
            pool = self._pools[host] = self._origin(endpoint)
        try:
            status, retry_after = await pool.post(endpoint, headers, body)
        except HTTP_ERRORS as exc:
            logger.warning(
                "push to subscription %s on %s failed: %s",
                subscription_id,
                host,
                type(exc).__name__,
            )
            return Outcome("retry")
        return classify(status, retry_after, host=host, subscription_id=subscription_id)

    def _origin(self, endpoint: str) -> Origin:
        parts = urlsplit(endpoint)
        return Origin(parts.hostname or "", parts.port or 443, self._ssl, CONNECTIONS_PER_HOST)

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


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
