"""Live tests: real uvicorn processes, real Redis / PostgreSQL, real HTTP and WebSocket clients.

Servers are shared by the whole ``tests/live`` package (starting them is the slow
part); every test uses fresh user ids, so tests never see each other's
notifications. Tokens are minted here with PyJWT, as a host application would.

After each test the servers' new log lines are checked for errors (a traceback, an
ERROR record or an HTTP 500), and printed when the test failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.live import (  # noqa: F401 (re-exported to the tests)
    ME_PATH,
    PUBLISH_PATH,
    WAIT,
    WS_PATH,
    Frame,
    Socket,
    eventually,
    new_user,
    stored_notifications_as,
)
from tests.support.redis_cluster import REDIS_TOPOLOGIES, redis_env
from tests.support.servers import LOG_ERROR_MARKERS, LiveServer, PostgresServer
from tests.support.tokens import user_token

SHOP_SECRET = "live-shop-publisher-secret-7d1f0c9a8b6e5d4c3b2a1f0e9d8c7b6a"
JWT_SECRET = "live-test-jwt-secret-0123456789abcdef-0123456789abcdef-0123456789ab"
OTHER_JWT_SECRET = "live-test-other-jwt-secret-0123456789abcdef-0123456789abcdef-01234"


# Every server the package starts, for the per-test log check.
_SERVERS: list[LiveServer] = []


# --------------------------------------------------------------------------- env and tokens


def server_env(database_url: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        "NOTIFY_API_KEYS": f"shop:{SHOP_SECRET}",
        "JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "INFO",
        **extra,
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def make_token(sub: Any = "alice", *, secret: str = JWT_SECRET, **options: Any) -> str:
    """A user JWT (tests.support.tokens.user_token's options) signed with ``secret``."""
    return user_token(secret, sub, **options)


def publisher_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {SHOP_SECRET}", "Content-Type": "application/json"}


def user_headers(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


def presence_path(user: str) -> str:
    return f"/api/v1/users/{quote(user, safe='')}/presence"


# --------------------------------------------------------------------------- servers


def start_server(env: dict[str, str], *, migrate: bool = True) -> LiveServer:
    server = LiveServer(env, migrate=migrate, startup_timeout=30.0)
    _SERVERS.append(server)
    return server


def stop_server(server: LiveServer) -> None:
    with contextlib.suppress(ValueError):
        _SERVERS.remove(server)
    server.close()


@pytest.fixture(scope="package")
def single_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One process, no Redis (in-memory layer), a SQLite file."""
    db: Path = tmp_path_factory.mktemp("single") / "db.sqlite3"
    server = start_server(server_env(f"sqlite:///{db.resolve()}"))
    yield server
    stop_server(server)


@pytest.fixture(scope="package", params=REDIS_TOPOLOGIES)
def pair(
    request: pytest.FixtureRequest, postgres_server: PostgresServer
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two processes, A and B, on one Redis (standalone, or a Redis Cluster)
    and one PostgreSQL database."""
    database_url = postgres_server.create_database()
    prefix = f"livetest{uuid.uuid4().hex[:8]}"
    env = server_env(database_url, NOTIFY_REDIS_PREFIX=prefix, **redis_env(request, request.param))
    a = start_server(env)
    try:
        b = start_server(env, migrate=False)
    except BaseException:
        stop_server(a)
        raise
    yield a, b
    stop_server(b)
    stop_server(a)


_ERROR_MARKERS = LOG_ERROR_MARKERS


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def server_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """No server logs an error during a test; on failure, show what the servers said."""
    offsets = {id(s): len(s.log_text()) for s in _SERVERS}
    yield
    problems: list[str] = []
    failed = request.node.stash.get(_CALL_FAILED, False)
    for server in list(_SERVERS):
        new = server.log_text()[offsets.get(id(server), 0) :]
        if failed:
            print(f"----- {server!r} log during the test (tail) -----")
            print("\n".join(new.splitlines()[-150:]))
        problems += [
            f"{server!r}: {line}"
            for line in new.splitlines()
            if any(marker in line for marker in _ERROR_MARKERS)
        ]
    if problems and not failed:
        pytest.fail("server logged errors during the test:\n" + "\n".join(problems[:40]))


# --------------------------------------------------------------------------- clients


async def ws_connect(
    server: LiveServer,
    *,
    token: str | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    subprotocols: Sequence[str] | None = None,
    origin: str | None = None,
    open_timeout: float = WAIT,
) -> ClientConnection:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    return await connect(
        f"{server.ws_url}{WS_PATH}{'?' + query if query else ''}",
        additional_headers=all_headers or None,
        subprotocols=list(subprotocols) if subprotocols else None,  # type: ignore[arg-type]
        origin=origin,  # type: ignore[arg-type]
        proxy=None,
        open_timeout=open_timeout,
        max_size=None,
    )


class Sockets:
    """Opens sockets for a test and closes every one of them when it ends."""

    def __init__(self) -> None:
        self.opened: list[Socket] = []

    async def open(
        self,
        server: LiveServer,
        user: str,
        *,
        query: str = "",
        wait_ready: bool = True,
        open_timeout: float = WAIT,
        token_exp_in: float = 3600,
        **kwargs: Any,
    ) -> Socket:
        ws = await ws_connect(
            server,
            token=make_token(user, exp_in=token_exp_in),
            query=query,
            open_timeout=open_timeout,
            **kwargs,
        )
        sock = Socket(ws, f"socket({user} on :{server.port}{'?' + query if query else ''})")
        self.opened.append(sock)
        if wait_ready:
            await sock.ready()
        return sock

    async def close_all(self) -> None:
        await asyncio.gather(*(s.close() for s in self.opened))


@pytest.fixture
async def sockets() -> AsyncIterator[Sockets]:
    opened = Sockets()
    yield opened
    await opened.close_all()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=60.0, trust_env=False, limits=limits) as client:
        yield client


async def publish(
    http: httpx.AsyncClient,
    server: LiveServer,
    recipients: Sequence[str],
    *,
    type: str = "live.test",
    title: str = "",
    body: str = "",
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"recipients": list(recipients), "type": type, "title": title}
    if body:
        payload["body"] = body
    if data is not None:
        payload["data"] = data
    response = await http.post(
        server.url + PUBLISH_PATH, content=json.dumps(payload), headers=publisher_headers()
    )
    assert response.status_code == 202, (response.status_code, response.text)
    answer: dict[str, Any] = response.json()
    return answer


async def stored_notifications(
    http: httpx.AsyncClient, server: LiveServer, user: str
) -> list[Frame]:
    """Every stored notification of ``user`` over the user API, oldest first."""
    return await stored_notifications_as(http, server, user_headers(user))


async def presence(http: httpx.AsyncClient, server: LiveServer, user: str) -> dict[str, Any]:
    response = await http.get(
        server.url + presence_path(user), headers={"Authorization": f"Bearer {SHOP_SECRET}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
