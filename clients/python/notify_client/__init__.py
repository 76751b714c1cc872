"""Publisher client for the notify-push service (sync and async, over httpx).

    from notify_client import Client

    with Client("http://127.0.0.1:8000", "dev-publisher-key") as client:
        event_id = client.publish(["alice"], "order.shipped", title="On its way")
        print(client.presence("alice").online)

``AsyncClient`` has the same methods, awaitable. Every publish carries an
``Idempotency-Key`` (a uuid4 per call unless you pass one), reused on each
retry, so a retry after a lost answer never stores a notification twice.
Errors: see ``notify_client._exceptions`` for the tree; all derive from
``NotifyError``.
"""

from notify_client._base import Presence, RetryPolicy, __version__
from notify_client._client import AsyncClient, Client
from notify_client._exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    IdempotencyConflictError,
    IdempotencyInFlightError,
    NotFoundError,
    NotifyError,
    PayloadTooLargeError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    UnsupportedMediaTypeError,
)

__all__ = [
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "IdempotencyConflictError",
    "IdempotencyInFlightError",
    "NotFoundError",
    "NotifyError",
    "PayloadTooLargeError",
    "Presence",
    "RateLimitedError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "TransportError",
    "UnsupportedMediaTypeError",
    "__version__",
]
