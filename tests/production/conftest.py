"""Production-mode tests: several uvicorn processes on one Redis and one PostgreSQL.

Every server here runs with ``DEBUG=false``, a random ``DJANGO_SECRET_KEY``, a real
publisher key and a real JWT secret, as an operator would deploy it. Clients are the
real ones a host application would use: httpx for HTTP, ``websockets`` for sockets,
PyJWT (HS256) for user tokens.

Each test module gets its own PostgreSQL database (migrated once, by its first
server) and its own private ``redis-server`` (so presence keys, the publisher rate
bucket and pub/sub traffic never leak between modules). Servers a test does not
break are module-scoped (``ServerPool``); tests that kill, stop or drain a process
start their own with the function-scoped ``pool``.

After each test the new server log lines are checked: no ERROR/CRITICAL record and
no HTTP 500 (a test may ``log_guard.allow(regex)`` what it expects).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

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
from tests.support.servers import LiveServer, PostgresServer, RedisServer
from tests.support.tokens import user_token

# --------------------------------------------------------------------------- secrets

SHOP_SECRET = "prod-shop-" + secrets.token_hex(24)
OTHER_SECRET = "prod-other-" + secrets.token_hex(24)
JWT_SECRET = secrets.token_hex(24)  # 48 characters
DJANGO_SECRET_KEY = secrets.token_urlsafe(50)
assert len(JWT_SECRET) == 48


def prod_env(database_url: str, redis_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of one production process (``redis_url`` None: pass
    ``REDIS_CLUSTER_URL`` in ``extra``)."""
    env = {
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": DJANGO_SECRET_KEY,
        "NOTIFY_API_KEYS": f"shop:{SHOP_SECRET}",
        "JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": database_url,
        **({"REDIS_URL": redis_url} if redis_url is not None else {}),
        "NOTIFY_PUBLISH_RATE": "100000/s",
        "LOG_LEVEL": "INFO",
        "NOTIFY_LOG_FORMAT": "json",
        # Never let the test process's own settings leak into the server.
        "NOTIFY_TEST_DATABASE": "",
    }
    env.update(extra)
    return env


def make_token(sub: str, *, exp_in: float = 3600, secret: str = JWT_SECRET) -> str:
    return user_token(secret, sub, exp_in=exp_in)


def publisher_headers(secret: str = SHOP_SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


def user_headers(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user)}"}


def db_name(database_url: str) -> str:
    return database_url.rsplit("/", 1)[1]


# --------------------------------------------------------------------------- servers

# Every server started through a pool, for the per-test log check.
_SERVERS: list[LiveServer] = []
# Databases already migrated by some server (the others start with migrate=False).
_MIGRATED: set[str] = set()


