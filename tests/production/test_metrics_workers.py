"""uvicorn --workers N: /metrics adds up every worker (PROMETHEUS_MULTIPROC_DIR),
and the in-process channel layer is refused with several workers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.production.conftest import PUBLISH_PATH, SHOP_SECRET, prod_env
from tests.support.servers import LiveServer, PostgresServer, RedisServer

pytestmark = pytest.mark.live


def _counter(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.timeout(120)
def test_metrics_add_up_over_workers(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = prod_env(
        postgres_server.create_database(),
        redis_server.url,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        NOTIFY_REDIS_PREFIX="workers",
    )
    with LiveServer(env, extra_args=["--workers", "2"], startup_timeout=40) as server:
        posts = 40
        with httpx.Client(timeout=30, trust_env=False) as http:
            for i in range(posts):
                # A new connection per request, so both workers answer some.
                response = http.post(
                    server.url + PUBLISH_PATH,
                    content=json.dumps({"recipients": [f"w{i}", f"v{i}"], "type": "t"}),
                    headers={
                        "Authorization": f"Bearer {SHOP_SECRET}",
                        "Content-Type": "application/json",
                        "Connection": "close",
                    },
                )
                assert response.status_code == 202, response.text
            for _ in range(6):
                text = httpx.get(server.url + "/metrics", trust_env=False).text
                # Whichever worker answers, the sum over both is reported.
                assert _counter(text, "notify_notifications_accepted_total") == 2 * posts
        assert len(list(metrics_dir.glob("*.db"))) >= 2, "each worker writes its own file"


@pytest.mark.timeout(60)
def test_in_process_layer_refused_with_several_workers(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "NOTIFY_API_KEYS": f"shop:{SHOP_SECRET}",
        "JWT_SECRET": "j" * 48,
    }
    server = LiveServer(env, extra_args=["--workers", "2"], autostart=False, startup_timeout=15)
    try:
        with pytest.raises(Exception):  # noqa: B017 - start-up must fail
            server.start()
        assert "in-memory channel layer works in one process only" in server.log_text()
    finally:
        server.close()
