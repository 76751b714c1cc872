"""The WebSocket consumer behind its middleware, in-process (channels' WebsocketCommunicator).

Runs against ``service.asgi.websocket_app`` (Origin check + token auth + router) on the
default in-memory channel layer. Tokens are minted with PyJWT here, never with the
service's own helper, so the consumer is checked against the JWT standard.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient
from django.utils import timezone

from notifications import delivery, services
from notifications.models import UserSequence
from realtime import engine
from realtime.expiry import expiries
from service.asgi import websocket_app
from tests.support.keys import api_keys_setting
from tests.support.rows import read_state as stored_read_state
from tests.support.rows import store
from tests.support.tokens import hs256_only, user_token

pytestmark = pytest.mark.django_db(transaction=True)

JWT_SECRET = "consumer-test-jwt-secret-0123456789abcdef-0123456789abcdef-0123456789"
OTHER_SECRET = "somebody-elses-jwt-secret-0123456789abcdef-0123456789abcdef-01234567"
PUBLISHER_SECRET = "consumer-test-publisher-secret-0123456789abcdef"
WS_PATH = "/ws/notifications"
READ_URL = "/api/v1/me/notifications/read"
ALLOWED_ORIGIN = "https://app.example.com"
READY_KEYS = {"type", "user", "replayed", "complete", "unread"}
# Generous: a loaded 2-core machine can stall a thread hop (SQLite, the
# layer) for seconds; these waits end as soon as the frame is there.
WAIT = 30.0


# --------------------------------------------------------------------------- helpers


def make_token(sub: Any = "alice", *, secret: str = JWT_SECRET, **options: Any) -> str:
    """A user JWT (tests.support.tokens.user_token's options) signed with ``secret``."""
    return user_token(secret, sub, **options)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned_token(sub: str = "alice") -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"sub": sub, "exp": int(time.time()) + 3600}).encode())
    return f"{header}.{payload}."


