"""Abusive WebSocket clients against a real uvicorn process, over real sockets.

Oversized, binary, empty and flooding frames hurt only their sender; half-open TCP
connections, stalled and trickled upgrade requests and a client that never speaks
after its handshake do not stop a normal client (publish -> delivered) nor
``/healthz``; afterwards the process is ready and its open file descriptors come
back to where they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.live.conftest import (
    SHOP_SECRET,
    WAIT,
    WS_PATH,
    Socket,
    Sockets,
    make_token,
    new_user,
    publish,
    server_env,
)
from tests.support.live import eventually
from tests.support.servers import LOG_ERROR_MARKERS, LiveServer

pytestmark = pytest.mark.live

ERROR_MARKERS = LOG_ERROR_MARKERS
MAX_FRAME = 64 * 1024
FRAME_RATE = 20.0  # NOTIFY_WS_FRAME_RATE's default: 20/s, burst 40
FRAME_BURST = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One process, SQLite, in-memory layer; the default frame limits (64 KiB, 20/s burst 40).

    No ``--ws-max-size``: the application's own limit is what is tested (uvicorn's
    default allows 16 MiB frames).
    """
    db: Path = tmp_path_factory.mktemp("abuse") / "db.sqlite3"
    live = LiveServer(server_env(f"sqlite:///{db.resolve()}"), startup_timeout=30.0)
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
        print("----- server log (tail) -----")
        print("\n".join(live.log_text().splitlines()[-80:]))
        live.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> Counter[str]:
    """Open fds by target: 'socket', 'anon_inode:[eventpoll]', or a file path."""
    kinds: Counter[str] = Counter()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            kinds["socket" if target.startswith("socket:") else target] += 1
    return kinds


async def fds_settle(pid: int, baseline: Counter[str], timeout: float = 30.0) -> Counter[str]:
    """Wait until the process holds no more sockets than ``baseline`` (+2) and at most
    10 more fds in all (worker threads of the pool each keep a SQLite handle)."""
    now = fd_kinds(pid)
    for _ in range(int(timeout * 10)):
        now = fd_kinds(pid)
        if now["socket"] <= baseline["socket"] + 2 and now.total() <= baseline.total() + 10:
            break
        await asyncio.sleep(0.1)
    return now


async def bystanders(server: LiveServer, sockets: Sockets) -> tuple[str, Socket, Socket]:
    """The attacker's user id, a second socket of that user, and another user's socket."""
    user = new_user("attacker")
    sibling = await sockets.open(server, user)
    other = await sockets.open(server, new_user("other"))
    return user, sibling, other


async def still_fine(
    http: httpx.AsyncClient, server: LiveServer, user: str, *bystander: Socket
) -> None:
    for sock in bystander:
        assert not sock.closed, (sock.label, sock.close_code)
        await sock.ping()
    answer = await publish(http, server, [user])
    assert answer["recipients"] == 1
    for sock in bystander:
        if sock.label.startswith(f"socket({user} "):
            await sock.wait_count(1)


