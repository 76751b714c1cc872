"""PostgreSQL: a plain publish from the API commits in a group on the event
loop's own connection (notifications/publish_loop.py), not in the writer
thread. Real PostgreSQL (or PgBouncer), real Redis, the ASGI application
over httpx's ASGI transport; the wire of the loop's connection is read from
libpq's trace. tests/production/test_publish_loop_shutdown.py holds the
SIGTERM case under uvicorn."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import connection
from psycopg import pq

from notifications import db_loop, publish_loop, services
from notifications.models import UserSequence
from notifications.redis_clients import RedisSettings
from tests.api.conftest import PUBLISH_URL, SHOP_SECRET, counts, sequences
from tests.notifications.test_publish_plain import RowLock
from tests.support.servers import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = {"Authorization": f"Bearer {SHOP_SECRET}", "Content-Type": "application/json"}
# pg_writes' one statement, as the server sees it.
STATEMENT = "WITH a AS ("
UNREACHABLE = "Storage is unreachable; nothing was stored. Retry later."  # api/errors.py


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite commits every publish in the writer thread")


async def post(asgi: httpx.AsyncClient, *recipients: str, type: str = "t") -> httpx.Response:
    body = orjson.dumps({"recipients": list(recipients), "type": type})
    return await asgi.post(PUBLISH_URL, content=body, headers=HEADERS)


def committer() -> Any:
    found = publish_loop.committer()
    assert found is not None
    return found


def _backends_waiting_on_a_lock() -> list[int]:
    """Server processes whose publish statement waits for a row lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            [STATEMENT + "%"],
        )
        return [pid for (pid,) in cursor.fetchall()]


def _terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


async def statement_waiting(other_than: int | None = None) -> int:
    """The server pid of the loop's publish statement, once it waits on the
    test's row lock."""

    def waiting() -> list[int]:
        return [pid for pid in _backends_waiting_on_a_lock() if pid != other_than]

    async with asyncio.timeout(30):
        while not (pids := await sync_to_async(waiting)()):
            await asyncio.sleep(0.02)
    assert len(pids) == 1, pids
    return pids[0]


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


async def gate_row(asgi: httpx.AsyncClient) -> None:
    """User "gate" has a counter row, for a RowLock to hold."""
    assert (await post(asgi, "gate", type="open")).status_code == 202


@pytest.mark.usefixtures("postgres_only")
async def test_a_plain_group_commits_on_the_loop_in_one_statement(
    asgi: httpx.AsyncClient,
) -> None:
    await gate_row(asgi)
    # The loop's groups' one connection, kept between them.
    pgconn = publish_loop._writers[asyncio.get_running_loop()].connection._conn.pgconn  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace"
        with trace.open("w") as out:
            pgconn.trace(out.fileno())
            pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            # The first request holds the loop's group (waiting on the lock);
            # the two behind it queue, and go together in the next group.
            with RowLock("gate") as lock:
                first = asyncio.ensure_future(post(asgi, "gate", "a"))
                await statement_waiting()
                rest = [asyncio.ensure_future(post(asgi, "gate", user)) for user in ("b", "c")]
                await until(lambda: committer().waiting() == 2)
                lock.release.set()
                answers = await asyncio.gather(first, *rest)
            pgconn.untrace()
        sent = [line for line in trace.read_text().splitlines() if line.startswith("F")]
    assert [a.status_code for a in answers] == [202, 202, 202]
    frontend = "\n".join(sent)
    assert frontend.count(STATEMENT) == 2  # three requests, two groups, one statement each
    assert '"BEGIN"' not in frontend and '"COMMIT"' not in frontend
    assert await sync_to_async(sequences)() == {"gate": 4, "a": 1, "b": 1, "c": 1}


@pytest.mark.usefixtures("postgres_only")
async def test_a_lost_connection_is_503_for_its_group_and_the_next_request_reconnects(
    asgi: httpx.AsyncClient,
) -> None:
    # Its statement got no answer: it might have committed, so the group is
    # not retried request by request (that could store it twice); each gets
    # the contract's 503, and the pool opens a new connection for the next.
    await gate_row(asgi)
    with RowLock("gate") as lock:
        alone = asyncio.ensure_future(post(asgi, "gate", "a"))
        first = await statement_waiting()
        pair = [asyncio.ensure_future(post(asgi, "gate", user)) for user in ("b", "c")]
        await until(lambda: committer().waiting() == 2)  # the next group's
        await sync_to_async(_terminate)(first)
        answers = [await alone]
        second = await statement_waiting(other_than=first)  # b and c: one statement
        await sync_to_async(_terminate)(second)
        async with asyncio.timeout(60):  # retried one by one, each would wait on the lock
            answers += await asyncio.gather(*pair)
        lock.release.set()
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json() == {
            "detail": "Storage is unreachable; nothing was stored. Retry later."
        }
        assert int(answer.headers["Retry-After"]) >= 1
    assert await sync_to_async(sequences)() == {"gate": 1}  # nothing of theirs
    assert (await post(asgi, "gate", "a")).status_code == 202
    assert await sync_to_async(sequences)() == {"gate": 2, "a": 1}


@pytest.mark.usefixtures("postgres_only")
async def test_a_client_that_goes_away_leaves_its_group_committing(
    asgi: httpx.AsyncClient,
) -> None:
    # One request in the statement in flight, one queued for the next group:
    # both clients go away (their request tasks cancelled), and both
    # publications are stored whole, as a 202 would have said.
    await gate_row(asgi)
    with RowLock("gate") as lock:
        in_flight = asyncio.ensure_future(post(asgi, "gate", "a"))
        await statement_waiting()
        queued = asyncio.ensure_future(post(asgi, "gate", "b"))
        await until(lambda: committer().waiting() == 1)
        in_flight.cancel()
        queued.cancel()
        await asyncio.gather(in_flight, queued, return_exceptions=True)
        lock.release.set()
        await committer().idle()
    assert await sync_to_async(sequences)() == {"gate": 3, "a": 1, "b": 1}
    assert (await sync_to_async(counts)())[0] == 5  # every recipient's row


@pytest.fixture
def shared_rate_limit(redis_server: RedisServer, settings: Any) -> None:
    settings.NOTIFY_REDIS = RedisSettings(urls=(redis_server.url,))
    settings.NOTIFY_PUBLISH_RATE = (0.01, 2.0)  # a burst of two, then ~100 s a token
    client = redis.Redis.from_url(redis_server.url)
    client.delete("notify:rate:{shop}", "notify:rate:{shop}:recipients")
    client.close()


@pytest.mark.usefixtures("shared_rate_limit")
async def test_the_rate_limit_answers_429_on_the_loop(asgi: httpx.AsyncClient) -> None:
    answers = [await post(asgi, "u1"), await post(asgi, "u2"), await post(asgi, "u3")]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json() == {"detail": "Publish rate limit exceeded; retry later."}
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert await sync_to_async(sequences)() == {"u1": 1, "u2": 1}  # the refused one: nothing
    on_loop = connection.vendor == "postgresql"
    assert (publish_loop.committer() is not None) == on_loop


def test_a_synchronous_caller_keeps_the_writer_thread() -> None:
    loops_before = (dict(publish_loop._writers), dict(db_loop._pools))
    result = services.notifications_publish(source="shop", recipients=["a", "b"], type="t")
    assert result.recipients == 2
    assert dict(UserSequence.objects.values_list("user_id", "last_id")) == {"a": 1, "b": 1}
    # No group committer and no connection of the call's short-lived loop.
    assert (dict(publish_loop._writers), dict(db_loop._pools)) == loops_before
