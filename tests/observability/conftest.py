"""One live server, exercised a little, and the metric names its /metrics exports.

The server has Web Push on (a VAPID key and the local push service of
tests/support/push_service.py), so its in-process push worker runs and the
push series are real samples, not only declared names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.observability.promql import exported_names
from tests.push.conftest import SUBJECT, Vapid
from tests.support.live import PUBLISH_PATH, WS_PATH, new_user
from tests.support.push_service import PushService
from tests.support.servers import LiveServer, RedisServer
from tests.support.tokens import user_token

SUBSCRIPTIONS = "/api/v1/me/push-subscriptions"
SHOP_SECRET = "observability-shop-secret-4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c"
JWT_SECRET = "observability-jwt-secret-0123456789abcdef-0123456789abcdef-0123"


def _token(user: str) -> str:
    return user_token(JWT_SECRET, user, exp_in=600)


@pytest.fixture(scope="package")
def vapid() -> Vapid:
    return Vapid()


@pytest.fixture(scope="package")
def push_service(vapid: Vapid) -> Iterator[PushService]:
    service = PushService(vapid.public, subject=SUBJECT)
    yield service
    service.close()


@pytest.fixture(scope="package")
def metrics_server(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    vapid: Vapid,
    push_service: PushService,
) -> Iterator[LiveServer]:
    db: Path = tmp_path_factory.mktemp("observability") / "db.sqlite3"
    env = {
        "NOTIFY_API_KEYS": f"shop:{SHOP_SECRET}",
        "JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": f"sqlite:///{db.resolve()}",
        "REDIS_URL": redis_server.url_for(7),
        "VAPID_PRIVATE_KEY": vapid.private,
        "VAPID_SUBJECT": SUBJECT,
        "NOTIFY_PUSH_ALLOWED_HOSTS": push_service.host,
        "NOTIFY_PUSH_CA_BUNDLE": str(push_service.ca.ca_path),
    }
    server = LiveServer(env, startup_timeout=60.0)
    try:
        yield server
    finally:
        server.close()


def exercise(server: LiveServer, push_service: PushService) -> None:
    """A socket that receives a live notification and a replay, one publish
    refused, one handshake refused, one Web Push delivered to a user who is
    never connected: most series get samples."""
    user, pushed = new_user("obs"), new_user("obs-push")
    headers = {"Authorization": f"Bearer {SHOP_SECRET}", "Content-Type": "application/json"}
    body = {"recipients": [user], "type": "t", "title": "hello", "body": "", "data": {}}
    sub = push_service.subscription()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        subscribed = http.post(
            SUBSCRIPTIONS, json=sub.to_json(), headers={"Authorization": f"Bearer {_token(pushed)}"}
        )
        assert subscribed.status_code in (200, 201), subscribed.text
        both = {**body, "recipients": [user, pushed]}
        first = http.post(PUBLISH_PATH, headers=headers, json=both)
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
    push_service.wait_for(lambda: len(push_service.delivered(sub)) == 1)


def _push_counted(server: LiveServer) -> str:
    """/metrics once the worker has counted the delivered push (it counts
    after the push service's answer, which ``exercise`` waited for)."""
    deadline = time.monotonic() + 30
    while True:
        text = httpx.get(server.url + "/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for item in family.samples:
                if item.name == "notify_push_sent_total" and item.labels == {"result": "delivered"}:
                    return text
        assert time.monotonic() < deadline, "the delivered push was never counted"
        time.sleep(0.1)


@pytest.fixture(scope="package")
def scrape(metrics_server: LiveServer, push_service: PushService) -> str:
    """/metrics of the server after ``exercise`` and one readiness probe."""
    exercise(metrics_server, push_service)
    _push_counted(metrics_server)
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
