"""One live server, exercised a little, and the metric names its /metrics exports."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.observability.promql import exported_names
from tests.support.live import PUBLISH_PATH, WS_PATH, new_user
from tests.support.servers import LiveServer, RedisServer

SHOP_SECRET = "observability-shop-secret-4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c"
JWT_SECRET = "observability-jwt-secret-0123456789abcdef-0123456789abcdef-0123"


def _token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 600}, JWT_SECRET, "HS256")


@pytest.fixture(scope="package")
def metrics_server(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[LiveServer]:
    db: Path = tmp_path_factory.mktemp("observability") / "db.sqlite3"
    env = {
        "NOTIFY_API_KEYS": f"shop:{SHOP_SECRET}",
        "JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": f"sqlite:///{db.resolve()}",
        "REDIS_URL": redis_server.url_for(7),
    }
    server = LiveServer(env, startup_timeout=60.0)
    try:
        yield server
    finally:
        server.close()


def exercise(server: LiveServer) -> None:
    """A socket that receives a live notification and a replay, one publish
    refused, one handshake refused: most series get samples."""
    user = new_user("obs")
    headers = {"Authorization": f"Bearer {SHOP_SECRET}", "Content-Type": "application/json"}
    body = {"recipients": [user], "type": "t", "title": "hello", "body": "", "data": {}}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        first = http.post(PUBLISH_PATH, headers=headers, json=body)
        assert first.status_code == 202, first.text
        with connect(f"{server.ws_url}{WS_PATH}?token={_token(user)}&since=0") as ws:
            frames = [json.loads(ws.recv(timeout=30)) for _ in range(2)]  # replayed, ready
            assert {f["type"] for f in frames} == {"notification", "ready"}, frames
            assert http.post(PUBLISH_PATH, headers=headers, json=body).status_code == 202
            assert json.loads(ws.recv(timeout=30))["type"] == "notification"
        refused = http.post(PUBLISH_PATH, headers={**headers, "Authorization": "Bearer x"})
        assert refused.status_code == 401
    with pytest.raises(InvalidStatus):
        connect(f"{server.ws_url}{WS_PATH}?token=not-a-token", open_timeout=30)


@pytest.fixture(scope="package")
def scrape(metrics_server: LiveServer) -> str:
    """/metrics of the server after ``exercise`` and one readiness probe."""
    exercise(metrics_server)
    assert httpx.get(metrics_server.url + "/readyz", timeout=30).status_code == 200
    response = httpx.get(metrics_server.url + "/metrics", timeout=30)
    assert response.status_code == 200
    return response.text


@pytest.fixture(scope="package")
def exported(scrape: str) -> set[str]:
    """Every metric name (with its suffixed forms) the exercised server exports."""
    names = exported_names(scrape)
    # The scrape and the parser work: the contract's names are there.
    assert {"notify_sockets_open", "notify_delivery_seconds_bucket"} <= names, sorted(names)
    return names
