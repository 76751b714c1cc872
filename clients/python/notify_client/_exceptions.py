"""Every error the client raises on purpose; catch ``NotifyError`` for all of them.

Our exception hierarchy:

* NotifyError
  + TransportError - no answer, after the retries: connection refused or
  |                  dropped, read/write/pool timeout. ``__cause__`` is the
  |                  last ``httpx`` exception.
  + APIError - the server answered with an error status (``status_code``,
    |          ``body``, ``detail``, ``response``).
    + BadRequestError ............ 400  invalid body (``body`` holds the field errors)
    + AuthenticationError ........ 401  missing or wrong API key (or a user token)
    + NotFoundError .............. 404
    + IdempotencyInFlightError ... 409  the key's first request is still running (after retries)
    + PayloadTooLargeError ....... 413  request body over the server's limit
    + UnsupportedMediaTypeError .. 415  not ``application/json``
    + IdempotencyConflictError ... 422  ``Idempotency-Key`` reused with another body
    + RateLimitedError ........... 429  over the publisher's rate (after retries)
    + ServerError ................ 5xx
      + ServiceUnavailableError .. 503  storage unreachable (after retries)

Errors after retries (409, 429, 503, transport) are raised only once
``max_retries`` is used up or a ``Retry-After`` is longer than the client
will wait; they carry ``retry_after`` (seconds, or ``None``).
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "IdempotencyConflictError",
    "IdempotencyInFlightError",
    "NotFoundError",
    "NotifyError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "ServerError",
    "ServiceUnavailableError",
    "TransportError",
    "UnsupportedMediaTypeError",
]


class NotifyError(Exception):
    """Base class of every error this package raises."""


class TransportError(NotifyError):
    """The request got no answer (after all retries). ``__cause__`` is the httpx error."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class APIError(NotifyError):
    """The server answered with an error status.

    ``body`` is the decoded JSON error body (e.g. ``{"detail": "..."}`` or DRF
    field errors such as ``{"recipients": ["..."]}``), or the raw text when
    it was not JSON. ``detail`` is ``body["detail"]`` when there is one.
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any,
        response: httpx.Response,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.response = response
        self.retry_after = retry_after
        self.request_id: str | None = response.headers.get("X-Request-ID")

    @property
    def detail(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("detail"), str):
            detail: str = self.body["detail"]
            return detail
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, body={self.body!r})"


class BadRequestError(APIError):
    """400: the body was refused; ``body`` maps each bad field to its messages."""


class AuthenticationError(APIError):
    """401: missing or wrong API key."""


class NotFoundError(APIError):
    """404."""


class IdempotencyInFlightError(APIError):
    """409: a request with the same Idempotency-Key is still being processed."""


class PayloadTooLargeError(APIError):
    """413: the request body is over the server's limit (1 MiB by default)."""


class UnsupportedMediaTypeError(APIError):
    """415: the request was not ``application/json``."""


class IdempotencyConflictError(APIError):
    """422: the Idempotency-Key was used before with a different body."""


class RateLimitedError(APIError):
    """429: over the publisher's rate limit; ``retry_after`` says for how long."""


class ServerError(APIError):
    """5xx."""


class ServiceUnavailableError(ServerError):
    """503: storage unreachable, nothing was stored; ``retry_after`` says when to retry."""


STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: IdempotencyInFlightError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: IdempotencyConflictError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def error_class(status_code: int) -> type[APIError]:
    if status_code in STATUS_ERRORS:
        return STATUS_ERRORS[status_code]
    return ServerError if status_code >= 500 else APIError
