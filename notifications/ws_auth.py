"""The WebSocket endpoint in front of the consumer, in one frame.

``SocketEntry`` refuses browser handshakes from Origins not allowed, resolves
the user token into ``scope["user_id"]`` and routes the one socket path to
the consumer. Every refusal closes before accept, which servers answer with
HTTP 403, and nothing is sent (the contract); the reason is logged instead,
one line per refusal, never with the token. Cookies never authenticate a socket.

It is one object rather than a chain of middleware on purpose: each layer of
a chain keeps its coroutine frame (and, the ASGI way, its own copy of the
scope) alive for the whole life of the socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from notifications import metrics
from notifications.credentials import bearer_credential
from notifications.origins import origin_allowed
from notifications.runtime import state
from notifications.scope import query_param
from notifications.tokens import InvalidToken, verify_user_token_async

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


def origin_ok(scope: Scope) -> bool:
    """Browsers send Origin; it must match ALLOWED_ORIGINS exactly. No Origin: not a browser."""
    origins = [v for k, v in scope.get("headers", []) if k == b"origin"]
    return not origins or (len(origins) == 1 and origin_allowed(origins[0].decode("latin1")))


def origin_refusal(scope: Scope) -> str:
    origins = [v.decode("latin1") for k, v in scope.get("headers", []) if k == b"origin"]
    if len(origins) != 1:
        return f"{len(origins)} Origin headers"
    # repr: the header is the client's, and must not break the log line.
    return f"origin not allowed: {origins[0][:200]!r}"


def extract_token(scope: Scope) -> tuple[str | None, str | None]:
    """(token, subprotocol to answer with) from header, subprotocol or query."""
    subprotocols: list[str] = list(scope.get("subprotocols") or [])
    answer = SUBPROTOCOL if SUBPROTOCOL in subprotocols else None
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return bearer_credential(value), answer
    for protocol in subprotocols:
        if protocol.startswith(BEARER_PREFIX):
            return protocol[len(BEARER_PREFIX) :], answer
    return query_param(scope, "token"), answer


# PyJWT's error names (notifications.tokens passes them on) in plain words.
_JWT_REASONS = {
    "ExpiredSignatureError": "token expired",
    "InvalidSignatureError": "bad signature",
    "DecodeError": "malformed token",
    "ImmatureSignatureError": "token not valid yet (nbf/iat in the future)",
    "MissingRequiredClaimError": "token lacks a required claim",
    "InvalidAudienceError": "token for another audience",
    "InvalidIssuerError": "token from another issuer",
}


def token_refusal(exc: InvalidToken) -> str:
    """Why a token was refused, for the log: fixed words, never the token."""
    reason = str(exc)
    return _JWT_REASONS.get(reason, reason)


async def authenticate(scope: Scope) -> Scope | str:
    """The scope's additions for a valid user token, or the reason to refuse
    (also while the process shuts down)."""
    if state.shutting_down:
        return "server shutting down"
    token, subprotocol = extract_token(scope)
    try:
        if token is None:
            raise InvalidToken("no token")
        claims = await verify_user_token_async(token)
    except InvalidToken as exc:
        return token_refusal(exc)
    return {
        "user_id": claims.user_id,
        "token_expires_at": claims.expires_at,
        "notify_subprotocol": subprotocol,
    }


def refusal_reason(scope: Scope, added: Scope | str) -> str:
    """Why SocketEntry refused, as the metric's label (only computed on a refusal;
    ``added`` is authenticate's answer, a str when it refused)."""
    if not origin_ok(scope):
        return "origin"
    if state.shutting_down:
        return "shutting_down"
    return "token" if isinstance(added, str) else "path"


def route_path(scope: Scope) -> str | None:
    """The path below ``root_path`` without leading slashes, as channels'
    URLRouter matches it; None when the path is outside ``root_path``."""
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path:
        if not path.startswith(root_path):
            return None
        path = path[len(root_path) :]
    return path.lstrip("/")


class SocketEntry:
    """Origin allow-list, token auth and the one socket path, then the consumer.

    The consumer gets uvicorn's scope itself, with ``user_id``,
    ``token_expires_at`` and ``notify_subprotocol`` added: nothing above it
    reads the scope after the handshake but uvicorn's log lines, so there is
    no copy to keep alive. Any other path is refused like a bad token.
    """

    __slots__ = ("app", "path")

    def __init__(self, path: str, consumer: Callable[[], ASGIApp]) -> None:
        self.path = path.lstrip("/")
        self.app: ASGIApp = _ConsumerApp(consumer)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        added = await authenticate(scope) if origin_ok(scope) else origin_refusal(scope)
        refused = added if isinstance(added, str) else None
        if refused is None and route_path(scope) != self.path:
            refused = f"no socket at {scope.get('path', '')!r}"
        if refused is not None or isinstance(added, str):
            metrics.HANDSHAKES_REFUSED.labels(reason=refusal_reason(scope, added)).inc()
            client = scope.get("client") or ("-", 0)
            logger.info("websocket refused (403) from %s: %s", client[0], refused)
            await deny(receive, send)
            return
        scope.update(added)
        await self.app(scope, receive, send)


class _ConsumerApp:
    """A new consumer per socket, called without a frame of its own."""

    __slots__ = ("consumer",)

    def __init__(self, consumer: Callable[[], ASGIApp]) -> None:
        self.consumer = consumer

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        return self.consumer()(scope, receive, send)
