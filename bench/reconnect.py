"""``python -m bench reconnect``: a deploy's reconnect storm, then the idle cost.

Every user has ``--stored`` notifications stored while its socket was away
(a deploy: the pods restarted meanwhile). Then all ``--sockets`` sockets come
back at once with ``?since=0``, as clients do after a 1012: a handshake with
token verification, a replay of the stored notifications, ``ready``. A socket
is *caught up* when its ``ready`` came after exactly ``--stored`` replayed
notifications. The line reports how long the whole storm took to be caught
up, handshakes per second per process, and then, with every socket held open
and nothing published, the servers' CPU over ``--idle`` seconds (an idle
process's cost: presence heartbeats, keepalive pings).

The client side runs in ``--workers`` processes (websockets), each with its
own share of the sockets; their CPU is reported too, as they share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench import procstat
from bench.cluster import Cluster
from bench.loader import publish_url, user_id, ws_url
from bench.pyspy import Recorders

POST_RECIPIENTS = 1000  # per stored POST (the contract allows up to 10,000)
POST_CONCURRENCY = 4


@dataclass(frozen=True)
class StormPlan:
    urls: list[str]
    jwt_secret: str
    users: list[tuple[int, str]]  # (global index, user id)
    stored: int
    concurrency: int
    open_timeout: float


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench reconnect", description=__doc__)
    p.add_argument("--spawn", type=int, default=2, help="server processes (+ Redis)")
    p.add_argument("--postgres", action="store_true", help="a private durable PostgreSQL")
    p.add_argument("--sockets", type=int, default=10_000)
    p.add_argument("--stored", type=int, default=10, help="notifications replayed per socket")
    p.add_argument("--workers", type=int, default=2, help="client processes")
    p.add_argument(
        "--connect-concurrency", type=int, default=1000, help="handshakes in flight, in all"
    )
    p.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measured")
    p.add_argument("--open-timeout", type=float, default=60.0)
    p.add_argument("--label", default="")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy each server during the storm into DIR (bench/pyspy.py)",
    )
    p.add_argument(
        "--profile-gil", action="store_true", help="--profile: only samples holding the GIL"
    )
    return p


# --------------------------------------------------------------------------- client side


Opened = tuple[float, tuple[float, float], ClientConnection]  # caught up at, splits, socket


async def _one(plan: StormPlan, index: int, user: str, t0: float) -> Opened:
    """One socket back: (seconds after t0 it was caught up, (handshake s,
    replay s), the open socket)."""
    token = _token(plan.jwt_secret, user)
    began = time.time()
    ws = await connect(
        ws_url(plan.urls[index % len(plan.urls)]) + "?since=0",
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        proxy=None,
        open_timeout=plan.open_timeout,
        ping_interval=None,
        max_queue=None,
        user_agent_header=None,
    )
    opened = time.time()
    replayed = 0
    async with asyncio.timeout(plan.open_timeout):
        while True:
            frame = orjson.loads(await ws.recv())
            if frame.get("type") == "notification":
                replayed += 1
            elif frame.get("type") == "ready":
                break
    if replayed != plan.stored or frame.get("replayed") != plan.stored:
        raise RuntimeError(f"replayed {replayed} (ready says {frame.get('replayed')})")
    done = time.time()
    return done - t0, (opened - began, done - opened), ws


def _token(secret: str, user: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, secret, algorithm="HS256")


async def _storm(plan: StormPlan, conn: Any) -> None:
    gate = asyncio.Semaphore(plan.concurrency)
    conn.send("ready")
    t0 = conn.recv()  # the shared start (wall clock)
    await asyncio.sleep(max(0.0, t0 - time.time()))
    cpu0 = procstat.own_cpu_seconds()

    async def guarded(index: int, user: str) -> Opened | str:
        async with gate:
            try:
                return await _one(plan, index, user, t0)
            except Exception as exc:
                return type(exc).__name__

    outcomes = await asyncio.gather(*(guarded(i, u) for i, u in plan.users))
    done = [o for o in outcomes if not isinstance(o, str)]
    errors = [o for o in outcomes if isinstance(o, str)]
    conn.send(
        {
            "times": [t for t, _split, _ws in done],
            "splits": [split for _t, split, _ws in done],
            "errors": errors,
            "cpu_s": procstat.own_cpu_seconds() - cpu0,
        }
    )
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # hold until told
    await asyncio.gather(*(ws.close() for _t, _split, ws in done), return_exceptions=True)


def storm_worker(plan: StormPlan, conn: Any) -> None:
    asyncio.run(_storm(plan, conn))


# --------------------------------------------------------------------------- server side


async def store_backlog(cluster: Cluster, users: Sequence[str], stored: int) -> None:
    """``stored`` notifications for every user, in POSTs of POST_RECIPIENTS."""
    bodies = [
        orjson.dumps({"recipients": list(users[i : i + POST_RECIPIENTS]), "type": "bench.stored"})
        for _ in range(stored)
        for i in range(0, len(users), POST_RECIPIENTS)
    ]
    headers = {"Authorization": f"Bearer {cluster.api_key}", "Content-Type": "application/json"}
    queue = list(enumerate(bodies))
    async with httpx.AsyncClient(timeout=120, headers=headers) as client:

        async def lane() -> None:
            while queue:
                n, body = queue.pop(0)
                answer = await client.post(
                    publish_url(cluster.urls[n % len(cluster.urls)]), content=body
                )
                if answer.status_code != 202:
                    raise RuntimeError(f"storing the backlog: {answer.status_code} {answer.text}")

        await asyncio.gather(*(lane() for _ in range(POST_CONCURRENCY)))


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _cpu(pids: list[int]) -> list[float | None]:
    return [procstat.cpu_seconds(pid) for pid in pids]


def _pct(before: list[float | None], after: list[float | None], wall: float) -> list[float | None]:
    return [
        None if a is None or b is None else round(100.0 * (a - b) / wall, 2)
        for b, a in zip(before, after, strict=True)
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    users = [user_id(run_id, i) for i in range(args.sockets)]
    # The backlog is stored as fast as it goes: no publisher limits.
    limits = {"NOTIFY_PUBLISH_RECIPIENT_RATE": "100000000/s"}
    with Cluster(args.spawn, redis=True, postgres=args.postgres, server_env=limits) as cluster:
        started = time.monotonic()
        asyncio.run(store_backlog(cluster, users, args.stored))
        store_s = time.monotonic() - started
        ctx = multiprocessing.get_context("spawn")
        pipes, procs = [], []
        for w in range(args.workers):
            mine = [(i, users[i]) for i in range(w, len(users), args.workers)]
            plan = StormPlan(
                cluster.urls,
                cluster.jwt_secret,
                mine,
                args.stored,
                max(1, args.connect_concurrency // args.workers),
                args.open_timeout,
            )
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=storm_worker, args=(plan, child), daemon=True)
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        for pipe in pipes:
            pipe.recv()  # each worker imported and waiting
        t0 = time.time() + 0.5
        recorders = (
            Recorders(cluster.server_pids, Path(args.profile), gil=args.profile_gil)
            if args.profile
            else None
        )
        cpu_before = _cpu(cluster.server_pids)
        for pipe in pipes:
            pipe.send(t0)
        reports = [pipe.recv() for pipe in pipes]
        cpu_after = _cpu(cluster.server_pids)
        profiles = recorders.stop() if recorders is not None else []
        storm_wall = max([t for r in reports for t in r["times"]] or [0.0])
        storm_cpu = _pct(cpu_before, cpu_after, max(storm_wall, 1e-6))
        storm_cpu_s = sum(
            (a or 0.0) - (b or 0.0) for b, a in zip(cpu_before, cpu_after, strict=True)
        )
        idle_before = _cpu(cluster.server_pids)
        time.sleep(args.idle)
        idle_cpu = _pct(idle_before, _cpu(cluster.server_pids), args.idle)
        for pipe in pipes:
            pipe.send("close")
        for proc in procs:
            proc.join(30)
        codes = cluster.stop_servers()
        logs = cluster.scan_logs()
    times = sorted(t for r in reports for t in r["times"])
    errors: dict[str, int] = {}
    for r in reports:
        for e in r["errors"]:
            errors[e] = errors.get(e, 0) + 1
    caught_up = len(times)
    return {
        "bench": "reconnect",
        "run_id": run_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "label": args.label,
        "params": {
            "spawn": args.spawn,
            "database": "postgres" if args.postgres else "sqlite",
            "sockets": args.sockets,
            "stored": args.stored,
            "workers": args.workers,
            "connect_concurrency": args.connect_concurrency,
            "idle_s": args.idle,
        },
        "store_s": round(store_s, 2),
        "caught_up": caught_up,
        "errors": errors,
        "storm_s": round(storm_wall, 3),
        "handshakes_per_s": round(caught_up / storm_wall, 1) if storm_wall else None,
        "handshakes_per_s_per_process": (
            round(caught_up / storm_wall / args.spawn, 1) if storm_wall else None
        ),
        "caught_up_s": {
            "p50": round(statistics.median(times), 3) if times else None,
            "p99": round(times[int(0.99 * (len(times) - 1))], 3) if times else None,
        },
        "handshake_s_p50": _median([h for r in reports for h, _ in r["splits"]]),
        "replay_s_p50": _median([p for r in reports for _, p in r["splits"]]),
        "server_cpu_pct_storm": storm_cpu,
        # The servers' CPU seconds (all processes) per 1,000 sockets back and
        # caught up: what a loaded machine changes least (wall clock varies).
        "server_cpu_s_per_1000_handshakes": (
            round(1000.0 * storm_cpu_s / caught_up, 3) if caught_up else None
        ),
        "client_cpu_pct_storm": [
            round(100.0 * r["cpu_s"] / max(storm_wall, 1e-6), 1) for r in reports
        ],
        "server_cpu_pct_idle": idle_cpu,
        "sockets_per_process": args.sockets // args.spawn,
        "exit_codes": list(codes.values()),
        "logs": logs["total"],
        "profiles": profiles,
        "ok": caught_up == args.sockets and not logs["total"]["tracebacks"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    line = run(args)
    print(json.dumps(line), flush=True)
    return 0 if line["ok"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
