"""Counts the HTTP requests this process is serving, for the push worker's
"live traffic first" rule (notifications/push/throttle.py): while one is in
progress (a publish waiting for its commit, a feed read), pushes wait.

Wraps everything but the SSE stream, whose requests last as long as the
stream (its frames count through realtime/outbox.py instead).
"""

from __future__ import annotations

from typing import Any

from notifications.runtime import state


class LiveRequests:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state.live_requests += 1
        try:
            await self.app(scope, receive, send)
        finally:
            state.live_requests -= 1
