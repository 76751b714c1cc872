"""One uvicorn process, no Redis (in-memory layer), SQLite: the laptop setup, end to end."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.live.conftest import (
    ME_PATH,
    OTHER_JWT_SECRET,
    PUBLISH_PATH,
    SHOP_SECRET,
    WS_PATH,
    Sockets,
    eventually,
    make_token,
    new_user,
    publish,
    stored_notifications,
    user_headers,
    ws_connect,
)
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

NOTIFICATION_KEYS = {"id", "type", "title", "body", "data", "source", "created_at", "read_at"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned_token(sub: str) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"sub": sub, "exp": int(time.time()) + 3600}).encode())
    return f"{header}.{payload}."


async def test_post_is_pushed_to_the_users_socket(
    single_server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    user = new_user()
    sock = await sockets.open(single_server, user)
    ready = await sock.ready()
    assert ready["user"] == user
    assert ready["replayed"] == 0
    assert ready["complete"] is True
    assert ready["unread"] == 0

    # What curl would send: raw JSON bytes with the two headers.
    body = (
        '{"recipients": ["USER"], "type": "order.shipped", "title": "Your order is on its way", '
        '"body": "Order #1234 left the warehouse.", "data": {"order_id": 1234}}'
    ).replace("USER", user)
    response = await http.post(
        single_server.url + PUBLISH_PATH,
        content=body.encode(),
        headers={"Authorization": f"Bearer {SHOP_SECRET}", "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["recipients"] == 1
    uuid.UUID(answer["event_id"])

    [pushed] = await sock.wait_count(1)
    assert set(pushed) == NOTIFICATION_KEYS
    assert pushed["id"] == "1"
    assert pushed["type"] == "order.shipped"
    assert pushed["title"] == "Your order is on its way"
    assert pushed["body"] == "Order #1234 left the warehouse."
    assert pushed["data"] == {"order_id": 1234}
    assert pushed["source"] == "shop"
    assert pushed["read_at"] is None
    assert await stored_notifications(http, single_server, user) == [pushed]


async def test_subprotocol_auth_answers_notifications_v1(single_server: LiveServer) -> None:
    user = new_user()
    ws = await ws_connect(
        single_server, subprotocols=["notifications.v1", f"bearer.{make_token(user)}"]
    )
    try:
        assert ws.subprotocol == "notifications.v1"
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready"
        assert ready["user"] == user
    finally:
        await ws.close()


async def test_query_token_auth(single_server: LiveServer) -> None:
    user = new_user()
    ws = await ws_connect(single_server, query=f"token={make_token(user)}")
    try:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready"
        assert ready["user"] == user
    finally:
        await ws.close()


BAD_AUTH: dict[str, Callable[[], dict[str, object]]] = {
    "no-token": lambda: {},
    "malformed-header": lambda: {"token": "not-a-jwt"},
    "wrong-signature": lambda: {"token": make_token("alice", secret=OTHER_JWT_SECRET)},
    "expired": lambda: {"token": make_token("alice", exp_in=-30)},
    "alg-none": lambda: {"token": unsigned_token("alice")},
    "no-exp": lambda: {"token": make_token("alice", exp_in=None)},
    "publisher-key-header": lambda: {"token": SHOP_SECRET},
    "publisher-key-query": lambda: {"query": f"token={SHOP_SECRET}"},
    "expired-query": lambda: {"query": f"token={make_token('alice', exp_in=-30)}"},
    "wrong-signature-subprotocol": lambda: {
        "subprotocols": [
            "notifications.v1",
            f"bearer.{make_token('alice', secret=OTHER_JWT_SECRET)}",
        ]
    },
    "basic-auth-scheme": lambda: {"headers": {"Authorization": "Basic YWxpY2U6c2VjcmV0"}},
    "disallowed-origin": lambda: {"token": make_token("alice"), "origin": "https://evil.example"},
}


@pytest.mark.parametrize("case", sorted(BAD_AUTH))
async def test_bad_handshake_is_refused_with_403(single_server: LiveServer, case: str) -> None:
    with pytest.raises(InvalidStatus) as caught:
        ws = await ws_connect(single_server, **BAD_AUTH[case]())  # type: ignore[arg-type]
        await ws.close()
    assert caught.value.response.status_code == 403


async def test_allowed_dev_origin_is_accepted(single_server: LiveServer) -> None:
    user = new_user()
    ws = await ws_connect(
        single_server, token=make_token(user), origin=f"http://localhost:{single_server.port}"
    )
    try:
        assert json.loads(await ws.recv())["type"] == "ready"
    finally:
        await ws.close()


async def test_query_token_never_reaches_the_log(
    single_server: LiveServer, http: httpx.AsyncClient
) -> None:
    user = new_user()
    good = make_token(user)
    expired = make_token(user, exp_in=-30)
    marker = uuid.uuid4().hex

    ws = await ws_connect(single_server, query=f"token={good}&since=0&m={marker}")
    assert json.loads(await ws.recv())["type"] == "ready"
    await ws.close()
    with pytest.raises(InvalidStatus):
        await ws_connect(single_server, query=f"m={marker}&token={expired}")
    response = await http.get(f"{single_server.url}{ME_PATH}?token={good}&m={marker}")
    assert response.status_code == 401  # a query token is for sockets only

    def logged(text: str) -> bool:
        return text.count(marker) >= 3

    async def log() -> str:
        return single_server.log_text()

    text = await eventually(log, logged, what="three log lines with the marker")
    lines = [line for line in text.splitlines() if marker in line]
    assert any(WS_PATH in line for line in lines), lines
    assert any(ME_PATH in line for line in lines), lines
    for token in (good, expired):
        signature = token.rsplit(".", 1)[1]
        assert token not in text
        assert signature not in text


async def test_since_resume_gets_exactly_the_missed_ones(
    single_server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    user = new_user()
    first = await sockets.open(single_server, user)
    await publish(http, single_server, [user], title="seen")
    [seen] = await first.wait_count(1)
    await first.close()

    for i in range(3):
        await publish(http, single_server, [user], title=f"missed {i}", data={"i": i})

    again = await sockets.open(single_server, user, query=f"since={seen['id']}")
    ready = await again.ready()
    replayed = again.notifications()
    assert [n["id"] for n in replayed] == ["2", "3", "4"]
    assert [n["title"] for n in replayed] == ["missed 0", "missed 1", "missed 2"]
    assert [n["data"] for n in replayed] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert ready["replayed"] == 3
    assert ready["complete"] is True
    assert ready["unread"] == 4
    # The replay came first, then ready.
    assert [f["type"] for f in again.frames] == ["notification"] * 3 + ["ready"]

    await publish(http, single_server, [user], title="live")
    await again.wait_count(4)
    await again.ping()
    assert again.ids() == [2, 3, 4, 5]


async def test_user_api_over_http(
    single_server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    user, other = new_user("alice"), new_user("bob")
    for i in range(3):
        await publish(http, single_server, [user], title=f"n{i + 1}")
    await publish(http, single_server, [other], title="bob's")
    sock = await sockets.open(single_server, user)

    base = single_server.url + ME_PATH
    page = (await http.get(base, headers=user_headers(user))).json()
    assert [n["id"] for n in page["results"]] == ["3", "2", "1"]
    assert [n["title"] for n in page["results"]] == ["n3", "n2", "n1"]
    assert page["next"] is None
    assert all(set(n) == NOTIFICATION_KEYS for n in page["results"])

    page = (await http.get(f"{base}?limit=2", headers=user_headers(user))).json()
    assert [n["id"] for n in page["results"]] == ["3", "2"]
    assert page["next"]
    page = (await http.get(page["next"], headers=user_headers(user))).json()
    assert [n["id"] for n in page["results"]] == ["1"]

    count = await http.get(f"{base}/unread-count", headers=user_headers(user))
    assert count.json() == {"unread": 3}

    read = await http.post(f"{base}/read", json={"ids": ["2"]}, headers=user_headers(user))
    assert read.status_code == 200, read.text
    assert read.json() == {"updated": 1}
    await sock.wait_for(lambda s: bool(s.of_type("read")), what="a read frame")
    assert sock.of_type("read") == [{"type": "read", "ids": ["2"]}]

    count = await http.get(f"{base}/unread-count", headers=user_headers(user))
    assert count.json() == {"unread": 2}
    unread = (await http.get(f"{base}?unread=true", headers=user_headers(user))).json()
    assert [n["id"] for n in unread["results"]] == ["3", "1"]

    # Another user's notification is a 404, exactly like one that does not exist.
    theirs = await http.get(f"{base}/1", headers=user_headers(other))
    assert theirs.status_code == 200
    assert theirs.json()["title"] == "bob's"
    missing = await http.get(f"{base}/2", headers=user_headers(other))
    assert missing.status_code == 404
    foreign = await http.post(f"{base}/read", json={"ids": ["3"]}, headers=user_headers(other))
    assert foreign.status_code == 404
    count = await http.get(f"{base}/unread-count", headers=user_headers(user))
    assert count.json() == {"unread": 2}

    everything = await http.post(f"{base}/read", json={"all": True}, headers=user_headers(user))
    assert everything.json() == {"updated": 2}
    await sock.wait_for(lambda s: len(s.of_type("read")) == 2, what="a second read frame")
    second = sock.of_type("read")[1]
    assert second["type"] == "read"
    assert sorted(second["ids"]) == ["1", "3"]

    # Roles never mix.
    as_publisher = await http.get(base, headers={"Authorization": f"Bearer {SHOP_SECRET}"})
    assert as_publisher.status_code == 401
    as_user = await http.post(
        single_server.url + PUBLISH_PATH,
        json={"recipients": [user], "type": "x"},
        headers=user_headers(user),
    )
    assert as_user.status_code == 401
    await sock.ping()
    assert sock.ids() == []  # no publish got through


async def test_token_expiry_closes_with_4401(single_server: LiveServer, sockets: Sockets) -> None:
    user = new_user()
    sock = await sockets.open(single_server, user, token_exp_in=2)
    assert await sock.wait_closed(timeout=15) == 4401


async def test_frame_over_64_kib_closes_with_1009(
    single_server: LiveServer, sockets: Sockets
) -> None:
    sock = await sockets.open(single_server, new_user())
    await sock.ws.send(json.dumps({"type": "ping", "pad": "x" * (64 * 1024 + 10)}))
    assert await sock.wait_closed() in (1009, 1008)


async def test_frame_flood_closes_with_1008(single_server: LiveServer, sockets: Sockets) -> None:
    sock = await sockets.open(single_server, new_user())
    for _ in range(300):
        if sock.closed:
            break
        try:
            await sock.ws.send('{"type": "ping"}')
        except ConnectionClosed:
            break
    assert await sock.wait_closed() == 1008


async def test_malformed_frame_gets_error_and_socket_stays_open(
    single_server: LiveServer, sockets: Sockets
) -> None:
    sock = await sockets.open(single_server, new_user())
    await sock.ws.send("not json")
    await sock.ws.send(b"\x00\x01binary")
    await sock.ping()
    errors = sock.of_type("error")
    assert len(errors) == 2
    assert all(isinstance(e["code"], str) and isinstance(e["detail"], str) for e in errors)
    assert not sock.closed
