"""The ordering contract under concurrency across processes.

"Every socket receives a user's notifications in increasing id order with no gaps
against what is stored, even when they were published concurrently through different
processes." Two processes on Redis + PostgreSQL, a few users with a socket on each
process, a few hundred POSTs at once split across both.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import httpx
import pytest

from tests.live.conftest import Sockets, new_user, publish, stored_notifications
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

USERS = 5
POSTS = 300


async def test_concurrent_posts_through_two_processes_arrive_in_order_without_gaps(
    pair: tuple[LiveServer, LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = pair
    users = [new_user(f"race{i}") for i in range(USERS)]
    socks = {user: [await sockets.open(a, user), await sockets.open(b, user)] for user in users}

    rng = random.Random(20261123)  # deterministic mix
    plan: list[list[str]] = []
    for i in range(POSTS):
        if i % 4 == 0:
            plan.append(rng.sample(users, rng.randint(2, USERS)))
        else:
            plan.append([users[i % USERS]])
    expected: dict[str, set[int]] = defaultdict(set)
    for i, recipients in enumerate(plan):
        for user in recipients:
            expected[user].add(i)

    answers = await asyncio.gather(
        *(
            publish(
                http,
                a if i % 2 else b,
                recipients,
                title=f"post {i}",
                data={"i": i, "recipients": len(recipients)},
            )
            for i, recipients in enumerate(plan)
        )
    )
    assert [answer["recipients"] for answer in answers] == [len(r) for r in plan]

    for user in users:
        count = len(expected[user])
        stored = await stored_notifications(http, a if len(user) % 2 else b, user)
        assert [int(n["id"]) for n in stored] == list(range(1, count + 1)), user
        assert {n["data"]["i"] for n in stored} == expected[user], user
        for sock in socks[user]:
            await sock.wait_count(count, timeout=60)
            await sock.ping()
            got = sock.ids()
            assert len(got) == len(set(got)), f"{sock.label}: duplicates"
            assert got == sorted(got), f"{sock.label}: out of order"
            assert got == list(range(1, count + 1)), f"{sock.label}: gap"
            assert sock.notifications() == stored, f"{sock.label}: payloads differ from storage"