class ServerPool:
    """Starts production servers and closes every one of them at the end."""

    def __init__(self) -> None:
        self.servers: list[LiveServer] = []

    def start(self, env: dict[str, str]) -> LiveServer:
        url = env["DATABASE_URL"]
        server = LiveServer(
            env, migrate=url not in _MIGRATED, startup_timeout=60.0, autostart=False
        )
        self.servers.append(server)
        _SERVERS.append(server)
        server.start()
        _MIGRATED.add(url)
        return server

    def start_many(self, count: int, env: dict[str, str]) -> list[LiveServer]:
        first = self.start(env)  # migrates
        return [first, *(self.start(env) for _ in range(count - 1))]

    def close_all(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(ValueError):
                _SERVERS.remove(server)
            server.close()
        self.servers.clear()


@pytest.fixture(scope="module")
def module_pool() -> Iterator[ServerPool]:
    pool = ServerPool()
    yield pool
    pool.close_all()


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    """A private redis-server for the module (isolates presence, rate buckets, pub/sub)."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def module_db(postgres_server: PostgresServer) -> str:
    """A new PostgreSQL database for the module; the first server started on it migrates."""
    return postgres_server.create_database()


# --------------------------------------------------------------------------- log check


class LogGuard:
    MARKERS = ('"level": "ERROR"', '"level": "CRITICAL"', '" 500 ', '" 500"', "Traceback")

    def __init__(self) -> None:
        self.allowed: list[re.Pattern[str]] = []
        self.offsets = {id(s): len(s.log_text()) for s in _SERVERS}
        self.found: list[str] = []
        self.collected: set[int] = set()

    def allow(self, pattern: str) -> None:
        """Lines matching ``pattern`` (a regex) are not problems for this test."""
        self.allowed.append(re.compile(pattern))

    def new_lines(self, server: LiveServer) -> list[str]:
        return server.log_text()[self.offsets.get(id(server), 0) :].splitlines()

    def collect(self, server: LiveServer) -> None:
        """Print the server's new lines (shown when the test fails) and note problems."""
        if id(server) in self.collected:
            return
        self.collected.add(id(server))
        lines = self.new_lines(server)
        dump_dir = os.environ.get("PRODUCTION_TEST_LOG_DIR")
        if dump_dir:  # full lines, for debugging: PRODUCTION_TEST_LOG_DIR=/tmp/logs pytest ...
            with open(os.path.join(dump_dir, f"server-{server.port}.log"), "a") as fh:
                fh.write("\n".join(lines) + "\n")
        print(f"----- {server!r}: {len(lines)} log lines during the test (tail) -----")
        print("\n".join(line[:500] for line in lines[-80:]))
        for line in lines:
            if not any(m in _bad_part(line) for m in self.MARKERS):
                continue
            if any(p.search(line) for p in self.allowed):
                continue
            self.found.append(f"{server!r}: {line[:800]}")


def _bad_part(line: str) -> str:
    """A WARNING with ``exc`` holds a traceback on purpose: only its level counts."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if isinstance(entry, dict) and entry.get("level") in ("WARNING", "INFO", "DEBUG"):
        return str(entry.get("message", ""))
    return line


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def log_guard(request: pytest.FixtureRequest) -> Iterator[LogGuard]:
    guard = LogGuard()
    yield guard
    failed = request.node.stash.get(_CALL_FAILED, False)
    for server in list(_SERVERS):
        guard.collect(server)
    if guard.found and not failed:
        pytest.fail("server logged errors during the test:\n" + "\n".join(guard.found[:30]))


@pytest.fixture
def pool(log_guard: LogGuard) -> Iterator[ServerPool]:
    """Servers for one test (killed, stopped, drained): closed when it ends."""
    pool = ServerPool()
    yield pool
    for server in pool.servers:
        log_guard.collect(server)  # before the log goes away with the server
    pool.close_all()


# --------------------------------------------------------------------------- HTTP


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # Idle connections expire well before uvicorn's 5 s keep-alive, so a request
    # never goes out on a connection the server is closing (a ReadError race).
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=60.0, trust_env=False, limits=limits) as client:
        yield client


def publish_body(recipients: Sequence[str], **fields: Any) -> dict[str, Any]:
    return {"recipients": list(recipients), "type": fields.pop("type", "prod.test"), **fields}


async def post_notification(
    http: httpx.AsyncClient,
    server: LiveServer,
    recipients: Sequence[str],
    *,
    secret: str = SHOP_SECRET,
    idempotency_key: str | None = None,
    **fields: Any,
) -> httpx.Response:
    headers = publisher_headers(secret)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return await http.post(
        server.url + PUBLISH_PATH,
        content=json.dumps(publish_body(recipients, **fields)),
        headers=headers,
    )


async def publish(
    http: httpx.AsyncClient, server: LiveServer, recipients: Sequence[str], **fields: Any
) -> dict[str, Any]:
    """POST and require 202; waits out a 429 (Retry-After) if a rate limit is set."""
    for _ in range(30):
        response = await post_notification(http, server, recipients, **fields)
        if response.status_code != 429:
            break
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
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
        f"{server.url}/api/v1/users/{quote(user, safe='')}/presence",
        headers={"Authorization": f"Bearer {SHOP_SECRET}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def readyz(http: httpx.AsyncClient, server: LiveServer) -> tuple[int, dict[str, Any]]:
    response = await http.get(server.url + "/readyz")
    return response.status_code, response.json()


async def metric_value(
    http: httpx.AsyncClient, server: LiveServer, name: str, labels: str = ""
) -> float:
    """The value of one sample of /metrics (0 when absent)."""
    response = await http.get(server.url + "/metrics")
    assert response.status_code == 200
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in response.text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    return 0.0


def pg_connect(postgres_server: PostgresServer, database_url: str) -> psycopg.Connection[Any]:
    return postgres_server.connect(db_name(database_url))


# --------------------------------------------------------------------------- sockets


def ws_url(server: LiveServer, query: str = "") -> str:
    return f"{server.ws_url}{WS_PATH}{'?' + query if query else ''}"


async def ws_connect(
    server: LiveServer,
    user: str | None,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    open_timeout: float = WAIT,
    **kwargs: Any,
) -> ClientConnection:
    all_headers = dict(headers or {})
    if user is not None:
        all_headers["Authorization"] = f"Bearer {make_token(user)}"
    return await connect(
        ws_url(server, query),
        additional_headers=all_headers or None,
        proxy=None,
        open_timeout=open_timeout,
        max_size=None,
        **kwargs,
    )


class Sockets:
    """Opens sockets for a test and closes every one of them when it ends."""

    def __init__(self) -> None:
        self.opened: list[Socket] = []

    async def open(
        self,
        server: LiveServer,
        user: str | None,
        *,
        query: str = "",
        wait_ready: bool = True,
        open_timeout: float = WAIT,
        **kwargs: Any,
    ) -> Socket:
        ws = await ws_connect(server, user, query=query, open_timeout=open_timeout, **kwargs)
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


class ResumingClient:
    """What a well-behaved frontend does: on close, reconnect elsewhere with ``since``.

    Tracks every notification it received over all its connections, in order, so a
    test can assert "every id exactly once, in order" across reconnects.
    """

    def __init__(self, user: str, servers: Sequence[LiveServer], *, start: int = 0) -> None:
        self.user = user
        self.servers = list(servers)
        self.index = start
        self.received: list[Frame] = []
        self.readies: list[Frame] = []
        self.closes: list[tuple[int, int | None]] = []  # (port, close code)
        self.connected_to: list[int] = []  # ports, one per successful handshake
        self.failed_handshakes: list[tuple[int, str]] = []
        self.ws: ClientConnection | None = None
        self.is_ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    @property
    def ids(self) -> list[int]:
        return [int(n["id"]) for n in self.received]

    @property
    def last_id(self) -> int:
        return max(self.ids, default=0)

    async def _pause(self, low: float, high: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), random.uniform(low, high))

    async def _run(self) -> None:
        while not self._stop.is_set():
            server = self.servers[self.index % len(self.servers)]
            try:
                ws = await ws_connect(
                    server, self.user, query=f"since={self.last_id}", open_timeout=10
                )
            except Exception as exc:  # refused, 403/500 while Redis is away, timeout
                self.failed_handshakes.append((server.port, repr(exc)[:200]))
                self.index += 1
                await self._pause(0.1, 0.4)
                continue
            self.ws = ws
            self.connected_to.append(server.port)
            try:
                async for message in ws:
                    frame = json.loads(message)
                    if frame.get("type") == "notification":
                        self.received.append(frame["notification"])
                    elif frame.get("type") == "ready":
                        self.readies.append(frame)
                        self.is_ready.set()
                    self._changed.set()
            except ConnectionClosed:
                pass
            finally:
                self.is_ready.clear()
                self.ws = None
                self.closes.append((server.port, ws.close_code))
                self._changed.set()
            if self._stop.is_set():
                break
            self.index += 1  # to another instance, after a random delay
            await self._pause(0.05, 0.3)

    async def wait_ready(self, timeout: float = WAIT) -> None:
        await asyncio.wait_for(self.is_ready.wait(), timeout)

    async def wait_ids(self, count: int, timeout: float = WAIT) -> None:
        await self._wait(lambda: len(self.received) >= count, f"{count} notifications", timeout)

    async def wait_id(self, notification_id: int, timeout: float = WAIT) -> None:
        """Until the notification ``notification_id`` has arrived."""
        await self._wait(lambda: notification_id in self.ids, f"id {notification_id}", timeout)

    async def _wait(self, done: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.user}: no {what} after {timeout}s (ids {self.ids[-5:]}); "
                    f"closes {self.closes}, failed {self.failed_handshakes[-3:]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def stop(self) -> None:
        self._stop.set()
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 10)
        try:
            await asyncio.wait_for(self._task, 15)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


async def nothing_more_on_the_way(
    http: httpx.AsyncClient,
    server: LiveServer,
    clients: Sequence[ResumingClient],
    accepted: Counter[str],
) -> None:
    """The positive marker for "no duplicate arrives later": one more
    notification to every user (counted in ``accepted``), waited for on every
    client. Whatever an earlier publish could still send a client (a push
    delivered twice, a replay) goes down that user's channel ahead of it, so
    once it is there nothing older is on its way; a pause could only hope so.
    """
    users = sorted({client.user for client in clients})
    await publish(http, server, users, title="marker: the last one")
    accepted.update(users)
    for client in clients:
        await client.wait_id(accepted[client.user], timeout=60)
