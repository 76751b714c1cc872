"""HTTP middleware: async-capable only (a sync one forces a thread hop)."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host

from service.logs import request_id

_VALID_ID = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")

Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def new_request_id(incoming: str) -> str:
    """The client's X-Request-ID when it is sane, else a fresh one."""
    return incoming if _VALID_ID.match(incoming) else fresh_request_id()


def fresh_request_id() -> str:
    """What ``uuid.uuid4().hex`` gives (a random UUID, version 4, RFC 4122
    variant, 32 hex digits), without the ``UUID`` object: its validation cost
    two thirds of the 2.1 us, on every request that brings no id."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant RFC 4122
    return raw.hex()


def scope_headers(scope: dict[str, Any], wanted: frozenset[bytes]) -> dict[bytes, bytes]:
    """The ``wanted`` headers of an ASGI scope (lower-case names); repeated
    ones joined with "," as Django does. For the routes served in front of
    Django (the publish endpoint, the event stream)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in wanted:
            found[name] = found[name] + b"," + value if name in found else value
    return found


def scope_request_id(headers: dict[bytes, bytes]) -> str:
    """The id ``RequestIdScope`` set for this request, else one from the headers."""
    return request_id.get() or new_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))


def host_allowed(host: bytes) -> bool:
    """Django's ALLOWED_HOSTS rule (with its DEBUG default), for routes in front of Django."""
    return _host_allowed(host, tuple(settings.ALLOWED_HOSTS), bool(settings.DEBUG))


# Every publish asks this with the same few Host values; Django's rule (a
# regex split, a pattern loop) cost 6 % of the publish path. Bounded: a
# client sending a new Host on each request evicts old answers, nothing grows.
@functools.lru_cache(maxsize=256)
def _host_allowed(host: bytes, allowed_hosts: tuple[str, ...], debug: bool) -> bool:
    allowed = list(allowed_hosts)
    if debug and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host.decode("latin-1"))
    return bool(domain) and validate_host(domain, allowed)


class RequestIdScope:
    """ASGI, outermost: the request id is set for everything one HTTP request logs.

    Django writes its "Unauthorized: ..." line and uvicorn its access line
    outside the middleware chain; set here, around the whole request, the id
    is on those lines too. The inner layers (``request_id_middleware``, the
    publish endpoint) take it from here and echo it.
    """

    __slots__ = ("app",)

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Repeated headers joined with "," as Django does (then not sane: a new id).
        values = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"]
        token = request_id.set(new_request_id(",".join(values)))
        try:
            await self.app(scope, receive, send)
        finally:
            request_id.reset(token)


def request_id_middleware(get_response: Handler) -> Handler:
    """The id RequestIdScope set (else X-Request-ID when sane, else a new one);
    echoed on the response."""
    if not iscoroutinefunction(get_response):
        raise TypeError("request_id_middleware needs an async handler chain")

    async def middleware(request: HttpRequest) -> HttpResponse:
        rid = request_id.get() or new_request_id(request.headers.get("X-Request-ID", ""))
        token = request_id.set(rid)
        try:
            response = await get_response(request)
        finally:
            request_id.reset(token)
        response["X-Request-ID"] = rid
        return response

    markcoroutinefunction(middleware)
    return middleware


request_id_middleware.async_capable = True  # type: ignore[attr-defined]
request_id_middleware.sync_capable = False  # type: ignore[attr-defined]


# Pages that load their own scripts and styles (Swagger UI sidecar, /demo, /admin,
# static assets): same-origin only. Everything else is JSON or plain text and
# needs nothing at all.
RELAXED_CSP_PREFIXES = ("/api/docs", "/api/redoc", "/demo", "/static/", "/admin/")
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"
RELAXED_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def content_security_policy(path: str) -> str:
    return RELAXED_CSP if path.startswith(RELAXED_CSP_PREFIXES) else STRICT_CSP


def security_headers(path: str) -> dict[str, str]:
    """The headers every response to ``path`` gets (unless it set its own CSP)."""
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": content_security_policy(path)}
    if path.startswith("/api/v1/"):
        headers["Cache-Control"] = "no-store"
    return headers


def security_headers_middleware(get_response: Handler) -> Handler:
    """Browser hardening headers on every HTTP response; ``no-store`` on the API."""
    if not iscoroutinefunction(get_response):
        raise TypeError("security_headers_middleware needs an async handler chain")

    async def middleware(request: HttpRequest) -> HttpResponse:
        response = await get_response(request)
        own_csp = "Content-Security-Policy" in response
        for name, value in security_headers(request.path).items():
            if not (own_csp and name == "Content-Security-Policy"):
                response[name] = value
        return response

    markcoroutinefunction(middleware)
    return middleware


security_headers_middleware.async_capable = True  # type: ignore[attr-defined]
security_headers_middleware.sync_capable = False  # type: ignore[attr-defined]
