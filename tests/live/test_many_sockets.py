"""A few hundred sockets at once on one process of the Redis-layer deployment."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.live.conftest import Socket, Sockets, new_user, publish, stored_notifications
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

SOCKETS = 300


async def test_hundreds_of_concurrent_handshakes_then_one_batch_reaches_all(
    pair: tuple[LiveServer, LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = pair
    users = [new_user(f"many{i}") for i in range(SOCKETS)]

    results = await asyncio.gather(
        *(sockets.open(a, user, wait_ready=False, open_timeout=90) for user in users),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    statuses = sorted({f.response.status_code for f in failures if isinstance(f, InvalidStatus)})
    assert not failures, f"{len(failures)} handshakes failed (HTTP {statuses}): {failures[:3]!r}"
    socks: list[Socket] = [r for r in results if isinstance(r, Socket)]
    readies = await asyncio.gather(*(s.ready(timeout=90) for s in socks))
    assert [r["user"] for r in readies] == users
    assert all(r["complete"] is True and r["unread"] == 0 for r in readies)

    # One batch publish through the other process, to every user.
    answer = await publish(http, b, users, title="to everyone", data={"batch": True})
    assert answer["recipients"] == SOCKETS
    await asyncio.gather(*(s.wait_count(1, timeout=90) for s in socks))
    await asyncio.gather(*(s.ping(timeout=90) for s in socks))
    for sock in socks:
        [pushed] = sock.notifications()
        assert pushed["id"] == "1", sock.label
        assert pushed["title"] == "to everyone"
        assert pushed["data"] == {"batch": True}

    # Each is stored for its user, exactly once.
    sample = users[:: SOCKETS // 10]
    for user in sample:
        stored = await stored_notifications(http, a, user)
        assert [n["id"] for n in stored] == ["1"]


async def test_sockets_opening_together_while_publishing_get_every_id_once_in_order(
    pair: tuple[LiveServer, LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    """Sockets that open together share their channel layer SUBSCRIBE; each
    still gets its replay, ``ready`` and then everything published meanwhile
    and after, every id exactly once and in order (two sockets per user:
    a user's group is joined twice in one batch)."""
    a, b = pair
    users = [new_user(f"together{i}") for i in range(30)]
    stored, during = 3, 5
    for n in range(stored):
        await publish(http, b, users, title=f"stored {n}")

    async def publish_meanwhile() -> None:
        for n in range(during):
            await publish(http, b, users, title=f"during {n}")

    opened, _ = await asyncio.gather(
        asyncio.gather(
            *(
                sockets.open(a, user, query="since=0", wait_ready=False, open_timeout=90)
                for user in users
                for _ in range(2)
            )
        ),
        publish_meanwhile(),
    )
    await publish(http, b, users, title="after")
    total = stored + during + 1
    await asyncio.gather(*(s.wait_count(total, timeout=90) for s in opened))
    await asyncio.gather(*(s.ping(timeout=90) for s in opened))
    for sock in opened:
        assert sock.ids() == list(range(1, total + 1)), sock.label
        kinds = [f["type"] for f in sock.frames if f["type"] in ("notification", "ready")]
        [ready] = sock.of_type("ready")
        before_ready = kinds.index("ready")
        # The replay (at least what was stored before the socket opened) comes
        # before ready, and ready counts it.
        assert ready["replayed"] == before_ready >= stored, sock.label
        assert ready["complete"] is True