def new_user(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


class Socket:
    """A WebsocketCommunicator with JSON helpers; frames are decoded dicts."""

    def __init__(self, comm: WebsocketCommunicator) -> None:
        self.comm = comm

    async def frame(self, timeout: float = WAIT) -> dict[str, Any]:
        message = await self.comm.receive_output(timeout)
        assert message["type"] == "websocket.send", f"expected a frame, got {message}"
        assert "text" in message and message.get("bytes") is None, f"not a text frame: {message}"
        decoded = json.loads(message["text"])
        assert isinstance(decoded, dict)
        return decoded

    async def until(self, frame_type: str, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Frames up to and including the first of ``frame_type``."""
        frames: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.frame(max(0.1, deadline - time.monotonic()))
            frames.append(frame)
            if frame["type"] == frame_type:
                return frames

    async def ping(self) -> list[dict[str, Any]]:
        """Send a ping; return every frame before the pong (the pong excluded)."""
        await self.comm.send_to(text_data='{"type": "ping"}')
        return (await self.until("pong"))[:-1]

    async def send_json(self, payload: Any) -> None:
        await self.comm.send_to(text_data=json.dumps(payload))

    async def sends_nothing_more(self) -> bool:
        """True when the application ends without sending anything more.

        A positive marker instead of a quiet spell: the client leaves, the
        application finishes (so it can send nothing later), then its output
        is checked. A short ``receive_nothing`` passes vacuously when the
        machine is too loaded for a late frame to arrive within it.
        """
        await self.comm.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.comm.wait(WAIT)
        return self.comm.output_queue.empty()

    async def close_code(self, timeout: float = WAIT) -> int:
        """Read (and discard) frames until the server closes; return the close code."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.comm.receive_output(max(0.1, deadline - time.monotonic()))
            if message["type"] == "websocket.close":
                return int(message.get("code", 1000))
            assert message["type"] == "websocket.send", message


Connect = Callable[..., Awaitable[tuple[bool, Any, Socket]]]


@pytest.fixture(autouse=True)
def ws_settings(settings: Any) -> Any:
    settings.NOTIFY_JWT = hs256_only(settings.NOTIFY_JWT, JWT_SECRET)
    settings.NOTIFY_API_KEYS = api_keys_setting(f"shop:{PUBLISHER_SECRET}")
    settings.NOTIFY_ALLOWED_ORIGINS = None
    settings.NOTIFY_WS_FRAME_RATE = (1000.0, 2000.0)
    settings.NOTIFY_WS_MAX_FRAME_BYTES = 64 * 1024
    settings.NOTIFY_WS_SEND_QUEUE = 1000
    return settings


@pytest.fixture(autouse=True)
async def fresh_layer() -> AsyncIterator[None]:
    layer = get_channel_layer()
    await layer.flush()
    yield
    await layer.flush()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """``await connect(path=..., headers=..., subprotocols=...)`` -> (connected, extra, socket).

    ``extra`` is the accepted subprotocol, or the close code of a refusal. Every socket is
    disconnected when the test ends.
    """
    opened: list[WebsocketCommunicator] = []

    async def do(
        path: str = WS_PATH,
        *,
        token: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        subprotocols: list[str] | None = None,
    ) -> tuple[bool, Any, Socket]:
        all_headers = list(headers or [])
        if token is not None:
            all_headers += bearer(token)
        comm = WebsocketCommunicator(
            websocket_app, path, headers=all_headers, subprotocols=subprotocols
        )
        opened.append(comm)
        connected, extra = await comm.connect(timeout=WAIT)
        return connected, extra, Socket(comm)

    yield do

    for comm in opened:
        with contextlib.suppress(BaseException):
            await comm.disconnect(timeout=WAIT)


async def open_ready(
    connect: Connect, user: str, *, query: str = "", **kwargs: Any
) -> tuple[Socket, list[dict[str, Any]], dict[str, Any]]:
    """Open an authenticated socket for ``user``; (socket, frames before ready, ready)."""
    path = WS_PATH + (f"?{query}" if query else "")
    connected, _extra, sock = await connect(path, token=make_token(user), **kwargs)
    assert connected, f"socket for {user} was refused"
    frames = await sock.until("ready")
    return sock, frames[:-1], frames[-1]


@database_sync_to_async
def publish(user: str | list[str], title: str = "hello", **fields: Any) -> None:
    recipients = [user] if isinstance(user, str) else user
    services.notifications_publish(
        source="shop", recipients=recipients, type="test.event", title=title, **fields
    )


@database_sync_to_async
def store_rows(user: str, seqs: list[int], *, purged_through: int = 0) -> dict[int, dict[str, Any]]:
    """Write rows directly (no push): the channel layer knows nothing of them."""
    last = max(seqs)
    UserSequence.objects.update_or_create(
        user_id=user, defaults={"last_id": last, "purged_through": purged_through}
    )
    now = timezone.now()
    store(
        {
            "user_id": user,
            "seq": seq,
            "type": "test.stored",
            "title": f"{user} #{seq}",
            "data": {"seq": seq},
            "created_at": now,
        }
        for seq in seqs
    )
    # What the contract says each looks like on the wire, built from what was
    # stored rather than by the code under test.
    return {
        seq: {
            "id": str(seq),
            "type": "test.stored",
            "title": f"{user} #{seq}",
            "body": "",
            "data": {"seq": seq},
            "source": "shop",
            "created_at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "read_at": None,
        }
        for seq in seqs
    }


@database_sync_to_async
def read_state(user: str) -> dict[str, bool]:
    return {str(seq): read for seq, read in stored_read_state(user).items()}


async def push(group_user: str, payload_user: str, notification: dict[str, Any]) -> None:
    await get_channel_layer().group_send(
        delivery.group_name(group_user),
        {
            "type": "notification.created",
            "user": payload_user,
            "n": notification,
            "t": time.time(),
        },
    )


def read_frame(frame: dict[str, Any]) -> list[str]:
    """The ids of a ``read`` frame, in id order (the contract does not fix their order)."""
    assert frame["type"] == "read", frame
    assert set(frame) == {"type", "ids"}, frame
    assert len(frame["ids"]) == len(set(frame["ids"])), frame
    return sorted(frame["ids"], key=int)


def ids(frames: list[dict[str, Any]]) -> list[str]:
    return [f["notification"]["id"] for f in frames if f["type"] == "notification"]


# --------------------------------------------------------------------------- authentication


async def test_header_auth_accepts_and_sends_ready(connect: Connect) -> None:
    user = new_user()
    connected, _subprotocol, sock = await connect(token=make_token(user))
    assert connected
    ready = await sock.frame()
    assert ready.keys() >= READY_KEYS
    assert ready["type"] == "ready"
    assert ready["user"] == user
    assert ready["replayed"] == 0
    assert ready["complete"] is True
    assert ready["unread"] == 0


async def test_subprotocol_auth_answers_notifications_v1(connect: Connect) -> None:
    user = new_user()
    connected, subprotocol, sock = await connect(
        subprotocols=["notifications.v1", f"bearer.{make_token(user)}"]
    )
    assert connected
    assert subprotocol == "notifications.v1"
    ready = await sock.frame()
    assert ready["type"] == "ready"
    assert ready["user"] == user


async def test_query_token_auth(connect: Connect) -> None:
    user = new_user()
    connected, _subprotocol, sock = await connect(f"{WS_PATH}?token={make_token(user)}")
    assert connected
    ready = await sock.frame()
    assert ready == {**ready, "type": "ready", "user": user}


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "malformed": lambda: "not-a-jwt",
    "three-garbage-segments": lambda: "abc.def.ghi",
    "wrong-signature": lambda: make_token("alice", secret=OTHER_SECRET),
    "expired": lambda: make_token("alice", exp_in=-60),
    "alg-none": lambda: unsigned_token("alice"),
    "no-exp": lambda: make_token("alice", exp_in=None),
    "no-sub": lambda: make_token(None),
    "numeric-sub": lambda: make_token(42),
    "publisher-key": lambda: PUBLISHER_SECRET,
    "hs512-not-allowed": lambda: make_token("alice", algorithm="HS512"),
}


@pytest.mark.parametrize("how", ["header", "subprotocol", "query"])
@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_token_is_refused(connect: Connect, case: str, how: str) -> None:
    token = BAD_TOKENS[case]()
    if how == "header":
        connected, _code, sock = await connect(headers=bearer(token))
    elif how == "subprotocol":
        connected, _code, sock = await connect(subprotocols=["notifications.v1", f"bearer.{token}"])
    else:
        connected, _code, sock = await connect(f"{WS_PATH}?token={token}")
    assert connected is False
    # Nothing is sent after the refusal.
    assert await sock.sends_nothing_more()


async def test_missing_token_is_refused(connect: Connect) -> None:
    connected, _code, sock = await connect()
    assert connected is False
    assert await sock.sends_nothing_more()


async def test_empty_bearer_header_is_refused(connect: Connect) -> None:
    connected, _code, _sock = await connect(headers=[(b"authorization", b"Bearer ")])
    assert connected is False


async def test_unknown_path_is_refused_even_with_a_valid_token(connect: Connect) -> None:
    connected, _code, _sock = await connect("/ws/other", token=make_token(new_user()))
    assert connected is False


async def test_disallowed_origin_is_refused_dev_default(connect: Connect) -> None:
    connected, _code, _sock = await connect(
        token=make_token(new_user()), headers=[(b"origin", b"https://evil.example")]
    )
    assert connected is False


async def test_no_origin_header_is_allowed_with_origins_configured(
    connect: Connect, settings: Any
) -> None:
    settings.NOTIFY_ALLOWED_ORIGINS = ["https://app.example.com:443"]
    connected, _extra, _sock = await connect(token=make_token(new_user()))
    assert connected


@pytest.mark.parametrize(
    "origin",
    ["https://app.example.com", "https://app.example.com:443", "https://APP.example.com"],
)
async def test_allowed_origin_is_accepted(connect: Connect, settings: Any, origin: str) -> None:
    settings.NOTIFY_ALLOWED_ORIGINS = ["https://app.example.com:443"]
    connected, _extra, sock = await connect(
        token=make_token(new_user()), headers=[(b"origin", origin.encode())]
    )
    assert connected
    assert (await sock.frame())["type"] == "ready"


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com:8443",  # port mismatch
        "http://app.example.com",  # scheme mismatch
        "https://evil.example.com",
        "https://app.example.com.evil.example",
        "null",
    ],
)
async def test_other_origin_is_refused(connect: Connect, settings: Any, origin: str) -> None:
    settings.NOTIFY_ALLOWED_ORIGINS = ["https://app.example.com:443"]
    connected, _code, sock = await connect(
        token=make_token(new_user()), headers=[(b"origin", origin.encode())]
    )
    assert connected is False
    assert await sock.sends_nothing_more()


