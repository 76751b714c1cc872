"""Protocol-level abuse of the WebSocket endpoint (service/ws_guards.py), on a
real uvicorn process over raw sockets: PING floods from a client that never
reads, and handshakes whose header lines are too long for the parser.

Each of these failed before the fix (docs/security.md, findings 9 and 11): the
PING flood was answered without bound (RSS grew, the socket stayed open), and
an oversized header line was never answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live.conftest import Sockets, make_token, new_user, presence, publish, server_env
from tests.security.test_ws_abuse import ERROR_MARKERS, upgrade_request
from tests.support.net import tiny_buffer_socket
from tests.support.servers import LiveServer

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

MIB = 1024 * 1024
PING = 0x9
PONG = 0xA
CLOSE = 0x8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One process, SQLite, in-memory layer, default frame budget (20/s, burst 40).

    uvicorn's own keepalive is pushed out of the way (600 s), so that only the
    frame budget (or the send queue, 50 frames here) can end a socket within
    the test.
    """
    db: Path = tmp_path_factory.mktemp("control") / "db.sqlite3"
    live = LiveServer(
        server_env(f"sqlite:///{db.resolve()}", NOTIFY_WS_SEND_QUEUE="50"),
        startup_timeout=30.0,
        extra_args=("--ws-ping-interval", "600"),
    )
    offset = len(live.log_text())
    try:
        yield live
        problems = [
            line
            for line in live.log_text()[offset:].splitlines()
            if any(marker in line for marker in ERROR_MARKERS)
        ]
        assert not problems, "server logged errors:\n" + "\n".join(problems[:30])
    finally:
        print("\n".join(live.log_text().splitlines()[-40:]))
        live.close()


@pytest.fixture(scope="module")
def keepalive_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """uvicorn's keepalive at 5 s + 5 s, the default send queue (1000 frames)."""
    db: Path = tmp_path_factory.mktemp("keepalive") / "db.sqlite3"
    live = LiveServer(
        server_env(f"sqlite:///{db.resolve()}"),
        startup_timeout=30.0,
        extra_args=("--ws-ping-interval", "5", "--ws-ping-timeout", "5"),
    )
    try:
        yield live
    finally:
        live.close()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask), payload up to 125 bytes."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


async def raw_upgrade(server: LiveServer, user: str) -> socket.socket:
    """A tiny-receive-buffer socket, upgraded with ``user``'s token; 101 read."""
    loop = asyncio.get_running_loop()
    sock = tiny_buffer_socket(server)
    await loop.sock_sendall(sock, upgrade_request(make_token(user)))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the unmasked server frames in ``data`` (the last may be cut)."""
    found: list[tuple[int, bytes]] = []
    at = 0
    while at + 2 <= len(data):
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if length == 126:
            (length,) = struct.unpack("!H", data[at : at + 2])
            at += 2
        found.append((opcode, data[at : at + length]))
        at += length
    return found


async def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (EOF or reset); fails on timeout."""
    loop = asyncio.get_running_loop()
    received = b""
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionError:
                return received
            if not chunk:
                return received
            received += chunk