async def test_an_oversized_frame_closes_only_its_socket(
    server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    user, sibling, other = await bystanders(server, sockets)
    attacker = await sockets.open(server, user)
    await attacker.ws.send('{"type": "ping", "pad": "' + "x" * (MAX_FRAME + 10) + '"}')
    assert await attacker.wait_closed() in (1008, 1009)
    # Exactly at the limit is still fine.
    at_limit = await sockets.open(server, user)
    frame = '{"type": "ping", "pad": "'
    await at_limit.ws.send(frame + "x" * (MAX_FRAME - len(frame) - 2) + '"}')
    await at_limit.wait_for(lambda s: bool(s.of_type("pong")), what="a pong at the limit")
    await still_fine(http, server, user, sibling, other, at_limit)


async def test_a_frame_of_several_mebibytes_is_refused_without_harm(
    server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    user, sibling, other = await bystanders(server, sockets)
    attacker = await sockets.open(server, user)
    with contextlib.suppress(ConnectionClosed):
        await attacker.ws.send(b"\x00" * (8 * 1024 * 1024))
    assert await attacker.wait_closed() in (1008, 1009)
    await still_fine(http, server, user, sibling, other)


async def test_binary_and_empty_frames_get_error_frames_and_the_socket_stays(
    server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    user, sibling, other = await bystanders(server, sockets)
    attacker = await sockets.open(server, user)
    for payload in (b"\x00\x01binary", b"", b'{"type": "ping"}', "", " ", "\ufeff{}", "null"):
        errors = len(attacker.of_type("error"))
        await attacker.ws.send(payload)
        await attacker.wait_for(
            lambda s, n=errors: len(s.of_type("error")) > n, what=f"an error for {payload!r}"
        )
    codes = [f["code"] for f in attacker.of_type("error")]
    assert codes[:3] == ["binary_not_supported"] * 3, codes
    await attacker.ping()
    assert not attacker.closed
    await still_fine(http, server, user, sibling, other, attacker)


async def test_a_flood_closes_the_sender_1008_only(
    server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    user, sibling, other = await bystanders(server, sockets)
    attacker = await sockets.open(server, user)
    started = time.monotonic()
    with contextlib.suppress(ConnectionClosed):
        for _ in range(500):
            await attacker.ws.send('{"type": "ping"}')
    assert await attacker.wait_closed() == 1008
    # The burst (40), plus at most what refilled (20/s) while the flood lasted,
    # however slowly a loaded machine sent it.
    refill = FRAME_RATE * (time.monotonic() - started)
    pongs = len(attacker.of_type("pong"))
    assert pongs <= FRAME_BURST + refill + 1, (pongs, refill)
    await still_fine(http, server, user, sibling, other)


def upgrade_request(token: str | None, *, end: bool = True) -> bytes:
    lines = [
        f"GET {WS_PATH} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    text = "\r\n".join(lines) + ("\r\n\r\n" if end else "\r\n")
    return text.encode()


@pytest.mark.timeout(120)
async def test_half_open_and_stalled_connections_do_not_starve_anyone(
    server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    pid = server.pid
    # Warm up (imports, thread pools) so the fd baseline is a steady state:
    # taken once the server has let the warm-up socket go (presence back to 0).
    warm_user = new_user("warm")
    warm = await sockets.open(server, warm_user)
    await warm.close()
    await eventually(
        lambda: connections(http, server, warm_user),
        lambda count: count == 0,
        what="the server to let the warm-up socket go",
    )
    baseline = fd_kinds(pid)

    writers: list[asyncio.StreamWriter] = []
    readers: dict[asyncio.StreamWriter, asyncio.StreamReader] = {}

    async def raw(data: bytes) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        if data:
            writer.write(data)
            await writer.drain()
        writers.append(writer)
        readers[writer] = reader
        return writer

    for _ in range(50):  # silent
        await raw(b"")
    for _ in range(25):  # partial upgrade requests
        await raw(upgrade_request(None, end=False)[:60])
        await raw(upgrade_request(make_token("p"), end=False))
    # Complete handshakes whose client then never reads nor writes anything.
    mute = [await raw(upgrade_request(make_token(new_user("mute")))) for _ in range(10)]

    async def trickle(writer: asyncio.StreamWriter) -> None:
        """A slowloris: one byte of the request every 100 ms."""
        with contextlib.suppress(ConnectionError):
            for byte in upgrade_request(make_token("slow")):
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)

    slow_writers = [await raw(b"") for _ in range(10)]
    trickling = [asyncio.create_task(trickle(w)) for w in slow_writers]
    try:
        # They really are open on the server's side (it accepted them all).
        during = await eventually(
            lambda: asyncio.sleep(0, open_fds(pid)),
            lambda count: count >= baseline.total() + 100,
            what="the server to hold the bad clients' connections",
        )
        # The mute clients' handshakes were answered, though they never read.
        for writer in mute:
            head = await asyncio.wait_for(readers[writer].readuntil(b"\r\n\r\n"), WAIT)
            assert head.startswith(b"HTTP/1.1 101"), head

        # A normal client, meanwhile: connects, gets a publish, answers ping.
        user = new_user("normal")
        normal = await sockets.open(server, user, open_timeout=10)
        await publish(http, server, [user], title="through the noise")
        await normal.wait_count(1, timeout=10)
        await normal.ping(timeout=10)
        health = await http.get(server.url + "/healthz", timeout=5)
        assert health.status_code == 200
        print(f"fds: baseline {baseline.total()}, with {len(writers)} bad clients {during}")
    finally:
        for task in trickling:
            task.cancel()
        await asyncio.gather(*trickling, return_exceptions=True)
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # After they disconnect: ready, and the fds come back.
    await normal.close()
    settled = await fds_settle(pid, baseline)
    print(
        f"fds after the bad clients left: {settled.total()} (baseline {baseline.total()}); "
        f"extra: {dict(settled - baseline)}"
    )
    assert settled["socket"] <= baseline["socket"] + 2, (baseline, settled)
    assert settled.total() <= baseline.total() + 10, (baseline, settled)
    ready = await http.get(server.url + "/readyz")
    assert ready.status_code == 200, ready.text
    # Presence forgets the socket as its disconnect is handled, apart from the fd.
    await eventually(
        lambda: connections(http, server, user),
        lambda count: count == 0,
        what="the normal client's socket to leave presence",
    )


async def connections(http: httpx.AsyncClient, server: LiveServer, user: str) -> int:
    """The user's open sockets, as the server counts them (presence)."""
    response = await http.get(
        f"{server.url}/api/v1/users/{user}/presence",
        headers={"Authorization": f"Bearer {SHOP_SECRET}"},
    )
    assert response.status_code == 200, response.text
    count: int = response.json()["connections"]
    return count


async def test_a_handshake_that_never_completes_is_harmless(
    server: LiveServer, sockets: Sockets, http: httpx.AsyncClient
) -> None:
    """Headers sent, final CRLF never: the server waits; others are served; closing frees it."""
    before = fd_kinds(server.pid)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(upgrade_request(make_token(new_user("never")), end=False))
    await writer.drain()
    user = new_user("meanwhile")
    sock = await sockets.open(server, user)
    await publish(http, server, [user])
    await sock.wait_count(1)
    # Whatever the server did with it (waited, or timed it out), it sent no 101:
    # read to the end of the connection (ours ends the request unfinished, the
    # server then closes), so nothing can come after what is checked.
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), WAIT)
    assert b" 101 " not in answer, answer
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    await sock.close()
    after = await fds_settle(server.pid, before)
    assert after["socket"] <= before["socket"] + 2, (before, after)
    assert after.total() <= before.total() + 10, (before, after)
    assert (await http.get(server.url + "/readyz")).status_code == 200