# --------------------------------------------------------------------------- frames


async def test_ping_pong(connect: Connect) -> None:
    sock, _, _ = await open_ready(connect, new_user())
    await sock.comm.send_to(text_data='{"type": "ping"}')
    assert await sock.frame() == {"type": "pong"}


@pytest.mark.parametrize(
    "frame",
    [
        "this is not json",
        "[1, 2, 3]",
        '"ping"',
        '{"no_type": true}',
        '{"type": 7}',
        '{"type": "dance"}',
        '{"type": "read", "ids": "1"}',
        '{"type": "read", "ids": [1]}',
        '{"type": "read"}',
        "{",
    ],
)
async def test_malformed_text_frame_gets_error_and_socket_stays_open(
    connect: Connect, frame: str
) -> None:
    sock, _, _ = await open_ready(connect, new_user())
    await sock.comm.send_to(text_data=frame)
    error = await sock.frame()
    assert error["type"] == "error"
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["detail"], str) and error["detail"]
    assert set(error) >= {"type", "code", "detail"}
    assert await sock.ping() == []


async def test_binary_frame_gets_error_and_socket_stays_open(connect: Connect) -> None:
    sock, _, _ = await open_ready(connect, new_user())
    await sock.comm.send_to(bytes_data=b'{"type": "ping"}')
    error = await sock.frame()
    assert error["type"] == "error"
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["detail"], str) and error["detail"]
    assert await sock.ping() == []


