"""``python -m bench run|sweep|suite``: options, orchestration, the JSON result line.

See bench/README.md for every option and every output field.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import procstat, redisinfo
from bench.loader import LocalHub, Phase, Worker, WorkerPlan, run_async, worker_process
from bench.stats import add_counts, summary
from bench.suite import run_suite

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "results.jsonl"
SCHEMA_VERSION = 2  # 2: memory read past two presence heartbeats; target.config
# The service refreshes presence every 10 s (notifications/presence.py HEARTBEAT;
# tests/bench checks they agree). Memory is read after two refreshes, plus margin.
PRESENCE_HEARTBEAT_S = 10.0
MEMORY_SETTLE_S = 2 * PRESENCE_HEARTBEAT_S + 2.0


# --------------------------------------------------------------------------- options


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rates wants numbers like 100,250,500: {text!r}"
        ) from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("--rates needs positive numbers")
    return rates


def _add_common(p: argparse.ArgumentParser) -> None:
    target = p.add_argument_group("target (one of --url or --spawn)")
    target.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="URL",
        help="a running service, http://host:port (repeat for several processes/pods)",
    )
    target.add_argument("--api-key", help="publisher secret (required with --url)")
    target.add_argument("--jwt-secret", help="HS256 user-token key (required with --url)")
    target.add_argument("--jwt-audience", help="aud claim for user tokens, if the target checks it")
    target.add_argument("--jwt-issuer", help="iss claim for user tokens, if the target checks it")
    target.add_argument(
        "--server-pid",
        action="append",
        type=int,
        default=[],
        metavar="PID",
        help="with --url: server process ids on this machine, for memory and CPU",
    )
    target.add_argument(
        "--redis-info",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="with --url: Redis nodes to read INFO cpu/commandstats from around each phase "
        "(repeat for every node of a cluster; spawned Redis is read without it)",
    )
    target.add_argument(
        "--spawn",
        type=int,
        default=0,
        metavar="N",
        help="start N uvicorn processes (+ Redis) on loopback for the run",
    )
    target.add_argument(
        "--postgres",
        action="store_true",
        help="with --spawn: a private PostgreSQL instead of one shared SQLite file",
    )
    target.add_argument(
        "--redis-cluster",
        action="store_true",
        help="with --spawn: a Redis Cluster (3 masters + 3 replicas, REDIS_CLUSTER_URL) "
        "instead of one redis-server",
    )
    target.add_argument(
        "--no-redis",
        action="store_true",
        help="with --spawn 1: the in-process channel layer instead of Redis",
    )
    target.add_argument(
        "--server-env",
        action="append",
        type=_key_value,
        default=[],
        metavar="K=V",
        help="extra environment for spawned servers, e.g. NOTIFY_WS_SEND_QUEUE=100",
    )
    target.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra uvicorn argument for spawned servers (repeat; use --server-arg=--flag)",
    )
    target.add_argument(
        "--light",
        action="store_true",
        help="with --spawn: a lighter configuration than the image (no access log); "
        "its lines are labelled target.config = light",
    )
    target.add_argument(
        "--keep-logs", metavar="DIR", help="copy the spawned servers' logs into DIR"
    )

    load = p.add_argument_group("load")
    load.add_argument("--sockets", type=int, default=200, metavar="C", help="users/sockets")
    load.add_argument(
        "--ramp-per-s", type=float, default=500.0, help="sockets opened per second (0: at once)"
    )
    load.add_argument(
        "--connect-concurrency",
        type=int,
        default=200,
        help="handshakes in flight at most (per loader process)",
    )
    load.add_argument("--batch", type=int, default=100, metavar="B", help="recipients per POST")
    load.add_argument(
        "--concurrency",
        type=int,
        default=32,
        metavar="K",
        help="POSTs in flight (max mode) / HTTP connection pool size (rate mode)",
    )
    load.add_argument("--count", type=int, default=1000, metavar="M", help="POSTs (max mode)")
    load.add_argument("--duration", type=float, default=10.0, metavar="D", help="s (rate mode)")
    load.add_argument("--drain-timeout", type=float, default=10.0, help="s to wait for stragglers")
    load.add_argument(
        "--hold",
        type=float,
        default=None,
        help="s to hold idle sockets (connect: default 2; idle: default 60)",
    )
    load.add_argument(
        "--settle",
        type=float,
        default=None,
        help="s to wait before reading memory after opening (default: past two presence "
        f"heartbeats, {MEMORY_SETTLE_S:g} s, for --scenario connect; 1 s otherwise, when "
        "kib_per_socket is not reported)",
    )
    load.add_argument("--workers", type=int, default=1, metavar="W", help="loader processes")
    load.add_argument(
        "--http-client",
        choices=("aiohttp", "httpx"),
        default="aiohttp",
        help="publisher HTTP client (aiohttp: ~10x less CPU per POST here)",
    )
    load.add_argument(
        "--compression",
        choices=("none", "deflate"),
        default="none",
        help="WebSocket permessage-deflate offer (browsers offer deflate)",
    )
    load.add_argument(
        "--transport",
        choices=("ws", "sse"),
        default="ws",
        help="users receive over WebSocket or Server-Sent Events (GET /api/v1/me/stream)",
    )
    load.add_argument("--payload-bytes", type=int, default=0, help="padding added to data")
    load.add_argument("--no-warmup", action="store_true", help="skip the warm-up socket/POST")

    out = p.add_argument_group("output")
    out.add_argument(
        "--results",
        default=str(RESULTS_PATH),
        metavar="PATH",
        help="append each JSON line here (default bench/results/results.jsonl)",
    )
    out.add_argument("--no-results", action="store_true", help="print only, append nothing")
    out.add_argument("--label", default="", help="free text stored in the line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load and latency benchmark for the notification push service.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="one measured run (one JSON line)")
    run.add_argument(
        "--scenario",
        choices=("unicast", "batch", "connect", "idle"),
        default="unicast",
        help="unicast: 1 recipient per POST; batch: --batch per POST; connect: idle sockets "
        "(memory); idle: idle sockets held --hold s (default 60), the servers' CPU meanwhile",
    )
    run.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="R",
        help="fixed rate mode: R POSTs/s for --duration (default: max mode, --count)",
    )
    _add_common(run)

    sweep = sub.add_parser("sweep", help="rate mode at several rates, one line each, plus a plot")
    sweep.add_argument("--scenario", choices=("unicast", "batch"), default="unicast")
    sweep.add_argument("--rates", type=_rates, default=_rates("100,250,500,1000,2000"))
    sweep.add_argument("--plot", metavar="PNG", help="write latency vs offered rate here")
    _add_common(sweep)

    suite = sub.add_parser(
        "suite",
        help="the issue #4 targets (make bench): unicast, batch, latency at 500/s, idle "
        "sockets, a 10,000-recipient POST; each --repeat times, then a median and a verdict; "
        "extra arguments are appended to every run",
    )
    suite.add_argument(
        "--quick",
        action="store_true",
        help="a smaller suite (~3 minutes: memory is read 22 s after opening)",
    )
    suite.add_argument(
        "--repeat", type=int, default=3, help="runs per scenario; the summary gives the median"
    )
    suite.add_argument("--only", help="only the scenarios whose name contains this")
    return parser


# --------------------------------------------------------------------------- target


class Target:
    """Where the load goes: spawned processes or given URLs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.cluster: Any = None
        self.args = args
        if args.spawn and args.url:
            raise SystemExit("bench: give --url or --spawn, not both")
        if not args.spawn and not args.url:
            raise SystemExit("bench: give --url URL (a running service) or --spawn N")
        if args.spawn:
            from bench.cluster import Cluster

            self.cluster = Cluster(
                args.spawn,
                redis=not args.no_redis,
                redis_cluster=args.redis_cluster,
                postgres=args.postgres,
                server_env=dict(args.server_env),
                uvicorn_args=args.server_arg,
                light=args.light,
            )
            self.urls: list[str] = self.cluster.urls
            self.api_key: str = self.cluster.api_key
            self.jwt_secret: str = self.cluster.jwt_secret
            self.server_pids: list[int] = self.cluster.server_pids
            self.redis_pid: int | None = self.cluster.redis_pid
            self.redis_addresses: list[str] = self.cluster.redis_addresses
        else:
            if not args.api_key or not args.jwt_secret:
                raise SystemExit("bench: --url needs --api-key and --jwt-secret")
            self.urls = [u.rstrip("/") for u in args.url]
            self.api_key = args.api_key
            self.jwt_secret = args.jwt_secret
            self.server_pids = list(args.server_pid)
            self.redis_pid = None
            self.redis_addresses = list(args.redis_info)

    def describe(self) -> dict[str, Any]:
        args = self.args
        env = dict(args.server_env)
        if self.cluster is not None:
            return {
                "kind": "spawn",
                "spawn": args.spawn,
                "urls": self.urls,
                "database": self.cluster.database,
                "postgres_settings": self.cluster.postgres_settings,
                "config": self.cluster.config,
                "redis": self.cluster.redis is not None or self.cluster.redis_cluster is not None,
                "redis_topology": self.cluster.redis_topology,
                "redis_layer": (
                    "sharded pubsub"
                    if self.cluster.redis_cluster is not None
                    else env.get("NOTIFY_REDIS_LAYER", "pubsub")
                    if self.cluster.redis is not None
                    else "in-memory"
                ),
                "server_env": env,
                "uvicorn_args": list(self.cluster.servers[0].uvicorn_args),
                "server_pids": self.server_pids,
            }
        return {
            "kind": "url",
            "spawn": 0,
            "urls": self.urls,
            "database": None,
            "postgres_settings": None,
            "config": None,
            "redis": None,
            "redis_topology": None,
            "redis_layer": None,
            "server_env": {},
            "server_pids": self.server_pids,
        }

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()


