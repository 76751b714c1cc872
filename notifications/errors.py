"""Domain errors, as data. Each transport maps them once (api/errors.py, consumers).

NotifyError
 ├── NotificationNotFound     an id the user does not have (404)
 ├── IdempotencyConflict      key reused with another body (422)
 ├── IdempotencyInFlight      key's first request still running (409)
 └── RateLimited              publisher over its rate (429, retry_after)
"""

from __future__ import annotations


class NotifyError(Exception):
    """Base of every error the domain raises on purpose."""


class NotificationNotFound(NotifyError):
    def __init__(self, notification_id: int) -> None:
        super().__init__(f"Notification {notification_id} not found.")
        self.notification_id = notification_id


class IdempotencyConflict(NotifyError):
    def __init__(self) -> None:
        super().__init__("Idempotency-Key was already used with a different request body.")


class IdempotencyInFlight(NotifyError):
    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is still being processed.")


class RateLimited(NotifyError):
    def __init__(self, retry_after: float) -> None:
        super().__init__("Publish rate limit exceeded; retry later.")
        self.retry_after = retry_after