async def test_frame_over_64_kib_closes_1009(connect: Connect) -> None:
    sock, _, _ = await open_ready(connect, new_user())
    big = json.dumps({"type": "ping", "pad": "x" * (64 * 1024)})
    await sock.comm.send_to(text_data=big)
    assert await sock.close_code() in (1009, 1008)


async def test_frame_just_under_limit_is_accepted(connect: Connect) -> None:
    sock, _, _ = await open_ready(connect, new_user())
    frame = json.dumps({"type": "ping", "pad": ""})
    frame = json.dumps({"type": "ping", "pad": "x" * (64 * 1024 - len(frame))})
    assert len(frame.encode()) == 64 * 1024
    await sock.comm.send_to(text_data=frame)
    assert await sock.frame() == {"type": "pong"}


async def test_frame_flood_closes_1008(connect: Connect, settings: Any) -> None:
    settings.NOTIFY_WS_FRAME_RATE = (5.0, 10.0)
    sock, _, _ = await open_ready(connect, new_user())
    for _ in range(40):
        await sock.comm.send_to(text_data='{"type": "ping"}')
    assert await sock.close_code() == 1008


async def test_token_expiry_closes_4401(connect: Connect) -> None:
    user = new_user()
    connected, _extra, sock = await connect(token=make_token(user, exp_in=2))
    assert connected
    assert (await sock.frame())["type"] == "ready"
    assert await sock.close_code(timeout=10) == 4401


