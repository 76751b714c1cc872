"""Endurance: one process through many connections and many notifications, on Redis +
PostgreSQL, with its resources measured before and after.

* 20,000 WebSocket connect -> ready -> close cycles (50 clients at a time, a new
  user id each time);
* 100,000 notifications: 1,000 POSTs of 100 recipients to 200 connected users,
  every delivery counted (in order, none missing);
* 20 clients that never read while 8 KiB notifications go to them.

Measured: the server's RSS (``/proc/<pid>/status`` VmRSS) and open fds, Redis's
client count, keys and ``used_memory``, and PostgreSQL's sessions on the database.
Each run appends one JSON line to ``bench/results/endurance.jsonl`` (gitignored).
``ENDURANCE_CYCLES`` / ``ENDURANCE_POSTS`` shrink the runs for a quick try.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.live.conftest import (
    PUBLISH_PATH,
    SHOP_SECRET,
    WS_PATH,
    make_token,
    publisher_headers,
    server_env,
)
from tests.support.live import eventually
from tests.support.net import tiny_buffer_socket
from tests.support.servers import (
    LOG_ERROR_MARKERS,
    REPO_ROOT,
    LiveServer,
    PostgresServer,
    RedisServer,
)

pytestmark = [pytest.mark.endurance, pytest.mark.live]

CYCLES = int(os.environ.get("ENDURANCE_CYCLES", "20000"))
CONCURRENCY = 50
USERS = 200
POSTS = int(os.environ.get("ENDURANCE_POSTS", "1000"))
BATCH = 100
POST_CONCURRENCY = 8
RESULTS = REPO_ROOT / "bench" / "results" / "endurance.jsonl"
MIB = 1024 * 1024
ERROR_MARKERS = LOG_ERROR_MARKERS

# Bounds (docs/security.md, "Attacks tried").
RSS_GROWTH = 50 * MIB
# Growth must level off: the last quarter of the cycles may add at most this
# much (or half of what the first quarter added, if more). A steady leak adds as
# much late as early: 2.6 KiB a cycle is about 25 MiB per 10,000 cycles.
# Measured (docs/security.md, 2026-11-27): 91.9 -> 93.0 MiB over 40,000 cycles,
# flat after the first 5,000.
LATE_RSS_GROWTH_MIB = 4.0
FD_GROWTH = 20
REDIS_CLIENT_GROWTH = 5
REDIS_KEY_GROWTH = 5
PG_POOL_MAX = 16


# --------------------------------------------------------------------------- measuring


@dataclass
class Figures:
    rss_mib: float
    fds: int
    redis_clients: int
    redis_keys: int
    redis_used_memory_mib: float
    pg_sessions: int


class Meter:
    def __init__(
        self, server: LiveServer, redis_server: RedisServer, pg: PostgresServer, db: str
    ) -> None:
        self.server, self.redis, self.pg, self.db = server, redis_server, pg, db

    def rss(self) -> int:
        for line in Path(f"/proc/{self.server.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def take(self) -> Figures:
        with self.redis.client() as client:
            clients = len(client.client_list()) - 1  # not this one
            keys = int(client.dbsize())
            used = int(client.info("memory")["used_memory"])
        with self.pg.connect(self.db) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                "pg_backend_pid()",
                [self.db],
            ).fetchone()
        assert row is not None
        return Figures(
            rss_mib=round(self.rss() / MIB, 1),
            fds=len(os.listdir(f"/proc/{self.server.pid}/fd")),
            redis_clients=clients,
            redis_keys=keys,
            redis_used_memory_mib=round(used / MIB, 2),
            pg_sessions=int(row[0]),
        )

    async def settled(self, baseline: Figures, timeout: float = 60.0) -> Figures:
        """Figures once fds, Redis clients and Redis keys are back near ``baseline``
        (or at timeout: check_bounds then says what did not come back). The server
        releases a closed socket's fd and presence key a moment after the close."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.take()
            if (
                now.fds - now.redis_clients <= baseline.fds - baseline.redis_clients + FD_GROWTH
                and now.redis_clients <= baseline.redis_clients + REDIS_CLIENT_GROWTH
                and now.redis_keys <= baseline.redis_keys + REDIS_KEY_GROWTH
            ) or time.monotonic() > deadline:
                return now
            await asyncio.sleep(0.5)


