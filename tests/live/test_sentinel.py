"""Redis behind Sentinel: the service finds the master through the sentinels,
for the channel layer, presence and the publisher rate limit alike."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from notifications.delivery import group_name
from tests.live.conftest import (
    Sockets,
    new_user,
    presence,
    publish,
    server_env,
    start_server,
    stop_server,
)
from tests.support.servers import LiveServer, PostgresServer, RedisServer, free_port

pytestmark = pytest.mark.live

MASTER = "notifymaster"


@pytest.fixture(scope="module")
def sentinel(redis_server: RedisServer) -> Iterator[int]:
    """A real redis-sentinel monitoring the session's redis-server."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {redis_server.port} 1\n"
        )
        log = (Path(tmp) / "sentinel.log").open("wb")
        proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
            deadline = time.monotonic() + 15
            while True:
                try:
                    if client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER):
                        break
                except redis.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "sentinel did not come up"
                time.sleep(0.1)
            client.close()
            yield port
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()


@pytest.fixture(scope="module")
def sentinel_server(sentinel: int, postgres_server: PostgresServer) -> Iterator[LiveServer]:
    env = server_env(
        postgres_server.create_database(),
        REDIS_SENTINELS=f"127.0.0.1:{sentinel}",
        REDIS_SENTINEL_MASTER=MASTER,
        NOTIFY_REDIS_PREFIX="sentineltest",
    )
    server = start_server(env)
    yield server
    stop_server(server)


async def test_delivery_and_presence_through_sentinel(
    sentinel_server: LiveServer,
    redis_server: RedisServer,
    sockets: Sockets,
    http: httpx.AsyncClient,
) -> None:
    user = new_user("sentinel")
    sock = await sockets.open(sentinel_server, user)
    assert (await presence(http, sentinel_server, user))["connections"] == 1
    # The state really lives in the master the sentinel named: the socket's
    # subscriptions and its presence entry are there.
    direct = redis_server.client()
    assert direct.pubsub_channels("sentineltest*"), "no layer subscription in the master"
    # Hash-tagged by the user's group (one slot per user on a Redis Cluster).
    assert direct.zcard(f"notify:presence:{{{group_name(user)}}}") == 1
    direct.close()

    answer = await publish(http, sentinel_server, [user], title="via sentinel")

    notifications = await sock.wait_count(1)
    assert notifications[0]["title"] == "via sentinel"
    assert answer["recipients"] == 1
    ready = await http.get(sentinel_server.url + "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["channel_layer"] == "ok"
