"""Property tests (hypothesis): bad input never crashes anything, and never stores anything.

* Serializers: any JSON value and near-valid shapes -> ``is_valid()`` answers (only a
  ValidationError inside), and whatever it accepts obeys the contract's rules.
* HTTP (in process through service.asgi.application): any JSON body or any bytes to the publish
  endpoint and the user API -> only the contract's statuses, never a 5xx, and a
  refused request stores nothing.
* WebSocket (channels' WebsocketCommunicator on ``service.asgi.websocket_app``):
  arbitrary client frames to one socket of user A -> error frames only; A's other
  socket and user B's socket stay open and answer ping.

Deterministic (``derandomize=True``) so that CI sees the same examples every run.
Non-ASCII digits ("²", "٣") once crashed id parsing (a 500 and a dead socket);
they are in the properties again and have regression tests of their own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api import serializers as s
from notifications import services
from notifications.models import IdempotencyRecord, UserSequence
from notifications.ratelimit import publisher_limiter
from tests.api.conftest import JWT_SECRET, ME_URL, PUBLISH_URL, READ_URL, SHOP_SECRET, UNREAD_URL
from tests.support import rows as stored_rows
from tests.support.asgi import AsgiClient, serving_loop
from tests.support.tokens import hs256_only, user_token

PROPS = settings(
    deadline=None,
    max_examples=200,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HTTP_PROPS = settings(PROPS, max_examples=120)

TYPE_RE = re.compile(r"\A[A-Za-z0-9_.:-]{1,100}\Z")

# --------------------------------------------------------------------------- strategies

# Any text, lone surrogates and NUL included (what a Python caller could pass).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
# Text that survives JSON on the wire (no lone surrogates).
wire_text = st.text(max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | wire_text
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(wire_text, children, max_size=5)
    ),
    max_leaves=25,
)
user_ids = st.text(min_size=1, max_size=130) | st.sampled_from(["42", "a" * 128, "a" * 129, ""])
types = st.from_regex(TYPE_RE, fullmatch=True) | wire_text | st.sampled_from(["a" * 101, "x y"])
digits = st.from_regex(r"\A[0-9]{1,20}\Z", fullmatch=True)


def _near_publish() -> st.SearchStrategy[dict[str, Any]]:
    """Mostly-right publish bodies: each field valid, wrong or missing."""
    return st.fixed_dictionaries(
        {},
        optional={
            "recipients": st.lists(user_ids, max_size=4) | json_values,
            "type": types | json_values,
            "title": st.text(max_size=210) | json_values,
            "body": st.text(max_size=30) | st.just("b" * 2001) | json_values,
            "data": st.dictionaries(wire_text, json_values, max_size=4) | json_values,
            "extra": json_values,
        },
    )


near_publish = _near_publish()


def _near_read() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "ids": st.lists(digits | any_text | json_values, max_size=4) | json_values,
            "all": st.booleans() | json_values,
        },
    )


near_read = _near_read()

near_query = st.fixed_dictionaries(
    {},
    optional={
        "unread": st.sampled_from(["true", "false", "1", "0", "yes", ""]) | wire_text,
        "limit": st.integers(-5, 300).map(str) | wire_text,
        "cursor": wire_text | st.text(max_size=45),
    },
)


# --------------------------------------------------------------------------- serializers


def check_publish_result(data: dict[str, Any]) -> None:
    recipients = data["recipients"]
    assert isinstance(recipients, list) and 1 <= len(recipients) <= s.MAX_RECIPIENTS
    for user in recipients:
        assert isinstance(user, str) and 1 <= len(user) <= 128 and "\x00" not in user
    assert isinstance(data["type"], str) and TYPE_RE.match(data["type"])
    assert isinstance(data["title"], str) and len(data["title"]) <= 200
    assert isinstance(data["body"], str) and len(data["body"]) <= 2000
    for text in (data["title"], data["body"], *recipients):
        text.encode("utf-8")  # storable: no lone surrogate
        assert "\x00" not in text
    assert isinstance(data["data"], dict)
    assert len(orjson.dumps(data["data"])) <= s.MAX_DATA_BYTES
    assert b"\\u0000" not in orjson.dumps(data["data"])


@PROPS
@given(body=json_values | near_publish)
@example(body={"recipients": ["1"], "type": "t", "data": {"k": 2**70}})
@example(body={"recipients": ["1"], "type": "t", "data": {"a\x00": 1}})
@example(body={"recipients": ["\ud800"], "type": "t"})
@example(body={"recipients": ["1"], "type": "t", "data": {"x": "y" * (64 * 1024)}})
@example(body={"recipients": 5, "type": "t"})
@example(body={"recipients": ["1"], "type": "t", "title": 3})
def test_publish_request_validates_or_refuses(body: Any) -> None:
    serializer = s.PublishRequest(data=body)
    if serializer.is_valid():
        check_publish_result(dict(serializer.validated_data))
    else:
        assert serializer.errors


@PROPS
@given(body=json_values | near_read)
@example(body={"ids": ["9" * 18]})
@example(body={"ids": ["9" * 19]})
@example(body={"ids": [], "all": True})
@example(body={"all": False})
def test_mark_read_request_validates_or_refuses(body: Any) -> None:
    serializer = s.MarkReadRequest(data=body)
    if not serializer.is_valid():
        assert serializer.errors
        return
    data = serializer.validated_data
    assert ("ids" in data) != (data.get("all") is True)
    if "ids" in data:
        assert 1 <= len(data["ids"]) <= s.MAX_READ_IDS
        assert all(isinstance(i, int) and 0 <= i < 10**18 for i in data["ids"])


@PROPS
@given(query=json_values | near_query)
def test_list_query_validates_or_refuses(query: Any) -> None:
    serializer = s.ListQuery(data=query)
    if not serializer.is_valid():
        assert serializer.errors
        return
    data = serializer.validated_data
    assert isinstance(data["unread"], bool)
    assert isinstance(data["limit"], int) and 1 <= data["limit"] <= 200
    assert len(data.get("cursor", "")) <= 40


def test_read_ids_with_superscript_digits_are_refused() -> None:
    serializer = s.MarkReadRequest(data={"ids": ["²"]})
    assert not serializer.is_valid()


# --------------------------------------------------------------------------- HTTP API


def counts() -> tuple[int, int, int]:
    return (
        stored_rows.count(),
        UserSequence.objects.count(),
        IdempotencyRecord.objects.count(),
    )


def token(user: str) -> str:
    return user_token(JWT_SECRET, user)


@pytest.fixture
def asgi_loop() -> Iterator[asyncio.AbstractEventLoop]:
    yield from serving_loop()


@pytest.fixture
def publisher(asgi_loop: asyncio.AbstractEventLoop) -> AsgiClient:
    client = AsgiClient(asgi_loop)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {SHOP_SECRET}")
    return client


@pytest.fixture
def alice(asgi_loop: asyncio.AbstractEventLoop) -> AsgiClient:
    client = AsgiClient(asgi_loop)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token('alice')}")
    return client


PUBLISH_STATUSES = {202, 400, 413, 415, 422, 429}


def _post_json(client: AsgiClient, url: str, body: Any) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


@pytest.mark.django_db(transaction=True)
@HTTP_PROPS
@given(body=json_values | near_publish, key=st.none() | st.text(max_size=260))
@example(body={"recipients": ["1", "1"], "type": "t"}, key=None)
@example(body={"recipients": ["1"], "type": "t"}, key="")
@example(body={"recipients": ["1"], "type": "t", "data": {"k": 2**70}}, key=None)
def test_publish_any_json_body(publisher: AsgiClient, body: Any, key: str | None) -> None:
    publisher_limiter._local.clear()
    before = counts()
    headers: dict[str, Any] = {}
    if key is not None:
        with contextlib.suppress(UnicodeEncodeError):
            headers["Idempotency-Key"] = key.encode("latin-1")
    response = publisher.post(
        PUBLISH_URL, data=json.dumps(body), content_type="application/json", headers=headers
    )
    assert response.status_code in PUBLISH_STATUSES, (response.status_code, response.content)
    after = counts()
    if response.status_code == 202:
        assert after[0] - before[0] == len(set(body["recipients"])) == response.json()["recipients"]
    else:
        assert after == before, (response.status_code, response.content)
        assert set(response.json()), response.content


@pytest.mark.django_db(transaction=True)
@HTTP_PROPS
@given(
    raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()[:-1]),
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain", "", "x/y"]
    ),
)
@example(raw=b'{"recipients": ["1"], "type": "t"} trailing', content_type="application/json")
@example(raw=b'{"recipients": ["1"], "type": NaN}', content_type="application/json")
@example(raw=b'{"recipients": ["\\ud800"], "type": "t"}', content_type="application/json")
@example(raw=b"\xff\xfe{}", content_type="application/json")
def test_publish_any_bytes(publisher: AsgiClient, raw: bytes, content_type: str) -> None:
    publisher_limiter._local.clear()
    before = counts()
    response = publisher.generic("POST", PUBLISH_URL, raw, content_type=content_type)
    assert response.status_code in PUBLISH_STATUSES, (response.status_code, response.content)
    if response.status_code != 202:
        assert counts() == before
        assert "detail" in response.json() or response.status_code == 400


@pytest.mark.django_db(transaction=True)
@HTTP_PROPS
@given(body=json_values | near_read, raw=st.none() | st.binary(max_size=60))
def test_mark_read_any_body(alice: AsgiClient, body: Any, raw: bytes | None) -> None:
    unread = stored_rows.count(unread=True)
    if raw is None:
        response = _post_json(alice, READ_URL, body)
    else:
        response = alice.generic("POST", READ_URL, raw, content_type="application/json")
    assert response.status_code in {200, 400, 404, 413, 415}, (
        response.status_code,
        response.content,
    )
    if response.status_code != 200:
        assert stored_rows.count(unread=True) == unread
    else:
        assert isinstance(response.json()["updated"], int)


@pytest.mark.django_db(transaction=True)
def test_http_read_ids_with_superscript_digits(alice: AsgiClient) -> None:
    response = _post_json(alice, READ_URL, {"ids": ["²"]})
    assert response.status_code == 400


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.django_db(transaction=True)
@HTTP_PROPS
@given(
    query=st.dictionaries(st.sampled_from(["unread", "limit", "cursor", "x"]), wire_text)
    | near_query,
    item=st.text(max_size=25) | digits,
)
@example(query={"cursor": _cursor("v1:5")}, item="1")
@example(query={"cursor": _cursor("v1:²")}, item="1")
@example(query={"limit": "1e3"}, item="0" * 19)
def test_user_api_any_query(alice: AsgiClient, query: dict[str, str], item: str) -> None:
    services.notifications_publish(source="shop", recipients=["alice"], type="t", title="x")
    try:
        url = f"{ME_URL}?{urlencode(query)}"
    except UnicodeEncodeError:
        url = None  # a lone surrogate: no client can put it in a URL
    # Only the client-side encoding may fail; the request itself never is excused.
    if url is not None:
        listing = alice.get(url)
        assert listing.status_code in {200, 400}, (listing.status_code, listing.content)
        if listing.status_code == 200:
            page = listing.json()
            assert set(page) == {"results", "next"}
            assert all(n["id"].isdecimal() for n in page["results"])
    one = alice.get(f"{ME_URL}/{quote(item, safe='')}")
    assert one.status_code in {200, 404}, (item, one.status_code, one.content)
    assert alice.get(UNREAD_URL).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_http_notification_id_with_superscript_digits(alice: AsgiClient) -> None:
    response = alice.get(f"{ME_URL}/{quote('²', safe='')}")
    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
def test_cursor_beyond_int64(alice: AsgiClient) -> None:
    cursor = _cursor("v1:" + "9" * 27)
    assert len(cursor) <= 40
    response = alice.get(f"{ME_URL}?cursor={cursor}")
    assert response.status_code in {200, 400}


@pytest.mark.django_db(transaction=True)
@HTTP_PROPS
@given(user=st.text(min_size=1, max_size=140))
def test_presence_any_user_id(publisher: AsgiClient, user: str) -> None:
    response = publisher.get(f"/api/v1/users/{quote(user, safe='')}/presence")
    assert response.status_code in {200, 404}, (user, response.status_code, response.content)


# --------------------------------------------------------------------------- WebSocket frames

WS_PATH = "/ws/notifications"
WAIT = 30.0  # for a frame that normally takes milliseconds; generous under load


def _collect(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` deterministic examples of ``strategy`` (a sync @given that only records)."""
    found: list[Any] = []

    @settings(PROPS, max_examples=count, phases=[__import__("hypothesis").Phase.generate])
    @given(strategy)
    def record(value: Any) -> None:
        found.append(value)

    record()
    return found


