"""``kill -9`` of a process while its users are being published to.

Architecture, failure behaviour: "a process (kill -9): other processes keep
answering; its clients reconnect elsewhere with ``since``". Contract: every socket
gets a user's notifications in id order with no gaps; ``since`` replays "every
stored notification ... with an id after <id>"; "No id is sent twice on one
connection, and none is skipped". So a reconnecting client ends with every
notification exactly once, in order, matching what the user API lists.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest

from tests.production.conftest import (
    ResumingClient,
    ServerPool,
    nothing_more_on_the_way,
    post_notification,
    prod_env,
    stored_notifications,
)
from tests.support.servers import RedisServer

pytestmark = pytest.mark.live

USERS = 8
POSTS = 300
KILL_AFTER = 100


@pytest.mark.timeout(180)
async def test_clients_of_a_killed_process_resume_elsewhere_losing_nothing(
    pool: ServerPool, module_redis: RedisServer, module_db: str, http: httpx.AsyncClient
) -> None:
    victim, survivor = pool.start_many(2, prod_env(module_db, module_redis.url))
    users = [f"crash{i}-{random.getrandbits(32):08x}" for i in range(USERS)]

    # Two clients per user on the victim, one on the survivor (a control).
    clients = [ResumingClient(user, [victim, survivor]) for user in users for _ in range(2)]
    controls = [ResumingClient(user, [survivor, victim]) for user in users]
    everyone = clients + controls
    try:
        await asyncio.gather(*(c.wait_ready() for c in everyone))
        assert {c.connected_to[0] for c in clients} == {victim.port}

        rng = random.Random(99)
        accepted: Counter[str] = Counter()
        statuses: list[int] = []
        killed = asyncio.Event()
        before_kill: list[int] = []

        async def publisher() -> None:
            for i in range(POSTS):
                recipients = rng.sample(users, 1 if i % 3 else rng.randint(2, 4))
                response = await post_notification(
                    http, survivor, recipients, title=f"post-{i}", data={"i": i}
                )
                statuses.append(response.status_code)
                assert response.status_code == 202, (response.status_code, response.text)
                accepted.update(recipients)
                if i == KILL_AFTER:
                    before_kill.extend(len(c.received) for c in clients)
                    await asyncio.to_thread(victim.kill)
                    killed.set()

        await publisher()
        assert killed.is_set()
        assert sum(before_kill) > 0, "the crash should cut off clients mid-stream"
        assert statuses == [202] * POSTS

        # Every client got off the dead process and ends with ids 1..N exactly once.
        for client in everyone:
            await client.wait_ids(accepted[client.user], timeout=60)
        # A marker through the survivor to everyone: nothing more is on its way.
        await nothing_more_on_the_way(http, survivor, everyone, accepted)

        for client in clients:
            assert client.ids == list(range(1, accepted[client.user] + 1)), (
                f"{client.user}: ids {client.ids}; closes {client.closes}"
            )
            # It was cut off by the crash (no close frame: 1006) and resumed on the survivor.
            assert client.closes[0][0] == victim.port
            assert client.closes[0][1] == 1006, client.closes
            assert client.connected_to[-1] == survivor.port
            assert all(r["complete"] is True for r in client.readies), client.readies
        for control in controls:
            assert control.ids == list(range(1, accepted[control.user] + 1))
            assert control.connected_to == [survivor.port]  # never disturbed

        for user in users:
            stored = await stored_notifications(http, survivor, user)
            assert [int(n["id"]) for n in stored] == list(range(1, accepted[user] + 1))
            for client in [c for c in everyone if c.user == user]:
                assert client.received == stored, f"{user}: frames differ from the user API"
    finally:
        await asyncio.gather(*(c.stop() for c in everyone))


async def test_survivor_keeps_answering_while_the_other_process_is_dead(
    pool: ServerPool, module_redis: RedisServer, module_db: str, http: httpx.AsyncClient
) -> None:
    first, second = pool.start_many(2, prod_env(module_db, module_redis.url))
    first.kill()
    user = f"alone-{random.getrandbits(32):08x}"
    response = await post_notification(http, second, [user], title="after the crash")
    assert response.status_code == 202, response.text
    ready = await http.get(second.url + "/readyz")
    assert ready.status_code == 200, ready.text
    stored = await stored_notifications(http, second, user)
    assert [n["title"] for n in stored] == ["after the crash"]
