"""Two uvicorn processes, A and B, sharing Redis (channel layer, presence) and PostgreSQL."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.live.conftest import (
    Sockets,
    eventually,
    new_user,
    presence,
    publish,
    stored_notifications,
)
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

Pair = tuple[LiveServer, LiveServer]


async def test_socket_on_a_gets_what_is_posted_on_b(
    pair: Pair, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = pair
    user = new_user()
    sock = await sockets.open(a, user)
    answer = await publish(http, b, [user], title="cross", data={"k": "v"})
    assert answer["recipients"] == 1
    [pushed] = await sock.wait_count(1)
    assert pushed["id"] == "1"
    assert pushed["title"] == "cross"
    assert pushed["data"] == {"k": "v"}
    assert await stored_notifications(http, a, user) == [pushed]


async def test_every_socket_of_a_user_on_both_processes_and_no_one_else(
    pair: Pair, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = pair
    alice, bob = new_user("alice"), new_user("bob")
    alice_a = await sockets.open(a, alice)
    alice_b = await sockets.open(b, alice)
    bob_a = await sockets.open(a, bob)
    bob_b = await sockets.open(b, bob)

    await publish(http, b, [alice], title="for alice 1")
    await publish(http, a, [alice], title="for alice 2")
    # Published after alice's: a leak would reach bob's sockets before this one.
    await publish(http, a, [bob], title="for bob")

    for sock in (alice_a, alice_b):
        await sock.wait_count(2)
        await sock.ping()
        assert [n["title"] for n in sock.notifications()] == ["for alice 1", "for alice 2"]
        assert sock.ids() == [1, 2]
    for sock in (bob_a, bob_b):
        await sock.wait_count(1)
        await sock.ping()
        assert [n["title"] for n in sock.notifications()] == ["for bob"]
        assert sock.ids() == [1]


async def test_multi_recipient_post_reaches_each_user_on_either_process(
    pair: Pair, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = pair
    users = [new_user() for _ in range(4)]
    socks = [await sockets.open(a if i % 2 else b, user) for i, user in enumerate(users)]
    answer = await publish(http, a, [*users, users[0]], title="everyone")
    assert answer["recipients"] == 4
    for sock in socks:
        [pushed] = await sock.wait_count(1)
        assert pushed["title"] == "everyone"
        assert pushed["id"] == "1"
        await sock.ping()
        assert len(sock.notifications()) == 1


async def test_read_on_one_process_is_told_to_sockets_on_the_other(
    pair: Pair, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = pair
    user = new_user()
    await publish(http, a, [user], title="one")
    await publish(http, b, [user], title="two")
    on_a = await sockets.open(a, user)
    on_b = await sockets.open(b, user)
    await on_a.send_json({"type": "read", "ids": ["2"]})
    await on_b.wait_for(lambda s: bool(s.of_type("read")), what="a read frame")
    assert on_b.of_type("read") == [{"type": "read", "ids": ["2"]}]
    await on_a.ping()
    await on_a.ping()
    assert on_a.of_type("read") == []
    stored = {n["id"]: n["read_at"] for n in await stored_notifications(http, b, user)}
    assert stored["1"] is None
    assert stored["2"] is not None


async def test_presence_counts_sockets_across_processes(
    pair: Pair, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = pair
    user = new_user()
    assert await presence(http, a, user) == {"user_id": user, "online": False, "connections": 0}
    await sockets.open(a, user)
    await sockets.open(a, user)
    await sockets.open(b, user)
    for server in (a, b):
        body = await eventually(
            lambda server=server: presence(http, server, user),  # type: ignore[misc]
            lambda body: body["connections"] == 3,
            what=f"3 connections seen from :{server.port}",
        )
        assert body == {"user_id": user, "online": True, "connections": 3}

    await sockets.close_all()
    for server in (a, b):
        body = await eventually(
            lambda server=server: presence(http, server, user),  # type: ignore[misc]
            lambda body: body["connections"] == 0,
            what=f"0 connections seen from :{server.port}",
        )
        assert body == {"user_id": user, "online": False, "connections": 0}


async def test_since_during_live_traffic_has_no_gap_and_no_duplicate(
    pair: Pair, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    """Sockets resume with since=0 while another process keeps publishing to the user."""
    a, b = pair
    user = new_user()
    total = 150
    accepted = 0

    async def hammer() -> None:
        nonlocal accepted
        gate = asyncio.Semaphore(6)

        async def one(i: int) -> None:
            nonlocal accepted
            async with gate:
                await publish(http, b, [user], title=f"n{i}", data={"i": i})
                accepted += 1

        await asyncio.gather(*(one(i) for i in range(total)))

    async def wait_accepted(count: int) -> None:
        while accepted < count:
            await asyncio.sleep(0.005)

    publisher = asyncio.create_task(hammer())
    resumed = []
    try:
        for server, after in [(a if k % 2 else b, 5 + k * 18) for k in range(8)]:
            await asyncio.wait_for(wait_accepted(after), 60)
            resumed.append(await sockets.open(server, user, query="since=0", wait_ready=False))
    finally:
        await publisher
    assert accepted == total

    stored = await stored_notifications(http, a, user)
    assert [int(n["id"]) for n in stored] == list(range(1, total + 1))
    for sock in resumed:
        ready = await sock.ready()
        assert ready["complete"] is True
        await sock.wait_count(total)
        await sock.ping()
        assert sock.ids() == list(range(1, total + 1)), sock.label
        assert sock.notifications() == stored, sock.label
        assert len(sock.of_type("ready")) == 1


@pytest.mark.parametrize(
    "user",
    [
        "üser with spaces ✓",
        "a/b?c#d&token=e",
        "x" * 200,
        "42",
    ],
    ids=["unicode-spaces", "url-characters", "128-chars", "digits"],
)
async def test_any_user_id_gets_its_notifications_and_presence(
    pair: Pair, sockets: Sockets, http: httpx.AsyncClient, user: str
) -> None:
    a, b = pair
    user = f"{new_user()}-{user}"[:128]  # unique per run, at most 128 characters
    sock = await sockets.open(a, user)
    ready = await sock.ready()
    assert ready["user"] == user
    await publish(http, b, [user], title="odd id")
    [pushed] = await sock.wait_count(1)
    assert pushed["title"] == "odd id"
    body = await presence(http, b, user)
    assert body["user_id"] == user
    assert body["connections"] >= 1
    assert [n["id"] for n in await stored_notifications(http, b, user)] == [pushed["id"]]
