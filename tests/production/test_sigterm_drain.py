"""SIGTERM: readiness first, then a spread-out 1012 drain, then exit.

Contract, Operations: "On SIGTERM a process turns /readyz to 503, stops taking new
sockets, closes open ones with 1012, and finishes requests in flight, all within
the grace period". docs/websocket.md: sockets are "closed in batches over
NOTIFY_DRAIN_SECONDS" so their reconnects do not stampede the other pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.production.conftest import (
    PUBLISH_PATH,
    LogGuard,
    ServerPool,
    Sockets,
    eventually,
    new_user,
    pg_connect,
    post_notification,
    prod_env,
    publish_body,
    publisher_headers,
    ws_connect,
)
from tests.support.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.live

SOCKETS = 50
DRAIN_SECONDS = 2.0
GRACE_PERIOD = 10.0  # the contract's default
# Generous slack on the contract's grace period, for a loaded machine.
MARGIN = 10.0
WITHIN = GRACE_PERIOD + MARGIN
BIG_BATCH = 4000  # recipients of the request in flight at SIGTERM


def drain_close_stamps(log: str) -> list[float]:
    """Server-side times (s) at which the drain closed its batches, from its log."""
    stamps = []
    for line in log.splitlines():
        if '"drain: closing ' not in line:
            continue
        entry = json.loads(line)
        stamps.append(dt.datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp())
    return stamps


@pytest.mark.timeout(120)
async def test_sigterm_turns_readyz_503_then_drains_sockets_with_1012_over_the_window(
    pool: ServerPool,
    module_redis: RedisServer,
    module_db: str,
    postgres_server: PostgresServer,
    sockets: Sockets,
    log_guard: LogGuard,
) -> None:
    log_guard.allow(r'"django.request", "message": "Service Unavailable: /readyz"')
    server = pool.start(
        prod_env(module_db, module_redis.url, NOTIFY_DRAIN_SECONDS=str(DRAIN_SECONDS))
    )
    users = [new_user(f"drain{i}") for i in range(SOCKETS)]
    gate = asyncio.Semaphore(25)

    async def open_one(user: str) -> Any:
        async with gate:
            return await sockets.open(server, user)

    socks = await asyncio.gather(*(open_one(u) for u in users))
    assert all(not s.closed for s in socks)

    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with (
        httpx.AsyncClient(timeout=30.0, trust_env=False, limits=limits) as probe,
        httpx.AsyncClient(timeout=60.0, trust_env=False) as publisher,
    ):
        # Warm the probe's keep-alive connection so that polling needs no new one.
        assert (await probe.get(server.url + "/readyz")).status_code == 200

        # A request in flight when the signal arrives, by construction: a POST to
        # thousands of users whose body is only half sent until after SIGTERM.
        batch = [new_user("big") for _ in range(BIG_BATCH)]
        body = json.dumps(publish_body(batch, title="in flight")).encode()
        rest_of_body = asyncio.Event()
        half_sent = asyncio.Event()

        async def half_then_rest() -> AsyncIterator[bytes]:
            yield body[: len(body) // 2]
            half_sent.set()  # httpx asks for more once the first half is written
            await rest_of_body.wait()
            yield body[len(body) // 2 :]

        in_flight = asyncio.create_task(
            publisher.post(
                server.url + PUBLISH_PATH, content=half_then_rest(), headers=publisher_headers()
            )
        )
        await asyncio.wait_for(half_sent.wait(), 30)
        assert not in_flight.done(), in_flight.result()

        server.terminate()
        signalled = time.monotonic()

        readiness: list[tuple[float, int, dict[str, Any]]] = []
        refused_handshakes: list[str] = []
        late_post: dict[str, Any] = {}

        async def finish_in_flight_once_draining() -> None:
            while not any(code == 503 for _t, code, _b in readiness):
                if time.monotonic() - signalled > GRACE_PERIOD / 2:
                    break  # never 503: the assertions below say so
                await asyncio.sleep(0.01)
            rest_of_body.set()

        async def poll_readyz() -> None:
            while time.monotonic() - signalled < WITHIN:
                try:
                    response = await probe.get(server.url + "/readyz")
                except httpx.HTTPError:
                    return  # the process stopped serving
                readiness.append((time.monotonic(), response.status_code, response.json()))
                if all(s.closed for s in socks):
                    return
                await asyncio.sleep(0.02)

        async def try_new_socket_during_drain() -> None:
            # Once /readyz says shutting down, a new handshake must be refused.
            while not any(code == 503 for _t, code, _b in readiness):
                if time.monotonic() - signalled > WITHIN:
                    return
                await asyncio.sleep(0.01)
            try:
                ws = await ws_connect(server, new_user("late"), open_timeout=5)
            except InvalidStatus as exc:
                refused_handshakes.append(f"HTTP {exc.response.status_code}")
                assert exc.response.status_code == 403
            except OSError as exc:  # listening socket already closed
                refused_handshakes.append(repr(exc))
            else:
                await ws.close()
                raise AssertionError("a new socket was accepted while the process drained")

        async def post_right_after_signal() -> None:
            async with httpx.AsyncClient(timeout=30.0, trust_env=False) as fresh:
                try:
                    response = await post_notification(
                        fresh, server, [new_user("after-signal")], title="after SIGTERM"
                    )
                except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                    late_post["refused"] = repr(exc)
                else:
                    late_post["status"] = response.status_code

        await asyncio.gather(
            poll_readyz(),
            finish_in_flight_once_draining(),
            try_new_socket_during_drain(),
            post_right_after_signal(),
            *(s.wait_closed(timeout=WITHIN) for s in socks),
        )

        # The request in flight at SIGTERM got its answer, and it is all stored.
        response = await asyncio.wait_for(in_flight, 60)
        assert response.status_code == 202, response.text
        assert response.json()["recipients"] == BIG_BATCH

    # uvicorn re-raises the signal it captured once it has shut down: -SIGTERM or 0;
    # and all of it within the grace period (default 10 s), with generous slack.
    exit_code = await asyncio.to_thread(server.wait, WITHIN + 20)
    exited_after = time.monotonic() - signalled
    assert exit_code in (0, -signal.SIGTERM), exit_code
    assert exited_after <= WITHIN, f"exited {exited_after:.1f}s after SIGTERM"

    # Readiness: 503 with shutting_down while sockets were still open.
    first_503 = [(t, body) for t, code, body in readiness if code == 503]
    assert first_503, f"/readyz never answered 503 after SIGTERM: {readiness[:5]}"
    t_503, body = first_503[0]
    assert body["shutting_down"] is True, body
    close_times = sorted(s.closed_at for s in socks if s.closed_at is not None)
    assert len(close_times) == SOCKETS
    assert t_503 < close_times[-1], "readiness turned 503 only after every socket was closed"
    assert all(code != 200 for t, code, _b in readiness if t >= t_503), "ready again?"

    # Every socket: 1012, within the grace period (generously). Spread over
    # the window by the server's own clock: its log stamps each close as it
    # happens, which a stalled client could not (it would read them at once).
    codes = [s.close_code for s in socks]
    assert codes == [1012] * SOCKETS, codes
    assert close_times[-1] - signalled <= WITHIN
    batches = drain_close_stamps(server.log_text())
    assert len(batches) >= 2, batches
    spread = max(batches) - min(batches)
    assert spread >= DRAIN_SECONDS / 2, f"the server closed all sockets within {spread:.2f}s"

    # No new socket during the drain; the POST right after the signal: 202 or refused.
    assert refused_handshakes, "no handshake was tried during the drain"
    assert late_post.get("status", 202) == 202, late_post
    print(
        f"late POST: {late_post}; refused handshake: {refused_handshakes}; "
        f"first 503 {t_503 - signalled:.2f}s, closes {close_times[0] - signalled:.2f}.."
        f"{close_times[-1] - signalled:.2f}s, exit {exited_after:.2f}s after SIGTERM"
    )

    with pg_connect(postgres_server, module_db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM notify_recipient JOIN notify_event e ON e.id = event_ref "
            "WHERE title = 'in flight'"
        ).fetchone()
    assert row is not None and row[0] == BIG_BATCH


async def test_second_process_keeps_serving_while_one_drains(
    pool: ServerPool, module_redis: RedisServer, module_db: str, log_guard: LogGuard
) -> None:
    """The drained process's clients have somewhere to go: the other one stays ready."""
    log_guard.allow(r'"django.request", "message": "Service Unavailable: /readyz"')
    env = prod_env(module_db, module_redis.url, NOTIFY_DRAIN_SECONDS="1")
    leaving, staying = pool.start_many(2, env)
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
        leaving.terminate()
        with contextlib.suppress(httpx.HTTPError):  # it may be gone already
            await eventually(
                lambda: http.get(leaving.url + "/readyz"),
                lambda response: response.status_code == 503,
                interval=0.05,
                what="/readyz of the terminated process to answer 503",
            )
        ready = await http.get(staying.url + "/readyz")
        assert ready.status_code == 200, ready.text
        user = new_user("stay")
        response = await post_notification(http, staying, [user], title="still here")
        assert response.status_code == 202
    assert await asyncio.to_thread(leaving.wait, 30) in (0, -signal.SIGTERM)
