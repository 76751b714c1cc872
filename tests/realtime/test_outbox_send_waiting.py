"""``Outbox._send_waiting`` (realtime/outbox.py), the replay's and ``ready``'s
way out, over the WebSocket consumer's transport (notifications/consumers.py)
and a real uvicorn with ``LeanWebSocketProtocol``: a frame goes out through
the transport's ``write_now`` while nothing is queued and writing is not
paused, else it waits its turn through ``write``. A replay larger than every
buffer on the way reaches a client that reads late whole and in order, and
``ready`` comes last; a frame put while the replay waits stays behind it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from websockets.asyncio.client import connect

from notifications.consumers import SEND_NOW_KEY, NotificationConsumer
from realtime import frames
from realtime.outbox import Outbox
from tests.support.inprocess_uvicorn import small_buffer_socket, started

LEAN_WS = "service.ws_protocol:LeanWebSocketProtocol"
FRAMES = 400
BODY = "n" * 8000  # 400 frames of 8 KB: far more than the kernel's and uvicorn's buffers


class Probe:
    """What the server side saw, for the test to wait on."""

    def __init__(self) -> None:
        self.paused = asyncio.Event()
        self.taken_now = 0
        self.pong_after = 0  # the PONG was put after this many frames
        self.done = asyncio.Event()


probe = Probe()


class _Outbox(Outbox):
    async def close(self, code: frames.CloseCode) -> None:
        raise AssertionError(f"closed {code}")


def _transport(scope: dict[str, Any], send: Any) -> NotificationConsumer:
    """The consumer as the engine's transport, without a session: its
    ``write_now`` and ``write`` as production runs them."""
    consumer = NotificationConsumer()
    consumer._send = send
    consumer._send_now = scope.pop(SEND_NOW_KEY)
    return consumer


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    transport = _transport(scope, send)
    protocol = transport._send_now
    assert protocol is not None
    outbox = _Outbox(transport)
    for i in range(1, FRAMES + 1):
        writable: asyncio.Event = protocol.writable  # type: ignore[attr-defined]
        if writable.is_set():
            probe.taken_now += 1  # goes through write_now (nothing queued)
        elif not probe.paused.is_set():
            probe.paused.set()  # writing paused: from here frames wait in write
            # A frame put meanwhile (a PONG) queues in the outbox, behind
            # what was sent, ahead of what follows.
            outbox._put(frames.PONG, None)
            probe.pong_after = i - 1
        await outbox._send_waiting(frames.notification({"id": str(i), "body": BODY}))  # type: ignore[typeddict-item]
        if i % 10 == 0:
            # A page's frames leave in one write, the next page a loop turn
            # later (after its read from the database).
            await asyncio.sleep(0)
    await outbox._send_waiting(frames.error("last", "ready's place"))
    probe.done.set()
    while (await receive())["type"] != "websocket.disconnect":
        pass


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    global probe
    probe = Probe()
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws=LEAN_WS, lifespan="off", log_level="warning"
    )
    async with started(config) as (_server, port):
        yield port


async def test_a_replay_larger_than_every_buffer_arrives_whole_and_in_order() -> None:
    async with serving() as port:
        sock = await small_buffer_socket(port)
        async with connect(
            f"ws://127.0.0.1:{port}/", sock=sock, max_size=None, max_queue=1, compression=None
        ) as ws:
            # The client reads nothing until the server's writing paused.
            async with asyncio.timeout(60):
                await probe.paused.wait()
            assert not probe.done.is_set()
            got = []
            async with asyncio.timeout(60):
                while True:
                    frame = orjson.loads(await ws.recv())
                    got.append(frame)
                    if frame["type"] == "error":
                        break
    ids = [int(f["notification"]["id"]) for f in got if f["type"] == "notification"]
    assert ids == list(range(1, FRAMES + 1))
    assert all(f["notification"]["body"] == BODY for f in got if f["type"] == "notification")
    kinds = [f["type"] for f in got]
    # The PONG put mid-replay came after every frame sent before it, and
    # before the ones sent after it; the last frame came last.
    assert kinds.index("pong") == probe.pong_after > 0
    assert kinds[-1] == "error" and kinds.count("pong") == 1
    assert 0 < probe.taken_now < FRAMES  # both ways were taken
