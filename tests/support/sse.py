"""A Server-Sent Events client for the live suites, shaped like ``Socket``.

It speaks HTTP/1.1 with h11 over a plain asyncio connection (so a test can
also hand it a socket with a tiny receive buffer and stop reading), parses
the event stream itself, and turns each event back into the socket's frame:
``notification`` -> ``{"type": "notification", "notification": ...}``,
``read`` / ``ready`` / ``close`` -> ``{"type": ..., **data}``. The ``close``
event's code is ``close_code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import Any

import h11

from tests.support.live import Frame, Socket
from tests.support.servers import LiveServer

STREAM_PATH = "/api/v1/me/stream"


class Stream(Socket):
    """One ``GET /api/v1/me/stream`` whose events a background task collects."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: h11.Connection,
        label: str,
        *,
        paused: bool = False,
    ) -> None:
        self.stream_reader, self.writer, self.conn = reader, writer, conn
        self.label = label
        self.frames: list[Frame] = []
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""  # the answer's body when it is not a stream
        self.comments = 0
        self.retries: list[int] = []
        self.event_ids: list[str] = []
        self.closed_at: float | None = None
        self._close_code: int | None = None
        self._changed = asyncio.Event()
        self._go = asyncio.Event()
        if not paused:
            self._go.set()
        self._reader = asyncio.create_task(self._read())

    @property
    def close_code(self) -> int | None:
        return self._close_code

    def resume(self) -> None:
        """Start reading (a stream opened with ``paused=True`` reads nothing until then)."""
        self._go.set()

    async def _read(self) -> None:
        pending = b""
        try:
            await self._go.wait()
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self.stream_reader.read(65536))
                elif isinstance(event, h11.Response):
                    self.status = event.status_code
                    self.headers = {k.decode(): v.decode() for k, v in event.headers}
                    self._changed.set()
                elif isinstance(event, h11.Data):
                    if self.status != 200:
                        self.body += bytes(event.data)
                        continue
                    pending += bytes(event.data)
                    *blocks, pending = pending.split(b"\n\n")
                    for block in blocks:
                        self._event(block.decode())
                    self._changed.set()
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return
        except (h11.RemoteProtocolError, ConnectionError, OSError):
            pass
        finally:
            self.closed_at = time.monotonic()
            self._changed.set()

    def _event(self, block: str) -> None:
        kind, data, event_id = "message", "", None
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                self.comments += 1
            elif field == "retry":
                self.retries.append(int(value))
            elif field == "event":
                kind = value
            elif field == "data":
                data = value
            elif field == "id":
                event_id = value
        if not data:
            return
        payload: Any = json.loads(data)
        if kind == "notification":
            assert event_id == payload["id"], (event_id, payload)
            self.event_ids.append(event_id)
            self.frames.append({"type": "notification", "notification": payload})
            return
        self.frames.append({"type": kind, **payload})
        if kind == "close":
            self._close_code = payload["code"]

    async def ping(self, timeout: float = 0) -> None:
        raise NotImplementedError("SSE has no client frames")

    async def send_json(self, payload: Any) -> None:
        raise NotImplementedError("SSE has no client frames")

    async def answered(self, timeout: float = 30.0) -> int:
        await self.wait_for(lambda s: s.status is not None, timeout, "the response")  # type: ignore[attr-defined]
        assert self.status is not None
        return self.status

    async def close(self) -> None:
        self._go.set()
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._reader), 10)
        if not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader


async def open_stream(
    server: LiveServer,
    *,
    token: str | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    sock: socket.socket | None = None,
    paused: bool = False,
    label: str = "stream",
) -> Stream:
    """Send the request; the answer arrives in the background (``answered``)."""
    if sock is None:
        reader, writer = await asyncio.open_connection(server.host, server.port)
    else:
        reader, writer = await asyncio.open_connection(sock=sock)
    all_headers = {"Host": f"{server.host}:{server.port}", "Accept": "text/event-stream"}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    conn = h11.Connection(h11.CLIENT)
    target = STREAM_PATH + ("?" + query if query else "")
    request = h11.Request(method="GET", target=target, headers=list(all_headers.items()))
    writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
    await writer.drain()
    return Stream(reader, writer, conn, label, paused=paused)
