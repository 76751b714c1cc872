"""CORS for browsers on other origins: one rule for Django's routes and the ASGI ones.

Django's routes (the user API and the push-subscription endpoints) answer
through django-cors-headers; the stream endpoint, served in front of Django,
answers with ``response_headers`` and ``preflight`` below. Both ask
``allowed`` whether an origin may call, which is the socket's own Origin rule
(``ALLOWED_ORIGINS`` matched exactly after normalizing, e.g.
``https://app.example.com`` is ``https://app.example.com:443``; unset: the
local development hosts). Publisher endpoints answer no CORS at all, and
credentials (cookies) are never allowed: user calls carry a bearer token.
"""

from __future__ import annotations

import re
from typing import Any

from notifications.origins import origin_allowed

# The user API, the stream, push subscriptions and the push public key.
URLS_REGEX = r"^/api/v1/(me|push)/"
_URLS = re.compile(URLS_REGEX)
ALLOW_HEADERS = ("authorization", "content-type", "last-event-id")
EXPOSE_HEADERS = ("Retry-After", "X-Request-ID")
ALLOW_METHODS = ("GET", "POST", "DELETE", "OPTIONS")
MAX_AGE = 86400

Headers = list[tuple[bytes, bytes]]


def allowed(path: str, origin: str | None) -> bool:
    return origin is not None and bool(_URLS.match(path)) and origin_allowed(origin)


def django_check(sender: Any, request: Any, **kwargs: Any) -> bool:
    """django-cors-headers' ``check_request_enabled`` receiver: this
    service's rule instead of the library's exact-string list."""
    return allowed(request.path_info, request.headers.get("origin"))


def response_headers(origin: str) -> Headers:
    """What an answer to an allowed origin carries (errors included)."""
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-expose-headers", ", ".join(EXPOSE_HEADERS).encode()),
        (b"vary", b"origin"),
    ]


def preflight(origin: str) -> Headers:
    """The answer to an allowed origin's ``OPTIONS``."""
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-headers", ", ".join(ALLOW_HEADERS).encode()),
        (b"access-control-allow-methods", ", ".join(ALLOW_METHODS).encode()),
        (b"access-control-max-age", str(MAX_AGE).encode()),
        (b"vary", b"origin"),
    ]


class ClientScriptCors:
    """The browser client (``/static/notify/``) importable by allowed origins:
    a module script from another origin is fetched in CORS mode. Static files
    are answered outside Django's middleware, hence this ASGI wrapper."""

    PREFIX = "/static/notify/"

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        origin = None
        if scope["type"] == "http" and scope["path"].startswith(self.PREFIX):
            raw = [v for k, v in scope["headers"] if k == b"origin"]
            origin = raw[0].decode("latin-1") if len(raw) == 1 else None
        if origin is None or not origin_allowed(origin):
            await self.app(scope, receive, send)
            return
        extra = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"origin")]

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