def record(scenario: str, **fields: Any) -> None:
    line = {"scenario": scenario, "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    line.update(fields)
    print(json.dumps(line))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(line) + "\n")


def check_bounds(before: Figures, after: Figures) -> None:
    """RSS < +50 MiB; fds other than Redis connections within +20; Redis connections
    within +5, or up to the client concurrency: the presence client's pool
    (notifications/redis_clients.py async_client, no max_connections) keeps its
    high-water mark of concurrent calls, which a long run under CPU contention
    raised by 25 (docs/security.md, "Attacks tried")."""
    assert after.rss_mib - before.rss_mib < RSS_GROWTH / MIB, (before, after)
    other_before = before.fds - before.redis_clients
    assert after.fds - after.redis_clients <= other_before + FD_GROWTH, (before, after)
    assert after.redis_clients <= before.redis_clients + REDIS_CLIENT_GROWTH + CONCURRENCY, (
        before,
        after,
    )
    assert after.redis_keys <= before.redis_keys + REDIS_KEY_GROWTH, (before, after)
    assert after.pg_sessions <= PG_POOL_MAX, (before, after)


# --------------------------------------------------------------------------- servers


@dataclass
class Stack:
    server: LiveServer
    meter: Meter


def start_stack(redis_server: RedisServer, postgres_server: PostgresServer, **extra: str) -> Stack:
    url = postgres_server.create_database()
    env = server_env(
        url,
        redis_server.url,
        NOTIFY_REDIS_PREFIX=f"endure{uuid.uuid4().hex[:8]}",
        # The run measures resources, not the limits: both publish limits are lifted
        # (a fast machine sent over the default 10,000 recipients/s and got 429s).
        NOTIFY_PUBLISH_RATE="100000/s",
        NOTIFY_PUBLISH_RECIPIENT_RATE="10000000/s",
        LOG_LEVEL="WARNING",
        **extra,
    )
    server = LiveServer(env, startup_timeout=60.0)
    return Stack(server, Meter(server, redis_server, postgres_server, url.rsplit("/", 1)[1]))


def stop_stack(stack: Stack, offset: int) -> None:
    problems = [
        line
        for line in stack.server.log_text()[offset:].splitlines()
        if any(marker in line for marker in ERROR_MARKERS)
    ]
    print("----- server log (tail) -----")
    print("\n".join(stack.server.log_text().splitlines()[-60:]))
    stack.server.close()
    assert not problems, "server logged errors:\n" + "\n".join(problems[:30])


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, postgres_server: PostgresServer) -> Iterator[Stack]:
    started = start_stack(redis_server, postgres_server)
    offset = len(started.server.log_text())
    try:
        yield started
    finally:
        stop_stack(started, offset)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=60.0, trust_env=False, limits=limits) as client:
        yield client


async def ws_open(server: LiveServer, user: str, **kwargs: Any) -> ClientConnection:
    return await connect(
        f"{server.ws_url}{WS_PATH}",
        additional_headers={"Authorization": f"Bearer {make_token(user)}"},
        proxy=None,
        open_timeout=60,
        ping_interval=None,
        max_size=None,
        **kwargs,
    )


async def until_ready(ws: ClientConnection) -> None:
    async for message in ws:
        if orjson.loads(message)["type"] == "ready":
            return
    raise AssertionError("closed before ready")


# --------------------------------------------------------------------------- scenarios


async def connect_cycles(server: LiveServer, count: int, prefix: str) -> list[int]:
    """``count`` connect -> ready -> close cycles, CONCURRENCY at a time; close codes seen."""
    codes: list[int] = []
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            ws = await ws_open(server, f"{prefix}-{i}", compression=None)
            try:
                await until_ready(ws)
            finally:
                await ws.close()
            codes.append(ws.close_code or 0)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return codes