async def test_a_ping_flood_without_reading_is_cut_and_hurts_no_one(
    server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    user = new_user("pinger")
    sibling = await sockets.open(server, user)
    other_user = new_user("other")
    other = await sockets.open(server, other_user)
    before = rss(server.pid)
    sock = await raw_upgrade(server, user)
    loop = asyncio.get_running_loop()
    ping = masked_frame(PING, b"p" * 125)
    peak = before
    sent = 0
    started = time.monotonic()
    try:
        # 40,000 PINGs (5 MiB) in batches, never reading: before the fix every
        # one was answered, into a buffer that only grew.
        for _ in range(400):
            await asyncio.wait_for(loop.sock_sendall(sock, ping * 100), 30)
            sent += 100
            peak = max(peak, rss(server.pid))
    except (ConnectionError, TimeoutError):
        pass  # cut by the server (a reset), or it stopped reading: both are the point
    try:
        received = await read_until_closed(sock, timeout=30)
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    kinds = [opcode for opcode, _payload in frames(received)]
    print(f"sent {sent} pings; got {kinds.count(PONG)} pongs; rss {before} -> peak {peak}")
    # The frame budget: a burst of 40, then 20/s while the flood lasted.
    assert kinds.count(PONG) <= 40 + 20 * elapsed, (kinds.count(PONG), elapsed)
    assert kinds.count(CLOSE) <= 1
    assert peak - before < 64 * MIB, (before, peak)

    # The server forgot the socket: presence counts only the sibling.
    async with asyncio.timeout(30):
        while (await presence(http, server, user))["connections"] != 1:
            await asyncio.sleep(0.1)
    # The same user's other socket and another user still get notifications.
    await publish(http, server, [user, other_user], title="after the flood")
    await sibling.wait_count(1)
    await other.wait_count(1)
    await sibling.ping()
    log = server.log_text()
    assert "control frames over NOTIFY_WS_FRAME_RATE" in log


async def test_pongs_count_against_the_frame_budget(server: LiveServer) -> None:
    """Unsolicited PONGs are frames too: a flood of them is closed 1008."""
    sock = await raw_upgrade(server, new_user("ponger"))
    loop = asyncio.get_running_loop()
    try:
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(loop.sock_sendall(sock, masked_frame(PONG, b"x") * 200), 30)
        received = await read_until_closed(sock, timeout=30)
    finally:
        sock.close()
    closes = [payload for opcode, payload in frames(received) if opcode == CLOSE]
    assert closes and struct.unpack("!H", closes[0][:2])[0] == 1008, received[-40:]


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ("path", b"414"),
        ("header", b"431"),
    ],
)
async def test_an_oversized_handshake_line_is_answered_and_closed(
    server: LiveServer, line: str, status: bytes
) -> None:
    """A request or header line over the parser's 8 KiB is answered 414/431 and closed."""
    request = upgrade_request(make_token(new_user("long")))
    if line == "path":
        request = request.replace(b"/ws/notifications", b"/ws/notifications?pad=" + b"a" * 9000)
    else:
        request = request.replace(b"\r\n\r\n", b"\r\nCookie: c=" + b"a" * 9000 + b"\r\n\r\n")
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)  # until the server closes
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    assert answer.split(b" ", 2)[1] == status, answer[:200]


async def wait_presence(http: httpx.AsyncClient, server: LiveServer, user: str, n: int) -> None:
    async with asyncio.timeout(30):
        while (await presence(http, server, user))["connections"] != n:
            await asyncio.sleep(0.1)


async def test_a_4008_to_a_client_that_never_reads_ends_the_connection(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    """The send queue overflows (4008) while writing is paused: before, the close
    waited for the buffer to drain (forever) and presence kept counting the socket."""
    user = new_user("deaf")
    sock = await raw_upgrade(server, user)
    try:
        await wait_presence(http, server, user, 1)
        pad = {"pad": "x" * 8000}
        for _ in range(1000):
            await publish(http, server, [user], data=pad)
            if (await presence(http, server, user))["connections"] == 0:
                break
        await wait_presence(http, server, user, 0)
        await read_until_closed(sock, timeout=30)
    finally:
        sock.close()


async def test_a_keepalive_timeout_with_unsent_data_ends_the_connection(
    keepalive_server: LiveServer, http: httpx.AsyncClient
) -> None:
    """No pong and megabytes unsent: uvicorn's keepalive close used to wait for
    the buffer forever (the socket stayed open and counted in presence)."""
    server = keepalive_server
    user = new_user("mute")
    sock = await raw_upgrade(server, user)
    try:
        await wait_presence(http, server, user, 1)
        pad = {"pad": "x" * 60_000}
        for _ in range(100):  # about 6 MB, more than the kernel buffers hold
            await publish(http, server, [user], data=pad)
        await wait_presence(http, server, user, 0)
        await read_until_closed(sock, timeout=30)
    finally:
        sock.close()
