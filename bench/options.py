"""The options of ``python -m bench run|sweep|suite`` (bench/README.md lists them)."""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "results.jsonl"
# The service refreshes presence every 10 s (notifications/presence.py HEARTBEAT;
# tests/bench checks they agree). Memory is read after two refreshes, plus margin.
PRESENCE_HEARTBEAT_S = 10.0
MEMORY_SETTLE_S = 2 * PRESENCE_HEARTBEAT_S + 2.0


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
    # A command line is visible to every user of the machine (ps, /proc):
    # the environment is the place for the secrets (bench/target.py).
    target.add_argument(
        "--api-key",
        help="publisher secret, needed with --url; better in the environment as "
        "BENCH_API_KEY (a command line is visible in ps)",
    )
    target.add_argument(
        "--jwt-secret",
        help="HS256 user-token key, needed with --url; better in the environment as "
        "BENCH_JWT_SECRET",
    )
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


def settle_for(args: argparse.Namespace) -> float:
    """Memory is read once the sockets have lived through two presence heartbeats."""
    if args.settle is not None:
        return float(args.settle)
    return MEMORY_SETTLE_S if args.scenario in ("connect", "idle") else 1.0
