"""``python -m bench push-ws``: WebSocket unicast delivery with and without a
Web Push flood in the same service process.

One service process and the local push service as ``python -m bench push``
sets them up (bench/push.py). The WebSocket figure is the standard unicast
run (``python -m bench run --url … --scenario unicast``, the loader in its
own process) against that process, alternately on its own and while this
process publishes ``--push-rate`` pushes/s (batches of ``--push-batch``
recipients with ``"push": "always"``) that the service's push worker sends
to the push service meanwhile. Rounds alternate (quiet, flood, quiet, …) so
drift in the machine's load falls on both; a quiet run starts only once
the pushes of the flood before it are all sent. Prints one JSON line: each run's
deliveries/s, latency and losses, the pushes answered 201 per second during
each flood run, and the ratio of the medians (flood / quiet).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.push import JWT_SECRET, PUBLISHER, deployment, record, subscribe_all
from bench.target import API_KEY_ENV, JWT_SECRET_ENV
from tests.support.push_service import PushService
from tests.support.servers import LiveServer


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench push-ws", description=__doc__)
    p.add_argument("--sockets", type=int, default=200, help="WebSocket users")
    p.add_argument("--concurrency", type=int, default=32, help="unicast POSTs in flight")
    p.add_argument("--count", type=int, default=3000, help="unicast POSTs per run")
    p.add_argument("--rate", type=float, help="unicast POSTs/s (open loop) instead of max")
    p.add_argument("--duration", type=float, default=10.0, help="seconds at --rate")
    p.add_argument("--rounds", type=int, default=2, help="quiet + flood pairs")
    p.add_argument("--push-users", type=int, default=500, help="users with a subscription")
    p.add_argument("--push-rate", type=float, default=1000.0, help="pushes/s offered")
    p.add_argument("--push-batch", type=int, default=100, help="recipients per push publish")
    p.add_argument("--check-every", type=int, default=20, help="decrypt and verify 1 in N")
    p.add_argument(
        "--push-mode",
        choices=("always", "never"),
        default="always",
        help="the flood's publishes owe pushes (always) or not (never: the same "
        "notifications published, nothing sent; what publishing them costs alone)",
    )
    p.add_argument(
        "--separate-worker",
        action="store_true",
        help="send from a manage.py push_worker process (NOTIFY_PUSH_WORKER_IN_PROCESS=false)",
    )
    return p.parse_args(list(argv))


class Flood:
    """Publishes ``rate`` pushes/s on its own thread until stopped."""

    def __init__(self, server: LiveServer, users: list[str], args: argparse.Namespace) -> None:
        self.server, self.users, self.args = server, users, args
        self.posted = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    async def _run(self) -> None:
        batch, interval = self.args.push_batch, self.args.push_batch / self.args.push_rate
        headers = {"Authorization": f"Bearer {PUBLISHER}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=self.server.url, trust_env=False) as http:
            start, n = time.monotonic(), 0
            while not self._stop.is_set():
                recipients = [self.users[(n * batch + i) % len(self.users)] for i in range(batch)]
                body = {"recipients": recipients, "type": "bench.push", "title": "Bench",
                        "body": "x" * 200, "push": self.args.push_mode}  # fmt: skip
                answer = await http.post("/api/v1/notifications", json=body, headers=headers)
                if answer.status_code == 202:
                    self.posted += batch
                else:
                    self.failed += 1
                n += 1
                await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))


def ws_run(server: LiveServer, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """One standard unicast run against ``server`` (bench/README.md)."""
    command = [sys.executable, "-m", "bench", "run", "--url", server.url,
               "--server-pid", str(server.pid), "--scenario", "unicast",
               "--sockets", str(args.sockets), "--concurrency", str(args.concurrency),
               "--no-results", "--label", label]  # fmt: skip
    if args.rate:
        command += ["--rate", str(args.rate), "--duration", str(args.duration)]
    else:
        command += ["--count", str(args.count)]
    # The secrets go in the environment: a command line is visible in ps.
    env = {**os.environ, API_KEY_ENV: PUBLISHER, JWT_SECRET_ENV: JWT_SECRET}
    # our own interpreter and arguments
    done = subprocess.run(  # noqa: S603
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"bench run printed no line: {done.stderr[-2000:]}")
    line: dict[str, Any] = json.loads(lines[-1])
    return {
        "pushes": label,
        "ok": line["ok"],
        "run_id": line["run_id"],
        "deliveries_per_s": line["deliveries"]["per_s"],
        "lost": line["deliveries"]["lost"],
        "latency_ms": {k: line["latency_ms"][k] for k in ("p50", "p90", "p99", "max")},
        "server_cpu_pct": line.get("server_cpu_pct"),
    }


def held_seconds(server: LiveServer) -> float | None:
    """``notify_push_held_seconds_total`` of the service (None where the
    code measured has no such throttle)."""
    text = httpx.get(server.url + "/metrics", trust_env=False, timeout=30).text
    prefix = "notify_push_held_seconds_total "
    values = [float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else None


def flood_run(
    server: LiveServer, service: PushService, users: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    held_before = held_seconds(server)
    with Flood(server, users, args) as flood:
        # Measure only once pushes are reaching the push service (or, with
        # --push-mode never, once the flood publishes).
        if args.push_mode == "never":
            deadline = time.monotonic() + 60
            while not flood.posted and not flood.failed:
                if time.monotonic() > deadline:
                    raise RuntimeError("the flood published nothing in 60 s")
                time.sleep(0.05)
        else:
            service.wait_for(lambda: service.count(201) > 0, timeout=60)
        before, started = service.count(201), time.monotonic()
        result = ws_run(server, args, "flood")
        sent = service.count(201) - before
        result["pushes_per_s"] = round(sent / (time.monotonic() - started), 1)
        result["push_publishes_failed"] = flood.failed
        held_after = held_seconds(server)
    result["pushes_owed"] = flood.posted if args.push_mode == "always" else 0
    # Seconds the worker held pushes back for live traffic during the run.
    result["push_held_s"] = (
        None if held_before is None or held_after is None else round(held_after - held_before, 2)
    )
    return result


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r["ok"] and r[key] is not None]
    return statistics.median(values) if values else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    with deployment(args.check_every, redis=True, worker=args.separate_worker) as (
        server,
        service,
    ):
        users = [f"bench-push-{i}" for i in range(args.push_users)]
        asyncio.run(subscribe_all(server, service, users))
        runs: list[dict[str, Any]] = []
        owed = 0
        for _ in range(args.rounds):
            # A flood leaves a backlog in the outbox when it outran the
            # worker; the next quiet run starts once it is sent.
            service.wait_for(lambda: service.count(201) >= owed, timeout=900)  # noqa: B023
            runs.append(ws_run(server, args, "none"))
            runs.append(flood_run(server, service, users, args))
            owed += runs[-1]["pushes_owed"]
        quiet = median([r for r in runs if r["pushes"] == "none"], "deliveries_per_s")
        flood = median([r for r in runs if r["pushes"] == "flood"], "deliveries_per_s")
        return {
            "bench": "push-ws",
            "ok": all(r["ok"] for r in runs) and not service.errors(),
            "params": vars(args),
            "runs": runs,
            "deliveries_per_s_median": {"none": quiet, "flood": flood},
            "flood_over_quiet": round(flood / quiet, 3) if quiet and flood else None,
            "push_errors": service.errors()[:5],
        }


def main(argv: Sequence[str]) -> int:
    line = run(parse(argv))
    record(line)
    return 0 if line["ok"] else 1