async def test_a_closed_socket_leaves_no_expiry_behind(connect: Connect) -> None:
    """The process-wide expiries (realtime/expiry.py) hold a socket until it closes."""

    def held() -> int:
        return sum(len(streams) for streams in expiries().due.values())

    before = held()
    sock, _, _ = await open_ready(connect, new_user())
    assert held() == before + 1
    await sock.comm.disconnect(timeout=WAIT)
    async with asyncio.timeout(WAIT):
        while held() != before:
            await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- ready and replay


async def test_without_since_nothing_stored_is_replayed(connect: Connect) -> None:
    user = new_user()
    await publish(user, "one")
    await publish(user, "two")
    sock, before, ready = await open_ready(connect, user)
    assert before == []
    assert ready["replayed"] == 0
    assert ready["complete"] is True
    assert ready["unread"] == 2
    assert await sock.ping() == []


async def test_since_replays_stored_after_id_oldest_first_then_ready(connect: Connect) -> None:
    user = new_user()
    for i in range(1, 6):
        await publish(user, f"n{i}", data={"i": i})
    sock, before, ready = await open_ready(connect, user, query="since=2")
    assert [f["type"] for f in before] == ["notification"] * 3
    assert ids(before) == ["3", "4", "5"]
    assert [f["notification"]["title"] for f in before] == ["n3", "n4", "n5"]
    assert [f["notification"]["data"] for f in before] == [{"i": 3}, {"i": 4}, {"i": 5}]
    assert before[0]["notification"]["source"] == "shop"
    assert before[0]["notification"]["read_at"] is None
    assert ready["replayed"] == 3
    assert ready["complete"] is True
    assert ready["unread"] == 5
    assert ready["user"] == user
    # Nothing is sent twice: a live one continues the sequence.
    await publish(user, "n6")
    frame = await sock.frame()
    assert frame["type"] == "notification"
    assert frame["notification"]["id"] == "6"
    assert await sock.ping() == []


async def test_since_zero_replays_everything(connect: Connect) -> None:
    user = new_user()
    await publish(user, "a")
    await publish(user, "b")
    _sock, before, ready = await open_ready(connect, user, query="since=0")
    assert ids(before) == ["1", "2"]
    assert ready["replayed"] == 2
    assert ready["complete"] is True


