"""Operator-facing output: JSON log lines without secrets, request ids, /metrics.

Contract: ``?token=`` "(simplest, but the token is then scrubbed from every log
line)"; publisher secrets are credentials too. Operations: ``/metrics`` exposes "at
least: notify_sockets_open (gauge), notify_notifications_accepted_total,
notify_notifications_delivered_total, notify_notifications_dropped_total
(counters), notify_publish_seconds, notify_delivery_seconds (histograms)".
docs/configuration.md: ``NOTIFY_LOG_FORMAT=json`` (production default) renders uvicorn's own
lines as JSON too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from urllib.parse import quote

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.production.conftest import (
    JWT_SECRET,
    ME_PATH,
    PUBLISH_PATH,
    SHOP_SECRET,
    ServerPool,
    Sockets,
    eventually,
    make_token,
    metric_value,
    new_user,
    prod_env,
    publish,
    ws_connect,
)
from tests.support.servers import LiveServer, RedisServer

pytestmark = pytest.mark.live

CONTRACT_METRICS = {
    "notify_sockets_open": "gauge",
    "notify_notifications_accepted_total": "counter",
    "notify_notifications_delivered_total": "counter",
    "notify_notifications_dropped_total": "counter",
    "notify_publish_seconds": "histogram",
    "notify_delivery_seconds": "histogram",
}


@pytest.fixture(scope="module")
def pair(module_pool: ServerPool, module_redis: RedisServer, module_db: str) -> list[LiveServer]:
    return module_pool.start_many(2, prod_env(module_db, module_redis.url))


def served_lines(server: LiveServer) -> list[str]:
    """The server's own output (after ``--- uvicorn start``), without manage.py's."""
    lines: list[str] = []
    serving = False
    for line in server.log_text().splitlines():
        if line.startswith("--- uvicorn start"):
            serving = True
            continue
        if line.startswith("--- manage.py"):
            serving = False
            continue
        if serving and line.strip():
            lines.append(line)
    return lines


async def flushed(http: httpx.AsyncClient, server: LiveServer) -> None:
    """Wait until every request answered so far is in ``server``'s log.

    A marker request is sent last; the process writes its lines in order, so
    once the marker's access line is there, every earlier line is too.
    """
    marker = f"flush-{uuid.uuid4().hex}"
    response = await http.get(f"{server.url}/healthz?marker={marker}")
    assert response.status_code == 200
    await eventually(
        lambda: asyncio.sleep(0, served_lines(server)),
        lambda lines: any(marker in line for line in lines),
        what=f"{server!r} to log the marker request",
    )


async def test_log_lines_are_json_and_never_hold_a_token_or_a_publisher_secret(
    pair: list[LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = pair
    user = new_user("logs")
    secrets_used: list[str] = [SHOP_SECRET, JWT_SECRET]

    # Sockets with the token in each of the three places.
    query_token = make_token(user)
    header_token = make_token(user, exp_in=1800)
    protocol_token = make_token(user, exp_in=2400)
    secrets_used += [query_token, header_token, protocol_token]
    by_query = await sockets.open(a, None, query=f"token={quote(query_token)}&since=0")
    by_header = await sockets.open(b, None, headers={"Authorization": f"Bearer {header_token}"})
    by_protocol = await sockets.open(
        a, None, subprotocols=["notifications.v1", f"bearer.{protocol_token}"]
    )
    assert by_protocol.ws.subprotocol == "notifications.v1"

    # Failed authentication: a wrong signature, an expired token, a publisher key
    # as a socket token, all three ways.
    forged = make_token(user, secret="not-the-secret-" + uuid.uuid4().hex)
    expired = make_token(user, exp_in=-60)
    secrets_used += [forged, expired]
    for bad in (forged, expired, SHOP_SECRET):
        for kwargs in (
            {"query": f"token={quote(bad)}"},
            {"headers": {"Authorization": f"Bearer {bad}"}},
            {"subprotocols": ["notifications.v1", f"bearer.{bad}"]},
        ):
            with pytest.raises(InvalidStatus) as refused:
                ws = await ws_connect(a, None, **kwargs)
                await ws.close()
            assert refused.value.response.status_code == 403

    # HTTP: publish, user API, and failed auth on both (user token on the publisher
    # endpoint, a wrong publisher key, the publisher key on the user API).
    await publish(http, b, [user], title="hello logs")
    for sock in (by_query, by_header, by_protocol):
        await sock.wait_count(1)
    me = await http.get(a.url + ME_PATH, headers={"Authorization": f"Bearer {query_token}"})
    assert me.status_code == 200
    wrong_key = "wrong-" + uuid.uuid4().hex
    secrets_used.append(wrong_key)
    for headers, path in (
        ({"Authorization": f"Bearer {query_token}"}, PUBLISH_PATH),
        ({"Authorization": f"Bearer {wrong_key}"}, PUBLISH_PATH),
        ({"Authorization": f"Bearer {SHOP_SECRET}"}, ME_PATH),
        ({"Authorization": f"Bearer {expired}"}, ME_PATH),
    ):
        response = await http.request(
            "POST" if path == PUBLISH_PATH else "GET",
            a.url + path + f"?token={quote(query_token)}",
            content=json.dumps({"recipients": [user], "type": "x"}),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 401, (path, response.status_code, response.text)
    for server in pair:
        await flushed(http, server)

    for server in pair:
        lines = served_lines(server)
        assert lines, f"{server!r} wrote nothing"
        text = "\n".join(lines)
        for secret in secrets_used:
            assert secret not in text, f"{server!r} logged a secret: ...{secret[-12:]}"
            # Nor its signature alone (a JWT cut at a dot by some formatter).
            if secret.count(".") == 2:
                assert secret.rsplit(".", 1)[1] not in text, f"{server!r} logged a JWT signature"

        entries = []
        not_json = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except ValueError:
                not_json.append(line)
        assert not not_json, f"{server!r}: lines that are not JSON: {not_json[:5]}"
        assert all({"ts", "level", "logger", "message"} <= set(e) for e in entries)
        access = [e for e in entries if e["logger"] == "uvicorn.access"]
        assert access, "no access lines"
        assert any("WebSocket /ws/notifications" in e["message"] for e in entries)
    # The scrubbed ?token= still shows that a query was there.
    assert "token=[scrubbed]" in "\n".join(served_lines(a))


async def test_a_socket_is_one_line_with_its_client_and_path(
    pair: list[LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    """A connect is logged once, by uvicorn's '"WebSocket /path" [accepted]'
    (the client's address, the path, the token scrubbed); the websockets
    library's "connection open" and "connection closed" are not (they repeat
    it without either: docs/performance.md, "Handshakes")."""
    a, _b = pair
    user = new_user("one-line")
    token = make_token(user)
    sock = await sockets.open(a, None, query=f"token={quote(token)}&since=0")
    host, port = sock.ws.local_address[:2]
    client = f"{host}:{port}"
    await sock.close()
    await flushed(http, a)

    entries = [json.loads(line) for line in served_lines(a)]
    about_it = [e for e in entries if client in e["message"]]
    assert len(about_it) == 1, about_it
    assert about_it[0]["level"] == "INFO"
    assert (
        '"WebSocket /ws/notifications?token=[scrubbed]&since=0" [accepted]'
        in (about_it[0]["message"])
    )
    assert token not in "\n".join(served_lines(a))
    chatter = [e for e in entries if e["message"] in ("connection open", "connection closed")]
    assert not chatter, chatter[:3]


async def test_responses_echo_a_request_id(pair: list[LiveServer], http: httpx.AsyncClient) -> None:
    a, _b = pair
    mine = f"req-{uuid.uuid4().hex[:16]}"
    response = await http.get(a.url + "/healthz", headers={"X-Request-ID": mine})
    assert response.headers["X-Request-ID"] == mine
    generated = await http.get(a.url + "/healthz")
    assert len(generated.headers["X-Request-ID"]) >= 8
    assert generated.headers["X-Request-ID"] != mine

    # Errors too (every line of the request carries the id as well:
    # tests/live/test_dev_logs.py).
    rid = f"req-{uuid.uuid4().hex[:16]}"
    refused = await http.post(
        a.url + PUBLISH_PATH,
        content=b"{}",
        headers={
            "Authorization": "Bearer nope",
            "Content-Type": "application/json",
            "X-Request-ID": rid,
        },
    )
    assert refused.status_code == 401
    assert refused.headers["X-Request-ID"] == rid
    await flushed(http, a)
    with_ids = [
        json.loads(line)
        for line in served_lines(a)
        if line.startswith("{") and '"request_id"' in line
    ]
    # The refused request's own id is logged; every id is a string (never null
    # or an object).
    assert any(e["request_id"] == rid for e in with_ids), with_ids[-5:]
    assert all(isinstance(e["request_id"], str) and e["request_id"] for e in with_ids)


async def test_metrics_expose_the_contract_names_and_move_with_traffic(
    pair: list[LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = pair
    for server in pair:
        response = await http.get(server.url + "/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        for name, kind in CONTRACT_METRICS.items():
            assert f"# TYPE {name} {kind}" in text, f"{server!r}: {name} ({kind}) missing"
        assert "# TYPE notify_rate_limited_total counter" in text

    user = new_user("metrics")
    # The module's earlier sockets may still be leaving a's count (the server's
    # disconnect runs after the client's close): wait until they have, so that
    # the only socket this gauge moves with below is this test's.
    await eventually(
        functools.partial(metric_value, http, a, "notify_sockets_open"),
        lambda value: value == 0,
        what="the earlier tests' sockets to leave notify_sockets_open",
    )
    sock = await sockets.open(a, user)
    open_a = await metric_value(http, a, "notify_sockets_open")
    assert open_a == 1
    accepted_b = await metric_value(http, b, "notify_notifications_accepted_total")
    delivered_a = await metric_value(http, a, "notify_notifications_delivered_total")
    publish_count_b = await metric_value(http, b, "notify_publish_seconds_count")
    delivery_count_a = await metric_value(http, a, "notify_delivery_seconds_count")
    delivery_sum_a = await metric_value(http, a, "notify_delivery_seconds_sum")

    # Published through b to 3 recipients, delivered on a's socket. The test's
    # own clock around it bounds what commit-to-frame-written can be.
    sent = time.monotonic()
    await publish(http, b, [user, new_user("x"), new_user("y")], title="count me")
    await sock.wait_count(1)
    received = time.monotonic() - sent

    await eventually(
        functools.partial(metric_value, http, a, "notify_notifications_delivered_total"),
        lambda value: value >= delivered_a + 1,
        what="delivered_total to move",
    )
    assert await metric_value(http, b, "notify_notifications_accepted_total") == accepted_b + 3
    assert await metric_value(http, b, "notify_publish_seconds_count") == publish_count_b + 1
    await eventually(
        functools.partial(metric_value, http, a, "notify_delivery_seconds_count"),
        lambda value: value == delivery_count_a + 1,
        what="one delivery observed on a",
    )
    # One socket on a, one frame: the observed time is positive (measured,
    # not a constant) and within the time between the POST and the receipt.
    observed = await metric_value(http, a, "notify_delivery_seconds_sum") - delivery_sum_a
    assert 0 < observed < received, (observed, received)

    await sock.close()
    await eventually(
        functools.partial(metric_value, http, a, "notify_sockets_open"),
        lambda value: value == open_a - 1,
        what="notify_sockets_open to go down",
    )
