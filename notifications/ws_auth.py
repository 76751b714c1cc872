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

from django.conf import settings
from redis.exceptions import RedisError

from notifications import delivery, metrics
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
            scheme, _, credential = value.decode("latin1").partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                return credential.strip(), answer
            return None, answer
    for protocol in subprotocols:
        if protocol.startswith(BEARER_PREFIX):
            return protocol[len(BEARER_PREFIX) :], answer
    return query_token(scope.get("query_string", b"")), answer


def query_token(query_string: bytes) -> str | None:
    """The first literal ``token=`` parameter, not percent-decoded: a JWT needs
    no encoding, and a decoded name or value (``tok%65n=``, ``token=%65yJ``)
    would authenticate in a form the log scrubber does not recognise."""
    for part in query_string.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"token" and value:
            return value.decode("latin-1")
    return None


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


def authenticate(scope: Scope) -> Scope | str:
    """The scope's additions for a valid user token, or the reason to refuse
    (also while the process shuts down)."""
    if state.shutting_down:
        return "server shutting down"
    token, subprotocol = extract_token(scope)
    try:
        if token is None:
            raise InvalidToken("no token")
        claims = verify_user_token(token)
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
        app: ASGIApp = _ConsumerApp(consumer)
        if not delivery.has_direct_channels():
            # Only a consumer that receives the channels way creates its
            # channel in the layer before its own code runs (see
            # RefuseWhenLayerDown); a direct channel is local and cannot fail.
            app = RefuseWhenLayerDown(app)
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        added = authenticate(scope) if origin_ok(scope) else origin_refusal(scope)
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
    metrics.HANDSHAKES_REFUSED.labels(reason="unavailable").inc()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1013})
