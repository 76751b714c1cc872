"""``manage.py notify_inspect <user>`` against two production processes on one
Redis and one PostgreSQL: presence per process (host and pid), last id,
``purged_through``, the latest ten notifications with read state, unread count,
push subscriptions (masked) and owed pushes; human-readable and ``--json``.
The processes have Web Push on, with the local push service of
tests/support/push_service.py."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.production.conftest import (
    ME_PATH,
    ServerPool,
    Sockets,
    eventually,
    new_user,
    prod_env,
    publish,
    user_headers,
)
from tests.push.conftest import SUBJECT, Vapid
from tests.support.push_service import PushService
from tests.support.redis_cluster import REDIS_TOPOLOGIES, redis_env
from tests.support.servers import REPO_ROOT, LiveServer, RedisServer

pytestmark = pytest.mark.live


SUBSCRIPTIONS = "/api/v1/me/push-subscriptions"


@pytest.fixture(scope="module")
def vapid() -> Vapid:
    return Vapid()


@pytest.fixture(scope="module")
def push_service(vapid: Vapid) -> Iterator[PushService]:
    service = PushService(vapid.public, subject=SUBJECT)
    yield service
    service.close()


@pytest.fixture(scope="module", params=REDIS_TOPOLOGIES)
def pair(
    request: pytest.FixtureRequest,
    vapid: Vapid,
    push_service: PushService,  # set up before the servers: closed after them
    module_db: str,
) -> Iterator[list[LiveServer]]:
    """Two processes on a private redis-server, or on the session's Redis Cluster."""
    push = {
        "VAPID_PRIVATE_KEY": vapid.private,
        "VAPID_SUBJECT": SUBJECT,
        "NOTIFY_PUSH_ALLOWED_HOSTS": push_service.host,
        "NOTIFY_PUSH_CA_BUNDLE": str(push_service.ca.ca_path),
    }
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("module_redis")
        env = prod_env(module_db, redis.url, **push)
    else:
        env = prod_env(module_db, None, **push, **redis_env(request, request.param))
    pool = ServerPool()  # one topology's servers at a time
    try:
        yield pool.start_many(2, env)
    finally:
        pool.close_all()


def inspect(server: LiveServer, user: str, *args: str) -> str:
    """The command as support runs it: a separate process with the pods' env."""
    result = subprocess.run(
        [sys.executable, "manage.py", "notify_inspect", user, *args],
        env=server.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def inspect_json(server: LiveServer, user: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(inspect(server, user, "--json"))
    return report


def by_pid(report: dict[str, Any]) -> dict[int, int]:
    return {p["pid"]: p["connections"] for p in report["presence"]["processes"]}


async def test_inspect_shows_presence_per_process_and_the_latest_notifications(
    pair: list[LiveServer], sockets: Sockets, http: httpx.AsyncClient
) -> None:
    a, b = pair
    alice = new_user("alice")
    empty = inspect_json(a, alice)
    assert empty["last_id"] == 0 and empty["unread"] == 0 and empty["latest"] == []
    assert empty["presence"] == {"shared": True, "connections": 0, "processes": []}
    assert empty["push"]["enabled"] is True and empty["push"]["subscriptions"] == []
    assert empty["push"]["owed"]["count"] == 0

    # One socket on the first process, two on the second.
    first = await sockets.open(a, alice)
    await sockets.open(b, alice)
    await sockets.open(b, alice)
    for i in range(12):
        await publish(http, a, [alice], title=f"n{i}", type="order.shipped")
    await first.wait_count(12)
    read = await http.post(
        b.url + ME_PATH + "/read", json={"ids": ["12", "11"]}, headers=user_headers(alice)
    )
    assert read.status_code == 200 and read.json() == {"updated": 2}

    report = inspect_json(b, alice)
    assert report["user_id"] == alice
    assert report["last_id"] == 12 and report["purged_through"] == 0
    assert report["unread"] == 10
    assert [n["id"] for n in report["latest"]] == [str(i) for i in range(12, 2, -1)]
    assert [n["read"] for n in report["latest"]] == [True, True] + [False] * 8
    assert report["latest"][0]["title"] == "n11" and report["latest"][0]["source"] == "shop"
    presence = report["presence"]
    assert presence["shared"] is True and presence["connections"] == 3
    assert by_pid(report) == {a.pid: 1, b.pid: 2}
    assert {p["host"] for p in presence["processes"]} == {socket.gethostname()}

    text = inspect(a, alice)
    assert f"user {alice}" in text
    assert "last id 12, purged through 0, unread 10" in text
    assert "connected: yes, 3 connection(s) on 2 process(es)" in text
    assert f"pid {a.pid} " in text and f"pid {b.pid} " in text
    assert "#12 " in text and "#3 " in text and "#2 " not in text
    assert text.count("unread  order.shipped") == 8

    # Sockets closed on the first process: it drops out of the answer.
    await first.close()

    async def connections() -> dict[int, int]:
        return by_pid(await asyncio.to_thread(inspect_json, a, alice))

    await eventually(connections, lambda found: found == {b.pid: 2}, what="the closed socket gone")


async def test_an_unknown_user_is_reported_as_empty(pair: list[LiveServer]) -> None:
    text = inspect(pair[0], new_user("nobody"))
    assert "last id 0, purged through 0, unread 0" in text
    assert "connected: no" in text
    assert "no stored notifications" in text
    assert "push subscriptions: 0\n" in text and "owed pushes: none" in text


async def test_inspect_shows_masked_subscriptions_and_the_pushes_owed(
    pair: list[LiveServer], push_service: PushService, http: httpx.AsyncClient
) -> None:
    """A push service answering 503: the push stays owed (retried with backoff),
    and either process's ``notify_inspect`` shows it and the subscription."""
    a, b = pair
    bob = new_user("bob")
    sub = push_service.subscription()
    push_service.answer(sub, *[503] * 30)
    subscribed = await http.post(
        a.url + SUBSCRIPTIONS, json=sub.to_json(), headers=user_headers(bob)
    )
    assert subscribed.status_code == 201, subscribed.text
    await publish(http, a, [bob], title="for your browser", type="order.shipped")
    await push_service.until(lambda: len(push_service.messages(sub)) >= 1)

    async def report() -> dict[str, Any]:
        return await asyncio.to_thread(inspect_json, b, bob)

    found = await eventually(
        report, lambda r: r["push"]["owed"]["most_attempts"] >= 1, what="a retried push owed"
    )
    push = found["push"]
    assert push["owed"]["count"] == 1 and push["owed"]["next_attempt_at"]
    assert [s["endpoint"] for s in push["subscriptions"]] == [f"localhost …{sub.endpoint[-4:]}"]
    text = inspect(a, bob)
    assert "push subscriptions: 1\n" in text and f"localhost …{sub.endpoint[-4:]}" in text
    assert "owed pushes: 1, oldest committed" in text
    token = sub.endpoint.rsplit("/", 1)[1]
    for out in (text, json.dumps(found)):
        assert token[:-4] not in out
        assert sub.to_json()["keys"]["auth"] not in out
