"""``Client`` (blocking) and ``AsyncClient`` (asyncio): the same API over httpx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from notify_client._base import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_TIMEOUT,
    PUBLISH_PATH,
    Attempts,
    Presence,
    RetryPolicy,
    default_headers,
    encode_json,
    event_id,
    make_timeout,
    presence_path,
    presence_result,
    publish_request,
)

__all__ = ["AsyncClient", "Client"]


def _body(json: Any, content: bytes | None, headers: dict[str, str]) -> bytes | None:
    if json is not None:
        headers.setdefault("Content-Type", "application/json")
        return encode_json(json)
    return content


class Client:
    """Blocking publisher client. Thread-safe (one connection pool); close it, or use ``with``.

    ``timeout`` (seconds, or an ``httpx.Timeout``) bounds each attempt.
    Failed attempts (no answer, 409, 429, 502, 503, 504) are retried up to
    ``max_retries`` times after ``uniform(0, min(max_backoff, backoff * 2**n))``
    seconds, and never sooner than a ``Retry-After`` the server sent.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        trust_env: bool = True,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        self.retry = RetryPolicy(max_retries, backoff, max_backoff, max_retry_after)
        self._http = httpx.Client(
            base_url=base_url,
            headers=default_headers(api_key, headers),
            timeout=make_timeout(timeout),
            transport=transport,
            trust_env=trust_env,
        )

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    def publish(
        self,
        recipients: str | Iterable[str],
        type: str,
        title: str = "",
        body: str = "",
        data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Store a notification for each recipient; returns the event id.

        Without ``idempotency_key`` a fresh one (uuid4) is made for this call
        and sent again on every retry, so a retry after a lost answer returns
        the first answer instead of storing twice.
        """
        content, headers = publish_request(recipients, type, title, body, data, idempotency_key)
        response = self.request("POST", PUBLISH_PATH, content=content, headers=headers)
        return event_id(response)

    def presence(self, user_id: str) -> Presence:
        """How many sockets ``user_id`` has open, across every process."""
        return presence_result(self.request("GET", presence_path(user_id)))

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Any call with this client's key, retries and errors; returns a 2xx response."""
        all_headers = dict(headers or {})
        payload = _body(json, content, all_headers)
        attempts = Attempts(self.retry, method, path)
        while True:
            try:
                response = self._http.request(
                    method, path, content=payload, headers=all_headers, params=params
                )
            except httpx.HTTPError as exc:
                time.sleep(attempts.after_exception(exc))
                continue
            delay = attempts.after_response(response)
            if delay is None:
                return response
            time.sleep(delay)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same arguments, awaitable methods.

    Close it with ``await client.close()`` (or ``aclose()``), or ``async with``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        trust_env: bool = True,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        self.retry = RetryPolicy(max_retries, backoff, max_backoff, max_retry_after)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=default_headers(api_key, headers),
            timeout=make_timeout(timeout),
            transport=transport,
            trust_env=trust_env,
        )

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    async def publish(
        self,
        recipients: str | Iterable[str],
        type: str,
        title: str = "",
        body: str = "",
        data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Store a notification for each recipient; returns the event id (see Client.publish)."""
        content, headers = publish_request(recipients, type, title, body, data, idempotency_key)
        response = await self.request("POST", PUBLISH_PATH, content=content, headers=headers)
        return event_id(response)

    async def presence(self, user_id: str) -> Presence:
        """How many sockets ``user_id`` has open, across every process."""
        return presence_result(await self.request("GET", presence_path(user_id)))

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Any call with this client's key, retries and errors; returns a 2xx response."""
        all_headers = dict(headers or {})
        payload = _body(json, content, all_headers)
        attempts = Attempts(self.retry, method, path)
        while True:
            try:
                response = await self._http.request(
                    method, path, content=payload, headers=all_headers, params=params
                )
            except httpx.HTTPError as exc:
                await asyncio.sleep(attempts.after_exception(exc))
                continue
            delay = attempts.after_response(response)
            if delay is None:
                return response
            await asyncio.sleep(delay)

    async def close(self) -> None:
        await self._http.aclose()

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
