"""A closed socket's consumer and session are freed by reference counting,
not left to the garbage collector (notifications/consumers.py): in-process,
``service.asgi.websocket_app`` through channels' WebsocketCommunicator on the
default in-memory channel layer, with the collector off.

The session holds the consumer (its transport) and the consumer the session;
until the consumer let go of it when its socket ended, each closed socket
left that pair, and the server protocol they hold, to the collector's next
full collection (docs/performance.md, "Handshakes, fourth round")."""

from __future__ import annotations

import gc
import json
import uuid
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from notifications.consumers import NotificationConsumer
from realtime.engine import StreamSession
from service.asgi import websocket_app
from tests.notifications.test_consumers import fresh_layer  # noqa: F401 (autouse: a flushed layer)
from tests.support.collector import collector_off
from tests.support.tokens import hs256_only, user_token

pytestmark = pytest.mark.django_db(transaction=True)

JWT_SECRET = "release-test-jwt-secret-0123456789abcdef-0123456789abcdef-0123456789ab"
WAIT = 30.0
SOCKETS = 5


@pytest.fixture(autouse=True)
def ws_settings(settings: Any) -> Any:
    settings.NOTIFY_JWT = hs256_only(settings.NOTIFY_JWT, JWT_SECRET)
    settings.NOTIFY_ALLOWED_ORIGINS = None
    return settings


def alive() -> list[object]:
    return [o for o in gc.get_objects() if isinstance(o, NotificationConsumer | StreamSession)]


async def open_ready(user: str) -> WebsocketCommunicator:
    token = user_token(JWT_SECRET, user)
    comm = WebsocketCommunicator(
        websocket_app,
        "/ws/notifications?since=0",
        headers=[(b"authorization", f"Bearer {token}".encode())],
    )
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    while True:
        message = await comm.receive_output(WAIT)
        if json.loads(message["text"])["type"] == "ready":
            return comm


async def test_closed_sockets_leave_no_consumer_or_session_behind() -> None:
    with collector_off():
        sockets = [await open_ready(f"release-{uuid.uuid4().hex[:8]}") for _ in range(SOCKETS)]
        assert len(alive()) == 2 * SOCKETS  # while open: one of each per socket
        for comm in sockets:
            await comm.send_input({"type": "websocket.disconnect", "code": 1000})
            await comm.wait(WAIT)  # the application has ended
        del comm, sockets
        assert alive() == []
