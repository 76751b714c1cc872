"""``--transport sse``: the user side over ``GET /api/v1/me/stream`` (aiohttp).

``SseConnection`` stands in for a websockets connection where the loader
uses one: iterating yields each event as the socket's JSON frame would be
(``{"type": "notification", "notification": ...}``), ``recv`` returns the
next, and the end of the stream raises ``ConnectionClosed`` with the code of
the server's ``close`` event (1006 when there was none).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import orjson
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.protocol import State

STREAM_PATH = "/api/v1/me/stream"


def stream_url(http_url: str) -> str:
    return http_url.rstrip("/") + STREAM_PATH


class SseConnection:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.close_code: int | None = None
        self.state = State.OPEN

    @classmethod
    async def open(
        cls, session: aiohttp.ClientSession, url: str, token: str, connect_timeout: float
    ) -> SseConnection:
        response = await session.get(
            stream_url(url),
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
        )
        if response.status != 200:
            body = await response.read()
            response.release()
            raise RuntimeError(f"stream answered {response.status}: {body[:200]!r}")
        return cls(response)

    def __aiter__(self) -> SseConnection:
        return self

    async def __anext__(self) -> bytes:
        return await self.recv()

    async def recv(self) -> bytes:
        kind, data = b"message", b""
        content = self.response.content
        while True:
            try:
                line = await content.readline()
            except (aiohttp.ClientError, asyncio.IncompleteReadError):
                line = b""
            if not line:
                self.state = State.CLOSED
                raise ConnectionClosed(Close(self.close_code or 1006, ""), None)
            line = line.rstrip(b"\r\n")
            if line:
                if line.startswith(b"event:"):
                    kind = line[6:].strip()
                elif line.startswith(b"data:"):
                    data = line[5:].strip()
                continue
            if not data:  # a comment (": ping") or retry: nothing to hand out
                kind = b"message"
                continue
            if kind == b"notification":
                return b'{"type":"notification","notification":' + data + b"}"
            if kind == b"close":
                self.close_code = int(orjson.loads(data)["code"])
            return b'{"type":"' + kind + b'",' + data[1:]

    async def close(self) -> None:
        self.state = State.CLOSED
        with contextlib.suppress(Exception):
            self.response.close()


def session(pool_timeout: float) -> Any:
    """One aiohttp session for every stream of a worker (no connection limit)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=3600, force_close=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=pool_timeout),
        auto_decompress=False,
    )