frame_texts = (
    st.text(max_size=60)
    | json_values.map(json.dumps)
    | st.fixed_dictionaries(
        {
            "type": st.sampled_from(["ping", "read", "pong", "ready", "notification", ""])
            | wire_text
        },
        optional={"ids": json_values | st.lists(digits | wire_text, max_size=3)},
    ).map(json.dumps)
)


def is_ping(text: str) -> bool:
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(frame, dict) and frame.get("type") == "ping"


class WsClient:
    def __init__(self, user: str) -> None:
        self.comm = WebsocketCommunicator(
            websocket_app_(),
            WS_PATH,
            headers=[(b"authorization", f"Bearer {token(user)}".encode())],
        )

    async def open(self) -> None:
        connected, _ = await self.comm.connect(timeout=WAIT)
        assert connected
        await self.until("ready")

    async def until(self, frame_type: str) -> list[dict[str, Any]]:
        frames = []
        while True:
            message = await self.comm.receive_output(WAIT)
            assert message["type"] == "websocket.send", message
            frames.append(json.loads(message["text"]))
            if frames[-1]["type"] == frame_type:
                return frames

    async def ping(self) -> list[dict[str, Any]]:
        await self.comm.send_to(text_data='{"type": "ping"}')
        return (await self.until("pong"))[:-1]


