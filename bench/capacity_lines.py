"""The lines of ``python -m bench capacity`` (bench/capacity.py): one
``capacity-run`` per run from its ``bench run`` line, one ``capacity`` per
cell (medians), and the table on stderr. No I/O but that table."""

from __future__ import annotations

import statistics
import sys
from typing import Any


def _per(value: float | None, delivered: int, scale: float) -> float | None:
    return None if value is None or not delivered else round(value / delivered * scale, 4)


def run_line(
    line: dict[str, Any],
    *,
    topology: str,
    repeat: int,
    logs: dict[str, Any],
    pg_cpu_s: float | None,
    wal_bytes: float | None,
    load: tuple[tuple[float, ...], tuple[float, ...]],
    redis_idle_cpu_per_s: float,
) -> dict[str, Any]:
    """The figures of one run, per process, per Redis node and per delivery."""
    d = line["deliveries"]
    delivered = int(d["delivered"])
    procs = len(line["target"]["urls"])
    redis = line["redis_info"] or {}
    masters = int(redis.get("masters") or 0)
    per_s = d["per_s"]
    server_cpu = [c for c in line["server_cpu_s"] if c is not None]
    total = logs["total"]
    # Redis's CPU over the phase less what it spends at rest over as long.
    phase_s = float(line["timing"]["phase_s"] or 0.0)
    redis_net = (
        None if "cpu_s" not in redis else float(redis["cpu_s"]) - redis_idle_cpu_per_s * phase_s
    )
    ok = bool(line["ok"]) and not (total["errors"] or total["tracebacks"] or total["http_500"])
    return {
        "bench": "capacity-run",
        "run_id": line["run_id"],
        "time": line["time"],
        "label": line["label"],
        "topology": topology,
        "processes": procs,
        "scenario": line["scenario"],
        "repeat": repeat,
        "ok": ok,
        "delivered": delivered,
        "lost": d["lost"],
        "deliveries_per_s": per_s,
        "deliveries_per_s_per_process": None if per_s is None else round(per_s / procs, 1),
        "deliveries_per_s_per_master": None
        if per_s is None or not masters
        else round(per_s / masters, 1),
        "latency_ms_p50": line["latency_ms"]["p50"],
        "latency_ms_p99": line["latency_ms"]["p99"],
        "server_cpu_s": line["server_cpu_s"],
        "server_cpu_pct": line["server_cpu_pct"],
        "server_cpu_ms_per_delivery": _per(sum(server_cpu), delivered, 1000),
        "redis_masters": masters,
        "redis_replicas": redis.get("replicas"),
        "redis_cpu_s_per_1000_deliveries": redis.get("cpu_s_per_1000_deliveries"),
        "redis_cpu_s_per_1000_deliveries_net": _per(redis_net, delivered, 1000),
        "redis_idle_cpu_pct": round(redis_idle_cpu_per_s * 100, 2),
        "redis_masters_cpu_s_per_1000_deliveries": redis.get("masters_cpu_s_per_1000_deliveries"),
        "redis_replicas_cpu_s_per_1000_deliveries": redis.get("replicas_cpu_s_per_1000_deliveries"),
        "redis_busiest_master_cpu_s_per_1000_deliveries": redis.get(
            "busiest_master_cpu_s_per_1000_deliveries"
        ),
        "redis_master_commands_per_delivery": redis.get("master_commands_per_delivery"),
        "redis_master_calls_per_delivery": redis.get("master_calls_per_delivery"),
        "redis_master_net_in_bytes_per_delivery": redis.get("master_net_in_bytes_per_delivery"),
        "redis_master_net_out_bytes_per_delivery": redis.get("master_net_out_bytes_per_delivery"),
        "redis_nodes": redis.get("nodes"),
        "postgres_cpu_ms_per_delivery": _per(pg_cpu_s, delivered, 1000),
        "postgres_wal_bytes_per_delivery": _per(wal_bytes, delivered, 1),
        "loader_cpu_pct": line["loader"]["phase_cpu_pct"],
        "load_avg_before": [round(x, 2) for x in load[0]],
        "load_avg_after": [round(x, 2) for x in load[1]],
        "server_log_errors": total["errors"] + total["tracebacks"] + total["http_500"],
    }


# The per-cell medians (over the runs that lost nothing) of these run fields.
MEDIAN_FIELDS = (
    "deliveries_per_s",
    "deliveries_per_s_per_process",
    "deliveries_per_s_per_master",
    "latency_ms_p99",
    "server_cpu_ms_per_delivery",
    "redis_cpu_s_per_1000_deliveries",
    "redis_cpu_s_per_1000_deliveries_net",
    "redis_masters_cpu_s_per_1000_deliveries",
    "redis_replicas_cpu_s_per_1000_deliveries",
    "redis_busiest_master_cpu_s_per_1000_deliveries",
    "redis_master_commands_per_delivery",
    "redis_master_net_in_bytes_per_delivery",
    "redis_master_net_out_bytes_per_delivery",
    "postgres_cpu_ms_per_delivery",
    "postgres_wal_bytes_per_delivery",
    "loader_cpu_pct",
)


def cell_line(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    ok_runs = [r for r in runs if r["ok"]]
    medians: dict[str, float | None] = {}
    for name in MEDIAN_FIELDS:
        values = [r[name] for r in ok_runs if r[name] is not None]
        medians[name] = round(statistics.median(values), 4) if values else None
    return {
        "bench": "capacity",
        "label": first["label"],
        "topology": first["topology"],
        "processes": first["processes"],
        "scenario": first["scenario"],
        "redis_masters": first["redis_masters"],
        "redis_replicas": first["redis_replicas"],
        "redis_idle_cpu_pct": first["redis_idle_cpu_pct"],
        "runs": len(runs),
        "ok_runs": len(ok_runs),
        **medians,
        "load_avg_1m": [r["load_avg_after"][0] for r in runs],
        "run_ids": [r["run_id"] for r in runs],
    }


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(cells: list[dict[str, Any]]) -> None:
    head = (
        "topology    procs scenario  deliv/s  /proc   /master srv ms/dlv "
        "redis s/1k (net; masters, busiest) cmds/dlv pg ms/dlv WAL B/dlv ok"
    )
    print(head, file=sys.stderr)
    for c in cells:
        print(
            f"{c['topology']:<11} {c['processes']:>5} {c['scenario']:<8} "
            f"{_fmt(c['deliveries_per_s'], 0):>8} {_fmt(c['deliveries_per_s_per_process'], 0):>6} "
            f"{_fmt(c['deliveries_per_s_per_master'], 0):>8} "
            f"{_fmt(c['server_cpu_ms_per_delivery'], 3):>10} "
            f"{_fmt(c['redis_cpu_s_per_1000_deliveries'], 3):>10} "
            f"({_fmt(c['redis_cpu_s_per_1000_deliveries_net'], 3)}; "
            f"{_fmt(c['redis_masters_cpu_s_per_1000_deliveries'], 3)}, "
            f"{_fmt(c['redis_busiest_master_cpu_s_per_1000_deliveries'], 3)}) "
            f"{_fmt(c['redis_master_commands_per_delivery'], 2):>8} "
            f"{_fmt(c['postgres_cpu_ms_per_delivery'], 3):>9} "
            f"{_fmt(c['postgres_wal_bytes_per_delivery'], 0):>9} "
            f"{c['ok_runs']}/{c['runs']}",
            file=sys.stderr,
        )
