"""Client-side helpers shared by the live and production suites: a collecting
WebSocket client, polling, and the user API's stored notifications."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.servers import LiveServer

PUBLISH_PATH = "/api/v1/notifications"
ME_PATH = "/api/v1/me/notifications"
WS_PATH = "/ws/notifications"
WAIT = 30.0

Frame = dict[str, Any]


def new_user(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Socket:
    """A websockets client connection whose frames a background task collects."""

    def __init__(self, ws: ClientConnection, label: str) -> None:
        self.ws = ws
        self.label = label
        self.frames: list[Frame] = []
        self.closed_at: float | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                assert isinstance(message, str), f"{self.label}: binary frame"
                self.frames.append(json.loads(message))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed_at = time.monotonic()
            self._changed.set()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    def of_type(self, frame_type: str) -> list[Frame]:
        return [f for f in self.frames if f.get("type") == frame_type]

    def notifications(self) -> list[Frame]:
        return [f["notification"] for f in self.of_type("notification")]

    def ids(self) -> list[int]:
        return [int(n["id"]) for n in self.notifications()]

    async def wait_for(
        self, predicate: Callable[[Socket], bool], timeout: float = WAIT, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if self.closed:
                raise AssertionError(
                    f"{self.label} closed (code {self.close_code}) while waiting for "
                    f"{what or predicate}; last frames: {self.frames[-5:]}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.label}: gave up after {timeout}s waiting for {what or predicate}; "
                    f"{len(self.frames)} frames, last: {self.frames[-3:]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def ready(self, timeout: float = WAIT) -> Frame:
        await self.wait_for(lambda s: bool(s.of_type("ready")), timeout, "the ready frame")
        return self.of_type("ready")[0]

    async def wait_count(self, count: int, timeout: float = WAIT) -> list[Frame]:
        await self.wait_for(
            lambda s: len(s.of_type("notification")) >= count, timeout, f"{count} notifications"
        )
        return self.notifications()

    async def ping(self, timeout: float = WAIT) -> None:
        """Round trip: everything queued before the pong has arrived after this."""
        pongs = len(self.of_type("pong"))
        await self.ws.send('{"type": "ping"}')
        await self.wait_for(lambda s: len(s.of_type("pong")) > pongs, timeout, "a pong")

    async def wait_closed(self, timeout: float = WAIT) -> int | None:
        """Wait until the server closes the socket; returns the close code it sent."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def send_json(self, payload: Any) -> None:
        await self.ws.send(json.dumps(payload))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._reader), 10)
        if not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader


async def eventually(
    fetch: Callable[[], Awaitable[Any]],
    until: Callable[[Any], bool],
    *,
    timeout: float = WAIT,
    interval: float = 0.1,
    what: str = "",
) -> Any:
    """Poll ``await fetch()`` until ``until(value)``; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval)


async def log_flushed(http: httpx.AsyncClient, server: LiveServer) -> None:
    """Wait until every line ``server`` logged for the requests answered so far
    is in its log file.

    A marker request goes last; the process writes its lines in order, so once
    the marker's access line is there, every earlier line is too. A pause in
    its place lets "nothing bad was logged" pass on lines not written yet.
    """
    marker = f"flush-{uuid.uuid4().hex}"
    response = await http.get(f"{server.url}/healthz?marker={marker}")
    assert response.status_code == 200, response.text
    await eventually(
        lambda: asyncio.sleep(0, marker in server.log_text()),
        bool,
        what=f"{server!r} to log the marker request",
    )


async def stored_notifications_as(
    http: httpx.AsyncClient, server: LiveServer, headers: dict[str, str]
) -> list[Frame]:
    """Every stored notification of the user ``headers`` authenticate, oldest first."""
    results: list[Frame] = []
    url: str | None = f"{server.url}{ME_PATH}?limit=200"
    while url is not None:
        response = await http.get(url, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        results += page["results"]
        url = page["next"]
    return list(reversed(results))