def websocket_app_() -> Any:
    from service.asgi import websocket_app

    return websocket_app


@pytest.fixture
def ws_settings(settings: Any) -> Any:
    settings.NOTIFY_JWT = hs256_only(settings.NOTIFY_JWT, JWT_SECRET)
    settings.NOTIFY_ALLOWED_ORIGINS = None
    settings.NOTIFY_WS_FRAME_RATE = (100000.0, 200000.0)
    settings.NOTIFY_WS_MAX_FRAME_BYTES = 64 * 1024
    settings.NOTIFY_WS_SEND_QUEUE = 1000
    return settings


@database_sync_to_async
def _seed(user: str, count: int) -> None:
    for i in range(count):
        services.notifications_publish(source="shop", recipients=[user], type="t", title=str(i))


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(240)
async def test_arbitrary_client_frames_hurt_only_the_sender(ws_settings: Any) -> None:
    await get_channel_layer().flush()
    # "" cannot go through WebsocketCommunicator (it asserts text_data is truthy);
    # tests/security/test_ws_abuse.py sends an empty frame over a real socket.
    frames = [t for t in _collect(frame_texts, 200) if t]
    frames += ['{"type": "read", "ids": ["1", "2"]}', '{"type":"read","ids":["1"]}', "[]", "{}"]
    await _seed("alice", 3)
    sender, sibling, bob = WsClient("alice"), WsClient("alice"), WsClient("bob")
    clients = [sender, sibling, bob]
    try:
        for client in clients:
            await client.open()
        for text in frames:
            await sender.comm.send_to(text_data=text)
            before_pong = await sender.ping()
            if is_ping(text):  # its own pong came first: wait for ours too
                before_pong += await sender.until("pong")
                before_pong.pop()
            for frame in before_pong:
                assert frame["type"] == "error", (text, frame)
                assert isinstance(frame["code"], str) and isinstance(frame["detail"], str)
        for text in ["\x00", "{" * 5000, '{"type": "' + "t" * 60000 + '"}']:
            await sender.comm.send_to(text_data=text)
            assert all(f["type"] == "error" for f in await sender.ping()), text
        # A's sibling got at most `read` frames; B got nothing at all; both answer ping.
        sibling_frames = await sibling.ping()
        assert {f["type"] for f in sibling_frames} <= {"read"}, sibling_frames
        assert sorted({i for f in sibling_frames for i in f["ids"]}) <= ["1", "2", "3"]
        assert await bob.ping() == []
        if not await sender.comm.receive_nothing(0.2):
            leftover = await sender.comm.receive_output(1)
            raise AssertionError(f"the sender got a frame after its last pong: {leftover}")
    finally:
        for client in clients:
            with contextlib.suppress(BaseException):
                await client.comm.disconnect(timeout=5)