# --------------------------------------------------------------------------- coordinator


Probes = dict[str, Callable[[], float | None]]


class Coordinator:
    """Measures the servers at the workers' barriers and keeps their reports."""

    def __init__(self, target: Target, settle_s: float, probes: Probes | None = None) -> None:
        self.target = target
        # Other counters read at the same marks as the servers' CPU (bench capacity:
        # PostgreSQL's CPU and WAL position); the line gets their increase per phase.
        self.probes: Probes = probes or {}
        self._probe_mark: dict[str, float | None] = {}
        self.phase_probes: list[dict[str, float | None]] = []
        self.settle_s = settle_s
        self.rss_before: list[int | None] = []
        self.rss_after_open: list[int | None] = []
        self.redis_before: int | None = None
        self.redis_after_open: int | None = None
        self.opened: list[dict[str, Any]] = []
        self.phases: list[list[dict[str, Any]]] = []
        self.phase_server_cpu: list[list[float | None]] = []
        self.phase_server_cpu_s: list[list[float | None]] = []
        self._cpu_mark: list[float | None] = []
        self._wall_mark = 0.0
        self._metrics_mark: dict[str, float] | None = None
        self.phase_metrics: list[dict[str, float] | None] = []
        self._redis_mark: list[redisinfo.NodeSample] | None = []
        # (before, after) pairs; None where a node did not answer INFO
        self.phase_redis: list[list[redisinfo.NodeSample] | None] = []

    async def _scrape(self) -> dict[str, float] | None:
        return await asyncio.to_thread(scrape_metrics, self.target.urls)

    def _rss(self) -> list[int | None]:
        return [procstat.rss_kib(pid) for pid in self.target.server_pids]

    def _mark_cpu(self) -> None:
        self._cpu_mark = [procstat.cpu_seconds(pid) for pid in self.target.server_pids]
        self._wall_mark = time.perf_counter()
        self._redis_mark = redisinfo.try_sample_all(self.target.redis_addresses)
        self._probe_mark = {name: read() for name, read in self.probes.items()}

    def _cpu_since_mark(self) -> list[float | None]:
        wall = max(1e-9, time.perf_counter() - self._wall_mark)
        out: list[float | None] = []
        seconds: list[float | None] = []
        for pid, before in zip(self.target.server_pids, self._cpu_mark, strict=False):
            now = procstat.cpu_seconds(pid)
            used = None if now is None or before is None else now - before
            seconds.append(None if used is None else round(used, 2))
            out.append(None if used is None else round(used / wall * 100, 1))
        self.phase_server_cpu_s.append(seconds)
        return out

    async def on_warmed(self) -> None:
        await asyncio.sleep(0.2)
        self._metrics_mark = await self._scrape()
        self.rss_before = self._rss()
        if self.target.redis_pid:
            self.redis_before = procstat.rss_kib(self.target.redis_pid)

    async def on_opened(self, infos: list[dict[str, Any]]) -> None:
        self.opened = infos
        await asyncio.sleep(self.settle_s)
        self.rss_after_open = self._rss()
        if self.target.redis_pid:
            self.redis_after_open = procstat.rss_kib(self.target.redis_pid)
        self._mark_cpu()

    async def on_phase(self, index: int, results: list[dict[str, Any]]) -> None:
        self.phase_server_cpu.append(self._cpu_since_mark())
        self.phase_redis.append(self._redis_mark)
        self.phase_redis.append(redisinfo.try_sample_all(self.target.redis_addresses))
        now_probes = {name: read() for name, read in self.probes.items()}
        self.phase_probes.append(
            {
                name: None
                if value is None or self._probe_mark.get(name) is None
                else value - self._probe_mark[name]  # type: ignore[operator]
                for name, value in now_probes.items()
            }
        )
        self.phases.append(results)
        now = await self._scrape()
        self.phase_metrics.append(metrics_delta(self._metrics_mark, now))
        self._metrics_mark = now
        self._mark_cpu()


