"""ASGI middleware in front of the WebSocket consumer.

``OriginCheck`` refuses browser handshakes from Origins not allowed;
``TokenAuthMiddleware`` resolves the user token into ``scope["user_id"]``.
Either refusal closes before accept, which servers answer with HTTP 403, and
nothing is sent. Cookies never authenticate a socket.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from django.conf import settings

from notifications.tokens import InvalidToken, verify_user_token
from service.config import DEV_ORIGIN_HOSTS, normalize_origin
from service.lifecycle import state

Scope = dict[str, Any]
ASGIApp = Any
SUBPROTOCOL = "notifications.v1"
BEARER_PREFIX = "bearer."


async def deny(receive: Any, send: Any) -> None:
    """Refuse the handshake: close before accept -> HTTP 403."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


def origin_allowed(origin: str) -> bool:
    normalized = normalize_origin(origin)
    if normalized is None:
        return False
    allowed: list[str] | None = settings.NOTIFY_ALLOWED_ORIGINS
    if allowed is not None:
        return normalized in allowed
    host = normalized.split("://", 1)[1].rsplit(":", 1)[0]
    return host in DEV_ORIGIN_HOSTS


class OriginCheck:
    """Browsers send Origin; it must match ALLOWED_ORIGINS exactly. No Origin: not a browser."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        origins = [v for k, v in scope.get("headers", []) if k == b"origin"]
        if origins and not (len(origins) == 1 and origin_allowed(origins[0].decode("latin1"))):
            await deny(receive, send)
            return
        await self.app(scope, receive, send)


def extract_token(scope: Scope) -> tuple[str | None, str | None]:
    """(token, subprotocol to answer with) from header, subprotocol or query."""
    subprotocols: list[str] = list(scope.get("subprotocols") or [])
    answer = SUBPROTOCOL if SUBPROTOCOL in subprotocols else None
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credential = value.decode("latin1").partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                return credential.strip(), answer
            return None, answer
    for protocol in subprotocols:
        if protocol.startswith(BEARER_PREFIX):
            return protocol[len(BEARER_PREFIX) :], answer
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    tokens = query.get("token")
    if tokens:
        return tokens[0], answer
    return None, answer


class TokenAuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if state.shutting_down:
            await deny(receive, send)
            return
        token, subprotocol = extract_token(scope)
        try:
            if token is None:
                raise InvalidToken("no token")
            claims = verify_user_token(token)
        except InvalidToken:
            await deny(receive, send)
            return
        scope = {
            **scope,
            "user_id": claims.user_id,
            "token_expires_at": claims.expires_at,
            "notify_subprotocol": subprotocol,
        }
        await self.app(scope, receive, send)


def websocket_auth_stack(app: ASGIApp) -> ASGIApp:
    return OriginCheck(TokenAuthMiddleware(app))
