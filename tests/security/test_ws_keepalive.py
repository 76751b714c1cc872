"""The keepalive ping (service/ws_keepalive.py) on a real uvicorn process, with
uvicorn's own flags at short values: peers that answer stay open across many
intervals, a peer that stops answering is closed 1011 at its first missed
PONG (before a second PING could be due: within interval + timeout), and
presence stops counting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live.conftest import new_user, presence, server_env
from tests.security.test_ws_control_frames import (
    CLOSE,
    PING,
    PONG,
    masked_frame,
    raw_upgrade,
    wait_presence,
)
from tests.support.servers import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

INTERVAL = "1"
TIMEOUT = "1"
LIVE_ROUNDS = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db: Path = tmp_path_factory.mktemp("keepalive") / "db.sqlite3"
    live = LiveServer(
        server_env(f"sqlite:///{db.resolve()}"),
        startup_timeout=30.0,
        extra_args=("--ws-ping-interval", INTERVAL, "--ws-ping-timeout", TIMEOUT),
    )
    try:
        yield live
    finally:
        live.close()


class RawPeer:
    """A real client socket that reads the server's frames one by one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    async def frame(self) -> tuple[int, bytes] | None:
        """The next (opcode, payload), or None once the server has closed."""
        loop = asyncio.get_running_loop()
        while True:
            parsed = self.parse()
            if parsed is not None:
                return parsed
            try:
                chunk = await loop.sock_recv(self.sock, 65536)
            except ConnectionError:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def parse(self) -> tuple[int, bytes] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        opcode, length, at = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return None
            (length,) = struct.unpack("!H", data[2:4])
            at = 4
        if len(data) < at + length:
            return None
        self.buffer = data[at + length :]
        return opcode, data[at : at + length]

    async def next_ping(self) -> bytes:
        while True:
            frame = await self.frame()
            assert frame is not None, "closed while answering every PING"
            if frame[0] == PING:
                return frame[1]

    async def answer(self, payload: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, masked_frame(PONG, payload))


async def keep_answering(peer: RawPeer, rounds: int) -> None:
    for _ in range(rounds):
        await peer.answer(await peer.next_ping())


async def test_a_peer_that_stops_answering_is_closed_and_live_ones_stay(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    live_user, dead_user = new_user("alive"), new_user("gone")
    live = RawPeer(await raw_upgrade(server, live_user))
    dead = RawPeer(await raw_upgrade(server, dead_user))
    try:
        await wait_presence(http, server, live_user, 1)
        await wait_presence(http, server, dead_user, 1)
        answering = asyncio.create_task(keep_answering(live, LIVE_ROUNDS))
        # The dead peer answers two PINGs, then goes silent but keeps reading.
        async with asyncio.timeout(60):
            await keep_answering(dead, 2)
            await dead.next_ping()
            after: list[tuple[int, bytes]] = []
            while (frame := await dead.frame()) is not None:
                after.append(frame)
        # Closed at its first missed PONG: no second PING before the close.
        assert [opcode for opcode, _ in after] == [CLOSE], after
        code = struct.unpack("!H", after[0][1][:2])[0]
        assert (code, after[0][1][2:]) == (1011, b"keepalive ping timeout")
        await wait_presence(http, server, dead_user, 0)
        # The other peer answered every PING all along and is still open.
        async with asyncio.timeout(60):
            await answering
        assert (await presence_count(http, server, live_user)) == 1
    finally:
        for peer in (live, dead):
            with contextlib.suppress(OSError):
                peer.sock.close()


async def test_pongs_that_share_a_read_with_other_frames_count_too(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    """A PONG coalesced with another frame goes through websockets' parser, and
    still answers the PING."""
    user = new_user("coalesced")
    peer = RawPeer(await raw_upgrade(server, user))
    loop = asyncio.get_running_loop()
    try:
        await wait_presence(http, server, user, 1)
        async with asyncio.timeout(60):
            for _ in range(LIVE_ROUNDS):
                payload = await peer.next_ping()
                app_ping = masked_frame(0x1, b'{"type":"ping"}')
                await loop.sock_sendall(peer.sock, masked_frame(PONG, payload) + app_ping)
        assert (await presence_count(http, server, user)) == 1
    finally:
        peer.sock.close()


async def presence_count(http: httpx.AsyncClient, server: LiveServer, user: str) -> int:
    count: int = (await presence(http, server, user))["connections"]
    return count