@pytest.mark.timeout(600)
async def test_20000_connect_disconnect_cycles(stack: Stack, http: httpx.AsyncClient) -> None:
    server, meter = stack.server, stack.meter
    await connect_cycles(server, 500, "warm")  # warm-up: imports, pools, thread pools
    await asyncio.sleep(1)
    before = meter.take()
    started = time.monotonic()
    codes: list[int] = []
    # MiB at the start and after each eighth: growth that goes on = a leak.
    rss_checkpoints: list[float] = [before.rss_mib]
    run = uuid.uuid4().hex[:6]
    for eighth in range(8):
        codes += await connect_cycles(server, CYCLES // 8, f"cyc{run}e{eighth}")
        rss_checkpoints.append(round(meter.rss() / MIB, 1))
    seconds = time.monotonic() - started
    peak = meter.take()
    after = await meter.settled(before)
    # The gauge drops as each disconnect is handled, a moment after the close.
    sockets_open = await eventually(
        lambda: metric(http, server, "notify_sockets_open"),
        lambda value: value == 0,
        timeout=60,
        what="notify_sockets_open back to 0",
    )
    record(
        "connect_cycles",
        cycles=CYCLES,
        concurrency=CONCURRENCY,
        seconds=round(seconds, 1),
        per_second=round(CYCLES / seconds),
        before=asdict(before),
        right_after=asdict(peak),
        settled=asdict(after),
        rss_checkpoints_mib=rss_checkpoints,
        sockets_open_after=sockets_open,
    )
    assert len(codes) == CYCLES // 8 * 8 and set(codes) == {1000}, set(codes)
    assert sockets_open == 0
    check_bounds(before, after)
    first_quarter = rss_checkpoints[2] - rss_checkpoints[0]
    last_quarter = rss_checkpoints[8] - rss_checkpoints[6]
    assert last_quarter <= max(LATE_RSS_GROWTH_MIB, first_quarter / 2), (
        f"RSS still growing: {first_quarter:.1f} MiB in the first quarter of the cycles, "
        f"{last_quarter:.1f} MiB in the last; checkpoints {rss_checkpoints}"
    )
    assert (await http.get(server.url + "/readyz")).status_code == 200


async def metric(http: httpx.AsyncClient, server: LiveServer, name: str) -> float:
    text = (await http.get(server.url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


class Counter:
    """A connected user that counts its notifications (and checks they come in order)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.count = 0
        self.last = 0
        self.out_of_order = 0
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                frame = orjson.loads(message)
                if frame["type"] == "notification":
                    seq = int(frame["notification"]["id"])
                    self.out_of_order += seq != self.last + 1
                    self.last = seq
                    self.count += 1


@pytest.mark.timeout(300)
async def test_100000_notifications_through_one_process(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    server, meter = stack.server, stack.meter
    run = uuid.uuid4().hex[:6]
    users = [f"n{run}-{i}" for i in range(USERS)]
    counters: list[Counter] = []
    # Every socket is closed whatever fails: a socket left open would be collected
    # during a later test and fail it with an "unclosed transport" warning.
    try:
        for chunk in range(0, USERS, 50):
            opened = await asyncio.gather(*(ws_open(server, u) for u in users[chunk : chunk + 50]))
            counters += [Counter(ws) for ws in opened]
        await asyncio.sleep(0.5)
        gate = asyncio.Semaphore(POST_CONCURRENCY)
        payload_base = {"type": "endurance.tick", "title": "t", "data": {"k": "v" * 64}}

        async def post(i: int) -> None:
            half = (i % 2) * BATCH
            body = {**payload_base, "recipients": users[half : half + BATCH]}
            async with gate:
                response = await http.post(
                    server.url + PUBLISH_PATH, content=json.dumps(body), headers=publisher_headers()
                )
            assert response.status_code == 202, (response.status_code, response.text)

        warm_posts = 50
        await asyncio.gather(*(post(i) for i in range(warm_posts)))
        await wait_for_counts(counters, warm_posts * BATCH, 60)
        before = meter.take()
        started = time.monotonic()
        await asyncio.gather(*(post(i) for i in range(warm_posts, warm_posts + POSTS)))
        published_in = time.monotonic() - started
        expected = (warm_posts + POSTS) * BATCH
        await wait_for_counts(counters, expected, 180)
        delivered_in = time.monotonic() - started
        peak = meter.take()
        assert sum(c.count for c in counters) == expected
        assert all(c.out_of_order == 0 for c in counters)
        assert all(c.count == (warm_posts + POSTS) // 2 for c in counters)
    finally:
        for counter in counters:
            await counter.ws.close()
        await asyncio.gather(*(c.task for c in counters), return_exceptions=True)
    after = await meter.settled(before)
    record(
        "notifications",
        posts=POSTS,
        recipients_per_post=BATCH,
        users=USERS,
        notifications=POSTS * BATCH,
        publish_seconds=round(published_in, 1),
        delivered_seconds=round(delivered_in, 1),
        deliveries_per_second=round(POSTS * BATCH / delivered_in),
        before=asdict(before),
        connected_peak=asdict(peak),
        settled=asdict(after),
    )
    check_bounds(before, after)


async def wait_for_counts(counters: list[Counter], total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sum(c.count for c in counters) < total:
        if time.monotonic() > deadline:
            raise AssertionError(f"{sum(c.count for c in counters)} of {total} delivered")
        closed = [c for c in counters if c.task.done()]
        assert not closed, f"{len(closed)} counting sockets closed: {closed[0].ws.close_code}"
        await asyncio.sleep(0.2)


# --------------------------------------------------------------------------- never-reading


SLOW_SOCKETS = 20
SEND_QUEUE = 50
NEVER_READ_NOTIFICATIONS = 300
# uvicorn's keepalive (ping every 20 s, 20 s to answer) ends a connection whose
# client never reads; until then it still counts in presence.
PRESENCE_SETTLE = 60.0
# Incompressible, so that permessage-deflate (if negotiated) cannot shrink it.
BLOB = base64.b64encode(os.urandom(6150)).decode()  # 8200 characters, about 8 KiB


@pytest.mark.timeout(240)
async def test_clients_that_never_read(
    redis_server: RedisServer, postgres_server: PostgresServer, http: httpx.AsyncClient
) -> None:
    slow_stack = start_stack(redis_server, postgres_server, NOTIFY_WS_SEND_QUEUE=str(SEND_QUEUE))
    offset = len(slow_stack.server.log_text())
    server, meter = slow_stack.server, slow_stack.meter
    run = uuid.uuid4().hex[:6]
    slow_users = [f"mute{run}-{i}" for i in range(SLOW_SOCKETS)]
    fast_user = f"fast{run}"
    fast: Counter | None = None
    slow: list[ClientConnection] = []
    try:
        fast = Counter(await ws_open(server, fast_user))
        await asyncio.sleep(0.5)
        # Warm-up: the same traffic to reading sockets, so that the allocator's
        # retained high-water mark (8 KiB rows and frames through 16 writer threads)
        # is in the baseline, and what follows measures only what the never-reading
        # sockets hold.
        warm_users = [f"warm{run}-{i}" for i in range(SLOW_SOCKETS)]
        warm = [Counter(await ws_open(server, user)) for user in warm_users]
        await publish_blobs(http, server, [*warm_users, fast_user], meter)
        await wait_for_counts(warm, SLOW_SOCKETS * NEVER_READ_NOTIFICATIONS, 120)
        for counter in warm:
            await counter.ws.close()
        await asyncio.sleep(0.5)
        for user in slow_users:
            ws = await connect(
                f"{server.ws_url}{WS_PATH}",
                sock=tiny_buffer_socket(server),
                additional_headers={"Authorization": f"Bearer {make_token(user)}"},
                proxy=None,
                max_size=None,
                max_queue=1,
                compression=None,
                ping_interval=None,
                open_timeout=30,
            )
            slow.append(ws)
        await asyncio.sleep(0.5)
        before = meter.take()
        started = time.monotonic()
        peak_rss = await publish_blobs(http, server, [*slow_users, fast_user], meter)
        published = 2 * NEVER_READ_NOTIFICATIONS
        publish_seconds = time.monotonic() - started
        await wait_for_counts([fast], published, 120)

        # Every never-reading socket leaves presence while its client still holds
        # the TCP connection without reading.
        settle_started = time.monotonic()
        still = await presence_total(http, server, slow_users, settle=PRESENCE_SETTLE)
        presence_seconds = round(time.monotonic() - settle_started, 1)
        fds_while_held = meter.take().fds
        codes = []
        for ws in slow:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            codes.append(ws.close_code)
        await asyncio.sleep(0.5)
        after = meter.take()
        dropped = await metric(http, server, "notify_notifications_dropped_total")
        record(
            "never_reading_clients",
            slow_sockets=SLOW_SOCKETS,
            send_queue=SEND_QUEUE,
            notifications_each=NEVER_READ_NOTIFICATIONS,
            payload_bytes=len(BLOB),
            seconds=round(publish_seconds, 1),
            close_codes=sorted({c or 0 for c in codes}),
            presence_left=still,
            presence_wait_seconds=presence_seconds,
            fds_while_held=fds_while_held,
            dropped_total=dropped,
            before=asdict(before),
            peak_rss_mib=peak_rss,
            after=asdict(after),
        )
        assert still == 0, f"{still} never-reading sockets still counted in presence"
        # 4008 when the outbox overflowed; 1011 when uvicorn's keepalive ping timed out
        # first (the notifications fit in the kernel and transport buffers). A client
        # that never reads sees neither frame in practice: its connection just ends.
        assert set(codes) <= {4008, 1011}, codes
        # What the never-reading sockets may hold: a full outbox and a transport
        # buffer each (about 0.5 MiB), far below 50 MiB; without the bound it would
        # be 300 x 8 KiB = 2.4 MiB per socket, and growing.
        assert peak_rss - before.rss_mib < 50, (before.rss_mib, peak_rss)
        # The reading user got everything, in order, and is still connected.
        assert fast.count == published and fast.out_of_order == 0
        assert not fast.task.done()
    finally:
        for ws in slow:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        if fast is not None:
            await fast.ws.close()
        stop_stack(slow_stack, offset)


async def publish_blobs(
    http: httpx.AsyncClient, server: LiveServer, recipients: list[str], meter: Meter
) -> float:
    """NEVER_READ_NOTIFICATIONS posts of BLOB to ``recipients``; the peak RSS seen."""
    gate = asyncio.Semaphore(POST_CONCURRENCY)

    async def post(i: int) -> None:
        body = {"recipients": recipients, "type": "endurance.big", "title": f"n-{i}"}
        body["data"] = {"blob": BLOB}
        async with gate:
            response = await http.post(
                server.url + PUBLISH_PATH, content=json.dumps(body), headers=publisher_headers()
            )
        assert response.status_code == 202, response.text

    peak_rss = 0.0
    for start in range(0, NEVER_READ_NOTIFICATIONS, 100):
        await asyncio.gather(*(post(start + i) for i in range(100)))
        peak_rss = max(peak_rss, meter.take().rss_mib)
    return peak_rss


async def presence_total(
    http: httpx.AsyncClient, server: LiveServer, users: list[str], settle: float = 0.0
) -> int:
    """Sockets of ``users`` still counted (waits up to ``settle`` s for it to reach 0)."""
    deadline = time.monotonic() + settle
    while True:
        total = 0
        for user in users:
            answer = await http.get(
                f"{server.url}/api/v1/users/{user}/presence",
                headers={"Authorization": f"Bearer {SHOP_SECRET}"},
            )
            total += answer.json()["connections"]
        if total == 0 or time.monotonic() > deadline:
            return total
        await asyncio.sleep(0.5)
