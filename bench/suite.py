"""``python -m bench suite``: the issue #4 targets, each run ``--repeat`` times.

Every run prints its own JSON line (as ``run`` does); after the repeats of a
scenario, one ``"bench": "suite-summary"`` line gives the median of the
scenario's headline figure and whether it meets the target. The exit status
is 1 when a run was not ``ok`` (something lost, an error, a crash); a missed
speed target is reported in the summary, not in the exit status (these
machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    metric: str  # dotted path into the run's JSON line
    op: str  # ">=" or "<="
    value: float

    def read(self, line: dict[str, Any]) -> float:
        node: Any = line
        for part in self.metric.split("."):
            node = node[part]
        return float(node)

    def met(self, figure: float) -> bool:
        return figure >= self.value if self.op == ">=" else figure <= self.value


@dataclass(frozen=True)
class Scenario:
    name: str
    args: list[str]
    target: Target


SUITE: list[Scenario] = [
    Scenario("unicast max rate",
             ["--scenario", "unicast", "--sockets", "200", "--concurrency", "64",
              "--count", "6000"],
             Target("deliveries.per_s", ">=", 3000)),
    Scenario("batch of 100",
             ["--scenario", "batch", "--sockets", "1000", "--batch", "100", "--concurrency", "8",
              "--count", "200"],
             Target("deliveries.per_s", ">=", 12500)),
    Scenario("latency at 500/s over 1,000 users",
             ["--scenario", "unicast", "--sockets", "1000", "--rate", "500", "--duration", "10",
              "--concurrency", "64"],
             Target("latency_ms.p99", "<=", 10)),
    Scenario("idle sockets memory",
             ["--scenario", "connect", "--sockets", "2000", "--hold", "2"],
             Target("memory.kib_per_socket", "<=", 20)),
    Scenario("idle sockets memory, deflate offered",
             ["--scenario", "connect", "--sockets", "2000", "--hold", "2",
              "--compression", "deflate"],
             Target("memory.kib_per_socket", "<=", 20)),
    Scenario("idle process, 10,000 sockets",
             ["--scenario", "idle", "--sockets", "10000", "--hold", "60"],
             Target("idle.cpu_pct_of_one_core", "<=", 2)),
    Scenario("one POST to 10,000 recipients",
             ["--scenario", "batch", "--sockets", "10000", "--batch", "10000", "--concurrency", "1",
              "--count", "1"],
             Target("posts.publish_ms.max", "<=", 1000)),
]  # fmt: skip

QUICK_SUITE: list[Scenario] = [
    Scenario("unicast max rate",
             ["--scenario", "unicast", "--sockets", "100", "--concurrency", "16",
              "--count", "1000"],
             Target("deliveries.per_s", ">=", 3000)),
    Scenario("batch of 100",
             ["--scenario", "batch", "--sockets", "300", "--batch", "100", "--concurrency", "4",
              "--count", "30"],
             Target("deliveries.per_s", ">=", 12500)),
    Scenario("latency at 200/s",
             ["--scenario", "unicast", "--sockets", "300", "--rate", "200", "--duration", "5",
              "--concurrency", "32"],
             Target("latency_ms.p99", "<=", 10)),
    Scenario("idle sockets memory",
             ["--scenario", "connect", "--sockets", "500", "--hold", "1"],
             Target("memory.kib_per_socket", "<=", 20)),
    Scenario("idle sockets memory, deflate offered",
             ["--scenario", "connect", "--sockets", "500", "--hold", "1",
              "--compression", "deflate"],
             Target("memory.kib_per_socket", "<=", 20)),
]  # fmt: skip

Execute = Callable[[argparse.Namespace], list[dict[str, Any]]]
Emit = Callable[[dict[str, Any], argparse.Namespace], None]


def summary_line(scenario: Scenario, lines: list[dict[str, Any]], runs: int) -> dict[str, Any]:
    # A figure from a run that lost, duplicated or errored says nothing about
    # the target: the median and the verdict use the ok runs only.
    ok_lines = [line for line in lines if line["ok"]]
    figures = [scenario.target.read(line) for line in ok_lines]
    median = statistics.median(figures) if figures else None
    return {
        "bench": "suite-summary",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "name": scenario.name,
        "runs": runs,
        "completed": len(lines),
        "ok_runs": len(ok_lines),
        "all_ok": len(lines) == runs and all(line["ok"] for line in lines),
        "metric": scenario.target.metric,
        "values": figures,
        "median": median,
        "target": f"{scenario.target.op} {scenario.target.value:g}",
        "met": median is not None and scenario.target.met(median),
        "run_ids": [line["run_id"] for line in lines],
        "ok_run_ids": [line["run_id"] for line in ok_lines],
    }


def run_suite(
    parser: argparse.ArgumentParser,
    execute: Execute,
    emit: Emit,
    *,
    quick: bool,
    repeat: int,
    only: str | None,
    extra: Sequence[str],
) -> int:
    has_url = any(a == "--url" or a.startswith("--url=") for a in extra)
    base = [] if has_url else ["--spawn", "2"]
    failures = 0
    for scenario in QUICK_SUITE if quick else SUITE:
        if only is not None and only.lower() not in scenario.name.lower():
            continue
        args = parser.parse_args(["run", *base, *scenario.args, *extra])
        lines: list[dict[str, Any]] = []
        for attempt in range(1, repeat + 1):
            print(
                f"bench: suite: {scenario.name} ({attempt}/{repeat})", file=sys.stderr, flush=True
            )
            try:
                lines.extend(line for line in execute(args) if line.get("bench") != "sweep")
            except Exception as exc:  # keep going: the other runs still tell something
                print(f"bench: suite: {scenario.name} failed: {exc!r}", file=sys.stderr, flush=True)
        summary = summary_line(scenario, lines, repeat)
        emit(summary, args)
        failures += 0 if summary["all_ok"] else 1
    return 1 if failures else 0
