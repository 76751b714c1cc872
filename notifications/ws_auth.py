"""ASGI middleware in front of the WebSocket consumer.

``OriginCheck`` refuses browser handshakes from Origins not allowed;
``TokenAuthMiddleware`` resolves the user token into ``scope["user_id"]``.
Either refusal closes before accept, which servers answer with HTTP 403, and
nothing is sent. Cookies never authenticate a socket.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from redis.exceptions import RedisError

from notifications import delivery
from notifications.tokens import InvalidToken, verify_user_token
from service.config import DEV_ORIGIN_HOSTS, normalize_origin
from service.lifecycle import state

logger = logging.getLogger(__name__)

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


class RefuseWhenLayerDown:
    """A socket that cannot join the channel layer is closed at once with 1013.

    channels creates the consumer's channel before any consumer code runs, so
    a Redis outage would otherwise surface as an unhandled error and a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        accepted = closed = connect_seen = False

        async def tracking_receive() -> dict[str, Any]:
            nonlocal connect_seen
            message: dict[str, Any] = await receive()
            connect_seen = connect_seen or message["type"] == "websocket.connect"
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal accepted, closed
            accepted = accepted or message["type"] == "websocket.accept"
            closed = closed or message["type"] == "websocket.close"
            await send(message)

        try:
            await self.app(scope, tracking_receive, tracking_send)
        except (RedisError, OSError) as exc:
            if accepted or closed:
                raise
            logger.warning("refusing a socket: channel layer unavailable (%s)", type(exc).__name__)
            if not connect_seen and (await receive())["type"] != "websocket.connect":
                return
            await refuse_unavailable(scope, send)


async def refuse_unavailable(scope: Scope, send: Any) -> None:
    """Accept and at once close with 1013 (try again later): a reason every
    client sees (an HTTP 503 denial is logged by uvicorn as an app error)."""
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1013})


def websocket_auth_stack(app: ASGIApp) -> ASGIApp:
    if not delivery.has_direct_channels():
        # Only a consumer that receives the channels way creates its channel
        # in the layer before its own code runs (see RefuseWhenLayerDown); a
        # direct channel is local and cannot fail. One wrapper less per socket.
        app = RefuseWhenLayerDown(app)
    return OriginCheck(TokenAuthMiddleware(app))
