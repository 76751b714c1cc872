"""``GET /api/v1/me/stream`` as HTTP, and CORS for browsers on other origins.

Contract v1.1: the stream's refusals come before it starts (401, 403, 400),
its headers keep proxies from buffering, ``retry:`` and ``: ping`` keep
``EventSource`` going, ``Last-Event-ID`` wins over ``since``, and open
streams count in presence and ``notify_sockets_open``. CORS: every allowed
origin gets its own origin back (never ``*``, never credentials) on the user
API, the stream and the push endpoints, errors included; publisher
endpoints answer no CORS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.live.conftest import (
    eventually,
    make_token,
    new_user,
    presence,
    publish,
    publisher_headers,
    server_env,
    start_server,
    stop_server,
)
from tests.support.live import log_flushed
from tests.support.servers import LiveServer
from tests.support.sse import STREAM_PATH, Stream, open_stream

pytestmark = pytest.mark.live

APP = "https://app.example.com"
OTHER = "https://evil.example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db: Path = tmp_path_factory.mktemp("stream") / "db.sqlite3"
    env = server_env(f"sqlite:///{db.resolve()}", ALLOWED_ORIGINS=f"{APP},http://localhost:8124")
    live = start_server(env)
    yield live
    stop_server(live)


@pytest.fixture
async def streams() -> AsyncIterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        await stream.close()


async def stream_of(server: LiveServer, opened: list[Stream], **kwargs: object) -> Stream:
    stream = await open_stream(server, **kwargs)  # type: ignore[arg-type]
    opened.append(stream)
    await stream.answered()
    return stream


async def sockets_open(http: httpx.AsyncClient, server: LiveServer) -> float:
    text = (await http.get(server.url + "/metrics")).text
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("notify_sockets_open")
    )


async def test_a_stream_starts_with_retry_and_ready_and_never_buffers(
    server: LiveServer, streams: list[Stream], http: httpx.AsyncClient
) -> None:
    user = new_user()
    await publish(http, server, [user], title="before")
    stream = await stream_of(server, streams, token=make_token(user))
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    assert "access-control-allow-origin" not in stream.headers  # no Origin: no CORS
    ready = await stream.ready()
    assert stream.retries[0] > 0
    assert ready == {
        "type": "ready",
        "user": user,
        "replayed": 0,
        "complete": True,
        "unread": 1,
        "last_id": "1",
    }
    await publish(http, server, [user], title="live")
    [n] = await stream.wait_count(1)
    assert (n["id"], n["title"]) == ("2", "live")
    assert stream.event_ids == ["2"]


@pytest.mark.timeout(60)
async def test_an_idle_stream_gets_a_ping_comment(
    server: LiveServer, streams: list[Stream]
) -> None:
    stream = await stream_of(server, streams, token=make_token(new_user()))
    await stream.ready()
    # The contract: at least every 15 s (the server sends one every 10 s).
    await stream.wait_for(lambda s: s.comments > 0, timeout=30, what="a ': ping' comment")  # type: ignore[attr-defined]


async def test_last_event_id_wins_over_since_and_query_token_works(
    server: LiveServer, streams: list[Stream], http: httpx.AsyncClient
) -> None:
    user = new_user()
    for i in range(5):
        await publish(http, server, [user], title=f"n{i}")
    stream = await stream_of(
        server,
        streams,
        query=f"token={make_token(user)}&since=1",
        headers={"Last-Event-ID": "3"},
    )
    ready = await stream.ready()
    assert stream.ids() == [4, 5]
    assert ready["replayed"] == 2


async def test_open_streams_count_in_presence_and_metrics(
    server: LiveServer, streams: list[Stream], http: httpx.AsyncClient
) -> None:
    user = new_user()
    # The module's earlier streams may still be leaving the gauge (the server
    # handles a disconnect a moment after the client's close): wait for them,
    # so the only streams it moves with below are this test's.
    before = await eventually(
        lambda: sockets_open(http, server),
        lambda value: value == 0,
        what="the earlier tests' streams to leave notify_sockets_open",
    )
    first = await stream_of(server, streams, token=make_token(user))
    second = await stream_of(server, streams, token=make_token(user))
    await first.ready()
    await second.ready()
    assert (await presence(http, server, user))["connections"] == 2
    assert await sockets_open(http, server) == before + 2
    await first.close()
    await eventually(
        lambda: presence(http, server, user),
        lambda answer: answer["connections"] == 1,
        what="the closed stream to leave presence",
    )
    assert await sockets_open(http, server) == before + 1


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({}, 401),
        ({"token": "not-a-jwt"}, 401),
        ({"token": make_token("bob", exp_in=-30)}, 401),
        ({"query": "token="}, 401),
        ({"token": make_token("bob"), "headers": {"Origin": OTHER}}, 403),
        ({"token": make_token("bob"), "query": "since=abc"}, 400),
        ({"token": make_token("bob"), "headers": {"Last-Event-ID": "-1"}}, 400),
    ],
    ids=["no-token", "malformed", "expired", "empty-query-token", "origin", "since", "last-id"],
)
async def test_refusals_come_before_the_stream(
    server: LiveServer,
    streams: list[Stream],
    http: httpx.AsyncClient,
    kwargs: dict[str, object],
    status: int,
) -> None:
    stream = await stream_of(server, streams, **kwargs)
    await stream.wait_closed()
    assert stream.status == status
    assert stream.headers["content-type"] == "application/json"
    assert set(httpx.Response(200, content=stream.body).json()) == {"detail"}
    assert stream.frames == []
    assert (await presence(http, server, "bob"))["connections"] == 0


# --------------------------------------------------------------------------- CORS

USER_ROUTES = [
    ("GET", "/api/v1/me/notifications"),
    ("GET", "/api/v1/me/notifications/unread-count"),
    ("POST", "/api/v1/me/notifications/read"),
    ("GET", STREAM_PATH),
    ("GET", "/api/v1/push/public-key"),
]


@pytest.mark.parametrize(("method", "path"), USER_ROUTES)
async def test_preflight_answers_allowed_origins_only(
    server: LiveServer, http: httpx.AsyncClient, method: str, path: str
) -> None:
    ask = {
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, last-event-id",
    }
    response = await http.options(server.url + path, headers={"Origin": APP, **ask})
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == APP
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type", "last-event-id"} <= allowed
    assert method in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers

    refused = await http.options(server.url + path, headers={"Origin": OTHER, **ask})
    assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize(("method", "path"), USER_ROUTES)
async def test_errors_carry_cors_too(
    server: LiveServer, http: httpx.AsyncClient, method: str, path: str
) -> None:
    """Without a token: 401 (a push route: whatever it answers, 404 while it is
    not served), still readable by the allowed origin, with Retry-After and
    X-Request-ID exposed."""
    for origin in (APP, "http://localhost:8124"):
        response = await http.request(method, server.url + path, headers={"Origin": origin})
        if path.startswith("/api/v1/me/"):
            assert response.status_code == 401, response.text
        assert response.headers["access-control-allow-origin"] == origin
        exposed = {
            h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
        }
        assert {"retry-after", "x-request-id"} <= exposed
        assert "access-control-allow-credentials" not in response.headers


async def test_a_user_call_from_an_allowed_origin_gets_its_answer(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    user = new_user()
    await publish(http, server, [user])
    response = await http.get(
        server.url + "/api/v1/me/notifications/unread-count",
        headers={"Origin": APP, "Authorization": f"Bearer {make_token(user)}"},
    )
    assert response.json() == {"unread": 1}
    assert response.headers["access-control-allow-origin"] == APP


async def test_publisher_endpoints_answer_no_cors(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    response = await http.post(
        server.url + "/api/v1/notifications",
        json={"recipients": [new_user()], "type": "t", "title": "x"},
        headers={**publisher_headers(), "Origin": APP},
    )
    assert response.status_code == 202
    assert "access-control-allow-origin" not in response.headers
    preflight = await http.options(
        server.url + "/api/v1/notifications",
        headers={"Origin": APP, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    presence_answer = await http.get(
        server.url + "/api/v1/users/x/presence", headers={"Origin": APP}
    )
    assert "access-control-allow-origin" not in presence_answer.headers


async def test_a_query_token_never_reaches_the_log(
    server: LiveServer, streams: list[Stream], http: httpx.AsyncClient
) -> None:
    user = new_user()
    good, expired = make_token(user), make_token(user, exp_in=-30)
    offset = len(server.log_text())
    opened = await stream_of(server, streams, query=f"token={good}&since=0")
    await opened.ready()
    refused = await stream_of(server, streams, query=f"token={expired}")
    assert refused.status == 401
    await opened.close()
    # Every line of both requests is written (earlier tests' streams put the
    # path in the log already, so waiting for it proved nothing).
    await log_flushed(http, server)
    log = server.log_text()
    assert STREAM_PATH in log[offset:]  # the lines of this test's requests are there
    assert good not in log and expired not in log
    assert good.split(".")[2] not in log  # not even the signature
