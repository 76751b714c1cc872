"""ASGI entry point: HTTP (Django) and WebSocket (Channels), plus lifespan."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")

from django.core.asgi import get_asgi_application

django_http = get_asgi_application()  # sets Django up before the imports below

from channels.layers import get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

from api import publish_asgi  # noqa: E402
from notifications import (  # noqa: E402
    channel_layer,
    cluster_layer,
    delivery,
    presence,
    publish_loop,
)
from notifications.consumers import NotificationConsumer  # noqa: E402
from notifications.push import runtime as push_runtime  # noqa: E402
from notifications.runtime import state  # noqa: E402
from notifications.ws_auth import SocketEntry  # noqa: E402
from realtime.cors import ClientScriptCors  # noqa: E402
from realtime.sse import StreamEndpoint  # noqa: E402
from service import lifecycle  # noqa: E402
from service.asgi_limits import BodyLimit  # noqa: E402
from service.asgi_live import LiveRequests  # noqa: E402
from service.logs import install_uvicorn_scrubbing, lighten_records  # noqa: E402
from service.middleware import RequestIdScope  # noqa: E402
from service.static import StaticFiles  # noqa: E402


def check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None or "groups" not in getattr(layer, "extensions", []):
        raise ImproperlyConfigured(
            "The channel layer does not support groups (channels' InvalidChannelLayerError): "
            "unset CHANNEL_LAYERS overrides and use REDIS_URL (channels-redis) or the default "
            "in-memory layer."
        )


check_channel_layer()
if settings.DEBUG and "*" in settings.ALLOWED_HOSTS:
    logging.getLogger(__name__).warning(
        "DEBUG is on and ALLOWED_HOSTS is '*': fine for a throwaway container, never for "
        "production (set DEBUG=false)."
    )
install_uvicorn_scrubbing(settings.NOTIFY_LOG_FORMAT)
lighten_records()

# Sockets: Origin, token and path checks in one frame (no middleware chain
# or router whose frames and scope copies would live as long as the socket).
websocket_app = SocketEntry("/ws/notifications", NotificationConsumer)
# The publish endpoint first, on its own: it does the request id, the
# live-request count and the body limit itself (api/publish_asgi.py).
publish_app = publish_asgi.PublishEndpoint()
# The stream endpoint inside RequestIdScope (which leaves ``send`` alone): it
# ends slow streams through uvicorn's own send.
http_app = RequestIdScope(
    StreamEndpoint(LiveRequests(BodyLimit(ClientScriptCors(StaticFiles(django_http)))))
)


async def _close_sockets_for_reconnect() -> None:
    # The subscriber connection broke: these sockets may no longer receive
    # pushes. Close them (1012) so clients reconnect and resume with since.
    state.spawn(lifecycle.drain(window=1.0))


async def _close_group_sockets(groups: set[str]) -> None:
    # Redis Cluster: these groups' subscriptions moved (slot migration,
    # failover) and may have missed pushes. Their sockets resume with since.
    def in_groups(sock: Any) -> bool:
        user = getattr(sock, "user_id", None)
        return user is not None and delivery.group_name(user) in groups

    state.spawn(lifecycle.drain(window=1.0, only=in_groups))


async def _startup() -> None:
    delivery.bind_loop(asyncio.get_running_loop())
    install_uvicorn_scrubbing(settings.NOTIFY_LOG_FORMAT)
    channel_layer.subscriber_lost_listeners.append(_close_sockets_for_reconnect)
    cluster_layer.groups_lost_listeners.append(_close_group_sockets)
    lifecycle.install_sigterm_drain(settings.NOTIFY_DRAIN_SECONDS)
    # Presence's heartbeat also keeps this process's key (notify_inspect's
    # host and pid, and its liveness) alive.
    state.spawn(presence.backend().heartbeat_forever())
    if settings.NOTIFY_PUSH_WORKER_IN_PROCESS:
        await push_runtime.start()  # Web Push (off without VAPID_PRIVATE_KEY)
    lifecycle.tune_gc()
    lifecycle.tune_threads()


async def _shutdown() -> None:
    # Sends in flight finish (or go back to the outbox) before the process exits.
    await push_runtime.stop(grace=settings.NOTIFY_DRAIN_SECONDS)
    for task in list(state.background):
        task.cancel()
    await publish_loop.close()  # groups in flight commit, then the loop's connections close
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # This worker's live gauges (open sockets) stop counting.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await websocket_app(scope, receive, send)
    elif kind == "http":
        if scope["path"] == publish_asgi.PATH:
            await publish_app(scope, receive, send)
        else:
            await http_app(scope, receive, send)
    elif kind == "lifespan":
        await lifecycle.lifespan(receive, send, on_startup=_startup, on_shutdown=_shutdown)
    else:
        raise ValueError(f"No application configured for scope type {kind!r}")
