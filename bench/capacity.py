"""``python -m bench capacity``: the linear part of the capacity model, measured.

For each Redis topology (one standalone ``redis-server``; a Redis Cluster of 3
masters and 3 replicas, as the tests start it) and each process count (1, 2
and 4 uvicorn processes on one durable PostgreSQL), one deployment is started
and the suite's unicast and batch scenarios run against it ``--repeat`` times,
interleaved. Each run is an ordinary ``bench run`` (``--url`` at the
deployment, ``--redis-info`` at every Redis node), so its line has the
phase's deliveries, the servers' CPU and Redis's own ``INFO`` counters; this
command adds PostgreSQL's CPU (the postmaster and its backends) and WAL bytes
over the same run, and the load average.

It prints one ``capacity-run`` line per run and one ``capacity`` line per
cell (topology, processes and scenario: medians over the runs that lost
nothing), then a table on stderr. CPU per delivery is the robust figure on a
shared machine; deliveries/s follows whatever else runs there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench import procstat, redisinfo
from bench.capacity_lines import cell_line, print_table, run_line
from bench.cli import execute
from bench.cluster import Cluster
from bench.coordinator import Probes
from bench.options import build_parser
from bench.report import emit
from bench.suite import QUICK_SUITE, SUITE

TOPOLOGIES = ("standalone", "cluster")
SCENARIOS = {"unicast": "unicast max rate", "batch": "batch of 100"}


def _csv_ints(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected process counts like 1,2,4: {text!r}")
    return values


def _csv_of(choices: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        values = [x.strip() for x in text.split(",") if x.strip()]
        bad = [v for v in values if v not in choices]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}: {text!r}")
        return values

    return parse


def build_capacity_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench capacity", description=__doc__)
    p.add_argument("--procs", type=_csv_ints, default=[1, 2, 4], help="process counts")
    p.add_argument("--topologies", type=_csv_of(TOPOLOGIES), default=list(TOPOLOGIES), help="Redis")
    p.add_argument(
        "--scenarios", type=_csv_of(tuple(SCENARIOS)), default=list(SCENARIOS), help="scenarios"
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per cell (medians)")
    p.add_argument("--quick", action="store_true", help="the quick suite's smaller scenarios")
    p.add_argument("--results", default=None, help="append the lines here (default: bench's)")
    p.add_argument("--no-results", action="store_true", help="print only")
    p.add_argument("--label", default="", help="free text stored in the lines")
    return p


def scenario_args(name: str, *, quick: bool) -> list[str]:
    wanted = SCENARIOS[name]
    for scenario in QUICK_SUITE if quick else SUITE:
        if scenario.name == wanted:
            return list(scenario.args)
    raise LookupError(wanted)


# --------------------------------------------------------------------------- PostgreSQL


def _wal_lsn(cluster: Cluster) -> float | None:
    if cluster.postgres is None:
        return None
    with cluster.postgres.connect() as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    return float(row[0]) if row else None


def _pg_probes(cluster: Cluster) -> Probes:
    """PostgreSQL's CPU (postmaster and backends) and WAL position, read per phase."""
    if cluster.postgres is None:
        return {}
    pid = cluster.postgres.pid
    return {
        "postgres_cpu_s": lambda: procstat.tree_cpu_seconds(pid),
        "postgres_wal_bytes": lambda: _wal_lsn(cluster),
    }


# --------------------------------------------------------------------------- Redis at rest

IDLE_S = 5.0


def redis_idle_cpu(cluster: Cluster) -> float:
    """Redis's CPU per second with the deployment up and nothing published.

    A cluster spends CPU on its own (the cluster bus's gossip, replication
    pings, the servers' presence heartbeats) whatever the traffic; at a few
    thousand deliveries/s that is a visible share of the per-delivery figure,
    so the lines also give it net of this rate.
    """
    before = redisinfo.sample_all(cluster.redis_addresses)
    time.sleep(IDLE_S)
    after = redisinfo.sample_all(cluster.redis_addresses)
    return float(redisinfo.delta(before, after, 0)["cpu_s"]) / IDLE_S


# --------------------------------------------------------------------------- one run


def run_once(
    cluster: Cluster,
    topology: str,
    scenario: str,
    repeat: int,
    opts: argparse.Namespace,
    redis_idle_cpu_per_s: float,
) -> dict[str, Any]:
    argv = ["run", *[f"--url={u}" for u in cluster.urls]]
    argv += [f"--api-key={cluster.api_key}", f"--jwt-secret={cluster.jwt_secret}"]
    argv += [f"--server-pid={pid}" for pid in cluster.server_pids]
    argv += [f"--redis-info={a}" for a in cluster.redis_addresses]
    argv += [*scenario_args(scenario, quick=opts.quick), "--label", opts.label or "capacity"]
    argv += ["--no-results"]
    args = build_parser().parse_args(argv)
    load_before = os.getloadavg()
    cluster.mark_logs()
    (line,) = execute(args, _pg_probes(cluster))
    logs = cluster.scan_logs()
    probes = line["probes"] or {}
    return run_line(
        line,
        topology=topology,
        repeat=repeat,
        logs=logs,
        pg_cpu_s=probes.get("postgres_cpu_s"),
        wal_bytes=probes.get("postgres_wal_bytes"),
        load=(load_before, os.getloadavg()),
        redis_idle_cpu_per_s=redis_idle_cpu_per_s,
    )


def run_matrix(opts: argparse.Namespace, out: argparse.Namespace) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = []
    for topology in opts.topologies:
        for procs in opts.procs:
            print(f"bench: capacity: {procs} process(es), {topology} Redis", file=sys.stderr)
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in opts.scenarios}
            with Cluster(procs, redis_cluster=topology == "cluster", postgres=True) as cluster:
                idle = redis_idle_cpu(cluster)
                # Interleaved, so that a burst of other load hits every scenario alike.
                for repeat in range(1, opts.repeat + 1):
                    for scenario in opts.scenarios:
                        line = run_once(cluster, topology, scenario, repeat, opts, idle)
                        emit(line, out)
                        runs[scenario].append(line)
            for scenario in opts.scenarios:
                cell = cell_line(runs[scenario])
                emit(cell, out)
                cells.append(cell)
    return cells


def main(argv: Sequence[str]) -> int:
    opts = build_capacity_parser().parse_args(list(argv))
    if opts.repeat < 1:
        raise SystemExit("bench capacity: --repeat must be at least 1")
    out = argparse.Namespace(no_results=opts.no_results, results=opts.results)
    if out.results is None:
        from bench.options import RESULTS_PATH

        out.results = str(RESULTS_PATH)
    cells = run_matrix(opts, out)
    print_table(cells)
    return 0 if all(c["ok_runs"] == c["runs"] for c in cells) else 1