async def test_since_replays_more_than_one_page_in_order(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first page comes with the stream's opening read, the rest page by page.
    monkeypatch.setattr(engine, "REPLAY_PAGE", 3)
    user = new_user()
    for i in range(1, 9):
        await publish(user, f"n{i}")
    sock, before, ready = await open_ready(connect, user, query="since=1")
    assert ids(before) == [str(i) for i in range(2, 9)]
    assert ready["replayed"] == 7
    assert ready["last_id"] == "8"
    assert await sock.ping() == []


async def test_since_zero_for_a_new_user_is_complete(connect: Connect) -> None:
    _sock, before, ready = await open_ready(connect, new_user(), query="since=0")
    assert before == []
    assert ready["replayed"] == 0
    assert ready["complete"] is True
    assert ready["unread"] == 0


async def test_since_older_than_purged_is_incomplete(connect: Connect) -> None:
    user = new_user()
    stored = await store_rows(user, [4, 5], purged_through=3)
    _sock, before, ready = await open_ready(connect, user, query="since=1")
    assert ids(before) == ["4", "5"]
    assert [f["notification"] for f in before] == [stored[4], stored[5]]
    assert ready["replayed"] == 2
    assert ready["complete"] is False


async def test_since_at_purged_boundary_is_complete(connect: Connect) -> None:
    user = new_user()
    await store_rows(user, [4, 5], purged_through=3)
    _sock, before, ready = await open_ready(connect, user, query="since=3")
    assert ids(before) == ["4", "5"]
    assert ready["complete"] is True


async def test_since_beyond_last_id_is_incomplete_and_live_still_flows(connect: Connect) -> None:
    user = new_user()
    await publish(user, "a")
    await publish(user, "b")
    sock, before, ready = await open_ready(connect, user, query="since=10")
    assert before == []
    assert ready["replayed"] == 0
    assert ready["complete"] is False
    await publish(user, "c")
    frame = await sock.frame()
    assert frame["type"] == "notification"
    assert frame["notification"]["id"] == "3"
    assert frame["notification"]["title"] == "c"


async def test_long_replay_is_complete_and_in_order(connect: Connect) -> None:
    """More than one replay page (and more than the send queue holds) still arrives whole."""
    user = new_user()
    count = 1234
    stored = await store_rows(user, list(range(1, count + 1)))
    sock, before, ready = await open_ready(connect, user, query="since=0")
    assert ids(before) == [str(i) for i in range(1, count + 1)]
    assert before[-1]["notification"] == stored[count]
    assert ready["replayed"] == count
    assert ready["complete"] is True
    assert ready["unread"] == count
    assert await sock.ping() == []


# --------------------------------------------------------------------------- live delivery


async def test_live_notification_arrives(connect: Connect) -> None:
    user = new_user()
    sock, _, _ = await open_ready(connect, user)
    await publish(user, "Your order is on its way", body="Order #1", data={"order_id": 1234})
    frame = await sock.frame()
    assert frame["type"] == "notification"
    n = frame["notification"]
    assert set(n) == {"id", "type", "title", "body", "data", "source", "created_at", "read_at"}
    assert n["id"] == "1"
    assert n["type"] == "test.event"
    assert n["title"] == "Your order is on its way"
    assert n["body"] == "Order #1"
    assert n["data"] == {"order_id": 1234}
    assert n["source"] == "shop"
    assert n["read_at"] is None
    assert isinstance(n["created_at"], str) and n["created_at"].endswith("Z")


async def test_every_socket_of_a_user_gets_it_and_no_other_user_does(connect: Connect) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    a1, _, _ = await open_ready(connect, alice)
    a2, _, _ = await open_ready(connect, alice)
    b1, _, _ = await open_ready(connect, bob)
    await publish(alice, "for alice")
    await publish(bob, "for bob")
    for sock in (a1, a2):
        frame = await sock.frame()
        assert frame["notification"]["title"] == "for alice"
        assert await sock.ping() == []
    frame = await b1.frame()
    assert frame["notification"]["title"] == "for bob"
    assert frame["notification"]["id"] == "1"
    assert await b1.ping() == []


async def test_multi_recipient_publish_gives_each_user_their_own_id(connect: Connect) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    await publish(alice, "earlier")
    a, _, _ = await open_ready(connect, alice)
    b, _, _ = await open_ready(connect, bob)
    await publish([alice, bob, alice], "both")
    fa, fb = await a.frame(), await b.frame()
    assert fa["notification"]["id"] == "2"
    assert fb["notification"]["id"] == "1"
    assert await a.ping() == []  # the duplicate recipient counted once


async def test_gap_is_filled_from_the_database_in_order(connect: Connect) -> None:
    user = new_user()
    sock, _, _ = await open_ready(connect, user)
    stored = await store_rows(user, [1, 2, 3])
    await push(user, user, stored[3])
    frames = [await sock.frame() for _ in range(3)]
    assert [f["type"] for f in frames] == ["notification"] * 3
    assert [f["notification"] for f in frames] == [stored[1], stored[2], stored[3]]
    assert await sock.ping() == []


async def test_duplicate_push_is_dropped(connect: Connect) -> None:
    user = new_user()
    sock, _, _ = await open_ready(connect, user)
    stored = await store_rows(user, [1, 2])
    await push(user, user, stored[1])
    await push(user, user, stored[2])
    assert ids([await sock.frame(), await sock.frame()]) == ["1", "2"]
    await push(user, user, stored[2])  # again
    await push(user, user, stored[1])  # and an older one
    stored = await store_rows(user, [3])
    await push(user, user, stored[3])
    frame = await sock.frame()
    assert frame["notification"] == stored[3]
    assert await sock.ping() == []


async def test_push_of_another_users_payload_is_dropped(connect: Connect) -> None:
    alice, mallory = new_user("alice"), new_user("mallory")
    sock, _, _ = await open_ready(connect, alice)
    theirs = await store_rows(mallory, [1])
    ours = await store_rows(alice, [1])
    # A message in alice's group that carries mallory's notification.
    await push(alice, mallory, theirs[1])
    await push(alice, alice, ours[1])
    frame = await sock.frame()
    assert frame["notification"] == ours[1]
    assert frame["notification"]["title"].startswith(alice)
    assert await sock.ping() == []


async def test_pushes_out_of_order_arrive_in_order_without_duplicates(connect: Connect) -> None:
    user = new_user()
    sock, _, _ = await open_ready(connect, user)
    stored = await store_rows(user, [1, 2, 3, 4, 5])
    for seq in (2, 1, 5, 3, 4):
        await push(user, user, stored[seq])
    frames = [await sock.frame() for _ in range(5)]
    assert [f["notification"] for f in frames] == [stored[i] for i in range(1, 6)]
    assert await sock.ping() == []


# --------------------------------------------------------------------------- read


async def test_client_read_frame_marks_read_and_tells_other_sockets(connect: Connect) -> None:
    user = new_user()
    for i in range(3):
        await publish(user, f"n{i}")
    sender, _, _ = await open_ready(connect, user)
    other, _, _ = await open_ready(connect, user)
    await sender.send_json({"type": "read", "ids": ["1", "2"]})
    assert read_frame(await other.frame()) == ["1", "2"]
    assert await read_state(user) == {"1": True, "2": True, "3": False}
    # The sender gets no read frame for its own change (two round trips flush it).
    assert await sender.ping() == []
    assert await sender.ping() == []
    assert await sender.comm.receive_nothing(timeout=0.3)


async def test_client_read_frame_sends_only_ids_that_changed(connect: Connect) -> None:
    user = new_user()
    for i in range(3):
        await publish(user, f"n{i}")
    sender, _, _ = await open_ready(connect, user)
    other, _, _ = await open_ready(connect, user)
    await sender.send_json({"type": "read", "ids": ["1"]})
    assert await other.frame() == {"type": "read", "ids": ["1"]}
    await sender.send_json({"type": "read", "ids": ["1", "3", "999"]})
    assert await other.frame() == {"type": "read", "ids": ["3"]}
    assert await read_state(user) == {"1": True, "2": False, "3": True}


async def test_client_read_of_another_users_id_changes_nothing(connect: Connect) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    await publish(bob, "bob's")
    await publish(alice, "alice's")
    a, _, _ = await open_ready(connect, alice)
    b, _, _ = await open_ready(connect, bob)
    # Both have id 1; alice marking "1" is about her own row only.
    await a.send_json({"type": "read", "ids": ["1"]})
    assert await a.ping() == []
    assert await read_state(alice) == {"1": True}
    assert await read_state(bob) == {"1": False}
    assert await b.ping() == []


async def test_rest_read_endpoint_sends_read_frame_to_every_socket(connect: Connect) -> None:
    user = new_user()
    for i in range(3):
        await publish(user, f"n{i}")
    s1, _, _ = await open_ready(connect, user)
    s2, _, _ = await open_ready(connect, user)
    client = AsyncClient()
    response = await client.post(
        READ_URL,
        json.dumps({"ids": ["2", "3"]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {make_token(user)}"},
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"updated": 2}
    assert read_frame(await s1.frame()) == ["2", "3"]
    assert read_frame(await s2.frame()) == ["2", "3"]
    assert await read_state(user) == {"1": False, "2": True, "3": True}

    response = await client.post(
        READ_URL,
        json.dumps({"all": True}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {make_token(user)}"},
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"updated": 1}
    assert await s1.frame() == {"type": "read", "ids": ["1"]}
    assert await s2.frame() == {"type": "read", "ids": ["1"]}


async def test_read_frames_of_one_user_never_reach_another(connect: Connect) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    await publish(alice, "a")
    await publish(bob, "b")
    a1, _, _ = await open_ready(connect, alice)
    a2, _, _ = await open_ready(connect, alice)
    b1, _, _ = await open_ready(connect, bob)
    await a1.send_json({"type": "read", "ids": ["1"]})
    assert await a2.frame() == {"type": "read", "ids": ["1"]}
    assert await b1.ping() == []
    assert await b1.ping() == []


async def test_sockets_keep_working_after_many_exchanges(connect: Connect) -> None:
    """A small soak: interleaved publishes, reads and pings stay consistent."""
    user = new_user()
    sock, _, _ = await open_ready(connect, user)
    other, _, _ = await open_ready(connect, user)
    seen: list[str] = []
    for round_no in range(1, 11):
        await publish(user, f"n{round_no}")
        frame = await sock.frame()
        seen.append(frame["notification"]["id"])
        assert (await other.frame())["notification"]["id"] == str(round_no)
        if round_no % 3 == 0:
            await sock.send_json({"type": "read", "ids": [str(round_no)]})
            assert await other.frame() == {"type": "read", "ids": [str(round_no)]}
    assert seen == [str(i) for i in range(1, 11)]
    assert await sock.ping() == []


async def test_an_idle_socket_runs_no_task_of_its_own(connect: Connect) -> None:
    """Memory per idle socket (docs/performance.md): besides the task running the
    application there is no writer, no layer receiver, before or after a push."""
    users = [new_user() for _ in range(10)]
    # The first socket starts what the loop keeps for all of them (on
    # PostgreSQL the opening reads' pool: its workers and scheduler), so the
    # count per socket is taken from there.
    socks = [(await open_ready(connect, users[0]))[0]]
    baseline = len(asyncio.all_tasks()) - 1
    socks += [(await open_ready(connect, user))[0] for user in users[1:]]
    await tasks_settle_to(baseline + len(users))
    await publish(users, "to everyone")
    for sock in socks:
        assert (await sock.frame())["notification"]["title"] == "to everyone"
    await tasks_settle_to(baseline + len(users))


async def tasks_settle_to(bound: int) -> None:
    """Wait until at most ``bound`` tasks exist. Short-lived ones (a push's pump,
    a thread hop) end a moment after the frame they sent; a task kept per socket
    never does, and fails this after WAIT."""
    deadline = time.monotonic() + WAIT
    while (count := len(asyncio.all_tasks())) > bound:
        assert time.monotonic() < deadline, f"{count} tasks, more than {bound}, after {WAIT}s"
        await asyncio.sleep(0.01)


async def test_ping_catches_up_a_lost_last_push(connect: Connect) -> None:
    """Rows committed whose push never came (no later push reveals the gap):
    the next ping makes the socket read and send them, after the pong."""
    user = new_user()
    sock, _, _ = await open_ready(connect, user)
    stored = await store_rows(user, [1, 2])
    assert await sock.ping() == []
    frames = [await sock.frame(), await sock.frame()]
    assert [f["notification"] for f in frames] == [stored[1], stored[2]]
    # Already sent: a second ping (inside the interval or not) sends nothing more.
    assert await sock.ping() == []
