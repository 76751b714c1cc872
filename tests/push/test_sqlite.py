"""Web Push on the embedded default: one process, SQLite, no Redis."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.push.conftest import (
    Vapid,
    new_user,
    publish,
    push_env,
    server_env,
    start_server,
    stop_server,
    subscribe,
)
from tests.support.push_service import PushService

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]


async def test_one_sqlite_process_sends_to_offline_users_only(
    http: httpx.AsyncClient, push_service: PushService, vapid: Vapid, tmp_path: Path
) -> None:
    db = tmp_path / "db.sqlite3"
    server = start_server(server_env(f"sqlite:///{db.resolve()}", **push_env(vapid, push_service)))
    try:
        user = new_user()
        sub = push_service.subscription()
        await subscribe(http, server, user, sub)
        await publish(http, server, [user], title="one")
        await publish(http, server, [user], title="two", push="never")
        await publish(http, server, [user], title="three")
        await push_service.until(lambda: len(push_service.delivered(sub)) == 2)
        assert sorted(p["title"] for p in push_service.delivered(sub)) == ["one", "three"]
    finally:
        stop_server(server)