METRIC_NAMES = {
    "notify_notifications_accepted_total": "accepted",
    "notify_notifications_delivered_total": "delivered",
    "notify_notifications_dropped_total": "dropped",
    "notify_notifications_replayed_total": "replayed",
    "notify_sockets_open": "sockets_open",
}


def scrape_metrics(urls: list[str]) -> dict[str, float] | None:
    """Sum of the service's own counters over ``urls`` (GET /metrics); None if unreachable."""
    import httpx

    totals: dict[str, float] = dict.fromkeys(METRIC_NAMES.values(), 0.0)
    try:
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            for url in urls:
                response = client.get(url.rstrip("/") + "/metrics")
                if response.status_code != 200:
                    return None
                for line in response.text.splitlines():
                    name, _, value = line.partition(" ")
                    key = METRIC_NAMES.get(name)
                    if key is not None:
                        totals[key] += float(value)
    except (httpx.HTTPError, ValueError):
        return None
    return totals


def metrics_delta(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    """Counter increase over a phase (sockets_open: the value at its end)."""
    if before is None or after is None:
        return None
    out = {k: after[k] - before.get(k, 0.0) for k in after if k != "sockets_open"}
    out["sockets_open"] = after["sockets_open"]
    return {k: int(v) if float(v).is_integer() else v for k, v in out.items()}


def _recv(conn: Any, kind: str) -> Any:
    message = conn.recv()
    tag, payload = message
    if tag == "failed":
        raise RuntimeError(f"a loader process failed: {payload}")
    if tag != kind:
        raise RuntimeError(f"loader protocol: expected {kind!r}, got {tag!r}")
    return payload


async def run_workers(plans: list[WorkerPlan], coord: Coordinator) -> list[dict[str, Any]]:
    """Run the plans (in this process for one, else one process each); returns finals."""
    if len(plans) == 1:
        hub = LocalHub(coord.on_warmed, coord.on_opened, coord.on_phase)
        return [await Worker(plans[0], hub).run()]

    ctx = multiprocessing.get_context("spawn")
    conns: list[Any] = []
    procs: list[Any] = []
    for plan in plans:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker_process, args=(plan, child), daemon=True)
        proc.start()
        child.close()
        conns.append(parent)
        procs.append(proc)
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=len(plans))

    async def gather(kind: str) -> list[Any]:
        return list(
            await asyncio.gather(*(loop.run_in_executor(pool, _recv, c, kind) for c in conns))
        )

    def release() -> None:
        for c in conns:
            c.send("go")

    try:
        await gather("warmed")
        await coord.on_warmed()
        release()
        await coord.on_opened(await gather("opened"))
        release()
        for i in range(len(plans[0].phases)):
            await coord.on_phase(i, await gather("phase"))
            release()
        finals = await gather("final")
        for proc in procs:
            proc.join(30)
        return finals
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for c in conns:
            c.close()
        pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- plans


