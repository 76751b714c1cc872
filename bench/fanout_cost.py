"""The channel layer's CPU per delivered message, on a private Redis.

    .venv/bin/python -m bench.fanout_cost --group 1 --messages 20000 --runs 3

One process publishes through ``RedisNotifyLayer.group_send_many`` and
receives through its own subscriber, as a server process does for the half
of the deliveries whose socket it holds: the messages are the ones
``delivery.push_notifications`` sends (a rendered notification per
recipient), ``--group`` of them per send (1: a POST of one recipient alone
in its commit group, as at 500 POSTs/s; 100: ``batch``), each to its own
user's group with one direct channel, whose delivery encodes the WebSocket
frame's JSON. ``--inflight`` sends are kept going at once (as commit groups
of several processes' writers overlap). It prints the process's CPU per
message (``time.process_time``) and the wall time, one JSON object per run:
the send path from the layer message to the PUBLISH and the receive path to
the socket's frame, without HTTP, the database or the socket write, and far
less disturbed by other work on the machine than an end-to-end run
(docs/performance.md, "Fan-out path, fourth round"). ``--via delivery``
hands each send over as the writer thread does after a commit
(``delivery.push_notifications`` from a thread of its own, the layer as the
process's channel layer), so the hand-off to the event loop is measured too
("Event loop per publish, fifth round"). ``--tree DIR`` measures another
checkout's layer (``git worktree add --detach ../baseline main``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

USERS = 1000


async def measure(url: str, args: argparse.Namespace) -> None:
    import notifications
    from notifications.channel_layer import RedisNotifyLayer
    from notifications.delivery import NOTIFICATION_EVENT, group_name
    from realtime import frames

    print(json.dumps({"code": str(Path(notifications.__file__).parent.parent)}), flush=True)
    layer = RedisNotifyLayer(hosts=[{"address": url}], prefix=f"b{uuid.uuid4().hex[:6]}")
    received = 0
    done = asyncio.Event()
    expected = 0
    credit = threading.Semaphore(0)  # --via delivery: messages the thread may still send

    def deliver(message: dict[str, Any]) -> None:
        nonlocal received
        frames.ws_text(frames.notification(message["n"]))
        received += 1
        credit.release()
        if received >= expected:
            done.set()

    if args.via == "delivery":
        from channels.layers import channel_layers

        from notifications import delivery

        channel_layers.set("default", layer)
        delivery.bind_loop(asyncio.get_running_loop())

    users = [f"user-{i}" for i in range(USERS)]
    for user in users:
        await layer.group_add(group_name(user), layer.new_direct_channel(deliver))
    fields = {
        "type": "order.shipped",
        "title": "Your order shipped",
        "body": "Parcel 1Z999 left the warehouse",
        "data": {"order": 1234, "carrier": "ups"},
        "source": "bench",
        "created_at": "2026-11-28T06:00:00.000000Z",
        "read_at": None,
    }
    seq = iter(range(1, 1 << 62))

    def batch(start: int) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for k in range(args.group):
            user = users[(start + k) % USERS]
            n = {"id": str(next(seq)), **fields}
            message = {"type": NOTIFICATION_EVENT, "user": user, "n": n, "t": time.time()}
            out.append((group_name(user), message))
        return out

    def writer(sends: int) -> None:
        """As the writer thread: a group's pushes after its commit."""
        from notifications import delivery

        for i in range(sends):
            for _ in range(args.group):
                credit.acquire()
            pushes = [(message["user"], message["n"]) for _g, message in batch(i * args.group)]
            delivery.push_notifications(pushes, committed_at=time.time())

    async def run(messages: int) -> None:
        nonlocal received, expected
        received, expected = 0, messages
        done.clear()
        sends = messages // args.group
        if args.via == "delivery":
            for _ in range(args.inflight * args.group):
                credit.release()
            thread = threading.Thread(target=writer, args=(sends,))
            thread.start()
            await asyncio.wait_for(done.wait(), 60)
            thread.join()
            while credit.acquire(blocking=False):  # the next run starts from none
                pass
            return
        window = asyncio.Semaphore(args.inflight)

        async def one(i: int) -> None:
            async with window:
                await layer.group_send_many(batch(i * args.group))

        await asyncio.gather(*(one(i) for i in range(sends)))
        await asyncio.wait_for(done.wait(), 60)

    await run(args.warmup)
    for _ in range(args.runs):
        cpu, wall = time.process_time(), time.perf_counter()
        await run(args.messages)
        per = 1e6 / args.messages
        row = {
            "group": args.group,
            "inflight": args.inflight,
            "messages": args.messages,
            "via": args.via,
            "cpu_us_per_message": round((time.process_time() - cpu) * per, 2),
            "wall_us_per_message": round((time.perf_counter() - wall) * per, 2),
        }
        print(json.dumps(row), flush=True)
    await layer.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=1, help="messages per send")
    parser.add_argument("--inflight", type=int, default=1, help="sends at once")
    parser.add_argument("--messages", type=int, default=20000, help="messages per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument(
        "--via", choices=["layer", "delivery"], default="layer", help="how sends are handed over"
    )
    parser.add_argument("--tree", type=Path, default=None, help="another checkout's code")
    args = parser.parse_args(argv)
    from tests.support.servers import RedisServer

    if args.tree is not None:
        sys.path.insert(0, str(args.tree.resolve()))
    import uvloop

    with RedisServer() as server:
        uvloop.run(measure(server.url, args))


if __name__ == "__main__":
    main()
