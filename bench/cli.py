"""``python -m bench``: run and sweep (one JSON line per phase), and the
dispatch to the other benchmarks (push, push-ws, reconnect, capacity, suite).

The parts of a run: its options (bench/options.py), the target
(bench/target.py), the coordinator that measures the servers and drives the
loader processes (bench/coordinator.py), their plans (bench/plans.py) and the
line's sections (bench/report.py). See bench/README.md for every option and
every output field.
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import procstat
from bench.coordinator import Coordinator, Probes, run_workers
from bench.loader import Phase, run_async
from bench.options import build_parser, settle_for
from bench.plans import make_plans
from bench.report import (
    emit,
    idle_section,
    memory_section,
    merge_phase,
    params_section,
    redis_section,
    rounded,
    sockets_section,
)
from bench.suite import run_suite
from bench.target import Target

SCHEMA_VERSION = 2  # 2: memory read past two presence heartbeats; target.config


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
                    "cpu_s": rounded(loader_cpu, 3),
                    "wall_s": rounded(loader_wall, 3),
                    "cpu_pct": rounded(loader_cpu / loader_wall * 100, 1) if loader_wall else None,
                    "phase_cpu_s": rounded(phase_cpu, 3),
                    "phase_cpu_pct": (
                        rounded(phase_cpu / phase_wall * 100, 1) if phase_wall >= 0.05 else None
                    ),
                    "worker_cpu_s": [rounded(f["cpu_s"], 3) for f in finals],
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
