"""One publisher key floods with the largest publishes the contract allows; another
key's small publishes are still answered, and the flood meets 429s.

A real uvicorn process (SQLite, in-memory layer) with the default limits:
``NOTIFY_PUBLISH_RATE=1000/s`` and ``NOTIFY_PUBLISH_RECIPIENT_RATE=10000/s``
(burst 20,000). Before the fix the limit counted requests only, so 24 publishes
of 10,000 recipients were all accepted (docs/security.md, finding 10), and the
single writer served them first come, first served. Latency is measured by
the benchmark, not here: this asserts only a generous bound.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live.conftest import SHOP_SECRET, server_env
from tests.support.servers import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

FLOOD_SECRET = "flood-publisher-secret-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d"
PUBLISH = "/api/v1/notifications"
BOUND = 30.0  # seconds; generous on a loaded 2-core machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db: Path = tmp_path_factory.mktemp("flood") / "db.sqlite3"
    env = server_env(f"sqlite:///{db.resolve()}")
    env["NOTIFY_API_KEYS"] = f"shop:{SHOP_SECRET},flood:{FLOOD_SECRET}"
    live = LiveServer(env, startup_timeout=30.0)
    try:
        yield live
    finally:
        live.close()


async def post(http: httpx.AsyncClient, server: LiveServer, secret: str, body: bytes) -> int:
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    response = await http.post(server.url + PUBLISH, content=body, headers=headers)
    if response.status_code == 429:
        assert int(response.headers["Retry-After"]) >= 1
    return response.status_code


async def test_a_recipient_flood_meets_429s_and_another_key_is_still_served(
    server: LiveServer,
) -> None:
    big = json.dumps(
        {"recipients": [f"flood-{i:05d}" for i in range(10_000)], "type": "flood.test"}
    ).encode()
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(timeout=120.0, trust_env=False, limits=limits) as http:
        flood_answers: Counter[int] = Counter()

        async def flooder() -> None:
            for _ in range(4):
                flood_answers[await post(http, server, FLOOD_SECRET, big)] += 1

        flooders = [asyncio.create_task(flooder()) for _ in range(6)]
        small_times: list[float] = []
        try:
            for n in range(10):
                body = json.dumps({"recipients": [f"small-{n}"], "type": "small.test"}).encode()
                started = time.monotonic()
                assert await post(http, server, SHOP_SECRET, body) == 202
                small_times.append(time.monotonic() - started)
        finally:
            await asyncio.gather(*flooders)
    print(f"flood answers {dict(flood_answers)}; small publish seconds {small_times}")
    assert max(small_times) < BOUND, small_times
    assert flood_answers[429] >= 1, flood_answers
    assert flood_answers[202] >= 1, flood_answers
    assert set(flood_answers) <= {202, 429}, flood_answers
