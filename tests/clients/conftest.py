"""Fixtures for the client tests: a live server (file SQLite, production mode with the
demo switched on), a log check, a fault-injecting proxy, and user-API helpers.

Servers are real uvicorn processes (tests.support.servers); nothing is mocked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.proxy import Fault, FaultyProxy
from tests.live.conftest import ME_PATH, SHOP_SECRET, make_token, server_env
from tests.support.servers import LOG_ERROR_MARKERS, LiveServer

__all__ = ["SHOP_SECRET", "Fault", "FaultyProxy", "make_token"]

SECRET_KEY = "client-tests-django-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"

_SERVERS: list[LiveServer] = []
_ERROR_MARKERS = LOG_ERROR_MARKERS


def client_server_env(database_url: str, **extra: str) -> dict[str, str]:
    """Production-like settings (DEBUG off, real secrets); ``extra`` overrides."""
    return server_env(
        database_url,
        DEBUG="false",
        DJANGO_SECRET_KEY=SECRET_KEY,
        NOTIFY_DRAIN_SECONDS="0.5",
        **extra,
    )


def start(env: dict[str, str], *, migrate: bool = True, port: int | None = None) -> LiveServer:
    server = LiveServer(env, migrate=migrate, port=port, startup_timeout=30.0)
    _SERVERS.append(server)
    return server


def discard(server: LiveServer) -> None:
    with contextlib.suppress(ValueError):
        _SERVERS.remove(server)
    server.close()


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One process for the package: DEBUG off, DEMO_ENABLED on, a SQLite file."""
    db: Path = tmp_path_factory.mktemp("clients") / "db.sqlite3"
    live = start(client_server_env(f"sqlite:///{db.resolve()}", DEMO_ENABLED="true"))
    yield live
    discard(live)


@pytest.fixture(autouse=True)
def server_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """No server logs an error (traceback, ERROR, HTTP 500) during a test."""
    offsets = {id(s): len(s.log_text()) for s in _SERVERS}
    yield
    problems = []
    for live in list(_SERVERS):
        new = live.log_text()[offsets.get(id(live), 0) :]
        problems += [
            f"{live!r}: {line}"
            for line in new.splitlines()
            if any(marker in line for marker in _ERROR_MARKERS)
        ]
    if problems:
        pytest.fail("server logged errors during the test:\n" + "\n".join(problems[:40]))


@pytest.fixture
def proxy_factory(server: LiveServer) -> Iterator[Callable[..., FaultyProxy]]:
    """``proxy_factory(Fault.drop_response(), ...)``: a proxy to ``server`` with those faults."""
    proxies: list[FaultyProxy] = []

    def make(*faults: Fault, upstream: LiveServer | None = None) -> FaultyProxy:
        proxy = FaultyProxy((upstream or server).port, list(faults))
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


def stored(server: LiveServer, user: str) -> list[dict[str, Any]]:
    """Every stored notification of ``user`` (user API), oldest first."""
    results: list[dict[str, Any]] = []
    url: str | None = f"{server.url}{ME_PATH}?limit=200"
    headers = {"Authorization": f"Bearer {make_token(user)}"}
    with httpx.Client(timeout=30.0, trust_env=False) as http:
        while url is not None:
            response = http.get(url, headers=headers)
            assert response.status_code == 200, response.text
            page = response.json()
            results += page["results"]
            url = page["next"]
    return list(reversed(results))


def wait_until(
    check: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what or check}")
        time.sleep(interval)