def split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def make_plans(
    args: argparse.Namespace, target: Target, run_id: str, phases: list[Phase]
) -> list[WorkerPlan]:
    workers = max(1, min(args.workers, args.sockets or 1))
    plans = []
    first = 0
    for w in range(workers):
        n_users = split(args.sockets, workers, w)
        users = list(range(first, first + n_users))
        first += n_users
        worker_phases = []
        for ph in phases:
            if ph.mode == "idle":
                worker_phases.append(Phase("idle", hold_s=ph.hold_s))
            elif ph.mode == "max":
                worker_phases.append(
                    Phase(
                        "max",
                        count=split(ph.count, workers, w),
                        concurrency=max(1, split(ph.concurrency, workers, w)),
                    )
                )
            else:
                worker_phases.append(
                    Phase(
                        "rate",
                        count=split(ph.count, workers, w),
                        rate=ph.rate / workers,
                        concurrency=max(1, split(ph.concurrency, workers, w)),
                        start_offset_s=w / ph.rate,
                    )
                )
        plans.append(
            WorkerPlan(
                index=w,
                workers=workers,
                run_id=run_id,
                urls=target.urls,
                users=users,
                api_key=target.api_key,
                jwt_secret=target.jwt_secret,
                scenario=args.scenario,
                batch=args.batch,
                phases=worker_phases,
                ramp_per_s=args.ramp_per_s / workers,
                connect_concurrency=args.connect_concurrency,
                drain_timeout=args.drain_timeout,
                http_client=args.http_client,
                payload_bytes=args.payload_bytes,
                jwt_audience=args.jwt_audience,
                jwt_issuer=args.jwt_issuer,
                compression=None if args.compression == "none" else "deflate",
                warmup=not args.no_warmup,
                transport=args.transport,
            )
        )
    return plans