@pytest.mark.django_db(transaction=True)
async def test_read_frame_with_superscript_digit_gets_an_error_frame(ws_settings: Any) -> None:
    await get_channel_layer().flush()
    sender = WsClient("carol")
    try:
        await sender.open()
        await sender.comm.send_to(text_data='{"type": "read", "ids": ["²"]}')
        frames = await sender.ping()
        assert [f["code"] for f in frames] == ["invalid_read"]
    finally:
        with contextlib.suppress(BaseException):
            await sender.comm.disconnect(timeout=5)


@pytest.mark.django_db(transaction=True)
async def test_since_with_superscript_digit_gets_invalid_since(ws_settings: Any) -> None:
    await get_channel_layer().flush()
    comm = WebsocketCommunicator(
        websocket_app_(),
        f"{WS_PATH}?since={quote('²')}",
        headers=[(b"authorization", f"Bearer {token('dave')}".encode())],
    )
    try:
        connected, _ = await comm.connect(timeout=WAIT)
        assert connected
        first = json.loads((await comm.receive_output(WAIT))["text"])
        ready = json.loads((await comm.receive_output(WAIT))["text"])
        assert first["code"] == "invalid_since"
        assert ready["type"] == "ready" and ready["complete"] is False
    finally:
        with contextlib.suppress(BaseException):
            await comm.disconnect(timeout=5)
