"""The sections of a run's JSON line, from the loaders' and the coordinator's
reports (bench/README.md describes every field), and where the line goes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import redisinfo
from bench.coordinator import Coordinator
from bench.loader import Phase
from bench.options import MEMORY_SETTLE_S, settle_for
from bench.stats import add_counts, summary


def rounded(x: float | None, digits: int = 2) -> float | None:
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
            "per_s": rounded(accepted / publish_s, 1) if publish_s > 0 and accepted else None,
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
            "per_s": rounded(delivered / deliver_s, 1) if deliver_s and delivered else None,
            "sockets_closed_by_server": closed,
            "sockets_open_at_end": total("sockets_open"),
        },
        "latency_ms": summary(latencies),
        "timing": {
            "publish_s": rounded(publish_s, 3),
            "deliver_s": rounded(deliver_s, 3),
            "drain_s": rounded(max(r["drain_s"] for r in results), 3),
            "phase_s": rounded(t_end - t_start, 3),
            "max_send_lag_ms": rounded(max(r["max_lag_ms"] for r in results), 1),
            "max_send_lag_at_s": rounded(
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
        "open_s": rounded(open_s, 3),
        "open_per_s": rounded(opened / open_s, 1) if open_s > 0 else None,
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