# --------------------------------------------------------------------------- results


def _r(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def merge_phase(results: list[dict[str, Any]]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    closed: dict[str, int] = {}
    samples: dict[str, str] = {}
    latencies: list[float] = []
    publish_ms: list[float] = []
    lost_by_url: dict[str, int] = {}
    for r in results:
        add_counts(lost_by_url, r["lost_by_url"])
        add_counts(statuses, r["statuses"])
        add_counts(closed, r["closed_early"])
        for k, v in r["error_samples"].items():
            samples.setdefault(k, v)
        latencies.extend(r["latencies_ms"])
        publish_ms.extend(r["publish_ms"])

    def total(key: str) -> int:
        return int(sum(r[key] for r in results))

    t_start = min(r["t_start"] for r in results)
    t_publish_end = max(r["t_publish_end"] for r in results)
    t_end = max(r["t_end"] for r in results)
    rx = [r["t_last_rx"] for r in results if r["t_last_rx"]]
    t_last_rx = max(rx) if rx else None
    publish_s = t_publish_end - t_start
    deliver_s = (t_last_rx - t_start) if t_last_rx else None
    accepted = total("posts_accepted")
    delivered = total("delivered")
    cpu_s = sum(r["cpu_s"] for r in results)
    return {
        "posts": {
            "sent": total("posts_sent"),
            "accepted": accepted,
            "per_s": _r(accepted / publish_s, 1) if publish_s > 0 and accepted else None,
            "statuses": dict(sorted(statuses.items())),
            "non_202": {k: v for k, v in sorted(statuses.items()) if k != "202"},
            "error_samples": samples,
            "publish_ms": summary(publish_ms),
        },
        "deliveries": {
            "expected": total("expected"),
            "delivered": delivered,
            "lost": total("lost"),
            "lost_by_url": lost_by_url,
            "duplicates": total("duplicates"),
            "unexpected": total("unexpected"),
            "foreign": total("foreign"),
            "per_s": _r(delivered / deliver_s, 1) if deliver_s and delivered else None,
            "sockets_closed_by_server": closed,
            "sockets_open_at_end": total("sockets_open"),
        },
        "latency_ms": summary(latencies),
        "timing": {
            "publish_s": _r(publish_s, 3),
            "deliver_s": _r(deliver_s, 3),
            "drain_s": _r(max(r["drain_s"] for r in results), 3),
            "phase_s": _r(t_end - t_start, 3),
            "max_send_lag_ms": _r(max(r["max_lag_ms"] for r in results), 1),
            "max_send_lag_at_s": _r(
                max(results, key=lambda r: float(r["max_lag_ms"]))["max_lag_at_s"], 3
            ),
            "late_sends": total("late_sends"),
        },
        "loader_phase_cpu_s": cpu_s,
        "loader_phase_wall_s": t_end - t_start,
    }


def sockets_section(infos: list[dict[str, Any]]) -> dict[str, Any]:
    failures: dict[str, int] = {}
    samples: dict[str, str] = {}
    handshakes: list[float] = []
    for info in infos:
        add_counts(failures, info["failures"])
        for k, v in info["failure_samples"].items():
            samples.setdefault(k, v)
        handshakes.extend(info["handshake_ms"])
    opened = sum(i["opened"] for i in infos)
    open_s = max((i["open_s"] for i in infos), default=0.0)
    return {
        "requested": sum(i["requested"] for i in infos),
        "opened": opened,
        "failed": sum(i["failed"] for i in infos),
        "failures": failures,
        "failure_samples": samples,
        "open_s": _r(open_s, 3),
        "open_per_s": _r(opened / open_s, 1) if open_s > 0 else None,
        "handshake_ms": summary(handshakes),
    }


def memory_section(coord: Coordinator, opened: int, end_rss: list[int | None]) -> dict[str, Any]:
    before = coord.rss_before
    after = coord.rss_after_open
    per_socket = None
    if before and after and all(v is not None for v in before + after) and opened:
        per_socket = round((sum(after) - sum(before)) / opened, 2)  # type: ignore[arg-type]
    redis_per_socket = None
    if coord.redis_before is not None and coord.redis_after_open is not None and opened:
        redis_per_socket = round((coord.redis_after_open - coord.redis_before) / opened, 2)
    # Read earlier, before two heartbeats, the figure is favourable (the sockets'
    # presence state is not yet refreshed): report it only under its own label.
    settled = coord.settle_s >= MEMORY_SETTLE_S
    return {
        "settle_s": coord.settle_s,
        "past_two_heartbeats": settled,
        "server_rss_kib_before": before,
        "server_rss_kib_after_open": after,
        "server_rss_kib_end": end_rss,
        "kib_per_socket": per_socket if settled else None,
        "kib_per_socket_early": None if settled else per_socket,
        "redis_rss_kib_before": coord.redis_before,
        "redis_rss_kib_after_open": coord.redis_after_open,
        "redis_kib_per_socket": redis_per_socket,
    }


def redis_section(coord: Coordinator, index: int, delivered: int) -> dict[str, Any] | None:
    """What the phase cost Redis, from INFO on each node (null without nodes, or
    when a node did not answer at either end of the phase)."""
    before, after = coord.phase_redis[2 * index], coord.phase_redis[2 * index + 1]
    if not before or not after:
        return None
    return redisinfo.delta(before, after, delivered)


def idle_section(
    args: argparse.Namespace, coord: Coordinator, index: int, opened: int
) -> dict[str, Any] | None:
    """--scenario idle: what holding the sockets cost the busiest server."""
    if args.scenario != "idle":
        return None
    pct = [p for p in coord.phase_server_cpu[index] if p is not None]
    return {
        "hold_s": args.hold,
        "sockets_per_process": round(opened / max(1, len(coord.target.server_pids))),
        "cpu_pct_of_one_core": max(pct) if pct else None,
    }


def params_section(args: argparse.Namespace, mode: str, phase: Phase) -> dict[str, Any]:
    return {
        "sockets": args.sockets,
        "workers": max(1, min(args.workers, args.sockets or 1)),
        "ramp_per_s": args.ramp_per_s,
        "connect_concurrency": args.connect_concurrency,
        "batch": args.batch if args.scenario == "batch" else None,
        "concurrency": phase.concurrency if mode != "idle" else None,
        "count": phase.count if mode != "idle" else None,
        "rate": phase.rate if mode == "rate" else None,
        "duration": getattr(args, "duration", None) if mode == "rate" else None,
        "hold": args.hold if mode == "idle" else None,
        "drain_timeout": args.drain_timeout,
        "settle": settle_for(args),
        "http_client": args.http_client,
        "compression": args.compression,
        "transport": args.transport,
        "payload_bytes": args.payload_bytes,
        "warmup": not args.no_warmup,
    }


def emit(line: dict[str, Any], args: argparse.Namespace) -> None:
    text = json.dumps(line, separators=(",", ":"), sort_keys=False)
    print(text, flush=True)
    if not args.no_results and args.results:
        path = Path(args.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")


# --------------------------------------------------------------------------- run / sweep


def phases_for(args: argparse.Namespace) -> tuple[str, list[Phase]]:
    if args.command == "sweep":
        return "rate", [
            Phase(
                "rate",
                count=max(1, round(r * args.duration)),
                rate=r,
                concurrency=args.concurrency,
            )
            for r in args.rates
        ]
    if args.scenario in ("connect", "idle"):
        return "idle", [Phase("idle", hold_s=args.hold)]
    if args.rate is not None:
        if args.rate <= 0:
            raise SystemExit("bench: --rate must be positive")
        count = max(1, round(args.rate * args.duration))
        return "rate", [Phase("rate", count=count, rate=args.rate, concurrency=args.concurrency)]
    return "max", [Phase("max", count=args.count, concurrency=args.concurrency)]


def settle_for(args: argparse.Namespace) -> float:
    """Memory is read once the sockets have lived through two presence heartbeats."""
    if args.settle is not None:
        return float(args.settle)
    return MEMORY_SETTLE_S if args.scenario in ("connect", "idle") else 1.0


def validate(args: argparse.Namespace) -> None:
    if args.hold is None:
        args.hold = 60.0 if getattr(args, "scenario", None) == "idle" else 2.0
    if args.sockets < 1:
        raise SystemExit("bench: --sockets must be at least 1")
    if args.workers < 1:
        raise SystemExit("bench: --workers must be at least 1")
    if args.scenario == "batch":
        if args.batch < 1:
            raise SystemExit("bench: --batch must be at least 1")
        per_worker = args.sockets // max(1, min(args.workers, args.sockets))
        if args.batch > per_worker:
            raise SystemExit(
                f"bench: --batch {args.batch} is more than the sockets per loader process "
                f"({per_worker}); each process publishes to its own sockets"
            )
    if args.concurrency < 1:
        raise SystemExit("bench: --concurrency must be at least 1")


def execute(args: argparse.Namespace, probes: Probes | None = None) -> list[dict[str, Any]]:
    """One run or sweep: returns the JSON lines (already printed and saved).

    ``probes``: extra counters read at each phase's start and end; each line's
    ``probes`` gives their increase over its phase.
    """
    validate(args)
    mode, phases = phases_for(args)
    run_id = secrets.token_hex(4)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    target = Target(args)
    lines: list[dict[str, Any]] = []
    try:
        if target.cluster is not None:
            target.cluster.mark_logs()
        coord = Coordinator(target, settle_for(args), probes)
        plans = make_plans(args, target, run_id, phases)
        cpu0 = procstat.own_cpu_seconds(children=True)
        wall0 = time.perf_counter()
        finals = run_async(run_workers(plans, coord))
        loader_cpu = procstat.own_cpu_seconds(children=True) - cpu0
        loader_wall = time.perf_counter() - wall0
        end_rss = [procstat.rss_kib(pid) for pid in target.server_pids]
        logs = None
        crashed: list[str] = []
        if target.cluster is not None:
            crashed = target.cluster.crashed()
            exit_codes = target.cluster.stop_servers()
            logs = target.cluster.scan_logs()
            logs["exit_codes"] = exit_codes
        if target.cluster is not None and args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for i, server in enumerate(target.cluster.servers):
                (keep / f"{run_id}-server{i}.log").write_text(server.log_text())
        sockets = sockets_section(coord.opened)
        memory = memory_section(coord, sockets["opened"], end_rss)
        sweep_id = run_id if args.command == "sweep" else None
        for i, phase in enumerate(phases):
            merged = merge_phase(coord.phases[i])
            phase_cpu = merged.pop("loader_phase_cpu_s")
            phase_wall = merged.pop("loader_phase_wall_s")
            line: dict[str, Any] = {
                "bench": SCHEMA_VERSION,
                "run_id": run_id if len(phases) == 1 else f"{run_id}.{i}",
                "sweep_id": sweep_id,
                "time": started,
                "label": args.label,
                "command": args.command,
                "scenario": args.scenario,
                "mode": mode,
                "params": params_section(args, mode, phase),
                "target": target.describe(),
                "sockets": sockets,
                **merged,
                "memory": memory,
                "server_cpu_pct": coord.phase_server_cpu[i],
                "server_cpu_s": coord.phase_server_cpu_s[i],
                "idle": idle_section(args, coord, i, sockets["opened"]),
                "server_metrics": coord.phase_metrics[i],
                "redis_info": redis_section(coord, i, merged["deliveries"]["delivered"]),
                "probes": coord.phase_probes[i] if probes else None,
                "loader": {
                    "workers": len(plans),
                    "cpu_s": _r(loader_cpu, 3),
                    "wall_s": _r(loader_wall, 3),
                    "cpu_pct": _r(loader_cpu / loader_wall * 100, 1) if loader_wall else None,
                    "phase_cpu_s": _r(phase_cpu, 3),
                    "phase_cpu_pct": (
                        _r(phase_cpu / phase_wall * 100, 1) if phase_wall >= 0.05 else None
                    ),
                    "worker_cpu_s": [_r(f["cpu_s"], 3) for f in finals],
                    "max_rss_kib": max(f["max_rss_kib"] for f in finals),
                },
                "server_logs": logs,
                "servers_crashed": crashed,
            }
            line["ok"] = _ok(line)
            lines.append(line)
            emit(line, args)
    finally:
        target.close()
    if args.command == "sweep" and args.plot:
        from bench.plot import plot_sweep

        plot_sweep(lines, args.plot)
        print(f"bench: plot written to {args.plot}", file=sys.stderr)
    return lines


def _ok(line: dict[str, Any]) -> bool:
    d = line["deliveries"]
    logs = line["server_logs"] or {"total": {"errors": 0, "http_500": 0, "tracebacks": 0}}
    return (
        line["sockets"]["failed"] == 0
        and not line["posts"]["non_202"]
        and d["lost"] == 0
        and d["duplicates"] == 0
        and d["unexpected"] == 0
        and not d["sockets_closed_by_server"]
        and logs["total"]["errors"] == 0
        and logs["total"]["http_500"] == 0
        and logs["total"]["tracebacks"] == 0
        and not line["servers_crashed"]
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "push":  # Web Push messages/s (bench/push.py)
        from bench import push

        return push.main(argv[1:])
    if argv and argv[0] == "reconnect":  # a reconnect storm with since (bench/reconnect.py)
        from bench import reconnect

        return reconnect.main(argv[1:])
    if argv and argv[0] == "push-ws":  # WebSocket delivery while pushes flow (bench/push_ws.py)
        from bench import push_ws

        return push_ws.main(argv[1:])
    if argv and argv[0] == "capacity":  # the capacity model's matrix (bench/capacity.py)
        from bench import capacity

        return capacity.main(argv[1:])
    if argv and argv[0] == "suite":
        known, extra = parser.parse_known_args(argv)
        return run_suite(
            parser,
            execute,
            emit,
            quick=known.quick,
            repeat=known.repeat,
            only=known.only,
            extra=extra,
        )
    args = parser.parse_args(argv)
    try:
        lines = execute(args)
    except KeyboardInterrupt:
        return 130
    return 0 if all(line["ok"] for line in lines) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
