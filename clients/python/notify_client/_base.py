"""What the sync and async clients share: requests, retry decisions, answers -> results/errors."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from notify_client._exceptions import APIError, TransportError, error_class

logger = logging.getLogger("notify_client")

__version__ = "0.1.0"

PUBLISH_PATH = "/api/v1/notifications"
IDEMPOTENCY_HEADER = "Idempotency-Key"

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 8.0
DEFAULT_MAX_RETRY_AFTER = 60.0

# Answers worth another try: nothing was stored (429, 503, a gateway's
# 502/504) or the same key's first request is still running (409). With the
# Idempotency-Key every publish carries, a retry never stores twice.
RETRY_STATUSES = frozenset({409, 429, 502, 503, 504})
# No answer: refused or dropped connections, timeouts. The request may or may
# not have reached the server; the Idempotency-Key makes the retry safe.
RETRY_EXCEPTIONS: tuple[type[httpx.HTTPError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class Presence:
    """``GET /api/v1/users/{user_id}/presence``: open sockets, across every process."""

    user_id: str
    online: bool
    connections: int


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``Retry-After`` is a lower bound when given."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        cap = min(self.max_backoff, self.backoff * (2**retry))
        jittered = random.uniform(0.0, cap)  # noqa: S311 - jitter, not cryptography
        if retry_after is not None:
            return max(retry_after, jittered)
        return jittered


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def decode_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def api_error(response: httpx.Response) -> APIError:
    body = decode_body(response)
    cls = error_class(response.status_code)
    detail = body.get("detail") if isinstance(body, dict) else None
    summary = detail if isinstance(detail, str) else json.dumps(body)[:500]
    request = response.request
    return cls(
        f"{request.method} {request.url.path} answered {response.status_code}: {summary}",
        status_code=response.status_code,
        body=body,
        response=response,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


class Attempts:
    """The retry loop's decisions for one call, shared by the sync and async clients."""

    def __init__(self, policy: RetryPolicy, method: str, path: str) -> None:
        self.policy = policy
        self.method = method
        self.path = path
        self.retries = 0

    def after_exception(self, exc: httpx.HTTPError) -> float:
        """Delay before the next try, or raise TransportError."""
        if not isinstance(exc, RETRY_EXCEPTIONS) or self.retries >= self.policy.max_retries:
            raise TransportError(
                f"{self.method} {self.path}: no answer after {self.retries + 1} attempt(s): "
                f"{type(exc).__name__}: {exc}",
                attempts=self.retries + 1,
            ) from exc
        delay = self.policy.delay(self.retries)
        self.retries += 1
        logger.info(
            "notify_client: %s %s failed (%s); retry %d in %.2fs",
            self.method,
            self.path,
            type(exc).__name__,
            self.retries,
            delay,
        )
        return delay

    def after_response(self, response: httpx.Response) -> float | None:
        """None: the answer is final (success); a delay: retry; raise: an APIError."""
        if response.is_success:
            return None
        if response.status_code in RETRY_STATUSES and self.retries < self.policy.max_retries:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is None or retry_after <= self.policy.max_retry_after:
                delay = self.policy.delay(self.retries, retry_after)
                self.retries += 1
                logger.info(
                    "notify_client: %s %s answered %d; retry %d in %.2fs",
                    self.method,
                    self.path,
                    response.status_code,
                    self.retries,
                    delay,
                )
                return delay
        raise api_error(response)


def make_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)


def default_headers(api_key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    if not api_key:
        raise ValueError("api_key is required")
    return {
        "Authorization": f"Bearer {api_key}",
        "Accept": "application/json",
        "User-Agent": f"notify-client/{__version__} httpx/{httpx.__version__}",
        **(extra or {}),
    }


def publish_request(
    recipients: str | Iterable[str],
    type: str,
    title: str,
    body: str,
    data: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> tuple[bytes, dict[str, str]]:
    """The JSON body and headers of one publish; the key is fixed here, once per call."""
    users = [recipients] if isinstance(recipients, str) else list(recipients)
    payload = {
        "recipients": users,
        "type": type,
        "title": title,
        "body": body,
        "data": dict(data) if data is not None else {},
    }
    key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key}
    return encode_json(payload), headers


def event_id(response: httpx.Response) -> str:
    answer = response.json()
    return str(answer["event_id"])


def presence_path(user_id: str) -> str:
    return f"/api/v1/users/{quote(user_id, safe='')}/presence"


def presence_result(response: httpx.Response) -> Presence:
    answer = response.json()
    return Presence(
        user_id=str(answer["user_id"]),
        online=bool(answer["online"]),
        connections=int(answer["connections"]),
    )


def encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
